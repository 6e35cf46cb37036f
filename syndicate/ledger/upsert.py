"""Idempotent inserts: INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike.

Both report what they inserted through RETURNING (not rowcount, which is unreliable for ORM
inserts and for multi-row statements). A row another transaction is inserting at the same
moment is not inserted twice: PostgreSQL makes the second INSERT wait for the first to commit
and then skip the conflicting row; SQLite lets one writer in at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

# Rows per INSERT statement in insert_ignore_many: a few columns each stays well under the
# bound-parameter limits (SQLite 32766, PostgreSQL 65535).
ROWS_PER_STATEMENT = 500


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]


def insert_ignore(session: Session, model, values: dict, conflict_columns: list[str]) -> bool:
    """Insert one row unless one with the same CONFLICT_COLUMNS exists; True if inserted."""
    stmt = (_insert(session)(model).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
            .returning(model.id))  # RETURNING, not rowcount: rowcount is unreliable for ORM inserts
    return session.execute(stmt).first() is not None


def insert_ignore_many(session: Session, model, rows: Sequence[dict], conflict_columns: list[str],
                       returning) -> list[Any]:
    """Insert each of ROWS unless one with the same CONFLICT_COLUMNS exists, in as few statements
    as the parameter limits allow (within the caller's transaction). Returns RETURNING's value
    (a column of MODEL, or a row of a tuple of columns) for each row inserted, in no particular
    order."""
    inserted: list[Any] = []
    insert = _insert(session)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = list(rows[start:start + ROWS_PER_STATEMENT])
        stmt = (insert(model).values(chunk).on_conflict_do_nothing(index_elements=conflict_columns)
                .returning(*returning if isinstance(returning, tuple) else (returning,)))
        result = session.execute(stmt)
        inserted += result.all() if isinstance(returning, tuple) else result.scalars().all()
    return inserted


def dialect_insert(session: Session):
    """The dialect's INSERT construct (with ON CONFLICT support) for SESSION's database."""
    return _insert(session)
