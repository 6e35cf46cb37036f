"""The ledger's state machine on SQLite and PostgreSQL: claims, fencing, reaping, idempotency."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from syndicate.engine import actions
from syndicate.engine.dispatch import claim_due, claim_one, reap_expired
from syndicate.engine.states import transition
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, Feed, Post
from syndicate.ledger.upsert import insert_ignore

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
TTL = timedelta(minutes=5)


def _post(s, feed_id: int, n: int) -> int:
    post = Post(feed_id=feed_id, identity=f"guid:{n}", fingerprint=f"fp{n}", url=f"https://e.example/{n}",
                title=f"Post {n}", data={}, plan="send", first_seen_at=NOW)
    s.add(post)
    s.flush()
    return post.id


def _deliveries(factory, count: int, due=NOW, state="planned") -> list[int]:
    with transaction(factory) as s:
        feed = Feed(name=f"f{uuid.uuid4().hex[:6]}", url="x")
        s.add(feed)
        s.flush()
        ids = []
        for n in range(count):
            d = Delivery(key=uuid.uuid4().hex, subject=f"post:{_post(s, feed.id, n)}", channel="x", kind="x",
                         provider="outbox", state=state, due_at=due, payload={"text": "hi"})
            s.add(d)
            s.flush()
            ids.append(d.id)
        return ids


@pytest.fixture
def factory(store_url):
    return open_ledger(store_url)


def test_times_round_trip_as_aware_utc(factory):
    [did] = _deliveries(factory, 1, due=NOW.astimezone(UTC))
    with transaction(factory) as s:
        assert s.get(Delivery, did).due_at == NOW
        assert s.get(Delivery, did).due_at.tzinfo is not None


def test_claim_takes_only_due_planned_rows(factory):
    due = _deliveries(factory, 3)
    _deliveries(factory, 2, due=NOW + timedelta(hours=1))
    _deliveries(factory, 1, state="held")
    claims = claim_due(factory, NOW, limit=10, ttl=TTL)
    assert sorted(c.delivery_id for c in claims) == due
    assert claim_due(factory, NOW, limit=10, ttl=TTL) == []  # a second tick finds nothing


def test_a_batch_claim_takes_limit_rows_in_due_order_each_with_its_own_token(factory):
    """One statement claims the batch: no more than LIMIT (PostgreSQL may rescan an `IN
    (subquery)`, so this is a real risk), the earliest due first, a fresh token per row, and an
    audit event per claim."""
    later = _deliveries(factory, 10, due=NOW - timedelta(minutes=1))
    earlier = _deliveries(factory, 10, due=NOW - timedelta(minutes=2))
    claims = claim_due(factory, NOW, limit=12, ttl=TTL)
    assert [c.delivery_id for c in claims] == earlier + later[:2]
    assert len({c.token for c in claims}) == 12 and all(len(c.token) == 32 for c in claims)
    assert {c.channel for c in claims} == {"x"}
    with transaction(factory) as s:
        rows = {d.id: d for d in s.scalars(select(Delivery).where(Delivery.id.in_(earlier + later)))}
        events = s.execute(select(Event.delivery_id, Event.from_state, Event.to_state)
                           .where(Event.delivery_id.in_(earlier + later))).all()
    assert all(rows[c.delivery_id].state == "claimed" and rows[c.delivery_id].claim_token == c.token for c in claims)
    assert sorted(events) == sorted((c.delivery_id, "planned", "claimed") for c in claims)
    assert len(claim_due(factory, NOW, limit=12, ttl=TTL)) == 8


def test_two_dispatchers_never_claim_the_same_row(factory):
    ids = _deliveries(factory, 40)
    results: list = []
    barrier = threading.Barrier(4)

    def tick():
        barrier.wait()
        for _ in range(20):
            results.extend(claim_due(factory, NOW, limit=3, ttl=TTL))

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [c.delivery_id for c in results]
    assert sorted(claimed) == ids  # every row claimed exactly once


def test_fencing_token_guards_every_worker_transition(factory):
    [did] = _deliveries(factory, 1)
    [claim] = claim_due(factory, NOW, limit=1, ttl=TTL)
    with transaction(factory) as s:
        assert not transition(s, did, from_states=("claimed",), token="stale", to_state="sending", actor="t")
    with transaction(factory) as s:
        assert transition(s, did, from_states=("claimed",), token=claim.token, to_state="sending", actor="t")
    with transaction(factory) as s:  # the same step twice (a duplicated message) is refused
        assert not transition(s, did, from_states=("claimed",), token=claim.token, to_state="sending", actor="t")


def test_reaper_replans_expired_claims_and_marks_interrupted_sends_unknown(factory):
    a, b, c = _deliveries(factory, 3)
    claims = {cl.delivery_id: cl for cl in claim_due(factory, NOW, limit=3, ttl=TTL)}
    with transaction(factory) as s:
        transition(s, b, from_states=("claimed",), token=claims[b].token, to_state="sending", actor="t",
                   lease_until=NOW + TTL)
    assert reap_expired(factory, NOW + TTL / 2).reclaimed == 0  # leases still valid
    result = reap_expired(factory, NOW + TTL * 2)
    assert (result.reclaimed, result.unknown) == (2, 1)
    with transaction(factory) as s:
        states = {d.id: d.state for d in s.scalars(select(Delivery))}
    assert states == {a: "planned", b: "unknown", c: "planned"}
    # An unknown delivery is never claimed again by the dispatcher.
    assert b not in [cl.delivery_id for cl in claim_due(factory, NOW + TTL * 2, limit=10, ttl=TTL)]


def test_actions_refuse_rows_a_worker_holds(factory):
    [did] = _deliveries(factory, 1)
    claim_due(factory, NOW, limit=1, ttl=TTL)
    with pytest.raises(actions.ActionRefused, match="claimed"):
        actions.cancel(factory, did, "cli:test")
    with pytest.raises(actions.ActionRefused, match="no such delivery"):
        actions.approve(factory, 99999, "cli:test")


def test_approve_and_resolve_are_audited(factory):
    [held] = _deliveries(factory, 1, state="held")
    actions.approve(factory, held, "cli:dana")
    [unknown] = _deliveries(factory, 1, state="unknown")
    actions.resolve(factory, unknown, "sent", "cli:dana")
    with transaction(factory) as s:
        events = s.execute(select(Event.delivery_id, Event.actor, Event.from_state, Event.to_state)).all()
        assert (held, "cli:dana", "held", "planned") in events
        assert (unknown, "cli:dana", "unknown", "sent") in events
    assert claim_one(factory, held, NOW, ttl=TTL, actor="cli") is not None


def test_unique_constraints_make_creation_idempotent(factory):
    with transaction(factory) as s:
        assert insert_ignore(s, Feed, {"name": "blog", "url": "u", "polls": 0}, ["name"])
        assert not insert_ignore(s, Feed, {"name": "blog", "url": "u", "polls": 0}, ["name"])
        feed_id = s.scalar(select(Feed.id))
        row = {"feed_id": feed_id, "identity": "guid:1", "fingerprint": "f", "url": "u", "title": "t",
               "data": {}, "plan": "send", "first_seen_at": NOW}
        assert insert_ignore(s, Post, row, ["feed_id", "identity"])
        assert not insert_ignore(s, Post, row, ["feed_id", "identity"])
        assert s.scalar(select(func.count(Post.id))) == 1


def test_a_current_ledger_opens_without_alembic(tmp_path):
    """The cheap check of the schema revision reads the same head as Alembic, and a ledger at
    that head is opened without loading Alembic (start-up cost); a new one is migrated."""
    import subprocess
    import sys

    from alembic.script import ScriptDirectory

    from syndicate.ledger.db import alembic_config, head_revision

    assert head_revision() == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    probe = ("import sys; from syndicate.ledger.db import open_ledger, table_names; f = open_ledger(sys.argv[1]); "
             "print('alembic' in sys.modules, 'posts' in table_names(f.kw['bind']))")
    runs = [subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True).stdout.split()
            for _ in range(2)]
    assert runs == [["True", "True"], ["False", "True"]]  # migrated once, then only checked
