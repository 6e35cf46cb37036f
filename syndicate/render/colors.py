"""WCAG 2 colour contrast, and brand colours nudged until text in them is readable.

Used by the email templates' colours (syndicate/render/email.py) and by `lint-email`'s warning
about a configured ``primary_color`` (syndicate/email/lint.py). Colours are hex codes
(``#rgb`` or ``#rrggbb``); a colour name cannot be measured and is left as it is.
"""

from __future__ import annotations

import re

TEXT_CONTRAST = 4.5  # WCAG 1.4.3 AA for normal-size text
_HEX = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


def rgb(color: str) -> tuple[int, int, int] | None:
    """(r, g, b) of a hex colour, else None."""
    match = _HEX.fullmatch((color or "").strip())
    if not match:
        return None
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(color: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float | None:
    """The WCAG contrast ratio of two hex colours (1 to 21), or None if either is not hex."""
    first, second = rgb(a), rgb(b)
    if first is None or second is None:
        return None
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def mix(color: str, toward: str, amount: float) -> str:
    """COLOR moved AMOUNT (0 to 1) of the way to TOWARD, as #rrggbb."""
    a, b = rgb(color), rgb(toward)
    return "#" + "".join(f"{round(x + (y - x) * amount):02x}" for x, y in zip(a, b, strict=True))


def readable(color: str, *backgrounds: str, ratio: float = TEXT_CONTRAST) -> str:
    """COLOR itself if text in it reaches RATIO on every one of BACKGROUNDS; else the closest
    shade of it that does (toward black on light backgrounds, toward white on dark ones).
    A colour that is not hex is returned unchanged."""
    if rgb(color) is None or any(rgb(b) is None for b in backgrounds):
        return color

    def worst(c: str) -> float:
        return min(contrast(c, b) for b in backgrounds)

    if worst(color) >= ratio:
        return color
    dark_backgrounds = sum(_luminance(rgb(b)) for b in backgrounds) / len(backgrounds) < 0.18
    toward = "#ffffff" if dark_backgrounds else "#000000"
    for step in range(1, 21):
        shade = mix(color, toward, step / 20)
        if worst(shade) >= ratio:
            return shade
    return toward


def text_on(background: str, light: str = "#ffffff", dark: str = "#1f2a30") -> str:
    """The text colour for BACKGROUND: LIGHT (white) if it reads there at 4.5:1, else DARK."""
    ratio = contrast(light, background)
    return light if ratio is None or ratio >= TEXT_CONTRAST else dark
