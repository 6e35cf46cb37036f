"""The start of a send and its success, each ONE PostgreSQL statement.

A delivery's start (``claimed -> sending``) was a transaction of six round trips (BEGIN, the
pause switch's lock, the compare-and-set, its audit event, the audit trail's earlier starts,
COMMIT) and its success one of four; with the pool's ping per checkout, ~15 a delivery. Here
each is one statement run in autocommit (``ledger.db.single_statement``): one round trip,
committed durably before it returns, so ``sending`` is on disk before the provider call
exactly as before. The statements are built once and reused (SQLAlchemy's compiled cache and
psycopg's prepared statements then skip the rest).

PostgreSQL only: SQLite cannot run an UPDATE inside a WITH, and it is local (a round trip costs
nothing), so it keeps engine/deliver.py's transactions. Either statement finding nothing to
change (paused, or not this claim's any more) sends the caller to that same slower path, which
tells the cases apart.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import String, bindparam, exists, func, insert, literal_column, select, update
from sqlalchemy.engine import Row

from syndicate.engine.pause import SWITCH_ID
from syndicate.ledger.db import retry_on_disconnect, single_statement
from syndicate.ledger.models import Delivery, Event, PauseSwitch

NOTE_ACTION = "provider-note"  # Job.remember's audit entries (engine/deliver.py)


def _now():
    return bindparam("p_now", type_=Delivery.updated_at.type)


def _event_columns(moved, action: str, detail=None):
    """The audit event of MOVED's row: the move from the one state it may leave."""
    return select(moved.c.id, bindparam("p_now", type_=Event.at.type), bindparam("p_actor", type_=String),
                  literal_column(f"'{action}'"), literal_column(f"'{_FROM[action]}'"),
                  literal_column(f"'{action}'"), detail if detail is not None else literal_column("NULL"))


_FROM = {"sending": "claimed", "sent": "sending"}
_EVENT = ["delivery_id", "at", "actor", "action", "from_state", "to_state", "detail"]


@cache
def _start_statement():
    """``WITH gate (the pause switch, FOR SHARE), moved (UPDATE ... RETURNING), event (INSERT ...
    SELECT FROM moved) SELECT`` the row and what the audit trail held of earlier attempts."""
    # The switch's shared lock is held until this statement commits: a pause waits for this
    # start, or this start waits for the pause and sees it (engine/pause.py), as in a transaction.
    gate = select(PauseSwitch.paused).where(PauseSwitch.id == SWITCH_ID).with_for_update(read=True).cte("gate")
    moved = (update(Delivery)
             .where(Delivery.id == bindparam("p_id"), Delivery.state == "claimed",
                    Delivery.claim_token == bindparam("p_token"), ~exists(select(gate.c.paused).where(gate.c.paused)))
             .values(state="sending", attempts=Delivery.attempts + 1,
                     lease_until=bindparam("p_lease", type_=Delivery.lease_until.type), updated_at=_now())
             .returning(Delivery.id, Delivery.key, Delivery.channel, Delivery.kind, Delivery.payload,
                        Delivery.post_url)
             .cte("moved"))
    event = insert(Event).from_select(_EVENT, _event_columns(moved, "sending")).cte("event")
    # The audit trail as it was before this start (a statement's parts share one snapshot: the
    # event inserted above is not among them). Counted from the trail, not ``attempts`` (a
    # person's retry may reset that): any earlier start means an earlier call may have reached
    # the provider.
    earlier = (Event.delivery_id == moved.c.id, Event.to_state == "sending")
    return (select(moved.c.key, moved.c.channel, moved.c.kind, moved.c.payload, moved.c.post_url,
                   select(func.count()).where(*earlier).scalar_subquery().label("starts_before"),
                   select(func.min(Event.at)).where(*earlier).scalar_subquery().label("first_before"),
                   select(func.count()).where(Event.delivery_id == moved.c.id, Event.action == NOTE_ACTION)
                   .scalar_subquery().label("notes"))
            .add_cte(event))


@cache
def _sent_statement():
    """``WITH moved (UPDATE ... RETURNING) INSERT INTO events SELECT ... FROM moved RETURNING``."""
    ref = bindparam("p_ref", type_=Delivery.provider_ref.type)
    moved = (update(Delivery)
             .where(Delivery.id == bindparam("p_id"), Delivery.state == "sending",
                    Delivery.claim_token == bindparam("p_token"))
             .values(state="sent", provider_ref=ref, provider_url=bindparam("p_url", type_=Delivery.provider_url.type),
                     sent_at=_now(), updated_at=_now(), lease_until=None, last_error=None, error_class=None)
             .returning(Delivery.id)
             .cte("moved"))
    return insert(Event).from_select(_EVENT, _event_columns(moved, "sent", ref)).returning(Event.delivery_id)


def start(factory, delivery_id: int, token: str, actor: str, now: datetime, lease_until: datetime) -> Row | None:
    """Move the claimed delivery to ``sending`` and record it, committed before this returns; the
    row (key, channel, kind, payload, post_url, starts_before, first_before, notes), or None when
    nothing moved (paused, or the claim is not this token's)."""
    params = {"p_id": delivery_id, "p_token": token, "p_actor": actor, "p_now": now, "p_lease": lease_until}

    def once():
        with single_statement(factory) as conn:
            return conn.execute(_start_statement(), params).first()
    # A dropped connection: a start that did commit before the error makes the retry find the row
    # no longer claimed (None: the caller then sends nothing, and the reaper judges the row).
    return retry_on_disconnect(once)


def notes(factory, delivery_id: int) -> list[str | None]:
    """What earlier attempts noted (``Job.remember``), oldest first."""
    with single_statement(factory) as conn:
        return list(conn.scalars(select(Event.detail).where(Event.delivery_id == delivery_id,
                                                            Event.action == NOTE_ACTION).order_by(Event.id)))


def sent(factory, delivery_id: int, token: str, actor: str, now: datetime, ref: str | None,
         url: str | None) -> bool:
    """Record the provider's answer on the delivery this token is sending; False if it is not
    (any more, or already: see ``recorded``)."""
    params = {"p_id": delivery_id, "p_token": token, "p_actor": actor, "p_now": now, "p_ref": ref, "p_url": url}

    def once():
        with single_statement(factory) as conn:
            return conn.execute(_sent_statement(), params).first() is not None
    # Retried (the record, never the call): a first try that committed before the connection
    # dropped makes the retry find nothing to change, which ``recorded`` tells from a lost claim.
    return retry_on_disconnect(once)


def recorded(factory, delivery_id: int, token: str) -> bool:
    """The delivery is ``sent`` under this token: this worker's own record committed (a retry
    after a dropped connection finds it so), not another's."""
    with single_statement(factory) as conn:
        return conn.execute(select(Delivery.id).where(Delivery.id == delivery_id, Delivery.state == "sent",
                                                      Delivery.claim_token == token)).first() is not None
