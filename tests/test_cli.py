"""The command line as a user meets it: the demo, settings mistakes, feed inspect on the whole
corpus, sending one post by hand, previews, approvals."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
import sys

import pytest

from syndicate import settings as settings_mod
from syndicate.cli import main
from syndicate.email.lint import lint_file, site_hosts
from tests.conftest import REPO, shared_dir

SOCIAL = ("x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads")


@pytest.fixture
def demo(tmp_path):
    """The shipped settings.toml, copied next to the demo feed so paths resolve as in the repo."""
    config = tmp_path / "settings.toml"
    text = (REPO / "settings.toml").read_text()
    config.write_text(text.replace("syndicate/demo/wellness-feed.xml",
                                   str(REPO / "syndicate/demo/wellness-feed.xml")))
    return config


def run_cli(*args) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "syndicate.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def test_demo_sends_every_post_once_and_nothing_on_the_second_run(demo, capsys):
    assert main(["--config", str(demo), "run", "--once"]) == 0
    first = capsys.readouterr().out
    assert "feed wellness: ok, 5 new" in first
    outbox = demo.parent / "outbox"
    emails = sorted((outbox / "newsletter").glob("*.eml"))
    assert len(emails) == 5
    for path in emails:
        msg = email.message_from_bytes(path.read_bytes())
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert lint_file(path, site_hosts(settings_mod.load(demo))) == []  # what a subscriber would get
    for kind in SOCIAL:  # the self-harm post waits for a person on every social channel
        records = [json.loads(p.read_text()) for p in (outbox / kind).glob("*.json")]
        assert len(records) == 4
        assert all(r["kind"] == kind and r["request"] and r["post_url"].startswith("https://") for r in records)
    before = sorted(p.name for p in outbox.rglob("*"))
    assert main(["--config", str(demo), "run", "--once"]) == 0
    assert "delivered: 0 sent" in capsys.readouterr().out
    assert sorted(p.name for p in outbox.rglob("*")) == before


def test_held_sensitive_post_goes_out_after_approval(demo, capsys):
    main(["--config", str(demo), "run", "--once"])
    capsys.readouterr()
    main(["--config", str(demo), "status", "--json"])
    rows = json.loads(capsys.readouterr().out)
    held = [r for r in rows if r["state"] == "held"]
    assert {r["channel"] for r in held} == set(SOCIAL)
    assert all("sensitive" in r["hold_reason"] for r in held)
    x = next(r for r in held if r["channel"] == "x")
    assert main(["--config", str(demo), "approve", str(x["id"])]) == 0
    assert main(["--config", str(demo), "approve", str(x["id"])]) == 2  # approved already: refused
    main(["--config", str(demo), "run", "--once"])
    sent = json.loads((demo.parent / "outbox" / "x" / f"{x['id']}.json").read_text())
    assert sent["post_url"] == x["post_url"]


def test_post_by_hand_sends_once_then_reports_it_was_sent(demo, capsys):
    demo.write_text(demo.read_text().replace("backfill = 5", "backfill = 0"))
    main(["--config", str(demo), "run", "--once"])  # first poll: recorded, nothing sent
    assert not (demo.parent / "outbox").exists()
    capsys.readouterr()
    url = "https://harborwellness.example/2026/11/24/mindful-reset-holiday-season/"
    assert main(["--config", str(demo), "post", url, "--channel", "x", "--dry-run"]) == 0
    shown = capsys.readouterr().out
    assert "A Mindful Reset for the Holiday Season" in shown and '"text"' not in shown  # the text, not JSON
    assert not (demo.parent / "outbox").exists()
    assert main(["--config", str(demo), "post", url, "--channel", "x"]) == 0
    assert len(list((demo.parent / "outbox" / "x").glob("*.json"))) == 1
    capsys.readouterr()
    assert main(["--config", str(demo), "post", url, "--channel", "x"]) == 0
    assert "already sent" in capsys.readouterr().out
    assert len(list((demo.parent / "outbox" / "x").glob("*.json"))) == 1


def test_preview_writes_every_channel_without_sending(demo, tmp_path):
    out = tmp_path / "preview"
    url = "https://harborwellness.example/2026/11/24/mindful-reset-holiday-season/"
    assert main(["--config", str(demo), "preview", "post", url, "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["newsletter.eml", "newsletter.html", "newsletter.txt"]
                           + [f"{kind}.json" for kind in SOCIAL])
    assert not (demo.parent / "outbox").exists()


@pytest.mark.parametrize("edit, message", [
    (("[site]", "[site]\nnmae = 'x'"), "site.nmae: unknown key"),
    (('timezone = "America/New_York"', 'timezone = "Mars/Olympus"'), "site.timezone: unknown time zone"),
    (('kind = "x"', 'kind = "myspace"'), "channels.x.kind:"),
    (('interval = "15m"', 'interval = "soon"'), "run.interval: expected a duration"),
    (('options = { page_id = "100000000000001" }', 'options = { page_token = "EAAB-secret" }'),
     "looks like a secret"),
    (("[site]", "[site\n"), "not valid TOML"),
])
def test_settings_mistakes_are_one_line_naming_the_key(demo, edit, message):
    demo.write_text(demo.read_text().replace(*edit, 1))
    code, out, err = run_cli("--config", str(demo), "status")
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "EAAB-secret" not in err


def test_missing_settings_file_is_a_clear_error(tmp_path):
    code, _, err = run_cli("--config", str(tmp_path / "nope.toml"), "status")
    assert code == 2 and "settings file not found" in err


def test_every_command_has_help():
    code, out, _ = run_cli("--help")
    assert code == 0
    for command in ("run", "feed", "post", "preview", "status", "approve", "resolve", "worker", "beat"):
        assert command in out
        assert run_cli(command, "--help")[0] == 0, command


CORPUS = sorted((shared_dir() / "feeds").glob("[0-9]*")) if shared_dir() else []


@pytest.mark.skipif(not CORPUS, reason="../shared/feeds not found next to the repo")
def test_feed_inspect_handles_the_whole_corpus(capsys):
    """Every real-world feed: exit 0 with its posts, or 2 with one clear line; never a traceback."""
    outcomes = {}
    for path in CORPUS:
        code = main(["feed", "inspect", str(path), "--json"])
        out, err = capsys.readouterr()
        assert code in (0, 2), path.name
        if code == 0:
            data = json.loads(out)
            assert all(p["url"] for p in data["posts"]), path.name
        else:
            assert len(err.strip().splitlines()) == 1 and path.name in err, err
        outcomes[path.name] = code
    assert sum(code == 0 for code in outcomes.values()) >= 60


def test_feed_inspect_as_a_subprocess_never_shows_a_traceback(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<rss><channel><item><title>unclosed")
    code, out, err = run_cli("feed", "inspect", str(broken))
    assert code in (0, 2) and "Traceback" not in err
    code, _, err = run_cli("feed", "inspect", "http://127.0.0.1:9/feed.xml")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_post_by_hand_refuses_a_held_delivery_unless_approved(demo, capsys):
    """Newcomer probe #77: `post 3 --channel bluesky` sent a held self-harm post with no warning."""
    main(["--config", str(demo), "run", "--once"])
    capsys.readouterr()
    main(["--config", str(demo), "status", "--json"])
    held = next(r for r in json.loads(capsys.readouterr().out) if r["state"] == "held" and r["channel"] == "bluesky")
    post = held["subject"].removeprefix("post:")
    assert main(["--config", str(demo), "post", post, "--channel", "bluesky"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "bluesky is held (sensitive topic" in err and "nothing was sent" in err and "--approve" in err
    outbox = demo.parent / "outbox" / "bluesky"
    assert not (outbox / f"{held['id']}.json").exists()
    # Several channels with one held among them: nothing at all is sent.
    assert main(["--config", str(demo), "post", post, "--channel", "newsletter", "--channel", "x"]) == 2
    assert main(["--config", str(demo), "post", post, "--channel", "bluesky", "--approve"]) == 0
    assert (outbox / f"{held['id']}.json").is_file()


def test_sending_one_channel_by_hand_leaves_the_posts_other_channels_planned(demo, capsys):
    url = "https://harborwellness.example/2026/11/24/mindful-reset-holiday-season/"
    assert main(["--config", str(demo), "post", url, "--channel", "x"]) == 0  # polls the feed first
    outbox = demo.parent / "outbox"
    assert [p.parent.name for p in outbox.rglob("*.json")] == ["x"]
    assert main(["--config", str(demo), "run", "--once"]) == 0
    assert len(list((outbox / "newsletter").glob("*.eml"))) == 5  # that post's newsletter too
    assert len(list((outbox / "x").glob("*.json"))) == 4  # and no second tweet for it


def test_run_counts_feed_warnings_and_v_says_what_they_are(tmp_path, capsys, caplog):
    feed = tmp_path / "feed.xml"
    feed.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://t.example/</link>'
                    '<item><title>One</title><link>https://t.example/1</link><guid>dup</guid></item>'
                    '<item><title>Two</title><link>https://t.example/2</link><guid>dup</guid></item>'
                    '<item><title>Two</title><link>https://t.example/2</link><guid>dup</guid></item>'
                    '</channel></rss>')
    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "T"\nurl = "https://t.example"\n[[feeds]]\nname = "t"\nurl = "{feed}"\n'
                      'backfill = 5\n[channels.x]\nkind = "x"\nprovider = "outbox"\n')
    with caplog.at_level("INFO", logger="syndicate.engine.poll"):
        assert main(["--config", str(config), "run", "--once"]) == 0
    assert "feed t: ok, 2 new, 2 warnings (-v says what)" in capsys.readouterr().out
    logged = [r.getMessage() for r in caplog.records if r.name == "syndicate.engine.poll"]
    assert "feed t: 2 items sharing an id with an item of another link kept as separate posts " \
           "(identified by id and link)" in logged
    assert "feed t: 1 item repeating an earlier item's id dropped (the first is kept)" in logged
    assert len(list((tmp_path / "outbox" / "x").glob("*.json"))) == 2  # both posts went out


