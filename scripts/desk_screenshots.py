"""Screenshots of the preview desk: the queue, and one post's previews, in headless Chromium.

    .venv/bin/python scripts/desk_screenshots.py [--out docs/screenshots]

Builds a demo desk in a temporary folder (the bundled demo feed, every network on the outbox,
each channel a few hours out so the queue has a week ahead; one post sent by hand; the
sensitive post's social posts held for approval), starts a real `syndicate serve`, signs in as
a staff account, and saves desk-queue.png and desk-post.png. No network: the demo site's images
do not exist, so image requests are answered with local SVG placeholders (as in
scripts/screenshots.py) and any other outside request is refused.

The same demo (``write_config``, ``seed``, ``Desk``) backs the browser tests
(tests/test_browser_desk.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
USER, PASSWORD = "ana", "calm-harbor-2026"
SECRET = "desk-demo-signing-key-not-a-real-secret"
# The `syndicate` command as the installed script runs it (not `-m syndicate.cli`, which would
# load the CLI module twice).
SYNDICATE = [sys.executable, "-c", "import sys; from syndicate.cli import main; sys.exit(main())"]
SENSITIVE_TITLE = "When a Teen Is Hurting"  # the demo post about self-harm: held on social channels


def write_config(folder: Path, smtp_port: int | None = None) -> Path:
    """A settings file for the demo desk in FOLDER; the newsletter goes to SMTP_PORT if given."""
    feed = REPO / "syndicate" / "demo" / "wellness-feed.xml"
    if smtp_port:
        newsletter = (f'provider = "smtp"\noptions = {{ host = "127.0.0.1", port = {smtp_port}, security = "none", '
                      'timeout = 10 }\n')
    else:
        newsletter = 'provider = "outbox"\n'
    social = 'provider = "outbox"\ndelay = "4h"\nstagger = "20m"\n'
    config = folder / "settings.toml"
    config.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "Harbor Wellness Counseling, 120 Water Street, Suite 4, Portland, ME 04101"
contact_url = "https://harborwellness.example/contact"

[site.brand]
logo_url = "https://harborwellness.example/logo.png"
primary_color = "#2f6f6a"

[store]
url = "sqlite:///{folder / 'ledger.db'}"

[outbox]
dir = "{folder / 'outbox'}"

[[feeds]]
name = "wellness"
url = "{feed}"
backfill = 5

[channels.newsletter]
kind = "email"
{newsletter}delay = "3h"
from_address = "newsletter@harborwellness.example"
from_name = "Harbor Wellness Counseling"
to = ["reader@example.org"]
unsubscribe_mailto = "unsubscribe@harborwellness.example"

[channels.x]
kind = "x"
{social}hashtags = {{ Anxiety = "AnxietyHelp", Mindfulness = "Mindfulness", "Mental Health" = "MentalHealth" }}

[channels.facebook]
kind = "facebook"
{social}options = {{ page_id = "100000000000001" }}

[channels.linkedin]
kind = "linkedin"
{social}options = {{ author_urn = "urn:li:organization:1000001" }}

[channels.pinterest]
kind = "pinterest"
{social}options = {{ board_id = "549755885175" }}

[channels.mastodon]
kind = "mastodon"
{social}options = {{ instance = "https://mastodon.example" }}

[channels.bluesky]
kind = "bluesky"
{social}
[channels.threads]
kind = "threads"
{social}
[channels.weekly]
kind = "email"
provider = "outbox"
mode = "digest"
digest = {{ every = "week", day = "tue", at = "09:00" }}
to = ["reader@example.org"]
''')
    return config


def seed(config: Path) -> dict:
    """Poll the demo feed and plan (nothing is due yet); send the oldest post's X and Facebook
    posts by hand. Returns {post title: post id}."""
    from sqlalchemy import select

    from syndicate import settings as settings_mod
    from syndicate.engine.manual import send_post_now
    from syndicate.engine.runner import ledger, run_once
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Post

    settings = settings_mod.load(config)
    run_once(settings)
    with transaction(ledger(settings)) as s:
        posts = list(s.scalars(select(Post).order_by(Post.published_at)))
    send_post_now(ledger(settings), settings, posts[0], ["x", "facebook"], actor="cli:demo")
    return {p.title: p.id for p in posts}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Desk:
    """A real `syndicate serve` on a free port, with one staff account."""

    def __init__(self, config: Path):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SYNDICATE_SECRET": SECRET}
        self.proc: subprocess.Popen | None = None
        self.log = config.parent / "serve.log"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*SYNDICATE, "--config", str(self.config), *args],
                              cwd=REPO, env=self.env, input=stdin, capture_output=True, text=True, timeout=120)

    def __enter__(self) -> Desk:
        added = self.cli("users", "add", USER, "--password-stdin", "--reset", stdin=PASSWORD + "\n")
        if added.returncode != 0:
            raise RuntimeError(f"users add failed: {added.stderr or added.stdout}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*SYNDICATE, "--config", str(self.config), "serve", "--port",
                                          str(self.port)], cwd=REPO, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"syndicate serve exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("syndicate serve did not answer within 30 s")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def offline(page, base_url: str) -> None:
    """Serve the desk; answer image requests elsewhere with placeholders; refuse the rest."""
    placeholder = _placeholder()

    def answer(route, request):
        if request.url.startswith(base_url):
            route.continue_()
        elif request.resource_type == "image":
            route.fulfill(status=200, content_type="image/svg+xml", body=placeholder(request.url, ""))
        else:
            route.abort()

    page.route("**/*", answer)


def sign_in(page, base_url: str, user: str = USER, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/desk/")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/desk/")


def _placeholder():
    spec = importlib.util.spec_from_file_location("email_screenshots", REPO / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def placeholder(url: str, alt: str) -> str:
        return module.placeholder(url, alt or "Harbor Wellness")

    return placeholder


def shoot(out: Path, folder: Path | None = None, browser=None) -> list[Path]:
    """Build the demo desk (in FOLDER, else a temporary folder), serve it, and save the two
    screenshots into OUT. BROWSER: a Playwright browser already running (else one is started)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder)
        posts = seed(config)
        post_id = next(pid for title, pid in posts.items() if title.startswith("Five Grounding"))
        with Desk(config) as desk:
            if browser is not None:
                return _shoot_pages(browser, desk, post_id, out)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                own = launch(pw)
                try:
                    return _shoot_pages(own, desk, post_id, out)
                finally:
                    own.close()


def _shoot_pages(browser, desk: Desk, post_id: int, out: Path) -> list[Path]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
    try:
        page = context.new_page()
        offline(page, desk.url)
        sign_in(page, desk.url)
        written = [out / "desk-queue.png", out / "desk-post.png"]
        page.screenshot(path=str(written[0]), full_page=True)
        page.goto(f"{desk.url}/desk/post/{post_id}")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(600)  # the iframes grow to their emails' height
        page.screenshot(path=str(written[1]), full_page=True)
        return written
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in shoot(Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
