"""Exactly once per recipient: the bookkeeping of an email delivery sent to the tool's own list.

An email delivery that Syndicate mails itself (SMTP, and the direct-send APIs of
``providers/batching.py``: SendGrid Mail Send, Postmark, Mailgun, SES) reaches many people,
and the engine may run it more than once (a retry, a reaped lease, a person's "retry"). What
makes that safe is one ``recipient_sends`` row per (delivery, recipient), unique, whose state
moves only forward by compare-and-set::

    (none) or deferred --claim--> sending --record--> sent | failed | deferred | unknown

The rules, whatever the wire:

1. Who: ``audience = "subscribers"`` mails the active subscribers (read at send time), else
   the payload's ``to`` list; addresses are normalized and deduplicated, invalid ones logged
   and skipped, suppressed ones skipped (``pending_recipients``).
2. A recipient is claimed (``sending``, *committed*) before the provider call that may mail
   them (``claim``). A claim takes a recipient that has no row yet (INSERT ... ON CONFLICT DO
   NOTHING) or one left ``deferred`` (UPDATE ... WHERE state = 'deferred'). Either statement
   succeeds for one transaction only, so when two workers race on the same delivery, on
   SQLite or PostgreSQL, each recipient is claimed by exactly one of them; the loser reports
   it as unresolved and does not mail it.
3. After the call, each claimed recipient's outcome is recorded (``record``), again only
   from ``sending``: ``sent`` (with the provider's message id), ``failed`` (refused for good;
   never retried), ``deferred`` (not accepted; a later attempt claims it again) or
   ``unknown`` (the call may have reached the provider; never mailed again).
4. A later attempt skips everyone ``sent`` or ``failed`` (counted "done earlier") and everyone
   ``sending`` or ``unknown``: those may have the message, so they are reported as unresolved
   and never mailed again. A crash between claim and record leaves ``sending``: at most the
   recipients of the one call in flight.
5. A long batch keeps the delivery's send lease alive (``LeaseKeeper``), so the reaper does not
   take a live send for a dead one and hand it to a second worker; the extension is fenced by
   the send's claim token, and a send that finds its claim gone stops mailing (``ClaimLost``).
6. A long batch stops between recipients (SMTP) or API calls when it has used its time budget
   (``providers.base.batch_budget``: half the task time limit) and raises ``Incomplete``: the
   engine continues it at once, uncounted. Celery's soft time limit, raised wherever the task
   happens to be, is caught too: ``InFlight`` says how far the recipients in hand got, and
   ``InFlight.settle`` records them accordingly (``deferred`` if nothing that could mail them
   went out, ``unknown`` if it may have), so nothing is left ``sending`` that was not tried.

``claim`` and ``record`` each take any number of recipients in one transaction: the direct-send
adapters claim a whole API batch at once and record its answers at once. SMTP claims one
recipient right before each SMTP transaction (so a crash leaves at most one in ``sending``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.audience import subscribers
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, RecipientSend, utcnow
from syndicate.ledger.upsert import insert_ignore_many
from syndicate.errors import ClaimLost, Incomplete, ProviderError, Retryable

log = logging.getLogger(__name__)

LEASE_EVERY = 30.0  # seconds between extensions of the delivery's send lease during a long batch
DONE = ("sent", "failed")  # a later attempt counts these as done
UNRESOLVED = ("sending", "unknown")  # may have the message: reported, never mailed again
OUTCOMES = ("sent", "failed", "deferred", "unknown")  # what ``record`` may write
_IN_CHUNK = 500  # addresses per IN (...) list: far below every bound-parameter limit


@dataclass
class Outcome:
    """What happened to one claimed recipient."""

    state: str  # "sent" | "failed" | "deferred" | "unknown"
    message_id: str | None = None
    code: int | None = None  # the provider's code (an SMTP reply code, an API error code)
    error: str | None = None


@dataclass
class BatchReport:
    """What one send of a delivery achieved, for its result and its error messages."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    already: int = 0  # sent or failed by an earlier attempt
    suppressed: int = 0
    unresolved: list[str] = field(default_factory=list)  # sending/unknown: may have it, never resent
    lost: str | None = None  # why the batch stopped early
    lost_after_content: bool = False  # ... and the recipient being sent may have the message

    def count(self, state: str) -> None:
        """Count one recorded outcome (``unknown`` ones are listed in ``unresolved`` by the caller)."""
        if state == "sent":
            self.sent += 1
        elif state == "failed":
            self.failed += 1
        elif state == "deferred":
            self.deferred += 1

    def summary(self) -> str:
        parts = [f"{self.sent} sent"]
        for label, n in (("failed", self.failed), ("deferred", self.deferred), ("done earlier", self.already),
                         ("suppressed", self.suppressed), ("unresolved", len(self.unresolved))):
            if n:
                parts.append(f"{n} {label}")
        return ", ".join(parts)

    def settled(self) -> int:
        """Recipients this send took out of the to-do list (sent, failed, or now unresolved):
        a send that settled nobody made no progress."""
        return self.sent + self.failed + len(self.unresolved)

    def details(self) -> dict:
        """The counts for ``SendResult.details``."""
        return {"sent": self.sent, "failed": self.failed, "already": self.already,
                "suppressed": self.suppressed, "unresolved": self.unresolved}