def test_check_and_run_warn_while_unsubscribe_links_point_at_the_blog(tmp_path, capsys, demo):
    """Newcomer probe, defect 4: List-Unsubscribe pointed at the blog's host and nothing said so."""
    config = tmp_path / "mail.toml"
    base = ('[site]\nname = "T"\nurl = "https://blog.example"\n'
            '[channels.news]\nkind = "email"\nprovider = "smtp"\nto = ["a@example.org"]\n'
            'options = { host = "127.0.0.1", port = 9, security = "none", timeout = 1 }\n')
    config.write_text(base)
    main(["--config", str(config), "check"])
    out = capsys.readouterr().out
    assert "WARN web.public_url: unsubscribe links of news point at https://blog.example/unsubscribe/" in out
    assert "set web.public_url" in out
    assert main(["--config", str(config), "run", "--once"]) == 0
    assert "warning: unsubscribe links of news point at https://blog.example/" in capsys.readouterr().out
    # Set, or a channel's own unsubscribe_url, or mail that reaches nobody (the outbox): no warning.
    for text in (base + '[web]\npublic_url = "https://news.blog.example"\n',
                 base.replace('to = [', 'unsubscribe_url = "https://blog.example/u/{token}"\nto = [')):
        config.write_text(text)
        main(["--config", str(config), "check"])
        assert main(["--config", str(config), "run", "--once"]) == 0
        assert "unsubscribe links" not in capsys.readouterr().out
    assert main(["--config", str(demo), "run", "--once"]) == 0
    assert "warning" not in capsys.readouterr().out
