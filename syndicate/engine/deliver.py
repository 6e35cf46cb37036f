"""Delivering one claimed delivery: the only place an outside call is made.

Order matters (DESIGN.md rule 3): ``sending`` is committed *before* the provider call, and
the provider's id is stored after it. A crash in between leaves ``sending``, which the reaper
turns into ``unknown`` rather than resending.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate import providers
from syndicate.engine import fresh, send_record
from syndicate.engine.dispatch import Claim, release
from syndicate.engine.pause import gate
from syndicate.engine.ratelimit import account_key, limiter_for, rate_for
from syndicate.engine.retry import retry_due
from syndicate.engine.states import record, transition
from syndicate.ledger.db import durable, transaction
from syndicate.ledger.models import Delivery, Event, Post, utcnow
from syndicate.providers.base import (
    Duplicate,
    Incomplete,
    Job,
    OutcomeUnknown,
    ProviderError,
    RateLimited,
    Retryable,
    SendResult,
    Unresolved,
)
from syndicate.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    delivery_id: int
    state: str  # the state the delivery ended in, or "skipped" if this call did nothing
    detail: str = ""
    error_class: str | None = None  # the provider error's class, where there was one


def deliver(factory: sessionmaker[Session], settings: Settings, delivery_id: int, token: str, *,
            actor: str = "worker", now: datetime | None = None, ttl: timedelta | None = None,
            provider_cache: dict | None = None, limiter=None, channel: str | None = None) -> Outcome:
    """Send one claimed delivery. Safe to call twice with the same claim: the second is a no-op.

    LIMITER (engine.ratelimit) paces sends per provider account; a delivery over the limit is
    handed back with a later due time instead of waiting in the worker. CHANNEL (the claim's,
    when the caller knows it) saves reading the row before pacing; the start is fenced anyway.
    """
    return _deliver(factory, settings, delivery_id, token, actor=actor, now=now, ttl=ttl,
                    provider_cache=provider_cache, limiter=limiter, channel=channel)[0]


@dataclass(frozen=True)
class Answered:
    """A provider's acceptance whose `sent` record is still to be written (``deliver_chunk``)."""
    delivery_id: int
    token: str
    result: SendResult


def deliver_chunk(factory: sessionmaker[Session], settings: Settings, claims: list[tuple[int, str, str | None]], *,
                  actor: str = "worker", limiter=None, budget: float | None = None,
                  provider_cache: dict | None = None) -> list[Outcome]:
    """CLAIMS ([delivery_id, token, channel]) sent one after another, each as ``deliver`` sends it.
    On PostgreSQL a delivery's `sent` record is written in the statement that starts the next
    one (one commit a delivery, not two): still after its own provider's answer, and committed
    before the next call; a crash in between leaves it ``sending`` for the reaper to judge, as a
    crash between an answer and its record always did. Once BUDGET seconds are used, the claims
    not started are given back (planned again: no call was made for them)."""
    limiter = limiter or limiter_for(settings, shared=False)
    # One provider object per channel for the chunk: a provider's HTTP session (its open
    # connection) serves the chunk's sends instead of one connection each.
    provider_cache = {} if provider_cache is None else provider_cache
    chain = _postgresql(factory)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    answered = None
    # The pre-send checks' rows for the whole chunk in one read; each start then requires its
    # post's content unchanged since (else it is checked again), so nothing is sent unchecked.
    checked = fresh.claimed_posts(factory, [claim[0] for claim in claims]) if chain else {}
    try:
        for n, (delivery_id, token, channel) in enumerate(claims):
            if n and budget is not None and time.monotonic() - started >= budget:
                _settle(factory, answered, actor)
                answered = None
                for rest_id, rest_token, rest_channel in claims[n:]:
                    release(factory, Claim(rest_id, rest_token, rest_channel), actor,
                            detail="released: its message's time ran out before it started")
                break
            outcome, answered = _deliver(factory, settings, delivery_id, token, actor=actor, limiter=limiter,
                                         channel=channel, provider_cache=provider_cache, before=answered,
                                         hold=chain, checked=checked.get(delivery_id))
            outcomes.append(outcome)
    finally:  # the last success (or one before an error) is recorded here
        _settle(factory, answered, actor)
    return outcomes


def _settle(factory, answered: Answered | None, actor: str) -> None:
    """ANSWERED's `sent` record, now (nothing when None)."""
    if answered is not None and not _record_sent(factory, answered.delivery_id, answered.token,
                                                 answered.result, actor):
        _late_success(factory, answered.delivery_id, answered.result, actor)


