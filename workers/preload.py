"""What a worker's pool child loads before its first task, and what the main process never loads.

Celery's prefork main process only receives messages and hands them to its pool children; it
imports workers/tasks.py for the task names alone, so it stays at Celery plus the settings. Each
pool child loads here, at start, what every delivery and every dispatch tick runs: the ledger
(SQLAlchemy ORM), the delivery path, the planners, the providers of the configured channels.
The periodic tasks the settings schedule (polling when feeds are configured, alerts when they
are set up) are loaded too. Loaded at start and not at the first task, the child's memory does not
step up under work, and the first delivery does not pay the imports. What is rare loads when it
first runs: the renderers (a post, an edition or a refresh to render), bounce mailboxes, list
syncing, the email machinery of an outbox without email channels.
"""

from __future__ import annotations

import logging
import threading
from importlib import import_module

log = logging.getLogger(__name__)

# Every delivery and every dispatch tick (workers/tasks.py: deliver, deliver_many, dispatch).
DELIVERY_PATH = (
    "syndicate.ledger.db",
    "syndicate.ledger.models",
    "syndicate.engine.deliver",
    "syndicate.engine.dispatch",
    "syndicate.engine.ratelimit",
    "syndicate.engine.planner",
    "syndicate.engine.digest",
    "syndicate.engine.reshare",
    "syndicate.engine.heartbeat",
    "amqp.exceptions",  # the dispatcher's queue length (workers/tasks.py: _queued)
)

# An email delivery of any provider (the outbox writes the same MIME messages).
EMAIL_PATH = ("syndicate.email.message", "syndicate.email.recipients", "syndicate.email.routing")


def modules_for(settings) -> list[str]:
    """The modules a pool child loads at start for SETTINGS."""
    from syndicate import providers
    from syndicate.engine import fresh

    names = list(DELIVERY_PATH)
    channels = settings.enabled_channels().values()
    for provider in sorted({ch.provider for ch in channels}):
        if provider in providers.REGISTRY:  # an unknown one fails its own deliveries, as before
            names.append(providers.REGISTRY[provider].partition(":")[0])
    if any(ch.kind == "email" for ch in channels):
        names.extend(EMAIL_PATH)
    if fresh.checks_pages(settings):  # each send asks the site for the post's page first
        names.append("requests")
    if settings.feeds:  # beat polls them every run.interval
        names.append("syndicate.engine.poll")
    if settings.alerts.enabled:  # beat checks every minute
        names.append("syndicate.engine.alerts")
    return names


def load(settings) -> None:
    for name in modules_for(settings):
        try:
            import_module(name)
        except ImportError as exc:  # e.g. a provider's library missing: its sends fail, not the worker
            log.warning("pool child start: cannot load %s (%s); tasks that need it will fail", name, exc)
    warm(settings)


def warm(settings) -> None:
    """Configure the ORM, then open the ledger (the pool's first connection, kept for the first
    task) and read one row the way a delivery does: the driver's libraries, the mappers and the
    first compiled statements are in memory before the first task rather than after it.

    The ledger is opened in a thread: a database that does not answer must not hold up the
    child's start (Celery kills a child not up within ``worker_proc_alive_timeout``); a first
    task waits for it in ``open_ledger``. A ledger that cannot be opened now is only logged:
    each task opens it again and reports the error there."""
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    threading.Thread(target=_open, args=(settings.store_url,), name=WARM_THREAD, daemon=True).start()


WARM_THREAD = "syndicate-warm-ledger"


def _open(url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from syndicate.ledger import StoreError
    from syndicate.ledger.db import open_ledger
    from syndicate.ledger.models import Delivery

    try:
        with open_ledger(url)() as s:
            s.get(Delivery, 0)
    except (StoreError, SQLAlchemyError) as exc:
        log.warning("pool child start: the ledger is not open yet (%s); the first task opens it", exc)
