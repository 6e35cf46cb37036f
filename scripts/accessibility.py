"""axe-core over every email the demo sends and every desk page, in headless Chromium.

    bash scripts/axe.sh                      # once: axe-core from npm into .cache/axe
    .venv/bin/python scripts/accessibility.py [--json FILE]

Emails: the demo configuration (settings.toml, the bundled feed) is run once into a temporary
outbox (`syndicate run --once`) and its next digest previewed (`syndicate preview digest`);
every ``.eml`` either writes is scanned, its HTML part at 600 and 375 px, in light and dark
mode. Desk: the demo desk of scripts/desk_screenshots.py (a real `syndicate serve`) with one
delivery failed and one unknown, so every queue tab has rows; the public pages in
PUBLIC_PAGES, the sign-in page, then every desk page reachable by links from the queue once
signed in (a crawl, so new pages are covered without a list), then the pages in STATES (after
a refused edit, after a hold). No network: other hosts' images get local placeholders.

Prints each failing rule with its impact and node count; exits 1 on any serious or critical
violation. tests/test_accessibility.py runs the same scan as a test.

To cover a new page: link it from the desk (the crawl finds it), or add its path to
PUBLIC_PAGES (pages for readers, not signed in). A new email template: make the demo send it
(an .eml in the outbox) or add a source to EMAIL_SOURCES, and name it in TEMPLATES.
"""

from __future__ import annotations

import argparse
import email
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AXE = REPO / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
FAILING = ("serious", "critical")  # what fails the test; moderate and minor are reported only
# Best-practice rules about page landmarks that do not apply to an email: a mail client shows
# the message inside its own page and landmarks (MJML's role="article" wrapper is right).
EMAIL_RULES_OFF = ("landmark-one-main", "region")
EMAIL_WIDTHS = (600, 375)
REFLOW_WIDTH = 320  # WCAG 1.4.10: 1280 px at 400 % zoom

# Pages for readers (not signed in), relative to the server. Add new public pages here.
PUBLIC_PAGES = [
    "/desk/sign-in",
    "/unsubscribe/not-a-valid-token",
    "/confirm/not-a-valid-token",
    "/desk/post/999999",  # the 404 page (signed out: the sign-in page)
    "/subscribe",  # the hosted signup form (audience/signup.py)
    "/preferences/not-a-valid-token",
    "/archive",
]
# Top-level email templates (templates/email/*.mjml, the layout aside) and where the scan gets
# an email made from each. A new template fails the test until it is named here.
TEMPLATES = {
    "post.mjml": "the demo's outbox (syndicate run --once)",
    "digest.mjml": "syndicate preview digest",
    "confirm.mjml": "engine/notices.py send_notice (a signup's confirmation, to the outbox)",
    "welcome.mjml": "engine/notices.py send_notice (the welcome after confirming, to the outbox)",
}
CRAWL_LIMIT = 80  # pages at most
SAME_SHAPE = 6  # pages at most whose URLs differ only in numbers (posts, calendar weeks)
SKIP_PATHS = ("/desk/static/", "/static/", "/desk/sign-out", "/metrics", "/healthz")


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ds = _module("desk_screenshots", REPO / "scripts" / "desk_screenshots.py")


@dataclass
class Scan:
    """What axe found on one page or email (violations: axe's own objects)."""

    name: str
    violations: list[dict] = field(default_factory=list)

    def failing(self) -> list[dict]:
        return [v for v in self.violations if v["impact"] in FAILING]


# -- emails ---------------------------------------------------------------------------------

def _demo_config(folder: Path) -> Path:
    """settings.toml with its store and outbox in FOLDER and the feed path made absolute."""
    text = (REPO / "settings.toml").read_text()
    text = text.replace('url = "sqlite:///syndicate.db"', f'url = "sqlite:///{folder / "syndicate.db"}"')
    text = text.replace('dir = "outbox"', f'dir = "{folder / "outbox"}"')
    text = text.replace('url = "syndicate/demo/wellness-feed.xml"',
                        f'url = "{REPO / "syndicate" / "demo" / "wellness-feed.xml"}"')
    config = folder / "settings.toml"
    config.write_text(text)
    return config


