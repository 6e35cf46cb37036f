"""Exactly once per recipient: the bookkeeping of an email delivery sent to the tool's own list.

An email delivery that Syndicate mails itself (SMTP, and the direct-send APIs of
``providers/batching.py``: SendGrid Mail Send, Postmark, Mailgun, SES) reaches many people,
and the engine may run it more than once (a retry, a reaped lease, a person's "retry"). What
makes that safe is one ``recipient_sends`` row per (delivery, recipient), unique, whose state
moves only forward by compare-and-set, and whose ``owner`` is the claim token of the send
that holds it::

    (none) | deferred | a dead send's sending --claim--> sending --issue--> issued --> sent
                                                           |                  |-----> unknown
                                                           '--> deferred | failed (refused before the content)
    a dead send's issued --resume--> unknown --a person--> sent | cancelled | deferred

The state that decides is the last one committed before the content leaves (DESIGN.md rule 9):

1. Who: ``audience = "subscribers"`` mails the active subscribers (read at send time) that
   ``email/routing.py`` selects (their cadence and topics; each post once per person), else
   the payload's ``to`` list; addresses are normalized and deduplicated, invalid ones logged
   and skipped, suppressed ones skipped (``pending_recipients``).
2. ``sending`` (claimed, committed) comes before anything that could mail the recipient.
   The claim takes a recipient with no row yet (INSERT ... ON CONFLICT DO NOTHING), one left
   ``deferred``, or one left ``sending`` by another send: that send's message content never
   went out, so it is mailed now. Each statement succeeds for one transaction only.
3. ``issued`` is committed just before the message content leaves (SMTP: after the RCPT and
   DATA answers, before the content; an API: before the request). It is a compare-and-set on
   the owner, in the transaction that also checks the delivery is still this send's (the
   lease, fenced by the claim token): a stale send whose recipients were taken over cannot
   issue them, and stops (``ClaimLost``).
4. After the answer each recipient's outcome is recorded from ``sending``/``issued`` by its
   owner: ``sent`` (with the provider's message id), ``failed`` (refused for good), ``deferred``
   (not accepted; claimed again later) or ``unknown`` (the content may have arrived).
5. A resumed send (``pending_recipients``) mails everyone ``deferred``, unclaimed, or left
   ``sending`` by a dead send; it turns a dead send's ``issued`` into ``unknown``; it skips the
   ``sent``, ``failed`` and ``cancelled`` ("done earlier") and reports the ``unknown``. A send
   that ends with anyone ``unknown`` is not ``sent``: the provider raises ``Unresolved`` and the
   delivery waits for a person, who settles each recipient (``settle``: ``syndicate resolve ID
   --recipient EMAIL --sent|--retry|--cancel`` or the desk).
6. Commits are batched (``RecipientBook``): a claim takes many recipients in one transaction,
   and an SMTP send records each answer in the transaction that issues the next recipient, so
   one recipient costs about one commit. An answer not yet committed when a worker dies leaves
   that recipient ``issued``: unknown, never mailed twice.
7. A long batch keeps the delivery's send lease alive in those same transactions (and fenced
   by the claim token), so the reaper does not take a live send for a dead one. It stops
   between recipients or API calls once it has used its time budget (``Incomplete``: continued
   at once, uncounted); Celery's soft time limit, raised wherever the task happens to be, is
   caught too, and ``RecipientBook.settle`` records the recipients in hand by how far they got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.audience import subscribers, suppression
from syndicate.email import routing
from syndicate.errors import ClaimLost, Incomplete, ProviderError, Retryable, Unresolved
from syndicate.ledger.db import durable, transaction
from syndicate.ledger.models import Delivery, RecipientSend, utcnow
from syndicate.ledger.upsert import insert_ignore_many

log = logging.getLogger(__name__)

LEASE_EVERY = 30.0  # seconds between extensions of the delivery's send lease during a long batch
DONE = ("sent", "failed", "cancelled")  # a later attempt counts these as done
UNRESOLVED = ("issued", "unknown")  # may have the message: reported, never mailed again by a send
OUTCOMES = ("sent", "failed", "deferred", "unknown")  # what ``record`` may write
ANSWERABLE = ("sending", "issued")  # the states an owner records an outcome from
SETTLEMENTS = {"sent": "sent", "cancel": "cancelled", "retry": "deferred"}  # a person's word -> state
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
    already: int = 0  # sent, failed or cancelled by an earlier attempt (or a person)
    suppressed: int = 0
    unresolved: list[str] = field(default_factory=list)  # unknown: may have it, never resent
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


def wanted_recipients(s: Session, payload: dict, delivery_id: int | None = None, settings=None) -> list[str]:
    """Who this delivery is for, normalized and without repeats, in a stable order. For the
    list with DELIVERY_ID (a send): the once-per-person selection of ``email/routing.py``, whose
    receipts are written in S's transaction."""
    if payload.get("audience") == "subscribers" and delivery_id is not None:
        addresses = routing.select_recipients(s, settings, payload, delivery_id)
    elif payload.get("audience") == "subscribers":
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


