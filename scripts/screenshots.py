"""Screenshots of the per-post email and the digest in headless Chromium, 600 px and 375 px wide.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Renders the demo configuration (settings.toml, the bundled demo feed) exactly as it would be
sent, opens each HTML in Debian's Chromium (/usr/bin/chromium, driven by Playwright; no
browser download), and saves full-page PNGs. No network: the demo site's images do not exist,
so each image request is answered with a local SVG placeholder carrying its alt text, and any
other request is refused (which also proves the email loads nothing from elsewhere).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
WIDTHS = (600, 375)
PALETTE = [("#2f6f6a", "#a8d5c8"), ("#6a5a8c", "#d8cde8"), ("#b5673a", "#f2d3b3"), ("#3b6a8f", "#bcd7ea"),
           ("#5d7d3a", "#d6e6bd")]


def render_demo() -> dict[str, str]:
    """{name: HTML} for the demo feed's newest post and a digest of all its posts."""
    from syndicate import settings as settings_mod
    from syndicate.feeds import parse
    from syndicate.render.email import render_digest_email, render_post_email

    base = settings_mod.load(REPO / "settings.toml")
    data = base.model_dump(mode="python", exclude={"base_dir", "channels"})
    data["channels"] = {
        "newsletter": base.channels["newsletter"].model_dump(mode="python"),
        "digest": {"kind": "email", "mode": "digest", "digest": {"every": "week", "day": "tue", "at": "09:00"}},
    }
    settings = settings_mod.from_dict(data, base_dir=REPO)
    feed = parse((REPO / "syndicate/demo/wellness-feed.xml").read_bytes(), url="https://harborwellness.example/feed/")
    posts = feed.posts
    from datetime import UTC, datetime

    return {
        "post": render_post_email(posts[0], settings, "newsletter").html,
        "digest": render_digest_email(posts, settings, "digest",
                                      edition_at=datetime(2026, 11, 24, 14, 0, tzinfo=UTC)).html,
    }


def placeholder(url: str, alt: str) -> str:
    """An SVG standing in for a remote image: soft colours, and what the image shows."""
    path = urlsplit(url).path
    if path.endswith("logo.png"):
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="360" height="72" viewBox="0 0 360 72">'
                '<circle cx="36" cy="36" r="26" fill="none" stroke="#fff" stroke-width="5"/>'
                '<path d="M18 44 q18 -18 36 0" fill="none" stroke="#fff" stroke-width="5"/>'
                '<text x="76" y="46" font-family="Georgia, serif" font-size="28" fill="#fff">Harbor Wellness</text>'
                '</svg>')
    dark, light = PALETTE[sum(map(ord, path)) % len(PALETTE)]
    label = html.escape(alt or "image")[:60]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="1104" height="620" viewBox="0 0 1104 620">'
            f'<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="{light}"/>'
            f'<stop offset="1" stop-color="{dark}"/></linearGradient></defs>'
            f'<rect width="1104" height="620" fill="url(#g)"/>'
            f'<path d="M0 470 Q 276 380 552 450 T 1104 430 V 620 H 0 Z" fill="{dark}" opacity="0.45"/>'
            f'<circle cx="860" cy="170" r="70" fill="#fff" opacity="0.55"/>'
            f'<text x="48" y="575" font-family="Helvetica, Arial, sans-serif" font-size="34" fill="#fff" '
            f'opacity="0.9">{label}</text></svg>')


def shoot(pages: dict[str, str], out: Path, widths=WIDTHS) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            for name, source in pages.items():
                alts = _alts(source)
                for width in widths:
                    page = browser.new_page(viewport={"width": width, "height": 800}, device_scale_factor=1)

                    def answer(route, _request, alts=alts):
                        url = route.request.url
                        if route.request.resource_type == "image":
                            route.fulfill(status=200, content_type="image/svg+xml",
                                          body=placeholder(url, alts.get(url, "")))
                        else:
                            route.abort()

                    page.route("**/*", answer)
                    page.set_content(source, wait_until="load")
                    path = out / f"{name}-{width}.png"
                    page.screenshot(path=str(path), full_page=True)
                    page.close()
                    written.append(path)
        finally:
            browser.close()
    return written


def _alts(source: str) -> dict[str, str]:
    import re

    found = {}
    for tag in re.findall(r"<img\b[^>]*>", source):
        src = re.search(r'src="([^"]+)"', tag)
        alt = re.search(r'alt="([^"]*)"', tag)
        if src:
            found[html.unescape(src.group(1))] = html.unescape(alt.group(1)) if alt else ""
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in shoot(render_demo(), Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