def _deliver(factory, settings: Settings, delivery_id: int, token: str, *, actor: str, now: datetime | None = None,
             ttl: timedelta | None = None, provider_cache: dict | None = None, limiter=None,
             channel: str | None = None, before: Answered | None = None, hold: bool = False,
             checked=None) -> tuple[Outcome, Answered | None]:
    """``deliver``, with BEFORE (an earlier success not yet recorded) recorded first or in this
    delivery's start, and with HOLD this delivery's success returned unrecorded for the caller
    to record (the Answered), instead of recorded here. CHECKED: the delivery's row for the
    pre-send checks, read by the caller (``fresh.claimed_posts``)."""
    now = now or utcnow()
    ttl = ttl or settings.run.claim_ttl
    limiter = limiter or limiter_for(settings, shared=False)

    def stop(outcome: Outcome) -> tuple[Outcome, None]:
        _settle(factory, before, actor)  # no start to carry it: recorded on its own
        return outcome, None

    wait = _rate_wait(factory, settings, delivery_id, token, limiter, channel)
    if wait is None:
        return stop(Outcome(delivery_id, "skipped", "not claimed by this token (already handled)"))
    if wait > 0:
        _settle(factory, before, actor)
        release(factory, Claim(delivery_id, token), actor, due=now + timedelta(seconds=wait),
                detail=f"rate limit: waits {wait:.0f}s")
        return Outcome(delivery_id, "deferred", f"rate limited for {wait:.0f}s"), None
    # Content current at send time (engine/fresh.py): a post taken down is withdrawn, one edited
    # on the blog since planning is rendered again; still claimed, before `sending` is committed.
    verdict, seen = fresh.check(factory, settings, delivery_id, token, actor, row=checked)
    if verdict == fresh.WITHDRAWN:
        return stop(Outcome(delivery_id, "cancelled", "withdrawn: the post's page is gone"))
    if verdict == fresh.HELD:  # the edit made it need a person (safe messaging, privacy): not sent
        return stop(Outcome(delivery_id, "held", "the post changed on the blog and now waits for a person"))
    job = _start(factory, delivery_id, token, actor, now, ttl, before, seen)
    if job is _CHANGED:  # the post changed after it was checked: check again, then start
        again = fresh.check(factory, settings, delivery_id, token, actor)[0]
        if again == fresh.WITHDRAWN:
            return Outcome(delivery_id, "cancelled", "withdrawn: the post's page is gone"), None
        if again == fresh.HELD:
            return Outcome(delivery_id, "held", "the post changed on the blog and now waits for a person"), None
        job = _start_in_session(factory, delivery_id, token, actor, now, ttl)
    if job is _PAUSED:
        return Outcome(delivery_id, "paused", "sending is paused: handed back, planned again"), None
    if job is None:
        return Outcome(delivery_id, "skipped", "not claimed by this token (already handled)"), None
    if not job.payload:  # its render failed, and a person asked to send it again: render it now
        job, stopped = _render_now(factory, settings, job, token, actor)
        if stopped is not None:
            return stopped, None
    try:
        provider = _provider(settings, job, provider_cache)
        result = _settled_by_lookup(provider, job) or provider.send(job)
    except ProviderError as exc:
        outcome = _failed(factory, settings, job, token, exc, actor)  # the ledger first, always
        if isinstance(exc, RateLimited) and exc.reset_at is not None:
            _block(limiter, _account(settings, job.channel), exc.reset_at)
        return outcome, None
    except Exception as exc:  # a bug in an adapter: we cannot know whether the call went out
        # Only the exception's type reaches the ledger and the log: its text may quote a header.
        log.error("provider crashed on delivery %s (%s)", delivery_id, type(exc).__name__)
        log.debug("adapter traceback for delivery %s", delivery_id, exc_info=True)
        return _failed(factory, settings, job, token,
                       OutcomeUnknown(f"adapter error: {type(exc).__name__}; see the worker's debug log"),
                       actor), None
    outcome = Outcome(delivery_id, "sent", result.ref or "")
    if hold:
        return outcome, Answered(delivery_id, token, result)
    _settle(factory, Answered(delivery_id, token, result), actor)
    return outcome, None


def _postgresql(factory) -> bool:
    return factory.kw["bind"].dialect.name == "postgresql"


