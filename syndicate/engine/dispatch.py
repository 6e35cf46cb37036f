"""The dispatcher: claims due deliveries, and the reaper, which frees expired claims.

Both only ask the database, so a tick that runs twice, late, or on two hosts at once is
harmless: a claim is a compare-and-set from ``planned`` with a fresh token, and a row can be
claimed by one dispatcher only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, func, insert, literal, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.pause import gate
from syndicate.engine.states import new_token, transition
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    token: str
    channel: str | None = None  # known to the dispatcher: deliver() paces by it without reading the row


def claim_due(factory: sessionmaker[Session], now: datetime, *, limit: int, ttl: timedelta,
              actor: str = "dispatcher", due_by: datetime | None = None,
              exclude: set[int] | frozenset[int] = frozenset()) -> list[Claim]:
    """Claim up to LIMIT deliveries due by DUE_BY (default NOW); each claim's lease runs from
    NOW (the real clock: other workers' reapers judge it) for TTL unless sent. EXCLUDE: rows
    this pass already handled, so a retry planned for later is not taken again at once."""
    where = [Delivery.state == "planned", Delivery.due_at <= (due_by or now)]
    if exclude:
        where.append(Delivery.id.notin_(exclude))
    with transaction(factory) as s:
        if not gate(s):  # paused: the switch is read (and locked) in this claim's transaction
            return []
        # One statement claims the batch: SKIP LOCKED lets two dispatchers on PostgreSQL take
        # different rows instead of waiting on each other (SQLite has one writer at a time), and
        # the outer `state = 'planned'` is the compare-and-set that makes it correct anywhere.
        # Each row gets its own fresh token (fencing), made by the database.
        # A CTE, not `id IN (subquery)`: PostgreSQL may run such a subquery again per row (a
        # semi-join it rescans) and so claim more than LIMIT; a locking CTE is run once.
        due = (select(Delivery.id).where(*where).order_by(Delivery.due_at, Delivery.id).limit(limit)
               .with_for_update(skip_locked=True).cte("due"))
        claimed = s.execute(
            update(Delivery).where(Delivery.id == due.c.id, Delivery.state == "planned")
            .values(state="claimed", claim_token=_fresh_token(s), lease_until=now + ttl, updated_at=now)
            .returning(Delivery.id, Delivery.claim_token, Delivery.due_at, Delivery.channel)
            .execution_options(synchronize_session=False)).all()
        if claimed:  # the audit trail, one INSERT ... SELECT for the batch
            ids = [row.id for row in claimed]
            s.execute(insert(Event).from_select(
                ["delivery_id", "at", "actor", "action", "from_state", "to_state"],
                select(Delivery.id, literal(now, Event.at.type), literal(actor), literal("claimed"),
                       literal("planned"), literal("claimed"))
                .where(Delivery.id.in_(ids)).order_by(Delivery.due_at, Delivery.id)))
    return [Claim(row.id, row.claim_token, row.channel) for row in sorted(claimed, key=lambda row: (row.due_at, row.id))]


def _fresh_token(s: Session):
    """SQL for a new random claim token per row: 32 hex digits, like ``new_token``."""
    if s.get_bind().dialect.name == "postgresql":
        return func.replace(cast(func.gen_random_uuid(), String), "-", "")
    return func.lower(func.hex(func.randomblob(16)))


def claim_one(factory: sessionmaker[Session], delivery_id: int, now: datetime, *, ttl: timedelta,
              actor: str) -> Claim | None:
    """Claim one planned delivery whatever its due time (a person asked to send it now); None if
    it is not planned, or sending is paused."""
    token = new_token()
    with transaction(factory) as s:
        if not gate(s):
            return None
        ok = transition(s, delivery_id, from_states=("planned",), to_state="claimed", actor=actor, now=now,
                        claim_token=token, lease_until=now + ttl)
    return Claim(delivery_id, token) if ok else None


def release(factory: sessionmaker[Session], claim: Claim, actor: str, due: datetime | None = None,
            detail: str = "released: could not be handed to a worker") -> bool:
    """Give a claim back (planned again) when it cannot be worked on now."""
    values = {"due_at": due} if due is not None else {}
    with transaction(factory) as s:
        return transition(s, claim.delivery_id, from_states=("claimed",), token=claim.token, to_state="planned",
                          actor=actor, claim_token=None, lease_until=None, detail=detail, **values)


def give_back(factory: sessionmaker[Session], claims: list[Claim], now: datetime, settings=None) -> ReapResult:
    """This process stops (Ctrl-C): end the leases of CLAIMS it still holds, then reap them at
    once by the reaper's rules, instead of leaving them until their leases run out."""
    tokens = [c.token for c in claims]
    if not tokens:
        return ReapResult()
    with transaction(factory) as s:
        s.execute(update(Delivery).where(Delivery.id.in_([c.delivery_id for c in claims]),
                                         Delivery.claim_token.in_(tokens),
                                         Delivery.state.in_(("claimed", "sending")))
                  .values(lease_until=now - timedelta(microseconds=1)))
    return reap_expired(factory, now, settings=settings)


@dataclass
class ReapResult:
    reclaimed: int = 0  # claimed but never started: back to planned (no outside call happened)
    unknown: int = 0  # sending when the lease ran out: the provider may have it


def reap_expired(factory: sessionmaker[Session], now: datetime, actor: str = "reaper",
                 settings=None) -> ReapResult:
    """Free expired leases. An expired ``sending`` becomes ``unknown`` — unless SETTINGS say the
    channel's provider deduplicates and still remembers the first attempt, in which case
    sending again is safe and it is planned again (an interrupted newsletter batch resumes)."""
    result = ReapResult()
    with transaction(factory) as s:
        expired = s.execute(
            select(Delivery.id, Delivery.state, Delivery.claim_token, Delivery.channel)
            .where(Delivery.state.in_(("claimed", "sending")), Delivery.lease_until < now)
        ).all()
        for delivery_id, state, token, channel in expired:
            if state == "claimed":
                ok = transition(s, delivery_id, from_states=("claimed",), token=token, to_state="planned",
                                actor=actor, now=now, claim_token=None, lease_until=None,
                                detail="claim expired before sending; planned again")
                result.reclaimed += ok
            elif _safe_to_resend(s, settings, delivery_id, channel, now):
                ok = transition(s, delivery_id, from_states=("sending",), token=token, to_state="planned",
                                actor=actor, now=now, claim_token=None, lease_until=None, due_at=now,
                                detail="send lease expired; the provider deduplicates (or is asked first), so it resumes")
                result.reclaimed += ok
            else:
                ok = transition(s, delivery_id, from_states=("sending",), token=token, to_state="unknown",
                                actor=actor, now=now, lease_until=None,
                                last_error="worker stopped mid-send: the provider may or may not have it",
                                error_class="unknown",
                                detail="send lease expired; outcome unknown, needs a human or a safe retry")
                result.unknown += ok
    return result


def _safe_to_resend(s: Session, settings, delivery_id: int, channel: str, now: datetime) -> bool:
    if settings is None:
        return False
    from syndicate.providers import dedup_window

    window = dedup_window(settings, channel)
    if window is None:
        return False
    first_try = s.scalar(select(func.min(Event.at)).where(Event.delivery_id == delivery_id,
                                                          Event.to_state == "sending"))
    return first_try is not None and now - first_try < window
