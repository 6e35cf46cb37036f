"""Where templates are found: a practice's own folder first, then the shipped templates/.

A practice overrides one file (say ``email/partials/footer.mjml``) by putting a file of the
same name in ``templates_dir``; everything else still comes from the shipped set.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from syndicate.render.errors import RenderError
from syndicate.settings import Settings

if TYPE_CHECKING:
    import jinja2

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def environment(settings: Settings) -> jinja2.Environment:
    """The Jinja2 environment for this configuration (cached per search path)."""
    paths = []
    if settings.templates_dir:
        paths.append(str(settings.resolve_path(settings.templates_dir).resolve()))
    paths.append(str(SHIPPED_TEMPLATES))
    return _environment(tuple(paths))


@functools.lru_cache(maxsize=8)
def _environment(paths: tuple[str, ...]) -> jinja2.Environment:
    import jinja2  # ~20 ms: loaded when something is rendered, not by every command that imports this

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(paths)),
        # Feed text lands in MJML markup: escape by default there. Plain-text templates
        # (subjects, text parts, social posts) must stay unescaped.
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml", "html"), default_for_string=False),
        # A typo in an overriding template should fail loudly in preview, not send "".
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(settings: Settings, name: str, context: dict) -> str:
    """Render template ``name``; a missing or broken template is a RenderError naming it."""
    import jinja2

    try:
        return environment(settings).get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template not found: {exc.name} (searched {_searched(settings)})") from None
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}") from None


def first_existing(settings: Settings, names: list[str]) -> str:
    """The first of ``names`` that exists on the search path."""
    import jinja2

    try:
        return environment(settings).select_template(names).name or names[0]
    except jinja2.TemplatesNotFound:
        raise RenderError(f"none of these templates exists: {', '.join(names)} "
                          f"(searched {_searched(settings)})") from None


def _searched(settings: Settings) -> str:
    loader = environment(settings).loader
    return ", ".join(getattr(loader, "searchpath", []))