def _record_sent(factory, delivery_id: int, token: str, result, actor: str) -> bool:
    """The provider's answer on the row this token is sending (False: the claim was lost). On
    PostgreSQL one statement (engine/send_record.py), retried if the connection drops."""
    if _postgresql(factory):
        return (send_record.sent(factory, delivery_id, token, actor, utcnow(), result.ref, result.url)
                or send_record.recorded(factory, delivery_id, token))
    with transaction(factory) as s:
        return transition(s, delivery_id, from_states=("sending",), token=token, to_state="sent", actor=actor,
                          provider_ref=result.ref, provider_url=result.url, sent_at=utcnow(),
                          lease_until=None, last_error=None, error_class=None, detail=result.ref)


def _render_now(factory, settings: Settings, job: Job, token: str, actor: str) -> tuple[Job, Outcome | None]:
    """Render a sending delivery that has no payload (its first render failed), exactly as the
    planner would: a sensitive post is held for a person again, a render that fails again fails
    the delivery with its reason (never a provider fed an empty payload). The payload is stored
    before it is sent, so what the desk shows is what went out."""
    from syndicate.engine.planner import render_for

    with transaction(factory) as s:
        row = s.get(Delivery, job.delivery_id)
        post = s.get(Post, row.post_id) if row.post_id else None
        if post is None or job.channel not in settings.channels:
            state, reason, payload, error = "failed", None, {}, "nothing to send: the delivery was never rendered"
        else:
            state, reason, payload, error = render_for(settings, post, job.channel)
    if error:
        return job, _failed(factory, settings, job, token, providers.base.Permanent(error), actor)
    with transaction(factory) as s:
        if state == "planned":  # stored on the row it holds (fenced by the token), then sent
            ok = s.execute(update(Delivery).where(Delivery.id == job.delivery_id, Delivery.state == "sending",
                                                  Delivery.claim_token == token)
                           .values(payload=payload, last_error=None, error_class=None)
                           .execution_options(synchronize_session=False)).rowcount == 1
            if ok:
                record(s, job.delivery_id, actor, "render", "rendered again before sending")
        else:  # held again (safe messaging, a flood) or skipped: nothing goes out now
            ok = transition(s, job.delivery_id, from_states=("sending",), token=token, to_state=state,
                            actor=actor, detail=f"rendered again: {reason}", payload=payload, hold_reason=reason,
                            claim_token=None, lease_until=None, last_error=None, error_class=None)
    if not ok:
        return job, Outcome(job.delivery_id, "skipped", "not claimed by this token (already handled)")
    if state != "planned":
        return job, Outcome(job.delivery_id, state, reason or "")
    return replace(job, payload=payload), None


def _settled_by_lookup(provider: providers.Provider, job: Job):
    """Before a resend (an earlier attempt may have posted), ask a provider that can look it up:
    what it finds is the delivery's result, and nothing is sent again."""
    if job.attempt <= 1 or not provider.looks_up:
        return None
    found = provider.lookup(job)
    if found is not None:
        log.info("delivery %s: an earlier attempt had posted it (%s); not sent again", job.delivery_id, found.ref)
    return found


NOTE_ACTION = send_record.NOTE_ACTION


def _history(s: Session, delivery_id: int) -> tuple[datetime | None, int, dict[str, str]]:
    """From the audit trail, in one query: the first start, how many starts, and what earlier
    attempts noted (``Job.remember``; oldest first, so the newest value wins)."""
    rows = s.execute(select(Event.at, Event.to_state, Event.action, Event.detail)
                     .where(Event.delivery_id == delivery_id,
                            or_(Event.to_state == "sending", Event.action == NOTE_ACTION))
                     .order_by(Event.id)).all()
    starts = [row.at for row in rows if row.to_state == "sending"]
    return (min(starts) if starts else None), len(starts), _parse_notes(row.detail for row in rows
                                                                        if row.action == NOTE_ACTION)


def _parse_notes(details) -> dict[str, str]:
    notes: dict[str, str] = {}
    for detail in details:
        try:
            notes.update(json.loads(detail or "{}"))
        except ValueError:
            continue
    return notes


def _note_saver(factory, delivery_id: int, actor: str):
    """``Job.note``: commits one note to the audit trail at once (it must outlive a crash)."""
    def save(name: str, value: str) -> None:
        with transaction(factory) as s:
            durable(s)  # what the next outside call relies on
            record(s, delivery_id, actor, NOTE_ACTION, json.dumps({name: value}))
    return save


