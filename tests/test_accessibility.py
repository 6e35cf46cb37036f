"""Accessibility: axe-core (from npm, scripts/axe.sh) in Debian's Chromium over every email the
demo sends (at 600 and 375 px, light and dark) and every desk page (a crawl of the signed-in
desk, the public pages, and the pages after a refused edit and a hold): no serious or critical
violation. Then what axe does not check: emails' lang, layout tables, dark-mode styles and the
logo's alt text with images off; the desk's focus ring, a refused edit's focus, and reflow at
320 px. And the contrast arithmetic behind the brand colours and lint-email's warning.

The scan itself is scripts/accessibility.py (run it by hand for a report)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
from test_render_support import demo_post, demo_settings

from syndicate.email.lint import brand_warnings, lint_html
from syndicate.render import colors
from syndicate.render.email import render_digest_email, render_post_email
from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")


def _script():
    spec = importlib.util.spec_from_file_location("accessibility", REPO / "scripts" / "accessibility.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["accessibility"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


a11y = _script()
browser_needed = pytest.mark.skipif(
    not os.environ.get("CI") and (not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None or not a11y.AXE.exists()),  # under CI: fail, never skip
    reason="needs Debian's chromium (scripts/browser.sh), playwright and axe-core (scripts/axe.sh; `make test` runs both)")


def _report(scans) -> str:
    return "\n".join(f"{s.name}: {v['impact']} {v['id']} ×{len(v['nodes'])} "
                     f"{v['nodes'][0]['target']} {v['nodes'][0]['summary'][-160:]}"
                     for s in scans for v in s.failing())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = a11y.launch(pw)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def emails(tmp_path_factory) -> dict[str, str]:
    return a11y.demo_emails(tmp_path_factory.mktemp("emails"))


# -- emails ---------------------------------------------------------------------------------

@browser_needed
def test_every_demo_email_passes_axe_light_and_dark(browser, emails):
    assert len(emails) >= 6, sorted(emails)  # five post emails and the digest, at least
    assert any("weekly" in name for name in emails)
    scans = [a11y.scan_email(browser, name, html, width, scheme)
             for name, html in emails.items() for width in a11y.EMAIL_WIDTHS for scheme in ("light", "dark")]
    assert not _report(scans), "serious or critical axe violations:\n" + _report(scans)


def test_every_email_template_is_scanned():
    made = {p.name for p in (REPO / "templates" / "email").glob("*.mjml")} - {"layout.mjml"}
    missing = made - set(a11y.TEMPLATES)
    assert not missing, (f"email templates the accessibility scan does not make: {sorted(missing)}; have the demo "
                         "send them (or add an EMAIL_SOURCES entry) and name them in TEMPLATES in "
                         "scripts/accessibility.py")


@browser_needed
def test_emails_declare_language_layout_tables_and_dark_mode(browser, emails):
    for name, html in emails.items():
        assert re.search(r'<html lang="en"', html), name
        tables = re.findall(r"<table\b[^>]*>", html)
        assert tables and all('role="presentation"' in t for t in tables), name  # layout, not data
        assert '<meta name="color-scheme" content="light dark"' in html, name
        assert "@media (prefers-color-scheme: dark)" in html, name
    name, html = next(iter(emails.items()))
    light, dark = (_look(browser, html, scheme) for scheme in ("light", "dark"))
    assert light["text"] == "rgb(31, 42, 48)" and light["section"] == "rgb(255, 255, 255)"
    assert dark["section"] == "rgb(30, 35, 38)" and dark["text"] == "rgb(232, 230, 227)"  # 13:1
    assert dark["header"] == light["header"] == "rgb(47, 111, 106)"  # the brand header stays


def _look(browser, html: str, scheme: str) -> dict:
    context = browser.new_context(viewport={"width": 600, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        a11y._offline_email(page)
        page.set_content(html, wait_until="load")
        style = "(e) => getComputedStyle(e)"
        return {
            "section": page.eval_on_selector(".em-sec", f"e => ({style})(e).backgroundColor"),
            "text": page.eval_on_selector(".em-text h1", f"e => ({style})(e).color"),
            "header": page.eval_on_selector(".em-brand", f"e => ({style})(e).backgroundColor"),
        }
    finally:
        context.close()


@browser_needed
def test_the_logo_reads_with_images_off(browser, emails):
    """Outlook for Windows blocks images: the logo's alt text is what readers see."""
    html = next(h for h in emails.values() if "logo.png" in h)
    context = browser.new_context(viewport={"width": 600, "height": 900})
    try:
        page = context.new_page()
        a11y._offline_email(page, blocked_images=True)
        page.set_content(html, wait_until="load")
        logo = page.locator("img[src$='logo.png']")
        assert logo.get_attribute("alt") == "Harbor Wellness Counseling"
        color, size, weight = logo.evaluate("e => { const s = getComputedStyle(e); "
                                            "return [s.color, s.fontSize, s.fontWeight]; }")
        assert color == "rgb(255, 255, 255)" and size == "16px" and int(weight) >= 700
        assert colors.contrast("#ffffff", "#2f6f6a") >= 4.5  # white on the demo's brand colour: 5.83
    finally:
        context.close()


def test_a_featured_image_without_alt_text_is_decoration_not_the_title_again():
    settings = demo_settings()
    post = demo_post(image_alt="")
    html = render_post_email(post, settings, "newsletter").html
    featured = re.search(r'<img[^>]*calm-lake\.jpg[^>]*>', html).group(0)
    assert 'alt=""' in featured
    assert not re.search(r'<a [^>]*>\s*<img[^>]*calm-lake', html)  # not a link without a name
    digest = render_digest_email([post], settings, "newsletter").html
    assert not re.search(r'<a [^>]*>\s*<img[^>]*alt=""', digest)
    with_alt = render_post_email(demo_post(), settings, "newsletter").html
    assert re.search(r'<a [^>]*>\s*<img alt="A calm lake at dawn"', with_alt)  # described: it links
    assert lint_html(html, {"wellness.example"}) == []


