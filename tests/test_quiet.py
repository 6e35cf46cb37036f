"""The quiet run (engine/quiet.py): `run --once` with nothing to do but record 304s, proven
without the full pass's imports; and every reason it must hand over to the full pass instead.
A real HTTP server (tests/feedserver.py), a real SQLite ledger, the real command line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from syndicate import settings as settings_mod
from syndicate.cli import main
from syndicate.engine import quiet
from syndicate.engine.poll import UNPARSED_BY, poll_feeds
from syndicate.ledger.db import open_ledger
from tests.conftest import REPO
from tests.feedserver import fixture
from tests.test_poll import item, rss

feed_server = fixture()

HEAVY = ("sqlalchemy", "pydantic", "requests", "feedparser", "rich", "urllib3", "alembic", "jinja2")
BROKEN = b"<html><body>this is not a feed</body></html>"
# The real command line in a child process; stderr ends with the top packages it loaded.
CHILD = ("import sys\nfrom syndicate.cli import main\ncode = main(sys.argv[1:])\nsys.stdout.flush()\n"
         "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\nsys.exit(code)\n")


def settings_text(server, feeds: int = 3, broken: bool = True, channels: str = "") -> str:
    lines = ['[site]', 'name = "Quiet Blog"', 'url = "https://blog.example"', '',
             '[store]', 'url = "sqlite:///ledger.db"', '',
             '[channels.newsletter]', 'kind = "email"', 'provider = "outbox"', 'to = ["reader@example.org"]', '',
             '[channels.x]', 'kind = "x"', 'provider = "outbox"', 'hold = true', '',
             # held for approval, never sent here; it makes the run print a warning first
             '[channels.mail]', 'kind = "email"', 'provider = "smtp"', 'hold = true', 'to = ["r@example.org"]',
             'options = { host = "127.0.0.1", port = 9 }', '', channels, '']
    for i in range(feeds):
        lines += ['[[feeds]]', f'name = "f{i}"', f'url = "{server.url(f"/f{i}.xml")}"', 'backfill = 1', '']
    if broken:
        lines += ['[[feeds]]', 'name = "broken"', f'url = "{server.url("/broken.xml")}"', '']
    return "\n".join(lines)


def serve(server, feeds: int = 3) -> None:
    for i in range(feeds):
        server.route(f"/f{i}.xml", rss([item(i * 10 + n) for n in range(1, 3)]), etag=f'"f{i}-v1"',
                     last_modified="Mon, 23 Nov 2026 10:00:00 GMT")
    server.route("/broken.xml", BROKEN, etag='"broken-v1"', content_type="text/html")


@pytest.fixture
def site(tmp_path, feed_server, monkeypatch):
    """A settings file, its feeds served, and a first full pass done (in-process)."""
    for name in ("SYNDICATE_STORE_URL", "SYNDICATE_SECRET", quiet.FORCE_FULL_ENV, "SYNDICATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    serve(feed_server)
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(feed_server))
    assert main(["-c", str(config), "run", "--once"]) == 3  # the broken feed: exit 3
    return config


def argv(config) -> list[str]:
    return ["-c", str(config), "run", "--once"]


def child(config, **env) -> tuple[int, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", "import json\n" + CHILD, *argv(config)], capture_output=True,
                          text=True, cwd=REPO, timeout=120,
                          env={k: v for k, v in {**os.environ, **env}.items() if v is not None})
    *_, modules = proc.stderr.strip().splitlines()
    return proc.returncode, proc.stdout, json.loads(modules)


def feed_rows(config) -> list[tuple]:
    with sqlite3.connect(config.parent / "ledger.db") as conn:
        return conn.execute("SELECT name, url, etag, last_modified, unparsed, last_error, failing, polls, "
                            "last_polled_at, last_ok_at, last_fetch_seconds IS NOT NULL FROM feeds "
                            "ORDER BY name").fetchall()


def sql(config, statement: str, *args) -> None:
    with sqlite3.connect(config.parent / "ledger.db") as conn:
        conn.execute(statement, args)


def reason(config) -> str:
    with pytest.raises(quiet.HandOver) as caught:
        quiet._run(argv(config))
    return str(caught.value)


def copy_ledger(config, to_dir) -> None:
    with sqlite3.connect(config.parent / "ledger.db") as src, sqlite3.connect(to_dir / "ledger.db") as dst:
        src.backup(dst)


def test_an_unchanged_run_is_quiet_prints_and_records_what_the_full_pass_does(site, feed_server, tmp_path):
    twin = tmp_path / "twin"  # the same ledger, settings and server: the full pass runs there
    twin.mkdir()
    (twin / "settings.toml").write_text(site.read_text())
    copy_ledger(site, twin)
    hits = sum(feed_server.hits.values())

    code, out, modules = child(site)
    assert not set(HEAVY) & set(modules), modules  # the quiet run loaded none of the full pass
    full_code, full_out, full_modules = child(twin / "settings.toml", **{quiet.FORCE_FULL_ENV: "1"})
    assert "sqlalchemy" in full_modules  # the twin really ran the full pass

    assert (code, out) == (full_code, full_out)
    assert code == 3 and "feed f0: unchanged, 0 new" in out and "feed broken: " in out
    assert out.startswith("warning: unsubscribe links of mail point at https://blog.example/unsubscribe/…")
    assert sum(feed_server.hits.values()) == hits + 2 * 4  # one conditional GET per feed, each side
    quiet_rows, full_rows = feed_rows(site), feed_rows(twin / "settings.toml")
    assert [r[:8] + r[10:] for r in quiet_rows] == [r[:8] + r[10:] for r in full_rows]
    assert [r[8] is not None for r in quiet_rows] == [r[8] is not None for r in full_rows]
    name, url, etag, _, unparsed, error, failing, polls = quiet_rows[0][:8]
    assert (name, url, etag, unparsed, failing, polls) == ("broken", feed_server.url("/broken.xml"), '"broken-v1"',
                                                           UNPARSED_BY, 2, 0)  # failed twice in a row
    assert f"feed broken: {error}" in out


def test_the_quiet_run_sends_the_full_pass_headers(site, feed_server, tmp_path):
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "settings.toml").write_text(site.read_text())
    copy_ledger(site, twin)
    feed_server.requests.clear()
    assert child(site)[0] == 3
    quiet_headers = sorted(feed_server.requests, key=lambda h: h["host"] + h.get("if-none-match", ""))
    feed_server.requests.clear()
    assert child(twin / "settings.toml", **{quiet.FORCE_FULL_ENV: "1"})[0] == 3
    full_headers = sorted(feed_server.requests, key=lambda h: h["host"] + h.get("if-none-match", ""))
    assert quiet_headers == full_headers
    assert all(h["if-none-match"] for h in quiet_headers)


def test_the_quiet_run_is_taken_again_and_the_full_pass_rerecords_it(site, feed_server):
    assert quiet.try_run(argv(site)) == 3
    assert quiet.try_run(argv(site)) == 3
    before = feed_rows(site)
    assert before[0][6] == 3  # the broken feed failed three polls in a row: its error stays visible


@pytest.mark.parametrize("change, expect", [
    (lambda c, s, env: c.write_text(c.read_text() + "\n# edited\n"), "settings"),
    (lambda c, s, env: env.setenv("SYNDICATE_STORE_URL", f"sqlite:///{c.parent / 'ledger.db'}"), "environment"),
    (lambda c, s, env: env.setenv("SYNDICATE_SECRET", "x" * 40), "environment"),
    (lambda c, s, env: env.setenv("https_proxy", "http://127.0.0.1:9"), "proxy"),
    (lambda c, s, env: env.setenv(quiet.FORCE_FULL_ENV, "1"), quiet.FORCE_FULL_ENV),
    (lambda c, s, env: sql(c, "UPDATE alembic_version SET version_num = '0014_fetch_seconds'"), "revision"),
    (lambda c, s, env: sql(c, "DELETE FROM quiet_state"), "no full pass"),
    (lambda c, s, env: sql(c, "UPDATE quiet_state SET quiet_until = '2000-01-01 00:00:00.000000'"), "time-driven"),
    (lambda c, s, env: sql(c, "UPDATE feeds SET etag = NULL, last_modified = NULL WHERE name = 'f1'"), "validators"),
    (lambda c, s, env: sql(c, "UPDATE feeds SET url = 'http://elsewhere/' WHERE name = 'f1'"), "moved"),
    (lambda c, s, env: sql(c, "UPDATE feeds SET unparsed = 'older' WHERE name = 'broken'"), "another version"),
    (lambda c, s, env: s.route("/f2.xml", rss([item(99)]), etag='"f2-v2"'), "304"),  # a new post
    (lambda c, s, env: s.route("/f0.xml", b"gone", status=500), "304"),
    (lambda c, s, env: s.redirect("/f1.xml", "/f2.xml", status=301), "304"),
    (lambda c, s, env: s.route("/broken.xml", rss([item(7)]), etag='"broken-v2"'), "304"),  # fixed
])
def test_what_the_quiet_run_cannot_prove_goes_to_the_full_pass(site, feed_server, monkeypatch, change, expect):
    change(site, feed_server, monkeypatch)
    rows = feed_rows(site)
    assert expect in reason(site)
    assert feed_rows(site) == rows  # handing over wrote nothing


def pending(site, what: str) -> None:
    if what == "post":  # `syndicate post`, a second planner, a poll by a worker: a post to plan
        sql(site, "UPDATE posts SET planned_at = NULL WHERE id = (SELECT max(id) FROM posts WHERE plan = 'send')")
    elif what == "due":  # the desk approved the held deliveries (x holds every post)
        sql(site, "UPDATE deliveries SET state = 'planned', hold_reason = NULL WHERE state = 'held' AND channel = 'x'")
    elif what == "claim":  # a worker died holding a claim
        sql(site, "UPDATE deliveries SET state = 'claimed', claim_token = 'abc', "
                  "lease_until = '2000-01-01 00:00:00.000000' WHERE id = (SELECT max(id) FROM deliveries WHERE channel = 'x')")
    elif what == "paused":
        sql(site, "UPDATE pause_switch SET paused = 1, reason = 'checking'")


@pytest.mark.parametrize("what, says, full_pass_says", [
    ("post", "a post to plan", "delivered: 0 sent"),  # planned again: its deliveries exist (see below)
    ("due", "a delivery due", "delivered: 3 sent"),
    ("claim", "an expired claim", "reaper: 1 expired claims planned again"),
    ("paused", "sending is paused", "PAUSED since"),
])
def test_pending_work_hands_over_and_the_full_pass_does_it(site, feed_server, capsys, what, says, full_pass_says):
    capsys.readouterr()
    assert quiet.try_run(argv(site)) == 3  # quiet before
    capsys.readouterr()
    pending(site, what)
    rows = feed_rows(site)
    assert reason(site) == says
    assert feed_rows(site) == rows
    main(argv(site))
    assert full_pass_says in capsys.readouterr().out
    with sqlite3.connect(site.parent / "ledger.db") as conn:  # the full pass did it (a pause stays: it
        assert quiet.pending_work(conn, datetime.now(UTC)) == (says if what == "paused" else None)  # prints it)


def test_the_fast_conditions_agree_with_the_full_pass(site):
    """Each kind of pending work the quiet run looks for is work the full pass does: after the
    full pass has done it, the quiet run finds none of it left."""
    for what in ("post", "due", "claim"):
        pending(site, what)
        assert main(argv(site)) in (0, 3)
        with sqlite3.connect(site.parent / "ledger.db") as conn:
            assert quiet.pending_work(conn, datetime.now(UTC)) is None, what


def test_commands_other_than_a_plain_run_once_go_to_the_full_pass(site):
    for args in (["-c", str(site), "run", "--once", "-v"], ["-c", str(site), "-v", "run", "--once"],
                 ["-c", str(site), "run", "--once", "--at", "2026-11-24T09:00:00Z"], ["-c", str(site), "run"],
                 ["-c", str(site), "status"], ["--conf", str(site), "run", "--once"]):
        with pytest.raises(quiet.HandOver):
            quiet._run(args)
    assert quiet.try_run(["--config=" + str(site), "run", "--once"]) == 3


def test_a_file_feed_or_another_store_goes_to_the_full_pass(tmp_path, feed_server, demo_feed_path, monkeypatch):
    monkeypatch.delenv("SYNDICATE_STORE_URL", raising=False)
    serve(feed_server)
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(feed_server, broken=False) + f'\n[[feeds]]\nname = "file"\nurl = "{demo_feed_path}"\n')
    main(argv(config))
    assert "not an http(s) URL" in reason(config)
    config.write_text(settings_text(feed_server).replace("sqlite:///ledger.db", "postgresql://nobody@127.0.0.1/x"))
    assert "not a SQLite store" in reason(config)


def test_quiet_until_is_the_next_digest_edition_or_now(tmp_path, make_settings):
    from syndicate.engine.runner import quiet_until
    from syndicate.engine.schedule import next_digest

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    weekly = {"kind": "email", "provider": "outbox", "to": ["r@example.org"], "mode": "digest",
              "digest": {"every": "week", "day": "tue", "at": "09:00"}}
    settings = make_settings(channels={"weekly": weekly})
    factory = open_ledger(settings.store_url)
    assert quiet_until(factory, settings, now) == now  # Tuesday's edition is due and not planned
    from syndicate.engine.digest import plan_digests

    plan_digests(factory, settings, now)
    assert quiet_until(factory, settings, now) == min(next_digest(settings.channels["weekly"], settings, now),
                                                      now + timedelta(days=1))
    settings = make_settings(channels={"weekly": weekly}, alerts={"webhook_url_env": "HOOK"})
    assert quiet_until(factory, settings, now) == now  # alerts change with every poll


def test_quiet_until_is_now_while_a_reshare_slot_is_open(tmp_path, make_settings):
    from syndicate.engine.runner import quiet_until

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    settings = make_settings(channels={"x": {"kind": "x", "provider": "outbox", "reshare": {}}})
    factory = open_ledger(settings.store_url)
    assert quiet_until(factory, settings, now) == now
    settings = make_settings(channels={"x": {"kind": "x", "provider": "outbox"}})
    assert quiet_until(factory, settings, now) == now + timedelta(days=1)


# --- the full pass keeps the validators of a body it could not read ---------------------------


def test_an_unreadable_body_is_not_downloaded_again_and_its_error_stays(tmp_path, make_settings, feed_server):
    feed_server.route("/broken.xml", BROKEN, etag='"b1"', content_type="text/html")
    settings = make_settings(feeds=[{"name": "broken", "url": feed_server.url("/broken.xml")}])
    factory = open_ledger(settings.store_url)
    t = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    first = poll_feeds(factory, settings, settings.feeds, t)[0]
    assert first.status == "error"
    again = poll_feeds(factory, settings, settings.feeds, t + timedelta(minutes=15))[0]
    assert feed_server.requests[-1]["if-none-match"] == '"b1"'  # answered 304: nothing downloaded
    assert (again.status, again.error) == ("error", first.error)  # the same error, still visible
    row = sqlite_row(settings, "broken")
    assert (row["failing"], row["last_error"], row["unparsed"]) == (2, first.error, UNPARSED_BY)
    assert row["last_ok_at"] is None

    feed_server.route("/broken.xml", b"", status=503)  # another failure replaces the kept one
    assert poll_feeds(factory, settings, settings.feeds, t + timedelta(minutes=30))[0].error != first.error
    row = sqlite_row(settings, "broken")
    assert (row["etag"], row["unparsed"], row["failing"]) == (None, None, 3)  # read it again next time

    feed_server.route("/broken.xml", rss([item(1)]), etag='"b2"')  # fixed on the blog
    assert poll_feeds(factory, settings, settings.feeds, t + timedelta(minutes=45))[0].status == "ok"
    row = sqlite_row(settings, "broken")
    assert (row["etag"], row["unparsed"], row["failing"], row["last_error"]) == ('"b2"', None, 0, None)


def test_a_body_judged_by_another_version_is_read_again(tmp_path, make_settings, feed_server):
    feed_server.route("/broken.xml", BROKEN, etag='"b1"', content_type="text/html")
    settings = make_settings(feeds=[{"name": "broken", "url": feed_server.url("/broken.xml")}])
    factory = open_ledger(settings.store_url)
    t = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    poll_feeds(factory, settings, settings.feeds, t)
    with sqlite3.connect(settings.store_url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE feeds SET unparsed = '0.0.1'")
    poll_feeds(factory, settings, settings.feeds, t + timedelta(minutes=1))
    assert "if-none-match" not in feed_server.requests[-1]


def sqlite_row(settings: settings_mod.Settings, name: str) -> dict:
    with sqlite3.connect(settings.store_url.removeprefix("sqlite:///")) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM feeds WHERE name = ?", (name,)).fetchone())


def test_https_feeds_are_quiet_too_with_the_ca_bundle_requests_uses(tmp_path, feed_server, monkeypatch):
    """Over TLS, verified against the bundle requests would use ($REQUESTS_CA_BUNDLE here)."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    feed_server._httpd.socket = context.wrap_socket(feed_server._httpd.socket, server_side=True)
    monkeypatch.delenv("SYNDICATE_STORE_URL", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    serve(feed_server)
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(feed_server, broken=False).replace("http://", "https://"))
    assert main(argv(config)) == 0
    code, out, modules = child(config)
    assert (code, "requests" in modules) == (0, False)
    assert out.count("unchanged, 0 new") == 3

    monkeypatch.setattr(quiet, "_tls_context", ssl.create_default_context())  # a bundle without that certificate
    rows = feed_rows(config)
    assert "304" in reason(config)  # the certificate is not trusted: the full pass says so
    assert feed_rows(config) == rows
    monkeypatch.setattr(quiet, "_tls_context", None)
    assert quiet.try_run(argv(config)) == 0