def _late_success(factory, delivery_id: int, result, actor: str) -> None:
    """The provider accepted after our lease ran out: the reaper (or a person) moved the row
    meanwhile. Record the truth where the row is settled or waiting; where another worker holds
    it now, keep the provider's id in the audit trail and say so loudly."""
    with transaction(factory) as s:
        ok = transition(s, delivery_id, from_states=("unknown", "planned", "held", "failed", "cancelled"),
                        to_state="sent", actor=actor, provider_ref=result.ref, provider_url=result.url,
                        sent_at=utcnow(), claim_token=None, lease_until=None,
                        detail=f"provider confirmed {result.ref} after the lease had expired")
        if not ok:
            state = s.scalar(select(Delivery.state).where(Delivery.id == delivery_id))
            record(s, delivery_id, actor, "late-success",
                   f"provider accepted ({result.ref}) after the lease expired, while the delivery was {state}")
    if not ok:
        log.error("delivery %s: provider accepted (%s) after the lease expired, but the delivery is now %s; "
                  "check for a second copy", delivery_id, result.ref, state)


def _block(limiter, account: str, until: datetime) -> None:
    """Make every worker wait for the provider's reset; best effort (the row already waits)."""
    try:
        limiter.block(account, until)
    except Exception as exc:  # the limiter's Redis is down: this row's due_at still holds
        log.warning("could not share the rate limit of %s (%s)", account, type(exc).__name__)


def _account(settings: Settings, channel_name: str) -> str:
    channel = settings.channels.get(channel_name)
    return account_key(channel_name, channel) if channel else f"unknown:{channel_name}"


def _rate_wait(factory, settings: Settings, delivery_id: int, token: str, limiter,
               channel_name: str | None) -> float | None:
    """None if this claim is not ours any more (known only when CHANNEL_NAME is not given: the
    row is read for it); else seconds to wait for the account's limit."""
    if channel_name is None:
        with transaction(factory) as s:
            row = s.get(Delivery, delivery_id)
            if row is None or row.state != "claimed" or row.claim_token != token:
                return None
            channel_name = row.channel
    channel = settings.channels.get(channel_name)
    if channel is None:
        return 0.0
    try:
        return limiter.acquire(account_key(channel_name, channel), rate_for(channel))
    except Exception as exc:  # the limiter's Redis is down: pace conservatively, don't stop
        log.warning("rate limiter unavailable (%s); deferring delivery %s", exc, delivery_id)
        return 30.0


_PAUSED = object()  # _start found the pause button pressed and handed the claim back


_CHANGED = object()  # _start found the post changed since its pre-send check: nothing moved


def _start(factory, delivery_id: int, token: str, actor: str, now: datetime, ttl: timedelta,
           before: Answered | None = None, seen: str | None = None):
    """``claimed -> sending``, committed (durably) before the provider call: the Job to send, None
    if the claim is not this token's, _PAUSED if sending is paused (the claim handed back),
    _CHANGED if (PostgreSQL) SEEN, the content hash the pre-send check went by, may no longer
    be the post's. BEFORE's `sent` record is written first, or (PostgreSQL) in the same statement."""
    if _postgresql(factory):
        if before is None:
            row = send_record.start(factory, delivery_id, token, actor, now, now + ttl, seen)
        else:
            ok, row = send_record.sent_then_start(factory, before, delivery_id, token, actor, now, now + ttl,
                                                  seen)
            if not ok and not send_record.recorded(factory, before.delivery_id, before.token):
                _late_success(factory, before.delivery_id, before.result, actor)
        if row is not None:
            first_try = min(row.first_before, now) if row.first_before else now
            notes = _parse_notes(send_record.notes(factory, delivery_id)) if row.notes else {}
            return Job(delivery_id=delivery_id, key=row.key, channel=row.channel, kind=row.kind,
                       payload=row.payload, post_url=row.post_url, token=token, attempt=row.starts_before + 1,
                       first_attempt_at=first_try, notes=notes, note=_note_saver(factory, delivery_id, actor))
        # Nothing moved: paused, not this claim's, or the post changed since its check. The
        # transaction below tells which (and hands a paused claim back); a pause lifted meanwhile
        # lets it start there, after the post is checked again.
        if seen is not None:
            return _CHANGED
    else:
        _settle(factory, before, actor)
    return _start_in_session(factory, delivery_id, token, actor, now, ttl)