# -- brand colours --------------------------------------------------------------------------

def test_contrast_is_wcag_arithmetic():
    assert colors.contrast("#ffffff", "#000000") == pytest.approx(21)
    assert colors.contrast("#2f6f6a", "#ffffff") == pytest.approx(5.83, abs=0.01)
    assert colors.contrast("#1d9bf0", "#fff") == pytest.approx(3.0, abs=0.01)
    assert colors.contrast("teal", "#ffffff") is None  # a colour name cannot be measured


def _branded(primary: str):
    return demo_settings(site={"name": "Wellness Blog", "url": "https://wellness.example", "timezone": "America/Chicago",
                               "contact_url": "/contact/", "brand": {"primary_color": primary}})


def test_a_light_brand_colour_is_darkened_for_links_and_gets_dark_button_text():
    settings = _branded("#7fc8c0")  # 1.9:1 on white
    html = render_post_email(demo_post(), settings, "newsletter").html
    link = re.search(r"\.post-content a, \.footer a \{ color: (#[0-9a-f]{6}); \}", html).group(1)
    assert link != "#7fc8c0" and colors.contrast(link, "#ffffff") >= 4.5
    assert colors.contrast(link, "#f4efe6") >= 4.5
    assert 'color:#1f2a30;text-decoration:none;">Wellness Blog' in html  # dark name on the light header
    dark_link = re.search(r"\.em-text a \{ color: (#[0-9a-f]{6}) !important", html).group(1)
    assert colors.contrast(dark_link, "#1e2326") >= 7


def test_lint_email_warns_about_a_brand_colour_too_light_for_text():
    assert brand_warnings(_branded("#2f6f6a")) == []  # the demo's: 5.83:1
    (warning,) = brand_warnings(_branded("#1d9bf0"))
    assert "primary_color #1d9bf0 on white is 3.00:1, under the 4.5:1" in warning


def test_lint_email_prints_the_warning(tmp_path, capsys):
    from syndicate.cli import main

    config = tmp_path / "settings.toml"
    config.write_text('[site]\nname = "W"\nurl = "https://wellness.example"\n[site.brand]\nprimary_color = "#ffcc00"\n')
    page = tmp_path / "good.html"
    page.write_text(render_post_email(demo_post(), demo_settings(), "newsletter").html)
    assert main(["--config", str(config), "lint-email", str(page)]) == 0  # a warning, not a failure
    out = capsys.readouterr().out
    assert "warning: site.brand.primary_color #ffcc00 on white is 1.5" in out and "ok" in out


# -- desk -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def desk_scan(browser, tmp_path_factory):
    reflow: dict[str, int] = {}
    scans = a11y.desk_scans(browser, tmp_path_factory.mktemp("desk"), reflow)
    return scans, reflow


@browser_needed
def test_every_desk_page_passes_axe(desk_scan):
    scans, _ = desk_scan
    names = [s.name for s in scans]
    for expected in ("web: /desk/sign-in", "desk: /desk/", "desk: /desk/calendar", "desk: /desk/digest",
                     "desk: /desk/deliverability", "desk: post after a refused edit"):
        assert expected in names, names
    for tab in ("upcoming", "held", "failed", "unknown", "sent", "other"):
        assert any(f"tab={tab}" in n for n in names), (tab, names)
    assert any("/desk/post/" in n for n in names) and any("/desk/delivery/" in n for n in names)
    assert not _report(scans), "serious or critical axe violations:\n" + _report(scans)


@browser_needed
def test_no_desk_page_scrolls_sideways_at_320_px(desk_scan):
    _, reflow = desk_scan
    assert reflow and {name: width for name, width in reflow.items() if width > a11y.REFLOW_WIDTH} == {}


@pytest.fixture
def desk(tmp_path, browser):
    config = a11y.ds.write_config(tmp_path)
    a11y.ds.seed(config)
    with a11y.ds.Desk(config) as served:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        a11y.ds.offline(page, served.url)
        a11y.ds.sign_in(page, served.url)
        yield page, served.url
        context.close()


def _ring(page) -> tuple[str, str]:
    return page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                         "return [s.outlineStyle, s.outlineColor]; }")


def _hex(rgb: str) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in re.findall(r"\d+", rgb)[:3])


@browser_needed
def test_focus_is_visible_in_the_header_and_on_the_page(desk):
    page, _ = desk
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    page.keyboard.press("Tab")  # the brand link, on the teal header
    assert page.evaluate("document.activeElement.classList.contains('brand')")
    style, color = _ring(page)
    assert style == "solid" and colors.contrast(_hex(color), "#2f6f6a") >= 3  # was 1.00:1
    page.locator(".filters button[type=submit]").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # keyboard focus, so :focus-visible applies
    style, color = _ring(page)
    assert style == "solid" and colors.contrast(_hex(color), "#ffffff") >= 3  # was 1.8:1


@browser_needed
def test_a_refused_edit_puts_focus_on_its_error(desk):
    page, _ = desk
    a11y.refused_edit(page, page.url.split("/desk/")[0])
    alert = page.locator(".edit [role=alert]")
    assert "over" in alert.inner_text()
    assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
    box = page.locator("textarea[aria-invalid=true]")
    assert box.count() == 1 and box.get_attribute("aria-describedby") == alert.get_attribute("id")
    assert page.title().startswith("Error: ")
