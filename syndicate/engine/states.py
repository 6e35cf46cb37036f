"""How a delivery changes state: every change is a compare-and-set on the row.

A transition names the states it may leave from and, for worker-owned states, the claim token
(fencing): a worker whose lease was reaped and re-claimed by another cannot write over it.
Each change is recorded in the audit trail in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from syndicate.ledger.models import Delivery, Event, utcnow


def new_token() -> str:
    return secrets.token_hex(16)


def transition(
    session: Session,
    delivery_id: int,
    *,
    from_states: tuple[str, ...],
    to_state: str,
    actor: str,
    token: str | None = None,
    detail: str | None = None,
    now: datetime | None = None,
    returning: tuple = (),
    **values,
):
    """Move one delivery from one of FROM_STATES to TO_STATE; False if it was not there.

    With TOKEN, the row must also still carry that claim token. With RETURNING (columns of
    Delivery), the row of their new values instead of True, None instead of False.
    """
    now = now or utcnow()
    where = [Delivery.id == delivery_id, Delivery.state.in_(from_states)]
    if token is not None:
        where.append(Delivery.claim_token == token)
    # The audit trail wants the state left; with one allowed state the update itself proves it.
    old_state = from_states[0] if len(from_states) == 1 else session.scalar(
        select(Delivery.state).where(Delivery.id == delivery_id))
    stmt = update(Delivery).where(*where).values(state=to_state, updated_at=now, **values)
    if returning:
        row = session.execute(stmt.returning(*returning).execution_options(synchronize_session=False)).first()
        if row is None:
            return None
    elif session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
        return False
    session.add(Event(delivery_id=delivery_id, at=now, actor=actor, action=to_state,
                      from_state=old_state, to_state=to_state, detail=detail))
    return row if returning else True



def record(session: Session, delivery_id: int | None, actor: str, action: str, detail: str | None = None,
           now: datetime | None = None) -> None:
    """An audit entry that is not a state change (an edit, a preview, a test send)."""
    session.add(Event(delivery_id=delivery_id, at=now or utcnow(), actor=actor, action=action, detail=detail))
