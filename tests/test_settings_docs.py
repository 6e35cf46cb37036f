"""Every settings key is documented in docs/settings.md, and the shipped settings.toml loads."""

from __future__ import annotations

import typing

from pydantic import BaseModel

from syndicate import settings as settings_mod
from tests.conftest import REPO

DOC = (REPO / "docs" / "settings.md").read_text()
# Collections keyed by the user (channels.NAME) or lists of tables (feeds) document their items.
PREFIX = {"channels": "channels.NAME", "feeds": "feeds"}


def _model_of(annotation):
    """The settings model inside an annotation (Optional[Window], dict[str, Channel], ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if (model := _model_of(arg)) is not None:
            return model
    return None


def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    found = []
    for name, field in model.model_fields.items():
        if name == "base_dir":
            continue
        path = PREFIX.get(name, f"{prefix}{name}") if not prefix else f"{prefix}{name}"
        sub = _model_of(field.annotation)
        # Small value tables (windows, quiet hours, digest cadence) are documented as one key.
        if sub is not None and sub.__name__ not in ("Window", "QuietHours", "Digest", "Carry", "Topic"):
            found += keys(sub, path + ".")
        else:
            found.append(path)
    return found


def test_every_settings_key_is_documented():
    missing = [key for key in keys(settings_mod.Settings) if f"`{key}`" not in DOC]
    assert not missing, f"document these keys in docs/settings.md: {missing}"


def test_the_shipped_settings_load():
    settings = settings_mod.load(REPO / "settings.toml")
    assert settings.feeds and settings.channels
