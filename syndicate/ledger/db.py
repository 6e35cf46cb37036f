"""Opening the ledger: one engine per URL, migrations applied with Alembic on open (Alembic is
loaded only when the schema is behind: a current ledger is checked with one query)."""

from __future__ import annotations

import threading
import time
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
    engine = create_engine(url, pool_size=5, max_overflow=5)
    event.listen(engine.pool, "connect", _idle_since)  # a new connection needs no ping either
    event.listen(engine.pool, "checkin", _idle_since)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


# Checking a pooled connection before use (SQLAlchemy's pool_pre_ping) costs a round trip on
# every checkout: a worker checks out two or three times a delivery, and the ping was a fifth of
# its round trips. A connection back in the pool for less than PING_AFTER seconds was working a
# moment ago: only one idle longer (the desk between clicks, a worker after a quiet spell) is
# pinged. A server restart during busy work is caught by the statement instead: SQLAlchemy sees
# the disconnect, discards every pooled connection of that age, and the error reaches the caller
# (the delivery path retries where that is safe, see ``retry_on_disconnect``); the next use
# opens a fresh connection.
PING_AFTER = 10.0


def _idle_since(_dbapi_conn, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
    if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER:
        return
    try:
        cur = dbapi_conn.cursor()
        cur.execute("SELECT 1")
        cur.close()
        if not dbapi_conn.autocommit:
            dbapi_conn.rollback()  # end the ping's transaction: the caller begins its own
    except Exception as error:  # noqa: BLE001 - any failure: the pool opens a fresh connection
        raise exc.DisconnectionError(f"stale pooled connection ({type(error).__name__})") from error


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


@contextmanager
def single_statement(factory: sessionmaker[Session]):
    """A connection for a unit of work that is ONE statement. On PostgreSQL it runs in autocommit:
    the statement is its own transaction, committed (durably: synchronous_commit) when it
    returns, without the BEGIN and COMMIT round trips. Elsewhere an ordinary transaction,
    committed on leaving (not ``durable``: SQLite's writes that an outside effect follows keep
    their own transactions, see engine/deliver.py)."""
    engine = factory.kw["bind"]
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    else:
        with engine.begin() as conn:
            yield conn


def retry_on_disconnect(work, *, attempts: int = 3):
    """WORK() again when the database connection dropped under it (a server restart): SQLAlchemy
    has discarded the pool's stale connections by then, so the next try opens a fresh one. Only
    for work that is safe to repeat: a read, or a compare-and-set whose first try, if it did
    commit, makes the second a no-op the caller can tell."""
    for attempt in range(attempts):
        try:
            return work()
        except exc.DBAPIError as error:
            if not error.connection_invalidated or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))  # a restarting server: give it a moment


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()
