"""The Celery app: broker from settings, the delivery engine's Celery rules, the beat schedule.

Start with `syndicate worker` / `syndicate beat`, or plainly:
    SYNDICATE_CONFIG=settings.toml celery -A workers.app worker
    SYNDICATE_CONFIG=settings.toml celery -A workers.app beat

The broker only carries "do this now" messages. Nothing is scheduled as a far-future ETA:
beat ticks the dispatcher, which asks the database what is due (DESIGN.md rule 1).
"""

from __future__ import annotations

import sys

from celery import Celery
from celery.signals import worker_process_init

from syndicate import settings as settings_mod
from workers import broker, preload
from workers.timers import PurgeCancelledTimers


def _settings() -> settings_mod.Settings:
    return settings_mod.load()


def make_app(settings: settings_mod.Settings | None = None) -> Celery:
    settings = settings or _settings()
    # kombu's Redis transport with the fix that keeps a worker alive across a Redis restart
    # (workers/broker.py says what crashed, and why this and not a version pin).
    broker.install()
    app = Celery("syndicate", broker=settings.broker.url, include=["workers.tasks"])
    app.conf.update(
        # Exactly-once rules (DESIGN.md rule 5): a task is acknowledged only after it ran, a
        # task whose worker died is requeued, and a worker holds one message at a time.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_time_limit=settings.run.task_time_limit.total_seconds(),
        task_soft_time_limit=settings.run.task_time_limit.total_seconds() * 0.9,
        enable_utc=True,
        timezone="UTC",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # No ETA tasks exist, so the visibility timeout only bounds how long an unacked
        # message of a dead worker waits before redelivery (the ledger fences the redelivery).
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        # A pool child loads the delivery path before it reports itself up (workers/preload.py):
        # about a second of imports, several on a busy machine; Celery's default of 4 s would
        # kill and restart it.
        worker_proc_alive_timeout=30.0,
        beat_scheduler="workers.beat:Scheduler",  # writes the "beat" heartbeat every tick (/healthz)
        # A tick that waited longer than one period in a busy queue is dropped: the next one
        # asks the database the same question, so stale ticks would only pile up.
        beat_schedule={
            "dispatch": {"task": "syndicate.dispatch", "schedule": settings.run.tick.total_seconds(),
                         "options": {"expires": settings.run.tick.total_seconds()}},
            "poll": {"task": "syndicate.poll_all", "schedule": settings.run.interval.total_seconds(),
                     "options": {"expires": settings.run.interval.total_seconds()}},
            # Mailchimp and Buttondown keep their own lists: read their unsubscribes back hourly.
            "sync_lists": {"task": "syndicate.sync_lists", "schedule": 3600.0, "options": {"expires": 3600.0}},
            # Alerts are grouped per alerts.interval in the ledger: checking each minute only
            # decides how soon after the interval a message goes.
            **({"alerts": {"task": "syndicate.alerts", "schedule": 60.0, "options": {"expires": 60.0}}}
               if settings.alerts.enabled else {}),
        },
    )
    if _has_bounce_mailbox(settings):
        # Bounce mailboxes (SMTP channels with bounce_imap_host) are read as often as feeds.
        app.conf.beat_schedule["bounces"] = {"task": "syndicate.fetch_bounces",
                                             "schedule": settings.run.interval.total_seconds(),
                                             "options": {"expires": settings.run.interval.total_seconds()}}
    # The main process's timers of finished tasks, dropped once a minute (workers/timers.py).
    app.steps["worker"].add(PurgeCancelledTimers)
    app.conf.syndicate_settings = settings
    return app


def _has_bounce_mailbox(settings: settings_mod.Settings) -> bool:
    from syndicate.providers.bouncebox import mailboxes

    return bool(mailboxes(settings))


@worker_process_init.connect
def _pool_child_start(**_kwargs):
    # A forked pool child must not share the parent's database sockets (the main process opens
    # none today, as it never loads the ledger: a guard for an app that does).
    if "syndicate.ledger.db" in sys.modules:
        sys.modules["syndicate.ledger.db"].close_ledger()
    # The delivery path loads here, in the child, not in the main process (workers/preload.py).
    preload.load(app.conf.syndicate_settings)


app = make_app()