def _syndicate(config: Path, *args: str) -> None:
    env = {**os.environ, "SYNDICATE_SECRET": ds.SECRET}
    done = subprocess.run([*ds.SYNDICATE, "--config", str(config), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"syndicate {' '.join(args)} failed: {done.stderr or done.stdout}")


# How the scan gets emails: each source writes .eml files under the folder it is given.
_NOTICES = ("from syndicate import settings as m; from syndicate.engine.notices import send_notice; "
            "from syndicate.ledger.db import open_ledger; import sys; s = m.load(sys.argv[1]); "
            "[send_notice(open_ledger(s.store_url), s, kind, 'reader@example.org') for kind in ('confirm', 'welcome')]")


def _notices(config: Path) -> None:
    """The signup's confirmation and welcome emails, as they would be sent, into the outbox."""
    env = {**os.environ, "SYNDICATE_SECRET": ds.SECRET}
    done = subprocess.run([sys.executable, "-c", _NOTICES, str(config)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the signup notices failed: {done.stderr or done.stdout}")


EMAIL_SOURCES = [
    lambda config: _syndicate(config, "run", "--once"),
    lambda config: _syndicate(config, "preview", "digest", "--out", str(config.parent / "preview")),
    _notices,
]


def demo_emails(folder: Path) -> dict[str, str]:
    """{name: HTML part} of every .eml the demo writes into FOLDER."""
    folder.mkdir(parents=True, exist_ok=True)
    config = _demo_config(folder)
    for source in EMAIL_SOURCES:
        source(config)
    found = {}
    for path in sorted(folder.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        for part in message.walk():
            if part.get_content_type() == "text/html":
                found[f"email {path.relative_to(folder)} ({message['Subject']})"] = (
                    part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8"))
    return found


def _offline_email(page, blocked_images: bool = False) -> None:
    """Images answered with placeholders (or refused: "images off"); everything else refused."""
    placeholder = ds._placeholder()

    def answer(route, request):
        if request.resource_type == "image" and not blocked_images:
            route.fulfill(status=200, content_type="image/svg+xml", body=placeholder(request.url, ""))
        else:
            route.abort()

    page.route("**/*", answer)


def scan_email(browser, name: str, html: str, width: int, scheme: str = "light") -> Scan:
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page = context.new_page()
        _offline_email(page)
        page.set_content(html, wait_until="load")
        return Scan(f"{name} {width}px {scheme}", _axe(page, rules_off=EMAIL_RULES_OFF))
    finally:
        context.close()


# -- desk pages -----------------------------------------------------------------------------

def stage(config: Path) -> None:
    """One delivery failed and one unknown, so those tabs and their action bars have rows."""
    from sqlalchemy import select

    from syndicate import settings as settings_mod
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Delivery

    settings = settings_mod.load(config)
    with transaction(ledger(settings)) as s:
        planned = list(s.scalars(select(Delivery).where(Delivery.state == "planned",
                                                        Delivery.kind.in_(("linkedin", "mastodon")))
                                 .order_by(Delivery.id)))
        planned[0].state, planned[0].last_error = "failed", "HTTP 401: the access token has expired"
        planned[1].state, planned[1].last_error = "unknown", "timed out after the request was sent"


def _shape(url: str) -> str:
    parts = urlsplit(url)
    return re.sub(r"\d+", "N", parts.path + "?" + parts.query)


def crawl(page, base: str, start: str = "/desk/") -> list[str]:
    """Every desk URL reachable by links from START (GET only; forms are not submitted)."""
    seen, shapes, order, queue = set(), Counter(), [], [urljoin(base, start)]
    while queue and len(order) < CRAWL_LIMIT:
        url = queue.pop(0).split("#", 1)[0]
        if url in seen or shapes[_shape(url)] >= SAME_SHAPE:
            continue
        seen.add(url)
        response = page.goto(url)
        if response is None or "text/html" not in (response.headers.get("content-type") or ""):
            continue
        shapes[_shape(url)] += 1
        order.append(url)
        for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)"):
            href = href.split("#", 1)[0]
            path = urlsplit(href).path
            if href.startswith(base) and not path.startswith(SKIP_PATHS) and href not in seen:
                queue.append(href)
    return order


def scan_page(page, name: str) -> Scan:
    page.wait_for_load_state("load")
    return Scan(name, _axe(page, iframes=False))  # the email previews are scanned as emails


def _a_post_to_edit(page, base: str) -> None:
    page.goto(f"{base}/desk/?tab=upcoming")
    page.locator("a[href*='/desk/post/']").first.click()
    page.wait_for_load_state()


def refused_edit(page, base: str) -> str:
    """A social text past its limit saved: the page comes back with the error."""
    _a_post_to_edit(page, base)
    form = page.locator("form.edit:has(textarea[name=text])").first
    form.locator("textarea").fill("Too long for any network. " * 30)
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    return "desk: post after a refused edit"


def after_hold(page, base: str) -> str:
    _a_post_to_edit(page, base)
    page.locator("form[action$='/hold'] button").first.click()
    page.wait_for_load_state()
    return "desk: post after Hold (flash message)"


# Desk states reached by an action, scanned after it. Add new ones here.
STATES = [refused_edit, after_hold]


def desk_scans(browser, folder: Path, reflow: dict[str, int] | None = None) -> list[Scan]:
    """Scan every public page, the sign-in page, every crawled desk page and every state.
    REFLOW, if given, gets {name: scrollWidth at REFLOW_WIDTH} of each page."""
    folder.mkdir(parents=True, exist_ok=True)
    config = ds.write_config(folder)
    ds.seed(config)
    stage(config)
    scans = []
    with ds.Desk(config) as desk:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        try:
            page = context.new_page()
            page.set_default_timeout(20_000)
            ds.offline(page, desk.url)
            for path in PUBLIC_PAGES:
                page.goto(desk.url + path)
                scans.append(scan_page(page, f"web: {path}"))
            page.goto(f"{desk.url}/desk/sign-in")
            page.fill("input[name=name]", ds.USER)
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            scans.append(scan_page(page, "web: sign-in, wrong password"))
            ds.sign_in(page, desk.url)
            for url in crawl(page, desk.url):
                page.goto(url)
                name = "desk: " + url.removeprefix(desk.url)
                scans.append(scan_page(page, name))
                if reflow is not None:
                    reflow[name] = _width_at(page, REFLOW_WIDTH)
            for state in STATES:
                name = state(page, desk.url)
                scans.append(scan_page(page, name))
        finally:
            context.close()
    return scans


def _width_at(page, width: int) -> int:
    page.set_viewport_size({"width": width, "height": 900})
    try:
        return page.evaluate("document.documentElement.scrollWidth")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


# -- axe ------------------------------------------------------------------------------------

def _axe(page, rules_off: tuple[str, ...] = (), iframes: bool = True) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    options = {"rules": {rule: {"enabled": False} for rule in rules_off}, "iframes": iframes,
               "resultTypes": ["violations"]}
    result = page.evaluate("options => axe.run(document, options)", options)
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [{"target": n["target"], "html": n["html"][:200], "summary": n.get("failureSummary", "")[:300]}
                       for n in v["nodes"]]} for v in result["violations"]]


def launch(pw):
    return ds.launch(pw)


def email_scans(browser, folder: Path) -> list[Scan]:
    scans = []
    for name, html in demo_emails(folder).items():
        for width in EMAIL_WIDTHS:
            for scheme in ("light", "dark"):
                scans.append(scan_email(browser, name, html, width, scheme))
    return scans


def summary(scans: list[Scan]) -> str:
    """Counts by impact and rule (rules: pages failing it; nodes), then each failing page."""
    pages, nodes = Counter(), Counter()
    for scan in scans:
        for v in scan.violations:
            pages[(v["impact"], v["id"])] += 1
            nodes[(v["impact"], v["id"])] += len(v["nodes"])
    lines = [f"{len(scans)} pages and emails scanned"]
    for key in sorted(pages, key=lambda k: (("critical", "serious", "moderate", "minor").index(k[0]), k[1])):
        lines.append(f"  {key[0]:9} {key[1]:28} on {pages[key]:3} pages, {nodes[key]:4} nodes")
    for scan in scans:
        for v in scan.violations:
            example = v["nodes"][0]
            lines.append(f"- {scan.name}: {v['impact']} {v['id']} ×{len(v['nodes'])}: {example['target']} "
                         f"{example['summary'].splitlines()[-1] if example['summary'] else ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write every scan's violations to this file")
    args = parser.parse_args(argv)
    if not AXE.exists():
        print("axe-core is missing: run `bash scripts/axe.sh` first", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = launch(pw)
        try:
            reflow: dict[str, int] = {}
            scans = email_scans(browser, Path(tmp) / "emails") + desk_scans(browser, Path(tmp) / "desk", reflow)
        finally:
            browser.close()
    print(summary(scans))
    wide = {name: w for name, w in reflow.items() if w > REFLOW_WIDTH}
    print(f"reflow at {REFLOW_WIDTH}px: {len(wide)} of {len(reflow)} desk pages scroll sideways"
          + "".join(f"\n  {name}: {w}px" for name, w in wide.items()))
    if args.json:
        Path(args.json).write_text(json.dumps([s.__dict__ for s in scans], indent=2))
    return 1 if any(s.failing() for s in scans) else 0


if __name__ == "__main__":
    sys.exit(main())
