"""The embedded default: poll, plan, reap and deliver in-process, with no broker.

It runs the very same poll, planner, dispatcher and delivery code as the Celery workers, so
`syndicate run` on a laptop behaves like a deployment.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import digest, quiet, reshare
from syndicate.engine.alerts import send_alerts
from syndicate.engine.deliver import Outcome, deliver
from syndicate.engine.digest import plan_digests
from syndicate.engine.dispatch import Claim, ReapResult, claim_due, give_back, reap_expired
from syndicate.engine.heartbeat import beat
from syndicate.engine.pause import PauseState, paused
from syndicate.engine.planner import PlanResult, plan_pending
from syndicate.engine.poll import PollResult, poll_feeds
from syndicate.engine.reshare import plan_reshares
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import QuietState, utcnow
from syndicate.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    at: datetime
    polls: list[PollResult] = field(default_factory=list)
    plan: PlanResult = field(default_factory=PlanResult)
    reaped: ReapResult = field(default_factory=ReapResult)
    outcomes: list[Outcome] = field(default_factory=list)
    paused: PauseState | None = None  # the pause button was pressed: nothing was claimed


def ledger(settings: Settings) -> sessionmaker[Session]:
    return open_ledger(settings.store_url)


def run_once(settings: Settings, now: datetime | None = None,
             progress: Callable[[str], None] | None = None, poll: bool = True,
             answered: dict | None = None) -> RunSummary:
    """One pass: poll the feeds (unless not POLL), plan, reap, and deliver what is due.
    ANSWERED: the 304s a quiet run got before handing over (engine/poll.py poll_feeds)."""
    now = now or utcnow()
    say = progress or (lambda _msg: None)
    factory = ledger(settings)
    summary = RunSummary(at=now)
    if settings.feeds and poll:
        say(polling_message(settings))
        summary.polls = poll_feeds(factory, settings, settings.feeds, now, answered=answered)
    say("planning deliveries")
    summary.plan = plan_pending(factory, settings, now)
    plan_digests(factory, settings, now, into=summary.plan)
    summary.plan.planned += len(plan_reshares(factory, settings, now))  # evergreen (engine/reshare.py)
    # Leases and the reaper always use the real clock (other workers judge them by it);
    # NOW (--at) only decides what is due.
    summary.reaped = reap_expired(factory, utcnow(), settings=settings)
    summary.outcomes = deliver_due(factory, settings, now, say)
    with transaction(factory) as s:
        summary.paused = paused(s)
    _alert(factory, settings)
    return summary


def polling_message(settings: Settings) -> str:
    return f"polling {len(settings.feeds)} feed(s), {settings.fetch.concurrency} at a time"


# The longest a recorded proof stands without a full pass (the quiet run, engine/quiet.py): a
# day, whatever the schedules say, so a mistake in one can cost at most that.
QUIET_AT_MOST = timedelta(days=1)


def quiet_until(factory: sessionmaker[Session], settings: Settings, now: datetime) -> datetime:
    """Until when ``run_once`` has no time-driven work: the next digest edition or re-share slot
    (NOW while one is due and not planned), NOW with alerts on (what they tell changes with every
    poll). What other processes write (posts, approvals, claims) is checked live by the quiet run
    (quiet.PENDING_WORK), not foreseen here."""
    if settings.alerts.enabled:
        return now
    until = now + QUIET_AT_MOST
    with transaction(factory) as s:
        for when in (digest.next_work_at(s, settings, now), reshare.next_work_at(s, settings, now)):
            if when is not None:
                until = min(until, when)
    return until


def remember_quiet(factory: sessionmaker[Session], settings: Settings, config: Path, raw: bytes, now: datetime,
                   say_first: list[tuple[str, str, str]]) -> None:
    """After a full ``run --once`` (its pass done): what the next one needs to run quietly
    (engine/quiet.py), keyed by the fingerprint of the settings file (RAW, the bytes SETTINGS
    were validated from), the code and the environment. SAY_FIRST: the (style, lead, text) lines
    printed before the pass's summary."""
    from syndicate.feeds.fetch import common_headers

    env = list(dict.fromkeys([*quiet.ENV_ALWAYS, settings.web.secret_env, settings.web.old_secret_env,
                              settings.store.encryption_key_env]))
    fetch = settings.fetch
    plan = {
        "env": [name for name in env if name],
        "feeds": [[f.name, settings.feed_location(f)] for f in settings.feeds],
        "fetch": {"timeout": fetch.timeout.total_seconds(), "concurrency": fetch.concurrency,
                  "per_host": fetch.per_host, "user_agent": fetch.user_agent},
        "headers": common_headers(),
        "say_first": [list(line) for line in say_first],
        "progress": polling_message(settings),
    }
    row = {"fingerprint": quiet.fingerprint(config, raw, plan["env"]), "plan": json.dumps(plan),
           "quiet_until": quiet_until(factory, settings, now), "recorded_at": utcnow()}
    with transaction(factory) as s:
        found = s.get(QuietState, 1)
        if found is None:
            s.add(QuietState(id=1, **row))
        else:
            for key, value in row.items():
                setattr(found, key, value)


