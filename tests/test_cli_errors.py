"""Errors a person can read on the command line: one line and exit code 2 for known bad input
(never a traceback), `run --once` exit codes a cron job can act on, Ctrl-C, and the small
things a newcomer trips over (post ids in `status`, `-v` after the command, a readable dry run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from syndicate.cli import main
from syndicate.cli.engine import run_exit_code
from syndicate.engine.deliver import Outcome
from syndicate.engine.poll import PollResult
from syndicate.ledger.db import close_ledger
from tests.conftest import REPO
from tests.feedserver import fixture

feed_server = fixture()

DEMO_FEED = REPO / "syndicate/demo/wellness-feed.xml"


def write_settings(tmp_path, feeds: str, channels: str, extra: str = "") -> str:
    config = tmp_path / "settings.toml"
    config.write_text(f"""
[site]
name = "Plain Words Blog"
url = "https://blog.example"
timezone = "America/New_York"
address = "1 Main Street, Springfield"
contact_url = "https://blog.example/contact"

[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"

[outbox]
dir = "{tmp_path / 'outbox'}"

[safety]
enabled = false

{feeds}
{channels}
{extra}
""")
    return str(config)


def demo_feed(backfill: int = 5) -> str:
    return f'[[feeds]]\nname = "demo"\nurl = "{DEMO_FEED}"\nbackfill = {backfill}\n'


OUTBOX_X = '[channels.x]\nkind = "x"\nprovider = "outbox"\n'


def mastodon(base_url: str, timeout: int = 15) -> str:
    return (f'[channels.mastodon]\nkind = "mastodon"\nprovider = "mastodon"\n'
            f'options = {{ instance = "{base_url}", token_env = "SYN_TEST_MASTO_TOKEN", timeout = {timeout} }}\n')


def cli(*args, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syndicate.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("syndicate: error: "), proc.stderr
    return lines[0]


class Mastodon:
    """A Mastodon instance that answers every status with STATUS (or hangs while ``hang`` is set)."""

    def __init__(self, status: int = 200, body: dict | None = None):
        self.status, self.body = status, body or {"id": "1", "url": "https://masto.example/@blog/1"}
        self.hang = threading.Event()
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests += 1
                while owner.hang.is_set() and not owner.closing:
                    time.sleep(0.05)
                data = json.dumps(owner.body).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except BrokenPipeError:
                    pass  # the client was interrupted while it waited

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        self.closing = False
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.closing = True
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def masto_server():
    servers = []

    def start(**kw) -> Mastodon:
        servers.append(Mastodon(**kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def status_json(config: str, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["--config", config, "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- one line, exit code 2


@pytest.mark.parametrize("url, expected", [
    ("not a url", "$SYNDICATE_STORE_URL: not a database URL"),
    ("mysql://app@127.0.0.1/blog", "its driver (MySQLdb) is not installed"),
    ("nosuchdb://app@127.0.0.1/blog", "unknown kind of database 'nosuchdb'"),
    ("postgresql+psycopg://app:hunter2secret@127.0.0.1:1/blog", "port 1 failed: Connection refused"),
])
def test_a_bad_or_unreachable_store_url_is_one_line(tmp_path, url, expected):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X)
    line = one_line_error(cli("--config", config, "status", env={"SYNDICATE_STORE_URL": url}))
    assert expected in line
    assert "hunter2secret" not in line  # the password never shows


def test_a_bad_store_url_in_the_settings_names_the_key(tmp_path):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X)
    text = open(config).read().replace(f"sqlite:///{tmp_path / 'ledger.db'}", "sqlite:////proc/no/such/dir/x.db")
    open(config, "w").write(text)
    line = one_line_error(cli("--config", config, "run", "--once"))
    assert line.startswith("syndicate: error: store.url: sqlite:////proc/no/such/dir/x.db: cannot open the database")


def test_schedule_at_the_end_of_the_calendar_is_one_line(tmp_path):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X)
    for command in ("schedule", "run"):
        line = one_line_error(cli("--config", config, command, "--at", "9999-12-31T23:59"))
        assert line == "syndicate: error: --at: '9999-12-31T23:59' is too far in the future"


def test_preview_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = one_line_error(cli("--config", config, "preview", "post", "1", "--out", str(blocker / "previews")))
    assert str(blocker / "previews") in line and "Not a directory" in line


# ---------------------------------------------------------------- run --once exit codes


def test_run_once_exit_codes_tell_a_cron_job_what_happened(tmp_path, capsys, feed_server, masto_server,
                                                           monkeypatch):
    monkeypatch.setenv("SYN_TEST_MASTO_TOKEN", "token-for-tests")
    # 0: everything due went out; then 0 again: nothing was due.
    (tmp_path / "ok").mkdir()
    config = write_settings(tmp_path / "ok", demo_feed(), OUTBOX_X)
    assert main(["--config", config, "run", "--once"]) == 0
    assert main(["--config", config, "run", "--once"]) == 0

    # 3: a feed could not be read (the other still works).
    (tmp_path / "feed").mkdir()
    feed_server.route("/gone.xml", status=404)
    feeds = demo_feed() + f'[[feeds]]\nname = "gone"\nurl = "{feed_server.url("/gone.xml")}"\n'
    config = write_settings(tmp_path / "feed", feeds, OUTBOX_X)
    assert main(["--config", config, "run", "--once"]) == 3
    assert "feed gone:" in capsys.readouterr().out

    # 1: the provider refused the token: failed for good; the status says so in plain words.
    (tmp_path / "auth").mkdir()
    refused = masto_server(status=401, body={"error": "The access token is invalid"})
    config = write_settings(tmp_path / "auth", demo_feed(), mastodon(refused.url))
    assert main(["--config", config, "run", "--once"]) == 1
    rows = status_json(config, capsys)
    assert {r["state"] for r in rows} == {"failed"}
    assert rows[0]["problem"] == ("The Mastodon token was refused: renew it, and put the new one in the environment "
                                  "variable that channels.mastodon.options.token_env names.")
    assert "The access token is invalid" in rows[0]["last_error"]  # the raw text is kept
    main(["--config", config, "status"])
    table = capsys.readouterr().out
    assert "The Mastodon token was refused" in table and "The access token is invalid" not in table
    main(["--config", config, "status", "-v"])
    assert "The access token is invalid" in capsys.readouterr().out

    # 5: a passing fault on the provider's side: planned again for a retry.
    (tmp_path / "retry").mkdir()
    flaky = masto_server(status=503, body={"error": "try later"})
    config = write_settings(tmp_path / "retry", demo_feed(), mastodon(flaky.url))
    assert main(["--config", config, "run", "--once"]) == 5
    assert {r["state"] for r in status_json(config, capsys)} == {"planned"}


def test_run_exit_code_order_when_several_things_happened():
    def summary(states=(), feed_error=False, render_failed=0):
        return SimpleNamespace(
            outcomes=[Outcome(i, state, "", cls) for i, (state, cls) in enumerate(states)],
            polls=[PollResult("f", "error" if feed_error else "ok")], plan=SimpleNamespace(failed=render_failed))

    assert run_exit_code(summary([("sent", None), ("planned", "incomplete"), ("sent", None)])) == 0
    assert run_exit_code(summary([("unknown", "unknown")], feed_error=True)) == 4
    assert run_exit_code(summary([("planned", "retryable")], feed_error=True)) == 3
    assert run_exit_code(summary([("planned", "rate_limited"), ("unknown", "unknown"), ("failed", "auth")])) == 1
    assert run_exit_code(summary(render_failed=1)) == 1


def test_run_help_documents_the_exit_codes():
    proc = cli("run", "--help")
    assert proc.returncode == 0
    help_text = " ".join(proc.stdout.split())
    for code in ("0 all that was due went out", "1 a delivery failed for good", "3 a feed could not be read",
                 "4 a send's outcome is unknown", "5 a send failed for now"):
        assert code in help_text
    readme = (REPO / "README.md").read_text()
    assert "| 3 | a feed could not be fetched or read |" in readme


# ---------------------------------------------------------------- Ctrl-C


def interrupt(config: str, ready, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Start `run --once`, wait until READY() says it is stuck where the test wants, send SIGINT."""
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "--config", config, "run", "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not reach the point to stop"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_hanging_feed_fetches_stops_at_once(tmp_path, feed_server):
    # Two feeds, so they are fetched in the poll's threads (one feed is fetched by the main thread).
    feed_server.route("/one.xml", delay=60)
    feed_server.route("/two.xml", delay=60)
    feeds = "".join(f'[[feeds]]\nname = "{n}"\nurl = "{feed_server.url(f"/{n}.xml")}"\n' for n in ("one", "two"))
    config = write_settings(tmp_path, feeds, OUTBOX_X, extra="[fetch]\ntimeout = \"30s\"\n")
    done, took = interrupt(config, lambda: feed_server.hits["/one.xml"] and feed_server.hits["/two.xml"])
    assert done.returncode == 130
    assert done.stderr.strip() == "syndicate: interrupted"
    assert took < 5, f"Ctrl-C took {took:.1f}s: it waited for the fetch timeout"


def test_ctrl_c_mid_send_plans_the_claimed_deliveries_again_at_once(tmp_path, capsys, masto_server, monkeypatch):
    monkeypatch.setenv("SYN_TEST_MASTO_TOKEN", "token-for-tests")
    server = masto_server()
    server.hang.set()  # the first status never gets an answer
    config = write_settings(tmp_path, demo_feed(), mastodon(server.url, timeout=60))
    done, took = interrupt(config, lambda: server.requests >= 1)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("syndicate: interrupted") and took < 5
    close_ledger()
    rows = status_json(config, capsys)
    states = sorted(r["state"] for r in rows)
    assert len(rows) == 5 and "claimed" not in states and "sending" not in states, states
    # The one cut off mid-call: Mastodon drops a repeated Idempotency-Key, so it is planned again
    # (where the provider cannot deduplicate it would be `unknown`); the rest were never sent.
    assert states == ["planned"] * 5
    server.hang.clear()
    assert main(["--config", config, "run", "--once"]) == 0
    assert {r["state"] for r in status_json(config, capsys)} == {"sent"}


# ---------------------------------------------------------------- smaller things


def test_status_shows_the_post_id_that_post_takes(tmp_path, capsys):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X + '[channels.newsletter]\nkind = "email"\n'
                            'provider = "outbox"\nto = ["reader@example.org"]\n')
    main(["--config", config, "run", "--once"])
    rows = status_json(config, capsys)
    delivery = next(r for r in rows if r["channel"] == "x" and r["id"] != r["post_id"])
    main(["--config", config, "status"])
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if " id " in line)
    assert [c.strip() for c in header.strip("┃│ ").split("┃")][:3] == ["id", "post", "channel"]
    assert main(["--config", config, "post", str(delivery["post_id"]), "--channel", "x", "--dry-run"]) == 0
    assert delivery["post_title"] in capsys.readouterr().out
    help_text = " ".join(cli("post", "--help").stdout.split())
    assert "its post id: the 'post' column of `syndicate status` (not the delivery id)" in help_text


def test_verbose_after_the_command(tmp_path):
    config = write_settings(tmp_path, demo_feed(), OUTBOX_X)
    proc = cli("--config", config, "run", "--once", "-v")
    assert proc.returncode == 0 and "INFO" in proc.stderr
    assert cli("--config", config, "feed", "inspect", str(DEMO_FEED), "-v").returncode == 0
    assert "INFO" not in cli("--config", config, "run", "--once").stderr


def test_dry_run_prints_the_plain_text_not_the_html(tmp_path, capsys):
    config = write_settings(tmp_path, demo_feed(), '[channels.newsletter]\nkind = "email"\nprovider = "outbox"\n'
                            'to = ["reader@example.org"]\n')
    main(["--config", config, "run", "--once"])
    capsys.readouterr()
    assert main(["--config", config, "post", "1", "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "Subject: A Mindful Reset for the Holiday Season" in shown
    assert "Notice before you fix" in shown  # the plain-text part
    assert "<html" not in shown and "<table" not in shown and len(shown) < 8000


def test_gitignore_covers_what_the_demo_leaves_behind():
    ignored = set((REPO / ".gitignore").read_text().split())
    assert {"preview/", "*.db-wal", "*.db-shm", "outbox/", "*.db"} <= ignored
