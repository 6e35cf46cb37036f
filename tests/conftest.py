"""Shared fixtures: the ledger on SQLite and on a real PostgreSQL, and settings builders.

PostgreSQL: $SYNDICATE_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres, the
server `make services` starts). Each test session gets its own database, dropped at the end.
Redis: $SYNDICATE_TEST_REDIS (default redis://127.0.0.1:6379), a private db number per session.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syndicate import settings as settings_mod

REPO = Path(__file__).resolve().parents[1]
# The key that encrypts OAuth tokens in the ledger (store.encryption_key_env's default variable),
# for this process and the workers it starts; tests of a missing or wrong key change it.
os.environ.setdefault("SYNDICATE_LEDGER_KEY", "k2yu6x5N0kUVfX8JgB6cS3kq3iQYn4ePAGJd4v4qg7s=")
PG_ADMIN_URL = os.environ.get(
    "SYNDICATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")  # exists on every server


@pytest.fixture(autouse=True)
def _cheaper_password_hashing(monkeypatch):
    """OWASP's scrypt cost (auth.OWASP_SCRYPT) takes seconds per hash on a shared test machine;
    in-process tests use a cheaper one unless they set auth.PASSWORD_METHOD back themselves.
    Subprocesses (`syndicate serve`, `syndicate users add`) always use the real cost."""
    from syndicate.web import auth

    monkeypatch.setattr(auth, "PASSWORD_METHOD", "scrypt:16384:8:1")


def shared_dir() -> Path | None:
    """The read-only ../shared folder next to the repo (feeds corpus, specs, seeds)."""
    for candidate in (os.environ.get("SYNDICATE_SHARED"), REPO.parent / "shared", REPO.parent.parent / "shared"):
        if candidate and (Path(candidate) / "feeds").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session; its SQLAlchemy URL."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"syndicate_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # make services should have started it: say so loudly
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc.__class__.__name__}); run `make services`")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from syndicate.ledger.db import close_ledger

    close_ledger(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    from syndicate.ledger.db import open_ledger
    from syndicate.ledger.models import Base

    factory = open_ledger(url)
    # Every table the models know, so no test sees another's rows (heartbeats, events, users, ...).
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name not in _SEEDED)
    with factory() as s, s.begin():
        s.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        s.execute(text("UPDATE pause_switch SET paused = false, reason = NULL, actor = NULL, since = NULL"))


_SEEDED = {"pause_switch"}  # tables a migration fills with rows the code expects (reset above instead)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The ledger URL, once per backend: every test using it runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


@pytest.fixture
def make_settings(tmp_path):
    """Build validated Settings rooted at tmp_path; keyword overrides merge into the defaults."""

    def build(*, store_url: str | None = None, feeds=None, channels=None, **sections) -> settings_mod.Settings:
        data = {
            "site": {"name": "Harbor Wellness Counseling", "url": "https://harborwellness.example",
                     "timezone": "America/New_York", "address": "120 Water Street, Portland, ME 04101",
                     "contact_url": "https://harborwellness.example/contact"},
            "store": {"url": store_url or f"sqlite:///{tmp_path / 'ledger.db'}"},
            "outbox": {"dir": str(tmp_path / "outbox")},
            "feeds": feeds or [],
            "channels": channels if channels is not None else {
                "newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"]},
                "x": {"kind": "x", "provider": "outbox"},
            },
        }
        for key, value in sections.items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        return settings_mod.from_dict(data, base_dir=tmp_path)

    return build


@pytest.fixture
def demo_feed_path() -> Path:
    return REPO / "syndicate" / "demo" / "wellness-feed.xml"