def pending_recipients(factory: sessionmaker[Session], job, report: BatchReport,
                       owner: str | None = None, settings=None) -> list[str]:
    """The recipients of JOB (a ``providers.base.Job``) still to mail, in order; the others are
    counted into REPORT: done earlier, unresolved (may have it), or suppressed.

    OWNER is the send asking (its claim token). A recipient another send left ``sending`` is to
    mail (that send never let the content go); one it left ``issued`` may have the message, and
    becomes ``unknown`` here, in the same transaction.

    Suppressed recipients are the one check of ``audience/suppression.py`` (SETTINGS: the
    provider's, so that forgotten addresses, kept as a keyed hash, are found too)."""
    with transaction(factory) as s:
        wanted = wanted_recipients(s, job.payload, job.delivery_id, settings)
        if settings is not None:
            routing.prepare_variants(s, settings, job.channel, job.payload)
        blocked = suppression.suppressed_among(s, wanted, settings)
        rows = s.execute(select(RecipientSend.recipient, RecipientSend.state, RecipientSend.owner)
                         .where(RecipientSend.delivery_id == job.delivery_id)).all()
        done = {recipient: state for recipient, state, _ in rows}
        orphans = [r for r, state, held_by in rows if state == "issued" and (owner is None or held_by != owner)]
        if orphans:
            _orphaned(s, job.delivery_id, orphans)
            done.update(dict.fromkeys(orphans, "unknown"))
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
            todo.append(recipient)  # new, deferred, or claimed by a send that never mailed them
    return todo


def _orphaned(s: Session, delivery_id: int, addresses: list[str]) -> None:
    """ADDRESSES were ``issued`` by a send that is gone: the content may have reached them."""
    for start in range(0, len(addresses), _IN_CHUNK):
        s.execute(update(RecipientSend)
                  .where(RecipientSend.delivery_id == delivery_id,
                         RecipientSend.recipient.in_(addresses[start:start + _IN_CHUNK]),
                         RecipientSend.state == "issued")
                  .values(state="unknown", updated_at=utcnow(),
                          error="the send stopped after the message content went out, before the answer "
                                "was recorded: the server may have it")
                  .execution_options(synchronize_session=False))
    log.warning("delivery %s: %d recipients were issued by a send that stopped before recording the answer; "
                "they are unknown (never mailed again; a person settles them)", delivery_id, len(addresses))


# ---------------------------------------------------------------------------- claim, issue, record


def _owned(owner: str | None):
    return RecipientSend.owner.is_(None) if owner is None else RecipientSend.owner == owner


def claim(factory: sessionmaker[Session], delivery_id: int, addresses: Iterable[str], owner: str | None = None,
          *, session: Session | None = None) -> list[str]:
    """Mark ADDRESSES ``sending`` for OWNER in one committed transaction, before anything that
    could mail them; the ones OWNER now holds, in the order given. An address is taken if it
    has no record for this delivery yet, was ``deferred``, or was left ``sending`` by another
    owner (a send that is gone, or stale: it can no longer issue them); any other is left out.
    SESSION: run inside the caller's transaction instead of a new one."""
    wanted = list(dict.fromkeys(addresses))
    if not wanted:
        return []
    if session is None:
        with transaction(factory) as s:
            return claim(factory, delivery_id, wanted, owner, session=s)
    s = session
    # Sorted: concurrent claims on PostgreSQL take row locks in one order, so they never deadlock.
    ordered = sorted(wanted)
    now = utcnow()
    rows = [{"delivery_id": delivery_id, "recipient": a, "state": "sending", "attempts": 1, "owner": owner,
             "created_at": now, "updated_at": now} for a in ordered]
    taken = set(insert_ignore_many(s, RecipientSend, rows, ["delivery_id", "recipient"],
                                   returning=RecipientSend.recipient))
    existing = [a for a in ordered if a not in taken]
    claimable = RecipientSend.state == "deferred"
    if owner is not None:  # a send's claims may take over another send's unissued ones
        claimable = or_(claimable, and_(RecipientSend.state == "sending",
                                        or_(RecipientSend.owner.is_(None), RecipientSend.owner != owner)))
    for start in range(0, len(existing), _IN_CHUNK):
        chunk = existing[start:start + _IN_CHUNK]
        taken.update(s.execute(
            update(RecipientSend)
            .where(RecipientSend.delivery_id == delivery_id, RecipientSend.recipient.in_(chunk), claimable)
            .values(state="sending", owner=owner, attempts=RecipientSend.attempts + 1, updated_at=now)
            .returning(RecipientSend.recipient)
            .execution_options(synchronize_session=False)).scalars())
    return [a for a in wanted if a in taken]


