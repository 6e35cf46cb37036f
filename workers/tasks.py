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
from syndicate.engine.heartbeat import beat
from syndicate.engine.planner import plan_pending
from syndicate.engine.poll import poll_feed as poll_one
from syndicate.engine.ratelimit import limiter_for
from syndicate.ledger.db import open_ledger
from syndicate.ledger.models import utcnow

log = logging.getLogger(__name__)


def _actor(task) -> str:
    """worker:<Celery node name>, e.g. worker:worker1@host: the audit trail tells apart workers
    that share a host (`syndicate worker` gives each process a distinct node name)."""
    return f"worker:{task.request.hostname or socket.gethostname()}"[:100]  # events.actor is 100 chars


def _settings():
    from workers.app import app

    return app.conf.syndicate_settings


def _ledger():
    return open_ledger(_settings().store_url)


def _queued(task) -> int | None:
    """Messages waiting in the deliver queue (None if the broker can't say)."""
    from amqp.exceptions import ChannelError

    try:
        with task.app.connection_for_write() as conn:
            queue = task.app.conf.task_default_queue
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError as exc:
        if "NOT_FOUND" in str(exc):  # on Redis an empty queue does not exist
            return 0
        return None
    except Exception:  # noqa: BLE001 - a broker that can't count must not stop dispatching
        return None


@shared_task(name="syndicate.dispatch", bind=True)
def dispatch(self) -> dict:
    settings = _settings()
    factory = _ledger()
    now = utcnow()
    reaped = reap_expired(factory, now, actor="reaper", settings=settings)
    plan_pending(factory, settings, now)
    plan_digests(factory, settings, now)
    # Back-pressure: claim only what the workers can start before the claims' leases run out;
    # claims waiting in a long queue would expire and be claimed again (harmless, but waste).
    queued = _queued(self)
    room = settings.run.batch_size if queued is None else max(0, settings.run.max_queued - queued)
    limit = min(settings.run.batch_size, room)
    claims = claim_due(factory, now, limit=limit, ttl=settings.run.claim_ttl, actor="dispatcher") if limit else []
    published = _publish(self, claims)
    if published < len(claims):
        for rest in claims[published:]:
            release(factory, rest, actor="dispatcher")
    beat(factory, "dispatcher", now, now + settings.run.tick)  # for the desk: when due work last and next goes out
    if claims and len(claims) == limit and published == len(claims):
        self.apply_async(expires=settings.run.tick.total_seconds())  # a backlog: go on now, not next tick
    return {"claimed": len(claims), "published": published, "reclaimed": reaped.reclaimed,
            "unknown": reaped.unknown, "queued": queued}


def _publish(task, claims) -> int:
    """One deliver message per claim, all through one producer (one connection and channel for
    the batch); how many went out. The broker down: the caller hands the rest back at once
    instead of leaving them to the reaper."""
    published = 0
    if not claims:
        return 0
    try:
        with task.app.producer_or_acquire() as producer:
            for claim in claims:
                deliver.apply_async((claim.delivery_id, claim.token), {"channel": claim.channel}, retry=False,
                                    producer=producer)
                published += 1
    except OperationalError as exc:
        log.warning("broker unavailable (%s); releasing %d claims", exc, len(claims) - published)
    return published


@shared_task(name="syndicate.deliver", bind=True)
def deliver(self, delivery_id: int, token: str, channel: str | None = None) -> str:
    settings = _settings()
    outcome = deliver_mod.deliver(_ledger(), settings, delivery_id, token, actor=_actor(self),
                                  limiter=limiter_for(settings), channel=channel)
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
    planned = plan_pending(factory, settings, now)
    if planned.planned:  # new work may be due now: don't leave it for the next tick
        dispatch.apply_async(expires=settings.run.tick.total_seconds())
    return result.status