def _start_in_session(factory, delivery_id: int, token: str, actor: str, now: datetime, ttl: timedelta):
    with transaction(factory) as s:
        durable(s)  # `sending` is committed before the provider call: it must survive a power loss
        if not gate(s):  # paused after this was claimed: nothing has gone out, so it waits, planned
            transition(s, delivery_id, from_states=("claimed",), token=token, to_state="planned", actor=actor,
                       now=now, claim_token=None, lease_until=None, detail="sending is paused: handed back")
            return _PAUSED
        row = transition(s, delivery_id, from_states=("claimed",), token=token, to_state="sending", actor=actor,
                         now=now, attempts=Delivery.attempts + 1, lease_until=now + ttl,
                         returning=(Delivery.key, Delivery.channel, Delivery.kind, Delivery.payload,
                                    Delivery.post_url))
        if row is None:
            return None
        s.flush()
        # Counted from the audit trail, not ``attempts`` (a person's retry may reset that): any
        # earlier start means an earlier call may have reached the provider. (This start is
        # among them: it was just recorded.)
        first_try, starts, notes = _history(s, delivery_id)
        return Job(delivery_id=delivery_id, key=row.key, channel=row.channel, kind=row.kind,
                   payload=row.payload, post_url=row.post_url, token=token, attempt=starts,
                   first_attempt_at=min(first_try, now) if first_try else now, notes=notes,
                   note=_note_saver(factory, delivery_id, actor))


def _provider(settings: Settings, job: Job, cache: dict | None) -> providers.Provider:
    channel = settings.channels.get(job.channel)
    if channel is None:
        raise providers.base.Permanent(f"channel {job.channel!r} is no longer in the settings")
    if cache is not None and job.channel in cache:
        return cache[job.channel]
    try:
        provider = providers.get(channel.provider)(settings, job.channel, channel)
    except providers.UnknownProvider as exc:
        raise providers.base.Permanent(str(exc)) from None
    if cache is not None:
        cache[job.channel] = provider
    return provider


def _failed(factory, settings: Settings, job: Job, token: str, exc: ProviderError, actor: str) -> Outcome:
    now = utcnow()
    message = f"{exc.error_class}: {exc}"
    with transaction(factory) as s:
        attempts = s.get(Delivery, job.delivery_id).attempts
        first_try = s.scalar(select(func.min(Event.at)).where(Event.delivery_id == job.delivery_id,
                                                               Event.to_state == "sending"))
        state, values = _after_error(exc, attempts, now, settings, job, first_try or now)
        values = {"last_error": str(exc), **values}
        ok = transition(s, job.delivery_id, from_states=("sending",), token=token, to_state=state, actor=actor,
                        now=now, error_class=exc.error_class, lease_until=None, detail=message, **values)
        if not ok:  # the claim was lost meanwhile (reaped, then re-planned or cancelled): fenced
            state = s.scalar(select(Delivery.state).where(Delivery.id == job.delivery_id)) or "skipped"
    if not ok:
        log.warning("delivery %s (%s): %s; the claim was lost meanwhile, the delivery (%s) is left as it is",
                    job.delivery_id, job.channel, message, state)
        return Outcome(job.delivery_id, state, f"{message} (claim lost; left {state})", exc.error_class)
    log.warning("delivery %s (%s): %s -> %s", job.delivery_id, job.channel, message, state)
    return Outcome(job.delivery_id, state, message, exc.error_class)


def _after_error(exc: ProviderError, attempts: int, now: datetime, settings: Settings, job: Job,
                 first_try: datetime):
    exhausted = attempts >= settings.run.max_attempts
    if isinstance(exc, Incomplete):  # progress, not failure: continue now, uncounted
        return "planned", {"due_at": now, "claim_token": None, "attempts": max(0, attempts - 1),
                           "last_error": None}
    if isinstance(exc, Duplicate) and attempts > 1:
        # Refused as a copy on a retry: our earlier attempt most likely went through.
        return "unknown", {"last_error": f"{exc} — an earlier attempt probably went out; check the account"}
    if isinstance(exc, Unresolved):
        # An email send reached everyone it could; some recipients may have the message:
        # never resent by the engine, a person settles each one (`resolve --recipient`).
        return "unknown", {}
    if isinstance(exc, OutcomeUnknown):
        # Resend only where the provider will drop a repeat of the same key, or can be asked
        # first whether the post exists (Provider.lookup), and only while it still remembers
        # (Mastodon forgets keys after an hour); else a person decides.
        window = providers.dedup_window(settings, job.channel)
        due = retry_due(now, attempts, settings.run)
        if window is None or exhausted or due - first_try > window:
            return "unknown", {}
        return "planned", {"due_at": due, "claim_token": None}
    if isinstance(exc, Retryable) and not exhausted:
        reset = exc.reset_at if isinstance(exc, RateLimited) else None
        return "planned", {"due_at": retry_due(now, attempts, settings.run, reset), "claim_token": None}
    return "failed", {}
