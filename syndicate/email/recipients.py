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
   and an SMTP send records each answer in the transaction that issues a later recipient, so
   one recipient costs one commit. An answer not yet committed when a worker dies leaves
   that recipient ``issued``: unknown, never mailed twice. On PostgreSQL that commit is one
   statement (``_IssueStatement``), and ``issue_soon`` runs it on the book's ledger thread
   while the SMTP conversation goes on; ``issue_one`` waits for it before the content leaves.
7. A long batch keeps the delivery's send lease alive in those same transactions (and fenced
   by the claim token), so the reaper does not take a live send for a dead one. It stops
   between recipients or API calls once it has used its time budget (``Incomplete``: continued
   at once, uncounted); Celery's soft time limit, raised wherever the task happens to be, is
   caught too, and ``RecipientBook.settle`` records the recipients in hand by how far they got.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, bindparam, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.audience import subscribers, suppression
from syndicate.email import routing
from syndicate.errors import ClaimLost, Incomplete, ProviderError, Retryable, Unresolved
from syndicate.ledger.db import durable, transaction
from syndicate.ledger.models import Delivery, RecipientSend, UTCDateTime, utcnow
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
    if s.get_bind().dialect.name == "postgresql":
        # One prepared statement over an array: the multi-row VALUES of insert_ignore_many is
        # compiled anew for every claim, which cost an SMTP send more than the claim's own I/O.
        taken = set(s.execute(_CLAIM_NEW_PG, {"delivery_id": delivery_id, "recipients": ordered, "owner": owner,
                                              "now": now}).scalars())
    else:
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


