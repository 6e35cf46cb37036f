"""Celery tasks: each wraps one library call. All are safe to run twice or late.

dispatch: reap expired claims, plan new posts and due digest editions, claim what is due, publish one deliver per claim.
deliver:  send one claimed delivery (fenced by its claim token: a duplicate message is a no-op).
poll_all / poll_feed: fetch and record feeds, then plan.
"""

from __future__ import annotations

import logging
import socket

from celery import shared_task
from kombu.exceptions import OperationalError

from syndicate.engine import deliver as deliver_mod
from syndicate.engine.digest import plan_digests
from syndicate.engine.dispatch import claim_due, reap_expired, release
from syndicate.engine.planner import plan_pending
from syndicate.engine.poll import poll_feed as poll_one
from syndicate.engine.ratelimit import limiter_for
from syndicate.ledger.db import open_ledger
from syndicate.ledger.models import utcnow

log = logging.getLogger(__name__)
ACTOR = f"worker:{socket.gethostname()}"


def _settings():
    from workers.app import app

    return app.conf.syndicate_settings


def _ledger():
    return open_ledger(_settings().store_url)


@shared_task(name="syndicate.dispatch")
def dispatch() -> dict:
    settings = _settings()
    factory = _ledger()
    now = utcnow()
    reaped = reap_expired(factory, now, actor="reaper", settings=settings)
    plan_pending(factory, settings, now)
    plan_digests(factory, settings, now)
    claims = claim_due(factory, now, limit=settings.run.batch_size, ttl=settings.run.claim_ttl, actor="dispatcher")
    published = 0
    for claim in claims:
        try:
            deliver.apply_async((claim.delivery_id, claim.token), retry=False)
            published += 1
        except OperationalError as exc:
            # The broker is down: hand the rest back at once instead of waiting for the reaper.
            log.warning("broker unavailable (%s); releasing %d claims", exc, len(claims) - published)
            for rest in claims[published:]:
                release(factory, rest, actor="dispatcher")
            break
    return {"claimed": len(claims), "published": published, "reclaimed": reaped.reclaimed,
            "unknown": reaped.unknown}


@shared_task(name="syndicate.deliver")
def deliver(delivery_id: int, token: str) -> str:
    settings = _settings()
    outcome = deliver_mod.deliver(_ledger(), settings, delivery_id, token, actor=ACTOR,
                                  limiter=limiter_for(settings))
    return outcome.state


@shared_task(name="syndicate.poll_all")
def poll_all() -> int:
    for feed in _settings().feeds:
        poll_feed.delay(feed.name)
    return len(_settings().feeds)


@shared_task(name="syndicate.poll_feed")
def poll_feed(name: str) -> str:
    settings = _settings()
    feed = next((f for f in settings.feeds if f.name == name), None)
    if feed is None:
        return f"no feed {name!r} in settings"
    factory = _ledger()
    now = utcnow()
    result = poll_one(factory, settings, feed, now)
    plan_pending(factory, settings, now)
    return result.status
