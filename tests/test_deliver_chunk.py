"""deliver_chunk (a deliver_many message's claims) on both ledgers: each delivery's `sent`
record is committed before the next provider call (on PostgreSQL in the statement that starts
the next), the audit trail is the one deliver() writes, and a pause between two sends hands the
rest back."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from syndicate.engine.deliver import deliver_chunk
from syndicate.engine.dispatch import claim_due
from syndicate.engine.pause import pause
from syndicate.engine.ratelimit import MemoryLimiter
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, utcnow
from syndicate.providers.outbox import OutboxProvider


def _claims(store_url, count: int):
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        for n in range(count):
            s.add(Delivery(key=uuid.uuid4().hex, subject=f"t:{uuid.uuid4().hex}", channel="x", kind="x",
                           provider="outbox", state="planned", due_at=utcnow(), payload={"text": f"Hello {n}"}))
    claims = claim_due(factory, utcnow(), limit=count, ttl=timedelta(minutes=5))
    return factory, [(c.delivery_id, c.token, c.channel) for c in claims]


def _states(factory) -> dict[int, str]:
    with transaction(factory) as s:
        return dict(s.execute(select(Delivery.id, Delivery.state)).all())


def _trail(factory, delivery_id: int) -> list[tuple[str, str | None]]:
    with transaction(factory) as s:
        return [tuple(r) for r in s.execute(select(Event.action, Event.detail).where(
            Event.delivery_id == delivery_id).order_by(Event.id))]


def test_each_record_is_committed_before_the_next_call(store_url, make_settings, monkeypatch):
    settings = make_settings(store_url=store_url)
    factory, claims = _claims(store_url, 4)
    seen = []
    send = OutboxProvider.send

    def send_and_look(self, job):
        seen.append(dict(_states(factory)))  # what another process sees at the moment of the call
        return send(self, job)

    monkeypatch.setattr(OutboxProvider, "send", send_and_look)
    outcomes = deliver_chunk(factory, settings, claims, actor="test", limiter=MemoryLimiter())
    assert [o.state for o in outcomes] == ["sent"] * 4
    ids = [c[0] for c in claims]
    for n, states in enumerate(seen):
        assert [states[i] for i in ids[:n]] == ["sent"] * n  # every earlier one recorded
        assert states[ids[n]] == "sending"  # this one committed before its call
        assert all(states[i] == "claimed" for i in ids[n + 1:])
    for delivery_id, outcome in zip(ids, outcomes, strict=True):
        actions = _trail(factory, delivery_id)
        assert [a for a, _ in actions] == ["claimed", "sending", "sent"]
        assert actions[-1][1] == outcome.detail  # the provider's reference, as deliver() records it
    with transaction(factory) as s:
        rows = s.scalars(select(Delivery).where(Delivery.id.in_(ids))).all()
        assert all(r.attempts == 1 and r.provider_ref and r.sent_at and r.lease_until is None for r in rows)


def test_a_pause_between_two_sends_records_the_first_and_hands_back_the_rest(store_url, make_settings,
                                                                             monkeypatch):
    settings = make_settings(store_url=store_url)
    factory, claims = _claims(store_url, 3)
    send = OutboxProvider.send

    def send_then_pause(self, job):
        result = send(self, job)
        if job.delivery_id == claims[0][0]:
            pause(factory, "cli:test", "bad news day")
        return result

    monkeypatch.setattr(OutboxProvider, "send", send_then_pause)
    outcomes = deliver_chunk(factory, settings, claims, actor="test", limiter=MemoryLimiter())
    assert [o.state for o in outcomes] == ["sent", "paused", "paused"]
    states = _states(factory)
    assert [states[c[0]] for c in claims] == ["sent", "planned", "planned"]
    assert [a for a, _ in _trail(factory, claims[0][0])] == ["claimed", "sending", "sent"]
