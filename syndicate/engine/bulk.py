"""Human actions on many deliveries at once: approve, hold, cancel or reschedule a selection.

A flood hold can leave tens of thousands of deliveries waiting; one action per row is not a
tool a person can use. A bulk action is ONE transaction with one audit event per row, and
the same compare-and-set as the single actions (engine/actions.py): each row changes only if
it is still in a state the action may leave from, so a row a worker claimed meanwhile is left
alone and counted, never raced. A held delivery is released only by approve: rescheduling a
held one gives it a new due time and keeps it held (a safe-messaging hold needs a person's yes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, utcnow

BUSY = ("claimed", "sending")  # a worker holds these: skipped and counted
# The states each action may leave from, and the state it leaves the row in (None: unchanged).
ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "approve": (("held",), "planned"),
    "hold": (("planned",), "held"),
    "cancel": (("planned", "held", "unknown", "failed"), "cancelled"),
    "reschedule": (("planned", "held"), None),
}
_CHUNK = 500  # ids per UPDATE: well under every database's bound-parameter limit


@dataclass
class Selection:
    """Which deliveries: explicit IDS, and/or every one of a post, a channel, in some states."""

    ids: list[int] | None = None
    post_id: int | None = None
    channel: str | None = None
    states: tuple[str, ...] | None = None

    @property
    def empty(self) -> bool:
        return not self.ids and self.post_id is None and not self.channel and not self.states

    def where(self) -> list:
        where = []
        if self.ids is not None:
            where.append(Delivery.id.in_(self.ids))
        if self.post_id is not None:
            where.append(Delivery.post_id == self.post_id)
        if self.channel:
            where.append(Delivery.channel == self.channel)
        if self.states:
            where.append(Delivery.state.in_(self.states))
        return where


@dataclass
class BulkResult:
    action: str
    changed: list[int] = field(default_factory=list)
    busy: int = 0  # claimed or being sent by a worker: left alone
    ineligible: int = 0  # selected, but in a state the action cannot leave from (sent, cancelled, ...)

    @property
    def matched(self) -> int:
        return len(self.changed) + self.busy + self.ineligible


def bulk_act(factory: sessionmaker[Session], action: str, selection: Selection, actor: str, *,
             due: datetime | None = None, reason: str | None = None, now: datetime | None = None) -> BulkResult:
    """Apply ACTION to every delivery SELECTION names, in one transaction (see the module doc).

    reschedule needs DUE; hold takes an optional REASON. An empty selection is refused: a bulk
    action on "everything" must be asked for by naming a state.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown bulk action {action!r}")
    if selection.empty:
        raise ValueError("name the deliveries: ids, a post, a channel or a state")
    if action == "reschedule" and due is None:
        raise ValueError("reschedule needs a due time")
    allowed, to_state = ACTIONS[action]
    now = now or utcnow()
    result = BulkResult(action)
    with transaction(factory) as s:
        rows = s.execute(select(Delivery.id, Delivery.state).where(*selection.where())
                         .order_by(Delivery.id)).all()
        by_state: dict[str, list[int]] = {}
        for delivery_id, state in rows:
            if state in allowed:
                by_state.setdefault(state, []).append(delivery_id)
            elif state in BUSY:
                result.busy += 1
            else:
                result.ineligible += 1
        for state, ids in by_state.items():
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                done = _move(s, chunk, state, to_state or state, action, actor, now, due, reason)
                result.changed += done
                result.busy += len(chunk) - len(done)  # changed meanwhile: a worker got there first
    result.changed.sort()
    return result


def _move(s: Session, ids: list[int], state: str, to_state: str, action: str, actor: str, now: datetime,
          due: datetime | None, reason: str | None) -> list[int]:
    """Compare-and-set IDS from STATE to TO_STATE; the ids that moved, each with its audit event."""
    values: dict = {"state": to_state, "updated_at": now}
    detail = action
    if action == "approve":
        values["hold_reason"] = None
    elif action == "hold":
        values["hold_reason"] = reason or "held by a person"
    elif action == "cancel":
        values["claim_token"] = None
    elif action == "reschedule":
        values["due_at"] = due
        detail = f"reschedule to {due.isoformat()}" + (" (still held: only approve releases it)"
                                                      if state == "held" else "")
    moved = list(s.scalars(update(Delivery).where(Delivery.id.in_(ids), Delivery.state == state)
                           .values(**values).returning(Delivery.id)
                           .execution_options(synchronize_session=False)))
    if moved:
        s.execute(insert(Event), [{"delivery_id": i, "at": now, "actor": actor, "action": to_state,
                                   "from_state": state, "to_state": to_state, "detail": f"{detail} (bulk)"}
                                  for i in moved])
    return moved


def describe(result: BulkResult) -> str:
    """One line for a person: what changed and what was left alone, and why."""
    verb = {"approve": "approved", "hold": "held", "cancel": "cancelled", "reschedule": "rescheduled"}
    text = f"{len(result.changed)} {verb[result.action]}"
    if result.busy:
        text += f", {result.busy} skipped (a worker is sending them)"
    if result.ineligible:
        text += f", {result.ineligible} skipped (not in a state that allows it)"
    return text