def issue(s: Session, delivery_id: int, addresses: list[str], owner: str | None) -> list[str]:
    """In the caller's transaction: ADDRESSES (held ``sending`` by OWNER) become ``issued``, the
    content about to leave; the ones that did (the others were taken over by another send)."""
    issued = []
    for start in range(0, len(addresses), _IN_CHUNK):
        issued.extend(s.execute(
            update(RecipientSend)
            .where(RecipientSend.delivery_id == delivery_id,
                   RecipientSend.recipient.in_(addresses[start:start + _IN_CHUNK]),
                   RecipientSend.state == "sending", _owned(owner))
            .values(state="issued", updated_at=utcnow())
            .returning(RecipientSend.recipient)
            .execution_options(synchronize_session=False)).scalars())
    return issued


def record(factory: sessionmaker[Session], delivery_id: int, results: Mapping[str, Outcome],
           owner: str | None = None, *, session: Session | None = None) -> None:
    """Record each recipient's outcome (address -> Outcome) in one transaction (or SESSION's).
    Only a recipient OWNER holds (``sending`` or ``issued``) changes (compare-and-set); one an
    owner's resumed send already called ``unknown`` takes that owner's late answer too."""
    if not results:
        return
    for address, outcome in results.items():
        if outcome.state not in OUTCOMES:
            raise ValueError(f"{address}: cannot record state {outcome.state!r}")
    table = RecipientSend.__table__
    # Equalities, not IN: an expanding IN list cannot go into one executemany statement.
    answerable = or_(*(table.c.state == state for state in ANSWERABLE + (("unknown",) if owner else ())))
    held = table.c.owner.is_(None) if owner is None else table.c.owner == owner
    stmt = (table.update()
            .where(table.c.delivery_id == delivery_id, table.c.recipient == bindparam("b_recipient"),
                   answerable, held)
            .values(state=bindparam("b_state"), error=bindparam("b_error"), code=bindparam("b_code"),
                    message_id=bindparam("b_message_id"), updated_at=utcnow()))
    params = [{"b_recipient": address, "b_state": o.state, "b_error": o.error, "b_code": o.code,
               "b_message_id": o.message_id} for address, o in sorted(results.items())]
    if session is not None:
        session.connection().execute(stmt, params)
        return
    with transaction(factory) as s:
        s.connection().execute(stmt, params)  # Core executemany: one statement, one commit


class LeaseKeeper:
    """Extends the delivery's send lease while a long batch runs, so the reaper does not take
    a live send for a dead one. ``extend(s)`` does it inside a transaction the send commits
    anyway (a claim, an issue); ``keep()`` in one of its own. Both write at most every
    LEASE_EVERY seconds (or a third of the TTL, if shorter), unless told to check now.

    The extension is fenced: it applies only while the delivery is ``sending`` under TOKEN (the
    claim token this send holds, ``Job.token``). Where it is not, the lease was reaped (the send
    stalled for longer than the TTL) and the delivery was planned again, cancelled, or claimed by
    another worker: it raises ``ClaimLost`` and the send must stop mailing. Without a token (a
    send outside the engine's claims) the lease is extended unfenced and never lost.
    """

    def __init__(self, factory: sessionmaker[Session], delivery_id: int, ttl: timedelta,
                 token: str | None = None):
        self.factory, self.delivery_id, self.ttl, self.token = factory, delivery_id, ttl, token
        self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= min(LEASE_EVERY, self.ttl.total_seconds() / 3)

    def keep(self) -> None:
        if not self.due():
            return
        with transaction(self.factory) as s:
            self.extend(s, check=True)

    def extend(self, s: Session, check: bool = False) -> None:
        """In S's transaction: extend the lease if due (or CHECK: always, proving the claim)."""
        if not (check or self.due()):
            return
        self.last = time.monotonic()
        where = [Delivery.id == self.delivery_id, Delivery.state == "sending"]
        if self.token is not None:
            where.append(Delivery.claim_token == self.token)
        result = s.execute(update(Delivery).where(*where).values(lease_until=utcnow() + self.ttl)
                           .execution_options(synchronize_session=False))
        if self.token is not None and result.rowcount == 0:
            raise ClaimLost(f"lost the claim on delivery {self.delivery_id}: its send lease was taken back "
                            "(the delivery was planned again, cancelled or claimed by another worker)")