_CLAIM_NEW_PG = text("""
    INSERT INTO recipient_sends (delivery_id, recipient, state, attempts, owner, created_at, updated_at)
    SELECT :delivery_id, r.recipient, 'sending', 1, :owner, :now, :now
    FROM unnest(CAST(:recipients AS text[])) WITH ORDINALITY AS r(recipient, n)
    ORDER BY r.n
    ON CONFLICT (delivery_id, recipient) DO NOTHING
    RETURNING recipient""").bindparams(bindparam("now", type_=UTCDateTime))


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

    def due(self, since: float | None = None) -> bool:
        """Time to write (or prove) the lease again: LEASE_EVERY (or a third of the TTL) after the
        last write, or after SINCE (a ``time.monotonic()``)."""
        last = self.last if since is None else since
        return time.monotonic() - last >= min(LEASE_EVERY, self.ttl.total_seconds() / 3)

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
        self._statement: _IssueStatement | bool | None = None  # issue_one's (False: not on this ledger)
        self._thread: ThreadPoolExecutor | None = None  # runs issue_soon's statements
        self._pending: tuple | None = None  # (address, answers it writes, future, start) of an issue_soon
        self.ahead: set[str] = set()  # issued by issue_soon (or being issued), content not yet started

    def __enter__(self) -> RecipientBook:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.release("not reached: the send stopped before their turn")
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
            if self._statement:
                self._statement.close()

    def claim(self, addresses: Iterable[str]) -> list[str]:
        self._finish_pending()
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
        self._finish_pending()
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

    def issue_one(self, address: str) -> None:
        """ADDRESS's content leaves next: ``issued``, committed, when this returns (raises
        ClaimLost as ``issue``). Where ``issue_soon(ADDRESS)`` started the commit, this waits for
        it; else on PostgreSQL it is one statement (``_IssueStatement``: the same checks and
        writes, as durable, in one round trip instead of about eight), elsewhere ``issue``."""
        if self._pending is not None and self._pending[0] == address:
            started = self._pending[3]
            self._finish_pending()
            if self.lease.due(since=started):
                # Started long ago (the server was slow to answer the one before): the lease it
                # proved may have run out since. Prove it again before the content leaves.
                with transaction(self.factory) as s:
                    self.lease.extend(s, check=True)
        elif address not in self.issued:
            self._finish_pending()
            if self._fast() and address not in self.noted:
                noted = dict(self.noted)
                self.noted.clear()
                self._issued_one(address, noted, self._statement.run(address, noted))
            else:
                self.issue([address])  # SQLite (or an answer for this very row): the general path
        self.ahead.discard(address)  # from here on its content may leave: unknown if we stop

    def issue_soon(self, address: str | None) -> None:
        """Start issuing ADDRESS (claimed) on the book's ledger thread and return at once, so that
        the commit overlaps the caller's network waits; ``issue_one(ADDRESS)``, called before its
        content leaves, waits for it (and raises what the statement raised). Every other write
        of the book that could touch the same rows waits for it first. A recipient issued so but
        never sent (the send stopped first) is answered ``deferred`` on the way out. Does nothing
        off PostgreSQL, or for an address not claimed: ``issue_one`` then issues it as usual."""
        if address is None or address in self.issued or (self._pending and self._pending[0] == address):
            return
        self._finish_pending()
        if address not in self.claimed or address in self.noted or not self._fast():
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="recipient-ledger")
        noted = dict(self.noted)  # handed to the statement; put back if it fails
        self.noted.clear()
        self.ahead.add(address)
        self._pending = (address, noted, self._thread.submit(self._statement.run, address, noted), time.monotonic())

    def _fast(self) -> bool:
        if self._statement is None:
            self._statement = _IssueStatement.for_book(self)
        return bool(self._statement)

    def _finish_pending(self) -> None:
        """Wait for the statement ``issue_soon`` started and take in its result: the address is
        ``issued``; or ClaimLost (it stays claimed, unissued); or the statement's error (its
        answers go back to be written later)."""
        if self._pending is None:
            return
        address, noted, future, _ = self._pending
        self._pending = None
        try:
            outcome = future.result()
        except BaseException:
            self.noted = {**noted, **self.noted}
            self.ahead.discard(address)
            raise
        try:
            self._issued_one(address, noted, outcome)
        except ClaimLost:
            self.ahead.discard(address)
            raise

    def _issued_one(self, address: str, noted: Mapping[str, Outcome], outcome: tuple[bool, bool]) -> None:
        lease_ok, issued = outcome  # the answers were written whatever the lease said (fenced by owner)
        self.lease.last = time.monotonic()
        if not lease_ok:
            raise ClaimLost(f"lost the claim on delivery {self.delivery_id}: its send lease was taken back "
                            "(the delivery was planned again, cancelled or claimed by another worker)")
        if not issued:
            raise ClaimLost(f"recipients of delivery {self.delivery_id} were taken over by another send")
        self.claimed = [a for a in self.claimed if a != address]
        self.issued.append(address)

    def answer(self, outcomes: Mapping[str, Outcome], *, count: bool = True) -> None:
        """Note the answer for recipients in hand (written with the next commit) and count it."""
        for address, outcome in outcomes.items():
            self.noted[address] = outcome
            if count and outcome.state == "unknown":
                self.report.unresolved.append(address)
            elif count:
                self.report.count(outcome.state)
        answered = set(outcomes)
        try:
            if self._pending is not None and self._pending[0] in answered:
                self._finish_pending()  # its row is answered only after it is issued
        finally:
            self.claimed = [a for a in self.claimed if a not in answered]
            self.issued = [a for a in self.issued if a not in answered]
            self.ahead -= answered

    def flush(self) -> None:
        self._finish_pending()
        if self.noted:
            with transaction(self.factory) as s:
                self._write_noted(s)
            self.noted.clear()

    def release(self, why: str) -> None:
        """Write what is noted; recipients claimed but never issued, or issued ahead whose content
        never left, go back to ``deferred``."""
        self._unwind_ahead()
        if self.claimed:
            self.answer({a: Outcome("deferred", error=f"{why}, before anything was sent") for a in self.claimed},
                        count=False)
        self.flush()

    def settle(self, why: str) -> None:
        """After an interruption (WHY, e.g. Celery's soft time limit) anywhere in the send: the
        answers noted are written, a recipient issued but not answered is ``unknown`` (the
        content may have left), one claimed but not issued (or issued ahead, its content not
        started) is ``deferred``; counted."""
        self._unwind_ahead()
        issued, claimed = list(self.issued), list(self.claimed)
        self.answer({a: Outcome("unknown", error=f"{why}, after the message went out") for a in issued})
        self.answer({a: Outcome("deferred", error=f"{why}, before anything was sent") for a in claimed})
        self.flush()
        if issued or claimed:
            log.warning("delivery %s: %s with %d recipients in hand: %d unknown, %d deferred", self.delivery_id,
                        why, len(issued) + len(claimed), len(issued), len(claimed))

    def _unwind_ahead(self) -> None:
        """On the way out: wait for a running ``issue_soon`` whatever it raised (the send is
        stopping anyway); a recipient issued ahead whose content never started is put back among
        the claimed, to be answered ``deferred`` (``issued -> deferred``: it was not sent)."""
        if self._pending is not None:
            address = self._pending[0]
            try:
                self._finish_pending()
            except BaseException as exc:  # noqa: BLE001 (the send is stopping for another reason)
                log.warning("delivery %s: issuing %s ahead failed as the send stopped: %s", self.delivery_id,
                            address, exc)
        for address in sorted(self.ahead):
            if address in self.issued:
                self.issued.remove(address)
                self.claimed.append(address)
        self.ahead.clear()

    def _write_noted(self, s: Session) -> None:
        if self.noted:
            record(self.factory, self.delivery_id, self.noted, self.owner, session=s)


