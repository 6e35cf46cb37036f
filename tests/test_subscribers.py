"""The subscriber list through the CLI: import (validated, counted, idempotent), list, remove,
suppression that survives a re-import, double opt-in with invites over real SMTP."""

from __future__ import annotations

import json

import pytest
from test_smtp_support import PUBLIC_URL, SECRET, SmtpServer, smtp_channel

from syndicate.audience import subscribers
from syndicate.cli import main
from syndicate.engine.runner import ledger
from syndicate.settings import load

CSV = """email,name
ana@example.org,Ana
Ben@Example.ORG,Ben
not-an-address,Nobody
cleo@example.org
ana@example.org,Ana again
,
dev@exa mple.org,Dev
"""


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@pytest.fixture
def config(tmp_path):
    def write(extra: str = "") -> str:
        path = tmp_path / "settings.toml"
        path.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"

[web]
public_url = "{PUBLIC_URL}"
{extra}
''')
        return str(path)

    return write


def run(config_path: str, *args) -> int:
    return main(["--config", config_path, *args])


def listed(config_path, capsys) -> list[dict]:
    capsys.readouterr()
    assert run(config_path, "subscribers", "list", "--json") == 0
    return json.loads(capsys.readouterr().out)["subscribers"]


def test_import_validates_counts_and_is_idempotent(config, tmp_path, capsys):
    cfg = config()
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(CSV)
    assert run(cfg, "subscribers", "import", str(csv_file)) == 0
    out = capsys.readouterr().out
    assert "3 added" in out and "1 duplicates" in out and "2 invalid" in out
    assert "line 4" in out and "not-an-address" in out and "line 8" in out
    rows = listed(cfg, capsys)
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("ana@example.org", "Ana", "active"), ("ben@example.org", "Ben", "active"), ("cleo@example.org", "", "active")]
    assert run(cfg, "subscribers", "import", str(csv_file)) == 0
    out = capsys.readouterr().out
    assert "0 added" in out and "3 already there" in out
    assert len(listed(cfg, capsys)) == 3


def test_headerless_csv_with_names(config, tmp_path, capsys):
    cfg = config()
    csv_file = tmp_path / "plain.csv"
    csv_file.write_text("\ufeffana@example.org,Ana Lopez\nben@example.org\n")  # a BOM, as Excel writes
    assert run(cfg, "subscribers", "import", str(csv_file)) == 0
    assert {r["email"]: r["name"] for r in listed(cfg, capsys)} == {"ana@example.org": "Ana Lopez",
                                                                     "ben@example.org": ""}


def test_removed_address_is_suppressed_even_when_imported_again(config, tmp_path, capsys):
    cfg = config()
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email\nana@example.org\nben@example.org\n")
    run(cfg, "subscribers", "import", str(csv_file))
    assert run(cfg, "subscribers", "remove", "ANA@example.org") == 0
    assert "never mailed again" in capsys.readouterr().out
    assert run(cfg, "subscribers", "import", str(csv_file)) == 0
    assert "1 suppressed" in capsys.readouterr().out
    statuses = {r["email"]: r["status"] for r in listed(cfg, capsys)}
    assert statuses == {"ana@example.org": "unsubscribed", "ben@example.org": "active"}
    settings = load(cfg)
    with ledger(settings)() as s:
        assert subscribers.active_recipients(s) == ["ben@example.org"]


def test_remove_rejects_a_bad_address(config, capsys):
    assert run(config(), "subscribers", "remove", "nope") == 2
    assert "nope" in capsys.readouterr().err


def test_import_of_a_missing_file_is_a_usage_error(config, capsys):
    assert run(config(), "subscribers", "import", "/no/such.csv") == 2


def test_double_opt_in_pending_until_confirmed(config, tmp_path, capsys):
    with SmtpServer() as server:
        channel = smtp_channel(server.port)
        options = ", ".join(f'{k} = {json.dumps(v)}' for k, v in channel["options"].items())
        cfg = config(f'''
[subscribers]
double_opt_in = true

