"""Human actions on deliveries, shared by the CLI and the preview desk.

Each is a compare-and-set: an action on a delivery a worker has already claimed is refused
with a clear message (ActionRefused), never raced. Every action is recorded with its actor.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.states import transition
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Post, utcnow


class ActionRefused(Exception):
    """The delivery is not in a state that allows the action; str() says why, in one line."""


def _act(factory, delivery_id: int, *, allowed: tuple[str, ...], to_state: str, actor: str, what: str,
         **values) -> Delivery:
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        if row.state not in allowed:
            raise ActionRefused(f"delivery {delivery_id}: cannot {what} a delivery that is {row.state}"
                                f" (only {', '.join(allowed)})")
        if not transition(s, delivery_id, from_states=(row.state,), to_state=to_state, actor=actor,
                          detail=what, **values):
            raise ActionRefused(f"delivery {delivery_id}: changed while you acted; look again")
    with transaction(factory) as s:
        return s.get(Delivery, delivery_id)


def approve(factory, delivery_id: int, actor: str, now: datetime | None = None) -> Delivery:
    """Release a held delivery; it goes at its due time, or now if that has passed."""
    return _act(factory, delivery_id, allowed=("held",), to_state="planned", actor=actor, what="approve",
                hold_reason=None)


def hold(factory, delivery_id: int, actor: str, reason: str = "held by a person") -> Delivery:
    return _act(factory, delivery_id, allowed=("planned",), to_state="held", actor=actor, what="hold",
                hold_reason=reason)


def cancel(factory, delivery_id: int, actor: str) -> Delivery:
    return _act(factory, delivery_id, allowed=("planned", "held", "unknown", "failed"), to_state="cancelled",
                actor=actor, what="cancel", claim_token=None)


def send_now(factory, delivery_id: int, actor: str, now: datetime | None = None) -> Delivery:
    """Make a planned or held delivery due at once (approving it if held)."""
    return _act(factory, delivery_id, allowed=("planned", "held"), to_state="planned", actor=actor,
                what="send now", due_at=now or utcnow(), hold_reason=None)


def reschedule(factory, delivery_id: int, due: datetime, actor: str) -> Delivery:
    return _act(factory, delivery_id, allowed=("planned", "held"), to_state="planned", actor=actor,
                what=f"reschedule to {due.isoformat()}", due_at=due)


def resolve(factory, delivery_id: int, outcome: str, actor: str, now: datetime | None = None) -> Delivery:
    """Settle an ``unknown`` (or ``failed``) delivery after a person checked the provider.

    sent: it did go out; retry: it did not, send it again; cancel: leave it unsent.
    """
    allowed = ("unknown", "failed")
    if outcome == "sent":
        return _act(factory, delivery_id, allowed=allowed, to_state="sent", actor=actor,
                    what="resolve as sent", sent_at=now or utcnow())
    if outcome == "retry":
        return _act(factory, delivery_id, allowed=allowed, to_state="planned", actor=actor,
                    what="resolve: retry", due_at=now or utcnow(), claim_token=None, last_error=None)
    if outcome == "cancel":
        return cancel(factory, delivery_id, actor)
    raise ValueError(f"unknown outcome {outcome!r}")


def find_post(s: Session, ref: str) -> Post | None:
    """A post by ledger id, URL, or identity."""
    if ref.isdigit():
        return s.get(Post, int(ref))
    normalized = ref.rstrip("/")
    return s.scalars(
        select(Post).where(or_(Post.url == ref, Post.url == normalized, Post.url == normalized + "/",
                               Post.identity == ref)).order_by(Post.id).limit(1)
    ).first()


def deliveries_for(factory: sessionmaker[Session], post_id: int) -> list[Delivery]:
    with transaction(factory) as s:
        return list(s.scalars(select(Delivery).where(Delivery.post_id == post_id).order_by(Delivery.id)))