# ---------------------------------------------------------------------------- who


def wanted_recipients(s: Session, payload: dict) -> list[str]:
    """Who this delivery is for, normalized and without repeats, in a stable order."""
    if payload.get("audience") == "subscribers":
        addresses = subscribers.active_recipients(s)
    else:
        addresses = list(payload.get("to") or [])
    seen, result = set(), []
    for address in addresses:
        try:
            normalized = subscribers.normalize(address)
        except subscribers.InvalidAddress:
            log.warning("skipping invalid recipient address %r", address)
            continue
        if normalized not in seen:
            seen.add(normalized)
            result.append(normalized)
    return result


def pending_recipients(factory: sessionmaker[Session], job, report: BatchReport) -> list[str]:
    """The recipients of JOB (a ``providers.base.Job``) still to mail, in order; the others are
    counted into REPORT: done earlier, unresolved (may have it), or suppressed."""
    with transaction(factory) as s:
        wanted = wanted_recipients(s, job.payload)
        blocked = subscribers.suppressed_among(s, wanted)
        done = dict(s.execute(select(RecipientSend.recipient, RecipientSend.state)
                              .where(RecipientSend.delivery_id == job.delivery_id)).all())
    todo = []
    for recipient in wanted:
        state = done.get(recipient)
        if state in DONE:
            report.already += 1
        elif state in UNRESOLVED:
            report.unresolved.append(recipient)
        elif recipient in blocked:
            report.suppressed += 1
        else:
            todo.append(recipient)
    return todo


# ---------------------------------------------------------------------------- claim and record


def claim(factory: sessionmaker[Session], delivery_id: int, addresses: Iterable[str]) -> list[str]:
    """Mark ADDRESSES ``sending`` in one committed transaction, before the provider call; the
    ones this caller now holds, in the order given. An address is taken if it has no record
    for this delivery yet, or was ``deferred``; any other (another worker holds it, or it was
    done meanwhile) is left out."""
    wanted = list(dict.fromkeys(addresses))
    if not wanted:
        return []
    # Sorted: concurrent claims on PostgreSQL take row locks in one order, so they never deadlock.
    ordered = sorted(wanted)
    now = utcnow()
    with transaction(factory) as s:
        rows = [{"delivery_id": delivery_id, "recipient": a, "state": "sending", "attempts": 1,
                 "created_at": now, "updated_at": now} for a in ordered]
        taken = set(insert_ignore_many(s, RecipientSend, rows, ["delivery_id", "recipient"],
                                       returning=RecipientSend.recipient))
        existing = [a for a in ordered if a not in taken]
        for start in range(0, len(existing), _IN_CHUNK):
            chunk = existing[start:start + _IN_CHUNK]
            taken.update(s.execute(
                update(RecipientSend)
                .where(RecipientSend.delivery_id == delivery_id, RecipientSend.recipient.in_(chunk),
                       RecipientSend.state == "deferred")
                .values(state="sending", attempts=RecipientSend.attempts + 1, updated_at=now)
                .returning(RecipientSend.recipient)
                .execution_options(synchronize_session=False)).scalars())
    return [a for a in wanted if a in taken]


def record(factory: sessionmaker[Session], delivery_id: int, results: Mapping[str, Outcome]) -> None:
    """Record each claimed recipient's outcome (address -> Outcome) in one transaction. Only a
    recipient still ``sending`` is changed (compare-and-set)."""
    if not results:
        return
    for address, outcome in results.items():
        if outcome.state not in OUTCOMES:
            raise ValueError(f"{address}: cannot record state {outcome.state!r}")
    table = RecipientSend.__table__
    stmt = (table.update()
            .where(table.c.delivery_id == delivery_id, table.c.recipient == bindparam("b_recipient"),
                   table.c.state == "sending")
            .values(state=bindparam("b_state"), error=bindparam("b_error"), code=bindparam("b_code"),
                    message_id=bindparam("b_message_id"), updated_at=utcnow()))
    params = [{"b_recipient": address, "b_state": o.state, "b_error": o.error, "b_code": o.code,
               "b_message_id": o.message_id} for address, o in sorted(results.items())]
    with transaction(factory) as s:
        s.connection().execute(stmt, params)  # Core executemany: one statement, one commit


