"""Where the settings file and the ledger are: the defaults and the environment variables that
move them. Standard library only, so that the quiet run (engine/quiet.py) finds the same files as
the validated settings (settings.py) without loading pydantic: one definition for both."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "SYNDICATE_CONFIG"
DEFAULT_CONFIG = "settings.toml"
STORE_URL_ENV = "SYNDICATE_STORE_URL"
DEFAULT_STORE_URL = "sqlite:///syndicate.db"
_SQLITE = "sqlite:///"


def config_path(given: str | Path | None = None) -> Path:
    """``--config``, else ``$SYNDICATE_CONFIG``, else ``./settings.toml``."""
    return Path(given) if given else Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def store_url(configured: str, base_dir: Path) -> str:
    """``$SYNDICATE_STORE_URL``, else the configured URL; a relative SQLite path is made relative
    to BASE_DIR (the settings file's folder)."""
    url = os.environ.get(STORE_URL_ENV) or configured
    if url.startswith(_SQLITE) and not url.startswith(_SQLITE + "/") and ":memory:" not in url:
        path = Path(url[len(_SQLITE):]).expanduser()
        return _SQLITE + str(path if path.is_absolute() else base_dir / path)
    return url
