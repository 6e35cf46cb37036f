"""The pause button: stop every send at once on a bad news day, and start again safely.

One row (``pause_switch``, id 1) is the switch. Every claim (``dispatch.claim_due``,
``claim_one``) and every start of a send (``deliver._start``) calls ``gate`` in its own
transaction first: on PostgreSQL that takes the row's shared lock (``FOR SHARE``) until the
claim commits, and ``pause`` updates the row, which waits for those locks. So a claim that
began before the pause commits before it, and one that begins after waits for the pause and
then sees it: no claim commits after the pause has committed. On SQLite one writer at a time
gives the same order. Deliveries already ``sending`` finish; polls and planning go on.

On resume, a planned delivery whose due time passed more than ``run.stale_after`` ago while
paused is held for a person (with the reason) instead of going out late; held ones (a
sensitive post, a flood) stay held.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.states import record, transition
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, PauseSwitch, utcnow
from syndicate.settings import Settings

SWITCH_ID = 1


@dataclass(frozen=True)
class PauseState:
    since: datetime
    actor: str | None
    reason: str | None

    def line(self) -> str:
        """One line for people: who paused, when, why."""
        who = f" by {self.actor}" if self.actor else ""
        why = f": {self.reason}" if self.reason else ""
        return f"PAUSED since {self.since:%Y-%m-%d %H:%M} UTC{who}{why} — nothing is sent until `syndicate resume`"


def paused(s: Session) -> PauseState | None:
    """The pause in force, or None when sending goes on."""
    row = s.get(PauseSwitch, SWITCH_ID, populate_existing=True)
    if row is None or not row.paused:
        return None
    return PauseState(since=row.since or utcnow(), actor=row.actor, reason=row.reason)


def gate(s: Session) -> bool:
    """True when claims may go on in this transaction. Holds the switch's shared lock until the
    transaction ends (PostgreSQL), so a pause waits for this claim to commit."""
    row = s.execute(select(PauseSwitch.paused).where(PauseSwitch.id == SWITCH_ID)
                    .with_for_update(read=True)).first()
    return row is None or not row.paused


def pause(factory: sessionmaker[Session], actor: str, reason: str | None = None,
          now: datetime | None = None) -> tuple[PauseState, bool]:
    """Stop every claim from now on; (the pause in force, whether this call paused)."""
    now = now or utcnow()
    with transaction(factory) as s:
        changed = s.execute(update(PauseSwitch).where(PauseSwitch.id == SWITCH_ID, PauseSwitch.paused.is_(False))
                            .values(paused=True, reason=reason, actor=actor, since=now)).rowcount == 1
        if changed:
            record(s, None, actor, "pause", reason, now=now)
    with transaction(factory) as s:
        return paused(s), changed


@dataclass
class Resumed:
    was_paused: bool
    held: list[int]  # planned deliveries that went stale while paused: now held for a person


def resume(factory: sessionmaker[Session], settings: Settings, actor: str,
           now: datetime | None = None) -> Resumed:
    """Let claims go on. In the same transaction, deliveries due more than ``run.stale_after``
    ago, whose due time passed while paused, are held for a person instead of going out late."""
    now = now or utcnow()
    with transaction(factory) as s:
        row = s.execute(select(PauseSwitch).where(PauseSwitch.id == SWITCH_ID).with_for_update()).scalar_one_or_none()
        if row is None or not row.paused:
            return Resumed(False, [])
        since = row.since or now
        stale_before = now - settings.run.stale_after
        ids = s.scalars(select(Delivery.id).where(Delivery.state == "planned", Delivery.due_at >= since,
                                                  Delivery.due_at < stale_before).order_by(Delivery.id)).all()
        reason = (f"paused {since:%Y-%m-%d %H:%M} UTC to {now:%Y-%m-%d %H:%M} UTC: its time passed more than "
                  f"{settings.run.stale_after} ago while paused; approve to send it late, or cancel it")
        held = [i for i in ids if transition(s, i, from_states=("planned",), to_state="held", actor=actor, now=now,
                                             hold_reason=reason, detail="stale after a pause")]
        row.paused, row.since, row.actor, row.reason = False, now, actor, None
        record(s, None, actor, "resume", f"{len(held)} stale deliveries held for a person", now=now)
    return Resumed(True, held)
