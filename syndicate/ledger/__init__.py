"""The ledger: SQLAlchemy tables and the database that holds the schedule."""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(Exception):
    """The ledger cannot be opened (a bad URL, a missing driver, a database that does not answer):
    one line that names the database without its password. Here, not in db.py, so that the command
    line can catch it without loading SQLAlchemy and Alembic first."""


_REVISION = re.compile(r"^(down_)?revision\s*=\s*['\"]([^'\"]*)['\"]", re.M)


def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files' ``revision`` and
    ``down_revision`` lines without loading Alembic or SQLAlchemy (db.py's check of a current
    ledger and the quiet run's, engine/quiet.py; tests/test_ledger.py checks it against
    Alembic's own answer). None if the files say something this cannot read."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((bool(down), value) for down, value in _REVISION.findall(path.read_text()))
        if False not in found:
            return None
        revisions.add(found[False])
        parents.add(found.get(True))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None