def test_a_url_requests_would_rewrite_goes_to_the_full_pass(tmp_path, feed_server, monkeypatch):
    monkeypatch.delenv("SYNDICATE_STORE_URL", raising=False)
    feed_server.route("/~f.xml", rss([item(1)]), etag='"v1"')  # requests asks for /%7Ef.xml as /~f.xml
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(feed_server, feeds=0, broken=False)
                      + f'[[feeds]]\nname = "tilde"\nurl = "{feed_server.url("/%7Ef.xml")}"\n')
    assert main(argv(config)) == 0
    assert "rewrite" in reason(config)


def test_after_a_hand_over_the_full_pass_does_not_ask_again_what_answered_304(site, feed_server, capsys, tmp_path):
    twin = tmp_path / "twin"  # the same state, the full pass forced: the same output and rows
    twin.mkdir()
    (twin / "settings.toml").write_text(site.read_text())
    copy_ledger(site, twin)
    feed_server.route("/f2.xml", rss([item(99)]), etag='"f2-v2"', delay=0.5)  # a new post, answered last
    capsys.readouterr()
    hits = dict(feed_server.hits)
    assert main(argv(site)) == 3
    out = capsys.readouterr().out
    assert "feed f2: ok, 1 new" in out and "feed f0: unchanged, 0 new" in out
    asked = {path: feed_server.hits[path] - hits.get(path, 0) for path in feed_server.hits}
    assert asked == {"/f0.xml": 1, "/f1.xml": 1, "/broken.xml": 1, "/f2.xml": 2}  # only the 200 asked twice
    os.environ[quiet.FORCE_FULL_ENV] = "1"
    try:
        assert main(argv(twin / "settings.toml")) == 3
    finally:
        del os.environ[quiet.FORCE_FULL_ENV]
    assert capsys.readouterr().out == out.replace(str(site.parent), str(twin))
    quiet_rows, full_rows = feed_rows(site), feed_rows(twin / "settings.toml")
    assert [r[:8] + r[10:] for r in quiet_rows] == [r[:8] + r[10:] for r in full_rows]
