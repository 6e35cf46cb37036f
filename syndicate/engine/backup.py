"""Backup and restore of the ledger (`syndicate backup FILE`, `syndicate restore FILE`).

SQLite: Python's online backup API (a consistent copy while the runner writes). PostgreSQL:
``pg_dump --format=custom`` and ``pg_restore --clean --single-transaction`` where the client
tools are installed (a clear message where not). The password of the URL travels in
``PGPASSWORD``, never on a command line.

What a restore may resend: nothing on its own. A delivery the backup caught ``sending`` may
have reached the provider: it becomes ``unknown`` for a person to settle; one caught
``claimed`` had made no call and is planned again. A delivery sent *after* the backup was
taken is planned (or claimed) in the backup: so the restored ledger starts paused (since the
backup's last event), for a person to compare `syndicate status` with the providers before
`syndicate resume`, which holds what went stale meanwhile.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url

from syndicate.engine.states import record, transition
from syndicate.ledger.db import close_ledger, open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, PauseSwitch, utcnow

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
ACTOR = "restore"


class BackupError(Exception):
    """One line: what could not be done, and what to do."""


def backup(url: str, file: Path) -> Path:
    if url.startswith("sqlite:///"):
        _sqlite_copy(_sqlite_path(url), file)
    elif url.startswith("postgresql"):
        _pg("pg_dump", ["--format=custom", "--no-owner", f"--file={file}"], url)
    else:
        raise BackupError(f"backup: cannot back up a {make_url(url).drivername} ledger (sqlite or postgresql)")
    return file


def restore(url: str, file: Path) -> int:
    """Replace the ledger at URL with FILE; the number of deliveries that were sending (now unknown)."""
    try:
        head = file.read_bytes()[:16] if file.is_file() else b""
    except OSError as exc:
        raise BackupError(f"{file}: cannot read: {exc.strerror}") from None
    close_ledger(url)
    if url.startswith("sqlite:///"):
        if not head.startswith(SQLITE_MAGIC):
            raise BackupError(f"{file}: not an SQLite backup (made by `syndicate backup` of an SQLite ledger)")
        _sqlite_copy(file, Path(_sqlite_path(url)))
    elif url.startswith("postgresql"):
        if not head.startswith(PGDUMP_MAGIC):
            raise BackupError(f"{file}: not a pg_dump backup (made by `syndicate backup` of a PostgreSQL ledger)")
        _pg("pg_restore", ["--clean", "--if-exists", "--no-owner", "--single-transaction", str(file)], url)
    else:
        raise BackupError(f"restore: cannot restore a {make_url(url).drivername} ledger (sqlite or postgresql)")
    close_ledger(url)
    return settle_restored(url, file)


def settle_restored(url: str, file: Path) -> int:
    """Nothing in a restored ledger is sent twice on its own: sending -> unknown, claimed ->
    planned, and sending paused since the backup's last event, for a person to check."""
    factory = open_ledger(url)  # migrates a backup of an older version
    now = utcnow()
    with transaction(factory) as s:
        taken = s.scalar(select(func.max(Event.at))) or now
        rows = s.execute(select(Delivery.id, Delivery.state).where(Delivery.state.in_(("claimed", "sending")))).all()
        unknown = 0
        for delivery_id, state in rows:
            if state == "sending":
                unknown += transition(s, delivery_id, from_states=("sending",), to_state="unknown", actor=ACTOR,
                                      now=now, lease_until=None, error_class="unknown",
                                      last_error="restored from a backup taken while it was sending: the provider "
                                                 "may or may not have it",
                                      detail=f"restored from {file.name}")
            else:
                transition(s, delivery_id, from_states=("claimed",), to_state="planned", actor=ACTOR, now=now,
                           claim_token=None, lease_until=None, detail=f"restored from {file.name}")
        reason = (f"restored from {file.name}: what went out after the backup was taken is planned again here; "
                  "check with the providers, then resume")
        s.execute(update(PauseSwitch).where(PauseSwitch.id == 1)
                  .values(paused=True, reason=reason[:1000], actor=ACTOR, since=taken))
        record(s, None, ACTOR, "pause", reason, now=now)
    return unknown


def _sqlite_path(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    if not path or ":memory:" in path:
        raise BackupError("backup: an in-memory SQLite ledger cannot be backed up")
    return path


def _sqlite_copy(source: Path | str, target: Path) -> None:
    if not Path(source).is_file():
        raise BackupError(f"{source}: no such SQLite file")
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        src = sqlite3.connect(str(source), timeout=30)
        try:
            dst = sqlite3.connect(str(target), timeout=30)
            try:
                src.backup(dst)  # page by page, consistent even while another process writes
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{target}: SQLite backup failed: {exc}") from None
    except OSError as exc:
        raise BackupError(f"{target}: {exc.strerror or exc}") from None


def _pg(tool: str, options: list[str], url: str) -> None:
    binary = shutil.which(tool)
    if binary is None:
        raise BackupError(f"{tool} is not installed: install the PostgreSQL client tools of the server's version "
                          "(Debian/Ubuntu: apt install postgresql-client), or back up with your own tooling")
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    libpq = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    result = subprocess.run([binary, *options, f"--dbname={libpq}"], env=env, capture_output=True, text=True,
                            timeout=3600)
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if line.strip()), "no message")
        raise BackupError(f"{tool} failed (exit {result.returncode}): {first}")
