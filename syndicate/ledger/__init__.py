"""The ledger: SQLAlchemy tables and the database that holds the schedule."""