class _IssueStatement:
    """``RecipientBook.issue`` for one recipient on PostgreSQL as ONE statement, on a connection
    the book holds in autocommit mode: the statement is its own transaction, so the lease check,
    the answers noted since the last commit and this recipient's ``issued`` are written together
    or not at all, and committed (durably: ``synchronous_commit``) before it returns. One round
    trip instead of about eight (a pool checkout's ping, BEGIN, three statements, COMMIT) and no
    ORM statement building: on a one-connection SMTP send this was most of each recipient's time.

    The writes are those of ``LeaseKeeper.extend(check=True)``, ``record`` and ``issue``:

    - ``lease``: the delivery's lease extended while it is ``sending`` (under the claim token);
    - ``answered``: each noted answer, only on a row this owner holds (compare-and-set);
    - ``issued``: this recipient ``sending`` -> ``issued`` by its owner, and, with a claim token,
      only if ``lease`` found the delivery still this send's: a lost claim issues nobody.

    The answers are written even when the lease is lost; the general path would write them on
    the way out (``release``) just the same: they are what the server said, fenced by owner."""

    def __init__(self, engine, delivery_id: int, owner: str | None, lease: LeaseKeeper):
        self.conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        # The driver's own cursor (psycopg, in autocommit under SQLAlchemy's connection, which
        # returns it to the pool as it found it): SQLAlchemy's layer cost more CPU than the
        # statement, and one recipient's whole cost is a few of milliseconds.
        self.cursor = self.conn.connection.driver_connection.cursor()
        self.delivery_id, self.owner, self.lease = delivery_id, owner, lease

    @classmethod
    def for_book(cls, book: RecipientBook) -> _IssueStatement | bool:
        engine = book.factory.kw["bind"]
        return cls(engine, book.delivery_id, book.owner, book.lease) if engine.dialect.name == "postgresql" else False

    def run(self, address: str, noted: Mapping[str, Outcome]) -> tuple[bool, bool]:
        """(the lease is still this send's, ADDRESS is issued): committed when it returns."""
        now = utcnow()
        params = {"delivery": self.delivery_id, "owner": self.owner, "token": self.lease.token,
                  "lease_until": now + self.lease.ttl, "now": now, "recipient": address}
        ordered = sorted(noted.items())
        params.update(a_recipient=[a for a, _ in ordered], a_state=[o.state for _, o in ordered],
                      a_error=[o.error for _, o in ordered], a_code=[o.code for _, o in ordered],
                      a_message_id=[o.message_id for _, o in ordered])
        for outcome in noted.values():
            if outcome.state not in OUTCOMES:
                raise ValueError(f"cannot record state {outcome.state!r}")
        sql = _issue_sql(self.lease.token is not None, self.owner is not None, bool(noted))
        self.cursor.execute(sql, params, prepare=True)
        lease_rows, issued_rows = self.cursor.fetchone()
        return (lease_rows > 0 or self.lease.token is None), issued_rows > 0

    def close(self) -> None:
        try:
            self.cursor.close()
            self.conn.close()
        except Exception:  # a broken connection: nothing of ours is left open on it
            log.debug("closing the issue connection failed", exc_info=True)


@functools.cache
def _issue_sql(fenced: bool, owned: bool, answers: bool) -> str:
    owner = "owner = %(owner)s" if owned else "owner IS NULL"
    token = " AND claim_token = %(token)s" if fenced else ""
    answerable = "'sending', 'issued', 'unknown'" if owned else "'sending', 'issued'"  # as ``record``
    parts = [f"""lease AS (
        UPDATE deliveries SET lease_until = %(lease_until)s
        WHERE id = %(delivery)s AND state = 'sending'{token} RETURNING id)"""]
    if answers:
        parts.append(f"""answered AS (
        UPDATE recipient_sends AS r SET state = a.state, error = a.error, code = a.code,
               message_id = a.message_id, updated_at = %(now)s
        FROM unnest(%(a_recipient)s::text[], %(a_state)s::text[], %(a_error)s::text[], %(a_code)s::int[],
                    %(a_message_id)s::text[]) AS a(recipient, state, error, code, message_id)
        WHERE r.delivery_id = %(delivery)s AND r.recipient = a.recipient
              AND r.state IN ({answerable}) AND r.{owner} RETURNING r.id)""")
    parts.append(f"""issued AS (
        UPDATE recipient_sends SET state = 'issued', updated_at = %(now)s
        WHERE delivery_id = %(delivery)s AND recipient = %(recipient)s AND state = 'sending' AND {owner}
              {"AND EXISTS (SELECT 1 FROM lease)" if fenced else ""} RETURNING id)""")
    return "WITH " + ",\n".join(parts) + "\nSELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM issued)"


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
