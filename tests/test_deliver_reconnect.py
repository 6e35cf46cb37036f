"""deliver() on PostgreSQL when the server drops every connection (a restart, a failover): the
pool no longer pings each connection it hands out, so the delivery path itself must notice
and retry — the read and the start before the provider call, the `sent` record after it, and
never the call."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, func, select, text

from syndicate.engine.deliver import deliver
from syndicate.engine.dispatch import claim_due
from syndicate.engine.ratelimit import MemoryLimiter
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, utcnow
from syndicate.providers.outbox import OutboxProvider

ON_POSTGRESQL = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def _drop_connections(url: str) -> int:
    """What a server restart does to the ledger's pooled connections: every one is cut."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    finally:
        admin.dispose()


def _seed(factory, count: int) -> None:
    with transaction(factory) as s:
        for n in range(count):
            s.add(Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel="x", kind="x",
                           provider="outbox", state="planned", due_at=utcnow(), payload={"text": f"Hello {n}"}))


def _trail(factory, delivery_id: int) -> list[str]:
    with transaction(factory) as s:
        return list(s.scalars(select(Event.action).where(Event.delivery_id == delivery_id).order_by(Event.id)))


@ON_POSTGRESQL
def test_a_dropped_connection_before_the_send_is_retried(store_url, make_settings):
    pg_database = store_url
    settings = make_settings(store_url=pg_database)
    factory = open_ledger(pg_database)
    _seed(factory, 2)
    first, second = claim_due(factory, utcnow(), limit=2, ttl=timedelta(minutes=5))
    limiter = MemoryLimiter()
    assert deliver(factory, settings, first.delivery_id, first.token, limiter=limiter, channel="x").state == "sent"
    assert _drop_connections(pg_database) >= 1  # the pooled connection the first delivery used
    assert deliver(factory, settings, second.delivery_id, second.token, limiter=limiter, channel="x").state == "sent"
    assert _trail(factory, second.delivery_id) == ["claimed", "sending", "sent"]


@ON_POSTGRESQL
def test_a_dropped_connection_after_the_answer_retries_the_record_not_the_call(store_url, make_settings,
                                                                               monkeypatch):
    pg_database = store_url
    settings = make_settings(store_url=pg_database)
    factory = open_ledger(pg_database)
    _seed(factory, 1)
    [claim] = claim_due(factory, utcnow(), limit=1, ttl=timedelta(minutes=5))
    calls = []
    send = OutboxProvider.send

    def send_then_lose_the_database(self, job):
        calls.append(job.delivery_id)
        result = send(self, job)
        _drop_connections(pg_database)  # the provider answered; the ledger's connection is gone
        return result

    monkeypatch.setattr(OutboxProvider, "send", send_then_lose_the_database)
    outcome = deliver(factory, settings, claim.delivery_id, claim.token, limiter=MemoryLimiter(), channel="x")
    assert outcome.state == "sent" and calls == [claim.delivery_id]
    with transaction(factory) as s:
        row = s.get(Delivery, claim.delivery_id)
        assert row.state == "sent" and row.provider_ref == outcome.detail
        assert s.scalar(select(func.count()).where(Event.delivery_id == claim.delivery_id,
                                                   Event.to_state == "sent")) == 1
    assert json.loads((settings.outbox_dir / "x" / f"{claim.delivery_id}.json").read_text())["delivery_id"] \
        == claim.delivery_id


@ON_POSTGRESQL
def test_a_connection_idle_past_the_ping_threshold_is_checked_before_use(store_url, monkeypatch):
    from syndicate.ledger import db

    factory = open_ledger(store_url)
    with transaction(factory) as s:  # a pooled connection, then cut while idle in the pool
        s.scalar(select(func.count()).select_from(Delivery))
    assert _drop_connections(store_url) >= 1
    monkeypatch.setattr(db, "PING_AFTER", 0.0)  # it has been idle "long enough"
    with transaction(factory) as s:  # not retried by anyone: the ping found it dead, a fresh one came
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
