"""The embedded default: poll, plan, reap and deliver in-process, with no broker.

It runs the very same poll, planner, dispatcher and delivery code as the Celery workers, so
`syndicate run` on a laptop behaves like a deployment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.deliver import Outcome, deliver
from syndicate.engine.digest import plan_digests
from syndicate.engine.dispatch import ReapResult, claim_due, reap_expired
from syndicate.engine.planner import PlanResult, plan_pending
from syndicate.engine.poll import PollResult, poll_feeds
from syndicate.ledger.db import open_ledger
from syndicate.ledger.models import utcnow
from syndicate.settings import Settings


@dataclass
class RunSummary:
    at: datetime
    polls: list[PollResult] = field(default_factory=list)
    plan: PlanResult = field(default_factory=PlanResult)
    reaped: ReapResult = field(default_factory=ReapResult)
    outcomes: list[Outcome] = field(default_factory=list)


def ledger(settings: Settings) -> sessionmaker[Session]:
    return open_ledger(settings.store_url)


def run_once(settings: Settings, now: datetime | None = None,
             progress: Callable[[str], None] | None = None) -> RunSummary:
    now = now or utcnow()
    say = progress or (lambda _msg: None)
    factory = ledger(settings)
    summary = RunSummary(at=now)
    if settings.feeds:
        say(f"polling {len(settings.feeds)} feed(s), {settings.fetch.concurrency} at a time")
        summary.polls = poll_feeds(factory, settings, settings.feeds, now)
    say("planning deliveries")
    summary.plan = plan_pending(factory, settings, now)
    plan_digests(factory, settings, now, into=summary.plan)
    # Leases and the reaper always use the real clock (other workers judge them by it);
    # NOW (--at) only decides what is due.
    summary.reaped = reap_expired(factory, utcnow(), settings=settings)
    summary.outcomes = deliver_due(factory, settings, now, say)
    return summary


def deliver_due(factory: sessionmaker[Session], settings: Settings, now: datetime,
                say: Callable[[str], None]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    providers: dict = {}
    handled: set[int] = set()  # each delivery once per pass: a retry waits for the next pass
    try:
        while claims := claim_due(factory, utcnow(), due_by=now, limit=settings.run.batch_size,
                                  ttl=settings.run.claim_ttl, exclude=handled):
            for claim in claims:
                handled.add(claim.delivery_id)
                outcome = deliver(factory, settings, claim.delivery_id, claim.token, actor="runner",
                                  provider_cache=providers)
                say(f"delivery {claim.delivery_id}: {outcome.state}")
                outcomes.append(outcome)
                if outcome.error_class == "incomplete":  # a long batch continues in this pass
                    handled.discard(claim.delivery_id)
    finally:
        for provider in providers.values():
            provider.close()
    return outcomes


def run_forever(settings: Settings, on_summary: Callable[[RunSummary], None],
                progress: Callable[[str], None] | None = None) -> None:
    """The embedded scheduler: one pass every ``run.interval``, until interrupted."""
    interval = settings.run.interval.total_seconds()
    while True:
        started = time.monotonic()
        on_summary(run_once(settings, progress=progress))
        time.sleep(max(1.0, interval - (time.monotonic() - started)))
