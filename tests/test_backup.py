"""`syndicate backup FILE` / `restore FILE` on SQLite (online backup API) and PostgreSQL
(pg_dump/pg_restore): the ledger comes back whole, and nothing in it is resent on its own."""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from syndicate.cli import main
from syndicate.engine.dispatch import claim_due
from syndicate.engine.pause import paused
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, utcnow


def _config(tmp_path, store_url):
    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "H"\nurl = "https://h.example"\n[store]\nurl = "{store_url}"\n')
    return str(config)


def _add(factory, state: str, **values) -> int:
    with transaction(factory) as s:
        d = Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel="x", kind="x",
                     provider="outbox", state=state, due_at=utcnow() - timedelta(minutes=1),
                     payload={"text": state}, **values)
        s.add(d)
        s.flush()
        s.add(Event(delivery_id=d.id, actor="test", action=state, to_state=state))
        return d.id


def test_backup_and_restore(store_url, tmp_path, capsys):
    if store_url.startswith("postgresql"):
        if shutil.which("pg_dump") is None:
            pytest.skip("pg_dump is not installed")
        with open_ledger(store_url)() as s, s.begin():
            s.execute(text("UPDATE pause_switch SET paused = false"))
    factory = open_ledger(store_url)
    config = _config(tmp_path, store_url)
    sent = _add(factory, "sent", provider_ref="ref-1")
    sending = _add(factory, "sending", claim_token="t1", lease_until=utcnow() + timedelta(minutes=5))
    claimed = _add(factory, "claimed", claim_token="t2", lease_until=utcnow() + timedelta(minutes=5))
    planned = _add(factory, "planned")
    file = tmp_path / "ledger.backup"
    assert main(["--config", config, "backup", str(file)]) == 0
    assert file.stat().st_size > 0

    # After the backup: the planned one goes out, and something else is added.
    with transaction(factory) as s:
        s.get(Delivery, planned).state = "sent"
    later = _add(factory, "planned")
    assert main(["--config", config, "restore", str(file)]) == 2  # not without --yes
    assert "--yes" in capsys.readouterr().err
    assert main(["--config", config, "restore", str(file), "--yes"]) == 0
    assert "1 deliveries were sending" in capsys.readouterr().out

    factory = open_ledger(store_url)
    with transaction(factory) as s:
        states = {d.id: d.state for d in s.scalars(select(Delivery))}
        assert s.get(Delivery, sending).error_class == "unknown"
        assert s.scalar(select(func.count()).select_from(Event).where(Event.actor == "restore")) == 3
        state = paused(s)
    assert states == {sent: "sent", sending: "unknown", claimed: "planned", planned: "planned"}
    assert later not in states
    # Restored paused: nothing goes out until a person has compared with the providers.
    assert state is not None and "restored from ledger.backup" in state.reason
    assert claim_due(factory, utcnow(), limit=10, ttl=timedelta(minutes=5)) == []
    assert main(["--config", config, "status"]) == 0
    assert "PAUSED" in capsys.readouterr().out


def test_restore_refuses_a_file_of_the_wrong_kind(tmp_path, capsys):
    config = _config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    assert main(["--config", config, "restore", str(bogus), "--yes"]) == 2
    assert "not an SQLite backup" in capsys.readouterr().err


def test_a_missing_pg_dump_is_a_clear_message(pg_database, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no PostgreSQL client tools on it
    assert main(["--config", _config(tmp_path, pg_database), "backup", str(tmp_path / "x.dump")]) == 2
    assert "pg_dump is not installed" in capsys.readouterr().err