class RecipientBook:
    """One send's recipient records, written in as few commits as the rules allow.

    ``claim`` takes recipients (``sending``) in one commit; ``issue`` marks recipients ``issued``
    just before their content leaves, in a commit that also writes the answers noted since the
    last one (``answer``) and proves the claim on the delivery (fenced by its token); ``flush``
    writes noted answers now. Use it as a context manager: on the way out every answer is
    written and every recipient claimed but not issued goes back to ``deferred``.
    """

    def __init__(self, factory: sessionmaker[Session], job, ttl: timedelta, report: BatchReport):
        self.factory, self.delivery_id, self.report = factory, job.delivery_id, report
        self.owner = job.token  # None for a send outside the engine's claims: rows held by "nobody"
        self.lease = LeaseKeeper(factory, job.delivery_id, ttl, job.token)
        self.noted: dict[str, Outcome] = {}  # answered, not yet committed
        self.claimed: list[str] = []  # held `sending`, not yet issued or answered
        self.issued: list[str] = []  # `issued`, not yet answered

    def __enter__(self) -> RecipientBook:
        return self

    def __exit__(self, *exc) -> None:
        self.release("not reached: the send stopped before their turn")

    def claim(self, addresses: Iterable[str]) -> list[str]:
        with transaction(self.factory) as s:
            self.lease.extend(s, check=True)
            self._write_noted(s)
            taken = claim(self.factory, self.delivery_id, addresses, self.owner, session=s)
        self.noted.clear()
        self.claimed.extend(taken)
        return taken

    def issue(self, addresses: list[str]) -> None:
        """ADDRESSES' content is about to leave: ``issued``, committed. Raises ClaimLost (and
        issues nobody) where the delivery or any of them is no longer this send's."""
        with transaction(self.factory) as s:
            durable(s)  # the content leaves after this commit: it must survive a power loss
            self.lease.extend(s, check=True)
            self._write_noted(s)
            done = issue(s, self.delivery_id, addresses, self.owner)
            if len(done) < len(addresses):
                raise ClaimLost(f"recipients of delivery {self.delivery_id} were taken over by another send")
        self.noted.clear()
        held = set(addresses)
        self.claimed = [a for a in self.claimed if a not in held]
        self.issued.extend(addresses)

    def answer(self, outcomes: Mapping[str, Outcome], *, count: bool = True) -> None:
        """Note the answer for recipients in hand (written with the next commit) and count it."""
        for address, outcome in outcomes.items():
            self.noted[address] = outcome
            if count and outcome.state == "unknown":
                self.report.unresolved.append(address)
            elif count:
                self.report.count(outcome.state)
        answered = set(outcomes)
        self.claimed = [a for a in self.claimed if a not in answered]
        self.issued = [a for a in self.issued if a not in answered]

    def flush(self) -> None:
        if self.noted:
            with transaction(self.factory) as s:
                self._write_noted(s)
            self.noted.clear()

    def release(self, why: str) -> None:
        """Write what is noted; recipients claimed but never issued go back to ``deferred``."""
        if self.claimed:
            self.answer({a: Outcome("deferred", error=f"{why}, before anything was sent") for a in self.claimed},
                        count=False)
        self.flush()

    def settle(self, why: str) -> None:
        """After an interruption (WHY, e.g. Celery's soft time limit) anywhere in the send: the
        answers noted are written, a recipient issued but not answered is ``unknown`` (the
        content may have left), one claimed but not issued is ``deferred``; counted."""
        issued, claimed = list(self.issued), list(self.claimed)
        self.answer({a: Outcome("unknown", error=f"{why}, after the message went out") for a in issued})
        self.answer({a: Outcome("deferred", error=f"{why}, before anything was sent") for a in claimed})
        self.flush()
        if issued or claimed:
            log.warning("delivery %s: %s with %d recipients in hand: %d unknown, %d deferred", self.delivery_id,
                        why, len(issued) + len(claimed), len(issued), len(claimed))

    def _write_noted(self, s: Session) -> None:
        if self.noted:
            record(self.factory, self.delivery_id, self.noted, self.owner, session=s)


