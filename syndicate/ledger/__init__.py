"""The ledger: SQLAlchemy tables and the database that holds the schedule."""


class StoreError(Exception):
    """The ledger cannot be opened (a bad URL, a missing driver, a database that does not answer):
    one line that names the database without its password. Here, not in db.py, so that the command
    line can catch it without loading SQLAlchemy and Alembic first."""
