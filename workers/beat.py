"""Celery beat's scheduler, plus a heartbeat: beat writes the "beat" row on every tick.

The dispatcher's own heartbeat ("dispatcher") is written by whichever worker runs the tick, so
it goes quiet when beat stops *or* when every worker does; beat's row tells the two apart for
/healthz and `syndicate doctor` (engine/health.py). A ledger that cannot be written is logged
and beat goes on: the heartbeat is advice for people, and ticking the dispatcher matters more.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery.beat import PersistentScheduler

from syndicate.engine.heartbeat import beat
from syndicate.ledger.db import open_ledger
from syndicate.ledger.models import utcnow

log = logging.getLogger(__name__)


class Scheduler(PersistentScheduler):
    def tick(self, *args, **kwargs):
        wait = super().tick(*args, **kwargs)
        self._heartbeat(wait)
        return wait

    def _heartbeat(self, wait: float) -> None:
        settings = self.app.conf.syndicate_settings
        now = utcnow()
        last = getattr(self, "_last_heartbeat", None)
        if last is not None and now - last < timedelta(seconds=1):  # tick() runs once per entry sent
            return
        try:
            beat(open_ledger(settings.store_url), "beat", now, now + timedelta(seconds=max(wait, 0.1)))
            self._last_heartbeat = now
        except Exception as exc:  # noqa: BLE001 - never stop ticking over the heartbeat
            log.warning("beat heartbeat not written: %s", exc)
