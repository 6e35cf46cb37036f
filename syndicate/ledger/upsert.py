"""Idempotent inserts: INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignore(session: Session, model, values: dict, conflict_columns: list[str]) -> bool:
    """Insert one row unless one with the same CONFLICT_COLUMNS exists; True if inserted."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    stmt = (insert(model).values(**values).on_conflict_do_nothing(index_elements=conflict_columns)
            .returning(model.id))  # RETURNING, not rowcount: rowcount is unreliable for ORM inserts
    return session.execute(stmt).first() is not None