def _alert(factory: sessionmaker[Session], settings: Settings) -> None:
    """Tell staff what needs them (grouped per alerts.interval); never stops the run."""
    if not settings.alerts.enabled:
        return
    try:
        send_alerts(factory, settings)
    except Exception as exc:  # noqa: BLE001 - an alert must not stop sending
        log.warning("alerts: %s: %s", type(exc).__name__, exc)


def deliver_due(factory: sessionmaker[Session], settings: Settings, now: datetime,
                say: Callable[[str], None]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    providers: dict = {}
    handled: set[int] = set()  # each delivery once per pass: a retry waits for the next pass
    claims: list[Claim] = []
    try:
        while claims := claim_due(factory, utcnow(), due_by=now, limit=settings.run.batch_size,
                                  ttl=settings.run.claim_ttl, exclude=handled):
            for claim in claims:
                handled.add(claim.delivery_id)
                outcome = deliver(factory, settings, claim.delivery_id, claim.token, actor="runner",
                                  provider_cache=providers, channel=claim.channel)
                say(f"delivery {claim.delivery_id}: {outcome.state}")
                outcomes.append(outcome)
                if outcome.error_class == "incomplete":  # a long batch continues in this pass
                    handled.discard(claim.delivery_id)
    except KeyboardInterrupt:
        # Ctrl-C: what this pass claimed but did not send is planned again now, not when its
        # lease runs out; a send cut off mid-call is judged as the reaper would (unknown, or
        # planned again where the provider deduplicates).
        given_back = give_back(factory, claims, utcnow(), settings=settings)
        log.warning("interrupted: %s claimed deliveries planned again, %s interrupted sends marked unknown",
                    given_back.reclaimed, given_back.unknown)
        raise
    finally:
        for provider in providers.values():
            provider.close()
    return outcomes


def run_forever(settings: Settings, on_summary: Callable[[RunSummary], None],
                progress: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> None:
    """The embedded scheduler, until interrupted (or STOP is set): due work every ``run.tick``
    (an approval, a retry whose backoff ended, goes out within a tick, as under beat), feeds
    every ``run.interval``. Each pass writes the heartbeat the desk shows. ON_SUMMARY gets every
    poll's summary, and a tick's only when it did something."""
    interval, tick = settings.run.interval.total_seconds(), settings.run.tick.total_seconds()
    factory = ledger(settings)
    next_poll = time.monotonic()
    while not (stop and stop.is_set()):
        polling = time.monotonic() >= next_poll
        if polling:
            next_poll = time.monotonic() + interval
        summary = None
        try:
            summary = run_once(settings, progress=progress, poll=polling)
            if polling:  # bounce reports wait in a mailbox as feeds do: read them as often
                from syndicate.providers import bouncebox  # imaplib only for the long-running loop

                bouncebox.fetch_all(settings)
        except Exception:  # one bad pass (a bug, the database away) must not end the scheduler
            log.exception("this pass failed; trying again at the next tick")
        left = next_poll - time.monotonic()
        wait = max(0.1, min(tick, left))
        now = utcnow()
        try:
            beat(factory, "runner", now, now + timedelta(seconds=wait), now + timedelta(seconds=max(0.0, left)))
        except Exception:
            log.exception("could not write the runner's heartbeat")
        if summary is not None and (polling or summary.outcomes or summary.plan.planned or summary.plan.held
                                    or summary.reaped.reclaimed or summary.reaped.unknown):
            on_summary(summary)
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)