[channels.news]
kind = "email"
provider = "smtp"
from_address = "news@harborwellness.example"
options = {{ {options} }}
''')
        csv_file = tmp_path / "list.csv"
        csv_file.write_text("email,name\nana@example.org,Ana\nben@example.org,Ben\n")
        assert run(cfg, "subscribers", "import", str(csv_file)) == 0
        assert "2 added (2 pending confirmation)" in capsys.readouterr().out
        settings = load(cfg)
        with ledger(settings)() as s:
            assert subscribers.active_recipients(s) == []  # pending addresses are never mailed
        assert run(cfg, "subscribers", "invite", "--channel", "news") == 0
        assert "2 confirmation emails sent" in capsys.readouterr().out
        assert run(cfg, "subscribers", "invite", "--channel", "news") == 0  # nobody is invited twice
        assert "0 confirmation emails sent" in capsys.readouterr().out
    assert server.handler.counts() == {"ana@example.org": 1, "ben@example.org": 1}
    body = server.handler.to("ana@example.org")[0].message.get_content()
    link = next(line for line in body.splitlines() if line.startswith(f"{PUBLIC_URL}/confirm/"))
    token = link.rsplit("/", 1)[1]
    assert subscribers.read_confirm_token(settings, token) == "ana@example.org"

    from syndicate.web import create_app

    client = create_app(settings).test_client()
    assert client.get(f"/confirm/{token}").status_code == 200  # a page, no change
    with ledger(settings)() as s:
        assert subscribers.active_recipients(s) == []
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200 and "You are subscribed" in response.get_data(as_text=True)
    with ledger(settings)() as s:
        assert subscribers.active_recipients(s) == ["ana@example.org"]
    assert client.post(f"/confirm/{token[:-3]}xyz").status_code == 400


def test_tokens_are_signed_per_purpose(make_settings):
    settings = make_settings()
    token = subscribers.unsubscribe_token(settings, "ana@example.org")
    assert subscribers.read_unsubscribe_token(settings, token) == "ana@example.org"
    with pytest.raises(subscribers.BadToken):
        subscribers.read_confirm_token(settings, token)  # an unsubscribe token confirms nothing
    with pytest.raises(subscribers.BadToken):
        subscribers.read_unsubscribe_token(settings, subscribers.confirm_token(settings, "ana@example.org"))
    forged = token.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(subscribers.BadToken):
        subscribers.read_unsubscribe_token(settings, forged)
    with pytest.raises(subscribers.BadToken):
        subscribers.read_confirm_token(settings, subscribers.confirm_token(settings, "a@example.org"), max_age=-1)


def test_list_json_shows_each_persons_status_and_choices_and_the_counts(config, tmp_path, capsys):
    from sqlalchemy import select

    from syndicate.audience import preferences
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Subscriber

    cfg = config('''
[channels.news]
kind = "email"
options = { audience = "subscribers" }
[channels.weekly]
kind = "email"
mode = "digest"
digest = { every = "week", day = "tue", at = "09:00" }
options = { audience = "subscribers" }
[audience.topics.anxiety]
label = "Anxiety"
categories = ["Anxiety"]
[audience.topics.sleep]
label = "Sleep"
categories = ["Sleep"]
''')
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("email\nana@example.org\nben@example.org\ncleo@example.org\ndev@example.org\n")
    assert run(cfg, "subscribers", "import", str(csv_file)) == 0
    settings = load(cfg)
    with transaction(ledger(settings)) as s:
        people = {p.email: p for p in s.scalars(select(Subscriber))}
        preferences.save(s, settings, people["ana@example.org"], ["week"], ["anxiety"])
        preferences.save(s, settings, people["ben@example.org"], ["post", "week"], ["anxiety", "sleep"])
    subscribers.remove(ledger(settings), "dev@example.org")
    capsys.readouterr()
    assert run(cfg, "subscribers", "list", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["email"]: (r["status"], r["cadence"], r["topics"]) for r in data["subscribers"]}
    assert rows == {"ana@example.org": ("active", ["week"], ["anxiety"]),
                    "ben@example.org": ("active", ["post", "week"], ["anxiety", "sleep"]),
                    "cleo@example.org": ("active", [], []),
                    "dev@example.org": ("unsubscribed", [], [])}
    assert data["counts"] == {
        "status": {"active": 3, "unsubscribed": 1, "suppressed": 1},
        "cadence": {"week": 2, "post": 1, "all": 1},
        "topics": {"anxiety": 2, "sleep": 1, "all": 1},
        "channels": {"news": 2, "weekly": 3},  # cleo never chose: every channel
    }
    # The table prints the same counts.
    assert run(cfg, "subscribers", "list") == 0
    out = capsys.readouterr().out
    assert "active per cadence: 1 all, 1 post, 2 week; per topic: 1 all, 2 anxiety, 1 sleep" in out
    assert "per channel: 2 news, 3 weekly" in out
