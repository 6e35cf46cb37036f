"""Celery tasks: each wraps one library call. All are safe to run twice or late.

dispatch: reap expired claims, plan new posts and due digest editions, claim what is due, publish
          one deliver per claim (deliver_many per chunk of claims in a backlog).
deliver:  send one claimed delivery (fenced by its claim token: a duplicate message is a no-op).
deliver_many: send a few claimed deliveries one after another, each as deliver does.
poll_all / poll_feed: fetch and record feeds, then plan.
alerts:   tell staff what needs them (held, failed, unknown, feeds, tokens, a silent beat), grouped.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from celery import shared_task
from kombu.exceptions import OperationalError

# The engine is imported inside the tasks, not here: the worker's main process imports this
# module only to know the task names (it receives and hands out messages, it runs no task), so
# it never loads SQLAlchemy, the renderers or the feed parser. Each pool child loads the
# delivery path before its first task (workers/preload.py); polling, alerts and the rest load
# when they first run.
if TYPE_CHECKING:
    from syndicate.engine.dispatch import Claim

log = logging.getLogger(__name__)


def _actor(task) -> str:
    """worker:<Celery node name>, e.g. worker:worker1@host: the audit trail tells apart workers
    that share a host (`syndicate worker` gives each process a distinct node name)."""
    return f"worker:{task.request.hostname or socket.gethostname()}"[:100]  # events.actor is 100 chars


def _settings():
    from workers.app import app

    return app.conf.syndicate_settings


def _ledger():
    from syndicate.ledger.db import open_ledger

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
    from syndicate.engine.digest import plan_digests
    from syndicate.engine.dispatch import claim_due, reap_expired, release
    from syndicate.engine.heartbeat import beat
    from syndicate.engine.planner import plan_pending
    from syndicate.engine.reshare import plan_reshares
    from syndicate.ledger.models import utcnow

    settings = _settings()
    factory = _ledger()
    now = utcnow()
    reaped = reap_expired(factory, now, actor="reaper", settings=settings)
    plan_pending(factory, settings, now)
    plan_digests(factory, settings, now)
    plan_reshares(factory, settings, now)  # evergreen re-shares: one per channel and slot, at most
    # Back-pressure: claim only what the workers can start before the claims' leases run out;
    # claims waiting in a long queue would expire and be claimed again (harmless, but waste).
    queued = _queued(self)
    room = settings.run.batch_size if queued is None else max(0, settings.run.max_queued - queued)
    limit = min(settings.run.batch_size, room)
    claims = claim_due(factory, now, limit=limit, ttl=settings.run.claim_ttl, actor="dispatcher") if limit else []
    sent = _publish(self, claims)
    for rest in (c for c in claims if c.delivery_id not in sent):
        release(factory, rest, actor="dispatcher")
    published = len(sent)
    beat(factory, "dispatcher", now, now + settings.run.tick)  # for the desk: when due work last and next goes out
    if claims and len(claims) == limit and published == len(claims):
        self.apply_async(expires=settings.run.tick.total_seconds())  # a backlog: go on now, not next tick
    return {"claimed": len(claims), "published": published, "reclaimed": reaped.reclaimed,
            "unknown": reaped.unknown, "queued": queued}


# Claims per deliver_many message in a backlog. Each message costs Celery and Redis about as much
# as an outbox delivery costs the ledger (publish, fetch, ack: ~3 ms on 2 cores): a chunk pays it
# once. Chunks only when there are at least MESSAGES_BEFORE_CHUNKS of them, so that every worker
# still gets a share of a small batch; email deliveries always go alone (a send to a list may
# use half the task's time limit by itself).
CHUNK = 10
MESSAGES_BEFORE_CHUNKS = 20


def _messages(settings, claims: list[Claim]) -> list[list[Claim]]:
    """CLAIMS grouped into messages, in claim (due) order as far as possible."""
    emails = {name for name, channel in settings.channels.items() if channel.kind == "email"}
    size = max(1, min(CHUNK, len(claims) // MESSAGES_BEFORE_CHUNKS))
    singles = [[c] for c in claims if c.channel in emails or c.channel is None]
    rest = [c for c in claims if c.channel not in emails and c.channel is not None]
    return singles + [rest[i:i + size] for i in range(0, len(rest), size)]


def _publish(task, claims: list[Claim]) -> set[int]:
    """Every claim in a message (deliver, or deliver_many for a chunk), all through one producer
    (one connection and channel for the batch); the ids of the claims that went out. The broker
    down: the caller hands the rest back at once instead of leaving them to the reaper."""
    sent: set[int] = set()
    if not claims:
        return sent
    messages = _messages(_settings(), claims)
    try:
        with task.app.producer_or_acquire() as producer:
            for message in messages:
                if len(message) == 1:
                    deliver.apply_async((message[0].delivery_id, message[0].token), {"channel": message[0].channel},
                                        retry=False, producer=producer)
                else:
                    deliver_many.apply_async(([[c.delivery_id, c.token, c.channel] for c in message],), retry=False,
                                             producer=producer)
                sent.update(c.delivery_id for c in message)
    except OperationalError as exc:
        log.warning("broker unavailable (%s); releasing %d claims", exc, len(claims) - len(sent))
    return sent


@shared_task(name="syndicate.deliver", bind=True)
def deliver(self, delivery_id: int, token: str, channel: str | None = None) -> str:
    from syndicate.engine import deliver as deliver_mod
    from syndicate.engine.ratelimit import limiter_for

    settings = _settings()
    outcome = deliver_mod.deliver(_ledger(), settings, delivery_id, token, actor=_actor(self),
                                  limiter=limiter_for(settings), channel=channel)
    return outcome.state


@shared_task(name="syndicate.deliver_many", bind=True)
def deliver_many(self, claims: list[list]) -> list[str]:
    """Each claim [delivery_id, token, channel] as ``deliver`` sends it, one after another. Once
    a quarter of the task time limit is used, the claims not started are given back (planned
    again: no call was made for them), so the last one started never meets the time limit.
    A redelivered message (a worker lost) is harmless: each claim is fenced by its token."""
    from syndicate.engine import deliver as deliver_mod
    from syndicate.engine.ratelimit import limiter_for

    settings = _settings()
    budget = settings.run.task_time_limit.total_seconds() / 4
    # On PostgreSQL each delivery's `sent` record goes in the statement that starts the next
    # (engine/deliver.py deliver_chunk): one commit a delivery.
    return [outcome.state for outcome in deliver_mod.deliver_chunk(
        _ledger(), settings, [tuple(claim) for claim in claims], actor=_actor(self),
        limiter=limiter_for(settings), budget=budget)]


@shared_task(name="syndicate.fetch_bounces")
def fetch_bounces() -> int:
    """Read every bounce mailbox (``providers/bouncebox.py``): safe to run twice or late, each
    report is recorded once and removed only after it was."""
    from syndicate.providers import bouncebox

    return sum(f.reports for f in bouncebox.fetch_all(_settings()))


@shared_task(name="syndicate.poll_all")
def poll_all() -> int:
    for feed in _settings().feeds:
        poll_feed.delay(feed.name)
    return len(_settings().feeds)


@shared_task(name="syndicate.poll_feed")
def poll_feed(name: str) -> str:
    from syndicate.engine.planner import plan_pending
    from syndicate.engine.poll import poll_feed as poll_one
    from syndicate.ledger.models import utcnow

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


@shared_task(name="syndicate.sync_lists")
def sync_lists() -> list[str]:
    """Mailchimp's and Buttondown's unsubscribes and cleaned members, read back into the one
    suppression list (safe to run twice or late: each member read is one event)."""
    from syndicate.providers.listsync import sync_all

    return [report.line() for report in sync_all(_ledger(), _settings())]


@shared_task(name="syndicate.alerts")
def alerts() -> dict:
    """Tell staff what needs them (engine/alerts.py): grouped, each thing once."""
    from syndicate.engine.alerts import send_alerts

    return send_alerts(_ledger(), _settings())