class LeaseKeeper:
    """Extends the delivery's send lease while a long batch runs, so the reaper does not take
    a live send for a dead one. Call ``keep()`` before each recipient or API call: it writes
    at most every LEASE_EVERY seconds (or a third of the TTL, if shorter).

    The extension is fenced: it applies only while the delivery is ``sending`` under TOKEN (the
    claim token this send holds, ``Job.token``). Where it is not, the lease was reaped (the send
    stalled for longer than the TTL) and the delivery was planned again, cancelled, or claimed by
    another worker: ``keep()`` raises ``ClaimLost`` and the send must stop mailing. The lease
    can only be lost after more than a TTL without an extension, longer than the interval
    between writes, so the first ``keep()`` after such a stall writes, and notices. Without a
    token (a send outside the engine's claims) the lease is extended unfenced and never lost.
    """

    def __init__(self, factory: sessionmaker[Session], delivery_id: int, ttl: timedelta,
                 token: str | None = None):
        self.factory, self.delivery_id, self.ttl, self.token = factory, delivery_id, ttl, token
        self.last = time.monotonic()

    def keep(self) -> None:
        if time.monotonic() - self.last < min(LEASE_EVERY, self.ttl.total_seconds() / 3):
            return
        self.last = time.monotonic()
        where = [Delivery.id == self.delivery_id, Delivery.state == "sending"]
        if self.token is not None:
            where.append(Delivery.claim_token == self.token)
        with transaction(self.factory) as s:
            result = s.execute(update(Delivery).where(*where).values(lease_until=utcnow() + self.ttl)
                               .execution_options(synchronize_session=False))
        if self.token is not None and result.rowcount == 0:
            raise ClaimLost(f"lost the claim on delivery {self.delivery_id}: its send lease was taken back "
                            "(the delivery was planned again, cancelled or claimed by another worker)")


class InFlight:
    """The recipients a send holds right now and how far their provider call got, so that an
    interruption anywhere (Celery's soft time limit) leaves their records right (``settle``):

    ``claiming``  the claim may or may not have committed: left alone (at worst they stay
                  ``sending``: reported as may-have-it, never mailed twice)
    ``claimed``   held, and nothing that could mail them went out yet (SMTP: before the message
                  content; an API: before the call): ``deferred``, claimed again later
    ``issued``    the message content / the API call may have reached the provider: ``unknown``
    ``answered``  the provider answered: its outcomes are recorded (again: ``record`` only
                  changes rows still ``sending``, so a record that had committed is left alone)
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.stage, self.addresses, self.outcomes = "idle", [], {}

    def claiming(self, addresses: Iterable[str]) -> None:
        self.stage, self.addresses, self.outcomes = "claiming", list(addresses), {}

    def claimed(self, addresses: Iterable[str]) -> None:
        self.stage, self.addresses = "claimed", list(addresses)

    def issued(self) -> None:
        if self.stage == "claimed":
            self.stage = "issued"

    def answered(self, outcomes: Mapping[str, Outcome]) -> None:
        self.stage, self.outcomes = "answered", dict(outcomes)

    def settle(self, factory: sessionmaker[Session], delivery_id: int, report: BatchReport, why: str) -> None:
        """Record the recipients in hand after an interruption (WHY), count them into REPORT."""
        if self.stage == "answered":
            results = self.outcomes
        elif self.stage == "claimed":
            results = {a: Outcome("deferred", error=f"{why}, before anything was sent") for a in self.addresses}
        elif self.stage == "issued":
            results = {a: Outcome("unknown", error=f"{why}, after the message went out")
                       for a in self.addresses}
        else:
            results = {}
        stage = self.stage
        self.clear()
        if not results:
            return
        record(factory, delivery_id, results)
        for address, outcome in results.items():
            if outcome.state == "unknown":
                report.unresolved.append(address)
            else:
                report.count(outcome.state)
        log.warning("delivery %s: %s with %d recipients in hand (%s): recorded %s", delivery_id, why,
                    len(results), stage, ", ".join(sorted({o.state for o in results.values()})))


def stopped_early(where: str, why: str, report: BatchReport, total: int, settled_before: int) -> ProviderError:
    """The error for a send that stops with recipients left (its time budget, or Celery's soft
    time limit): ``Incomplete`` (continued at once, not counted as an attempt) when it settled
    someone since SETTLED_BEFORE (``report.settled()`` when it began); else ``Retryable`` (a
    counted attempt with a backoff), so a list that cannot move does not loop for ever."""
    if report.settled() > settled_before:
        return Incomplete(f"{where}: {why}: sent {report.sent} of {total}; continuing ({report.summary()})")
    return Retryable(f"{where}: {why} before any recipient was settled ({report.summary()})")


def recipient_report(factory: sessionmaker[Session], delivery_id: int) -> list[RecipientSend]:
    """Every recipient record of one delivery (for `syndicate email recipients`)."""
    with transaction(factory) as s:
        return list(s.scalars(select(RecipientSend).where(RecipientSend.delivery_id == delivery_id)
                              .order_by(RecipientSend.id)))
