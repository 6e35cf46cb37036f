"""The runner's heartbeat: when something last dispatched due work, and when it will next.

The embedded loop (`syndicate run`) and Celery's dispatch task each overwrite one row per pass;
the desk reads them to tell a person whether anything is sending at all, and when an approval
will go out. Celery beat writes its own row ("beat") on every tick (workers/beat.py), so
/healthz and `syndicate doctor` (engine/health.py) can tell a silent beat from idle workers.
A heartbeat is advice for people, never a lock: nothing waits on it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from syndicate.ledger.db import transaction
from syndicate.ledger.models import Heartbeat

_GRACE = timedelta(minutes=1)
NAMES = {"runner": "the embedded runner (syndicate run)", "dispatcher": "the Celery dispatcher (beat)",
         "beat": "Celery beat (syndicate beat)"}
SENDERS = ("runner", "dispatcher")  # the passes that send due work ("beat" only ticks them)


def beat(factory: sessionmaker[Session], name: str, at: datetime, next_at: datetime | None,
         next_poll_at: datetime | None = None) -> None:
    """Record a pass of NAME at AT; the next one is due at NEXT_AT (the next poll at NEXT_POLL_AT)."""
    values = {"host": socket.gethostname()[:200], "at": at, "next_at": next_at, "next_poll_at": next_poll_at}
    with transaction(factory) as s:
        if s.execute(update(Heartbeat).where(Heartbeat.name == name).values(**values)).rowcount:
            return
    try:
        with transaction(factory) as s:
            s.add(Heartbeat(name=name, **values))
    except IntegrityError:  # another process wrote the first beat at the same moment: theirs will do
        pass


@dataclass(frozen=True)
class Pulse:
    name: str
    label: str
    host: str
    at: datetime
    next_at: datetime | None
    next_poll_at: datetime | None

    def alive(self, now: datetime) -> bool:
        """It ran when it said it would (with a minute's grace): something is sending."""
        return self.next_at is not None and now <= self.next_at + (self.next_at - self.at) + _GRACE


def latest(s: Session) -> Pulse | None:
    """The most recent heartbeat of any runner that sends, or None when nothing has ever run."""
    row = s.scalars(select(Heartbeat).where(Heartbeat.name.in_(SENDERS))
                    .order_by(Heartbeat.at.desc()).limit(1)).first()
    if row is None:
        return None
    return Pulse(row.name, NAMES.get(row.name, row.name), row.host, row.at, row.next_at, row.next_poll_at)

