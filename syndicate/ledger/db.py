"""Opening the ledger: one engine per URL, migrations applied with Alembic on open (Alembic is
loaded only when the schema is behind: a current ledger is checked with one query)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, exc, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from syndicate.ledger import MIGRATIONS, StoreError, head_revision

__all__ = ["MIGRATIONS", "head_revision", "open_ledger", "transaction"]  # the first two: defined in ledger/__init__.py


def _sqlite_pragmas(dbapi_conn, _record):
    # WAL lets a reader (status, preview desk) look while the runner writes; the busy timeout
    # makes a second writer wait for the lock instead of failing at once.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(_ORDINARY)
    cur.close()


# Durability on SQLite. In WAL mode, synchronous=NORMAL writes each commit to the WAL file before
# the commit returns but fsyncs only at checkpoints: a commit survives the process crashing (kill
# -9, an exception, a worker lost), and only an OS crash or a power loss can take back the last
# commits. Each poll, plan and claim is then a write() instead of an fsync (3,705 of them on a
# 200-feed first poll). Losing such commits costs nothing but redoing them: a poll or a plan is
# idempotent (unique keys), and a claim taken back is a claim never made.
#
# What may not be lost is a commit an outside effect follows ("sending is committed before the
# call", a recipient ``issued`` before its content leaves, a provider note): after a power loss
# the row would be back in ``claimed``/``sending`` and the send could be repeated. Those
# transactions call ``durable`` first: on SQLite their commit fsyncs the WAL (synchronous=FULL),
# and since the WAL is written in order, everything committed before them is on disk too. With
# that, exactly-once holds through an OS crash as it does through a process crash. PostgreSQL
# commits durably (synchronous_commit) whatever this says.
_ORDINARY = "PRAGMA synchronous=NORMAL"
_DURABLE = "PRAGMA synchronous=FULL"


def durable(session: Session) -> None:
    """The caller's transaction is followed by an outside effect: its commit must survive an OS
    crash or a power loss, not only the process's (see above). Call it first in the transaction
    (SQLite refuses to change the level once a write began). A no-op off SQLite."""
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql(_DURABLE)


def _sqlite_ordinary_again(dbapi_conn, _record):
    cur = dbapi_conn.cursor()  # a connection back in the pool: its next user did not ask for FULL
    cur.execute(_ORDINARY)
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkin", _sqlite_ordinary_again)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _current(engine: Engine) -> bool:
    """True when the ledger is at the newest revision: one query, no Alembic."""
    head = head_revision()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
    except exc.DBAPIError:  # no alembic_version table yet (a new ledger): migrate
        return False


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (safe to call on every open, from any process)."""
    if _current(engine):
        return
    from alembic import command

    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # A batch migration rebuilds a table (copy, drop, rename); with foreign keys on, the
            # drop would cascade into every row that points at it (digest items, deliveries).
            # SQLite ignores this pragma inside a transaction: it is set before one begins.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            if conn.dialect.name == "postgresql":
                # Two workers starting at once must not both create the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7420117)")
            cfg = alembic_config(engine.url.render_as_string(hide_password=False))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _store_error(url: str, error: Exception) -> StoreError:
    try:
        where = make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return StoreError("not a database URL (e.g. sqlite:///syndicate.db or "
                          "postgresql+psycopg://user@host/dbname)")
    if isinstance(error, exc.NoSuchModuleError):
        reason = f"unknown kind of database {make_url(url).drivername!r} (use sqlite or postgresql+psycopg)"
    elif isinstance(error, ModuleNotFoundError):
        reason = f"its driver ({error.name}) is not installed (use sqlite or postgresql+psycopg)"
    elif isinstance(error, exc.DBAPIError):
        reason = " ".join(str(error.orig).split("\n")[0].split()) or type(error.orig).__name__
    elif isinstance(error, OSError):
        reason = f"{error.strerror or error} ({error.filename})" if error.filename else str(error)
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return StoreError(f"{where}: cannot open the database: {reason}")


_factories: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def open_ledger(url: str) -> sessionmaker[Session]:
    """A session factory for the ledger at URL, migrated to the newest schema (once per process).
    Raises StoreError when it cannot be opened."""
    with _lock:
        if url not in _factories:
            try:
                if url.startswith("sqlite:///") and ":memory:" not in url:
                    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
                engine = make_engine(url)
                migrate(engine)
            except (exc.ArgumentError, exc.NoSuchModuleError, exc.DBAPIError, ModuleNotFoundError, OSError) as error:
                raise _store_error(url, error) from error
            _factories[url] = sessionmaker(engine, expire_on_commit=False)
        return _factories[url]


def close_ledger(url: str | None = None) -> None:
    """Dispose the engine for URL (all when None): before dropping a database, or after a fork."""
    with _lock:
        for key in [url] if url else list(_factories):
            factory = _factories.pop(key, None)
            if factory is not None:
                factory.kw["bind"].dispose()


@contextmanager
def transaction(factory: sessionmaker[Session]):
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()