# ---------------------------------------------------------------------------- a person settles


class NotSettled(Exception):
    """A person's settlement was refused; the message says why."""


def unresolved_recipients(s: Session, delivery_id: int) -> list[str]:
    """The recipients of a delivery whose outcome a person must settle, in order."""
    return list(s.scalars(select(RecipientSend.recipient)
                          .where(RecipientSend.delivery_id == delivery_id, RecipientSend.state == "unknown")
                          .order_by(RecipientSend.id)))


def settle(s: Session, delivery_id: int, addresses: list[str] | None, outcome: str, actor: str) -> list[str]:
    """In S's transaction: a person's word on recipients of unknown outcome (ADDRESSES, already
    normalized; None: every one). OUTCOME: ``sent`` (they have it), ``retry`` (they do not: mail
    them again, as ``deferred``) or ``cancel`` (leave them unmailed). Returns the recipients
    settled; raises NotSettled naming any address that is not unknown in this delivery."""
    if outcome not in SETTLEMENTS:
        raise ValueError(f"unknown settlement {outcome!r}")
    pending = unresolved_recipients(s, delivery_id)
    if addresses is None:
        chosen = pending
    else:
        states = dict(s.execute(select(RecipientSend.recipient, RecipientSend.state)
                                .where(RecipientSend.delivery_id == delivery_id,
                                       RecipientSend.recipient.in_(addresses))).all())
        wrong = [f"{a} ({states[a]})" if a in states else f"{a} (not a recipient)"
                 for a in addresses if states.get(a) != "unknown"]
        if wrong:
            raise NotSettled(f"delivery {delivery_id}: only recipients of unknown outcome can be settled: "
                             + ", ".join(wrong))
        chosen = list(dict.fromkeys(addresses))
    for start in range(0, len(chosen), _IN_CHUNK):
        s.execute(update(RecipientSend)
                  .where(RecipientSend.delivery_id == delivery_id,
                         RecipientSend.recipient.in_(chosen[start:start + _IN_CHUNK]),
                         RecipientSend.state == "unknown")
                  .values(state=SETTLEMENTS[outcome], owner=None, updated_at=utcnow(),
                          error=f"settled by {actor}: {outcome}")
                  .execution_options(synchronize_session=False))
    return chosen


def tally(s: Session, delivery_id: int) -> dict[str, int]:
    """How many recipients of a delivery are in each state."""
    from sqlalchemy import func

    return dict(s.execute(select(RecipientSend.state, func.count())
                          .where(RecipientSend.delivery_id == delivery_id)
                          .group_by(RecipientSend.state)).all())


def stopped_early(where: str, why: str, report: BatchReport, total: int, settled_before: int) -> ProviderError:
    """The error for a send that stops with recipients left (its time budget, or Celery's soft
    time limit): ``Incomplete`` (continued at once, not counted as an attempt) when it settled
    someone since SETTLED_BEFORE (``report.settled()`` when it began); else ``Retryable`` (a
    counted attempt with a backoff), so a list that cannot move does not loop for ever."""
    if report.settled() > settled_before:
        return Incomplete(f"{where}: {why}: sent {report.sent} of {total}; continuing ({report.summary()})")
    return Retryable(f"{where}: {why} before any recipient was settled ({report.summary()})")


def unresolved_error(where: str, report: BatchReport, delivery_id: int) -> Unresolved:
    """The end of a send that left recipients of unknown outcome: named (the first few) and counted."""
    shown = ", ".join(report.unresolved[:5]) + (f" and {len(report.unresolved) - 5} more"
                                                if len(report.unresolved) > 5 else "")
    return Unresolved(f"{where}: {len(report.unresolved)} recipients may or may not have the message ({shown}); "
                      f"{report.summary()}; settle them with `syndicate resolve {delivery_id} "
                      "--recipient EMAIL --sent|--retry|--cancel` (or --all-unknown)", recipients=list(report.unresolved))


def recipient_report(factory: sessionmaker[Session], delivery_id: int) -> list[RecipientSend]:
    """Every recipient record of one delivery (for `syndicate email recipients`)."""
    with transaction(factory) as s:
        return list(s.scalars(select(RecipientSend).where(RecipientSend.delivery_id == delivery_id)
                              .order_by(RecipientSend.id)))
