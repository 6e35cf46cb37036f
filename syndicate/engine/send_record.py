"""The start of a send and its success, each ONE PostgreSQL statement.

A delivery's start (``claimed -> sending``) was a transaction of six round trips (BEGIN, the
pause switch's lock, the compare-and-set, its audit event, the audit trail's earlier starts,
COMMIT) and its success one of four; with the pool's ping per checkout, 13 a delivery with
the read before them (bench/ledger_round_trips.py). Here
each is one statement run in autocommit (``ledger.db.single_statement``): one round trip,
committed durably before it returns, so ``sending`` is on disk before the provider call
exactly as before. The statements are built once and reused (SQLAlchemy's compiled cache and
psycopg's prepared statements then skip the rest).

PostgreSQL only: SQLite cannot run an UPDATE inside a WITH, and it is local (a round trip costs
nothing), so it keeps engine/deliver.py's transactions. A start that moves nothing (paused,
not this claim's any more, or its post changed since the pre-send check) sends the caller to
that same slower path, which tells the cases apart.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from sqlalchemy import String, bindparam, exists, func, insert, literal_column, or_, select, true, update
from sqlalchemy.engine import Row

from syndicate.engine.pause import SWITCH_ID
from syndicate.ledger.db import retry_on_disconnect, single_statement
from syndicate.ledger.models import Delivery, Event, PauseSwitch, Post

NOTE_ACTION = "provider-note"  # Job.remember's audit entries (engine/deliver.py)


def _now():
    return bindparam("p_now", type_=Delivery.updated_at.type)


_FROM = {"sending": "claimed", "sent": "sending"}
_EVENT = ["delivery_id", "at", "actor", "action", "from_state", "to_state", "detail"]


def _event(moved, action: str, name: str, detail=None):
    """MOVED's audit event (the move from the one state it may leave), as a CTE named NAME."""
    columns = select(moved.c.id, bindparam("p_now", type_=Event.at.type), bindparam("p_actor", type_=String),
                     literal_column(f"'{action}'"), literal_column(f"'{_FROM[action]}'"),
                     literal_column(f"'{action}'"), detail if detail is not None else literal_column("NULL"))
    return insert(Event).from_select(_EVENT, columns).cte(name)


def _start_parts(p: str):
    """The start's CTEs (parameters prefixed P): the moved row and its event, and the columns
    the caller reads: the row, and what the audit trail held of earlier attempts."""
    # The switch's shared lock is held until this statement commits: a pause waits for this
    # start, or this start waits for the pause and sees it (engine/pause.py), as in a transaction.
    gate = select(PauseSwitch.paused).where(PauseSwitch.id == SWITCH_ID).with_for_update(read=True).cte("gate")
    # What engine/fresh.py checked is what is sent: the post's content hash it went by (none:
    # nothing was checked) must still be the post's, else nothing moves and the caller checks again.
    seen = bindparam(f"{p}hash", type_=Post.content_hash.type)
    unchanged = or_(seen.is_(None), exists(select(Post.id).where(Post.id == Delivery.post_id,
                                                                 Post.content_hash == seen)))
    moved = (update(Delivery)
             .where(Delivery.id == bindparam(f"{p}id"), Delivery.state == "claimed",
                    Delivery.claim_token == bindparam(f"{p}token"), unchanged,
                    ~exists(select(gate.c.paused).where(gate.c.paused)))
             .values(state="sending", attempts=Delivery.attempts + 1,
                     lease_until=bindparam(f"{p}lease", type_=Delivery.lease_until.type), updated_at=_now())
             .returning(Delivery.id, Delivery.key, Delivery.channel, Delivery.kind, Delivery.payload,
                        Delivery.post_url)
             .cte(f"{p}moved"))
    # The audit trail as it was before this start (a statement's parts share one snapshot: the
    # event inserted with it is not among them). Counted from the trail, not ``attempts`` (a
    # person's retry may reset that): any earlier start means an earlier call may have reached
    # the provider.
    earlier = (Event.delivery_id == moved.c.id, Event.to_state == "sending")
    columns = (moved.c.key, moved.c.channel, moved.c.kind, moved.c.payload, moved.c.post_url,
               select(func.count()).where(*earlier).scalar_subquery().label("starts_before"),
               select(func.min(Event.at)).where(*earlier).scalar_subquery().label("first_before"),
               select(func.count()).where(Event.delivery_id == moved.c.id, Event.action == NOTE_ACTION)
               .scalar_subquery().label("notes"))
    return moved, _event(moved, "sending", f"{p}event"), columns


def _sent_parts(p: str):
    """The `sent` record's CTEs (parameters prefixed P): the moved row and its event."""
    ref = bindparam(f"{p}ref", type_=Delivery.provider_ref.type)
    moved = (update(Delivery)
             .where(Delivery.id == bindparam(f"{p}id"), Delivery.state == "sending",
                    Delivery.claim_token == bindparam(f"{p}token"))
             .values(state="sent", provider_ref=ref,
                     provider_url=bindparam(f"{p}url", type_=Delivery.provider_url.type),
                     sent_at=_now(), updated_at=_now(), lease_until=None, last_error=None, error_class=None)
             .returning(Delivery.id)
             .cte(f"{p}moved"))
    return moved, _event(moved, "sent", f"{p}event", ref)


@cache
def _start_statement():
    """``WITH gate (the pause switch, FOR SHARE), moved (UPDATE ... RETURNING), event (INSERT ...
    SELECT FROM moved) SELECT`` the row and what the audit trail held of earlier attempts."""
    _, event, columns = _start_parts("s_")
    return select(*columns).add_cte(event)


@cache
def _sent_statement():
    """``WITH moved (UPDATE ... RETURNING), event (INSERT ... SELECT FROM moved) SELECT count(*)
    FROM moved``: 1 if recorded."""
    moved, event = _sent_parts("r_")
    return select(func.count()).select_from(moved).add_cte(event)


@cache
def _sent_then_start_statement():
    """Both of the above in one statement: one delivery's `sent` record and the next one's
    start (a chunk of claims, ``deliver_chunk``); a row with the first's count, and the second's
    columns (NULL when it did not start)."""
    recorded_moved, recorded_event = _sent_parts("r_")
    start_moved, start_event, columns = _start_parts("s_")
    done = select(func.count().label("recorded")).select_from(recorded_moved).subquery("done")
    return (select(done.c.recorded, *columns).select_from(done.outerjoin(start_moved, true()))
            .add_cte(recorded_event, start_event))


def _run(factory, statement, params: dict):
    def once():
        with single_statement(factory) as conn:
            return conn.execute(statement, params).first()
    # Retried on a dropped connection: a first try that did commit before the error makes the
    # retry find nothing to move (a start: None, the caller sends nothing and the reaper judges
    # the row; a record: 0, which ``recorded`` tells from a lost claim). Never the provider call.
    return retry_on_disconnect(once)


def _start_params(delivery_id: int, token: str, lease_until: datetime, seen: str | None) -> dict:
    return {"s_id": delivery_id, "s_token": token, "s_lease": lease_until, "s_hash": seen}


def _sent_params(delivery_id: int, token: str, ref: str | None, url: str | None) -> dict:
    return {"r_id": delivery_id, "r_token": token, "r_ref": ref, "r_url": url}


def start(factory, delivery_id: int, token: str, actor: str, now: datetime, lease_until: datetime,
          seen: str | None = None) -> Row | None:
    """Move the claimed delivery to ``sending`` and record it, committed before this returns; the
    row (key, channel, kind, payload, post_url, starts_before, first_before, notes), or None when
    nothing moved (paused, the claim is not this token's, or its post's content hash is no longer
    SEEN)."""
    return _run(factory, _start_statement(),
                {"p_actor": actor, "p_now": now, **_start_params(delivery_id, token, lease_until, seen)})


def sent(factory, delivery_id: int, token: str, actor: str, now: datetime, ref: str | None,
         url: str | None) -> bool:
    """Record the provider's answer on the delivery this token is sending; False if it is not
    (any more, or already: see ``recorded``)."""
    return _run(factory, _sent_statement(),
                {"p_actor": actor, "p_now": now, **_sent_params(delivery_id, token, ref, url)})[0] == 1


def sent_then_start(factory, answered, delivery_id: int, token: str, actor: str, now: datetime,
                    lease_until: datetime, seen: str | None = None) -> tuple[bool, Row | None]:
    """ANSWERED's `sent` record (deliver.Answered) and this delivery's start, one statement:
    (whether the record was made, the started row as ``start`` gives it or None)."""
    row = _run(factory, _sent_then_start_statement(),
               {"p_actor": actor, "p_now": now, **_start_params(delivery_id, token, lease_until, seen),
                **_sent_params(answered.delivery_id, answered.token, answered.result.ref, answered.result.url)})
    return row.recorded == 1, (row if row.key is not None else None)


def notes(factory, delivery_id: int) -> list[str | None]:
    """What earlier attempts noted (``Job.remember``), oldest first."""
    with single_statement(factory) as conn:
        return list(conn.scalars(select(Event.detail).where(Event.delivery_id == delivery_id,
                                                            Event.action == NOTE_ACTION).order_by(Event.id)))


def recorded(factory, delivery_id: int, token: str) -> bool:
    """The delivery is ``sent`` under this token: this worker's own record committed (a retry
    after a dropped connection finds it so), not another's."""
    with single_statement(factory) as conn:
        return conn.execute(select(Delivery.id).where(Delivery.id == delivery_id, Delivery.state == "sent",
                                                      Delivery.claim_token == token)).first() is not None
