"""OAuth tokens that rotate, shared through the ledger by every worker process.

X hands out a new refresh token with every refresh and accepts each one once. Kept in one
process's memory, the newest pair is invisible to the other workers, and after a restart the
environment's refresh token is already spent. So the pair lives in the ledger (``oauth_tokens``)
and a refresh happens under the row's lock: the first process to find the access token rejected
refreshes; the others wait for the lock, see the new pair, and use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.ledger.db import transaction
from syndicate.ledger.models import OAuthToken, utcnow
from syndicate.ledger.upsert import insert_ignore


@dataclass
class TokenPair:
    access: str | None
    refresh: str | None
    expires_at: datetime | None = None

    def fresh(self, now: datetime) -> bool:
        return bool(self.access) and (self.expires_at is None or self.expires_at > now + timedelta(seconds=60))


def _pair(row: OAuthToken) -> TokenPair:
    return TokenPair(row.access_token, row.refresh_token, row.expires_at)


def load(factory: sessionmaker[Session], account: str) -> TokenPair | None:
    """The newest pair stored for ACCOUNT, if any process has refreshed it before."""
    with transaction(factory) as s:
        row = s.scalar(select(OAuthToken).where(OAuthToken.account == account))
        return _pair(row) if row else None


def rotate(factory: sessionmaker[Session], account: str, current: TokenPair,
           refresh: Callable[[TokenPair], TokenPair]) -> TokenPair:
    """Refresh ACCOUNT's tokens once across all processes and return the newest pair.

    CURRENT is the pair the caller used (refused, or about to expire). If the stored pair is
    another one and still fresh, another process refreshed first: it is returned without
    calling REFRESH, which would spend a refresh token already spent.
    """
    now = utcnow()
    with transaction(factory) as s:
        insert_ignore(s, OAuthToken, {"account": account, "access_token": current.access,
                                      "refresh_token": current.refresh, "expires_at": current.expires_at,
                                      "updated_at": now}, ["account"])
        # Take the row's lock (PostgreSQL) or the database's write lock (SQLite) before reading,
        # so that exactly one process spends the refresh token.
        s.execute(update(OAuthToken).where(OAuthToken.account == account).values(updated_at=now))
        row = s.scalar(select(OAuthToken).where(OAuthToken.account == account))
        stored = _pair(row)
        if stored.access != current.access and stored.fresh(now):
            return stored
        new = refresh(stored)  # the HTTP call, under the lock; an error rolls everything back
        row.access_token, row.refresh_token, row.expires_at = new.access, new.refresh or stored.refresh, new.expires_at
        return TokenPair(row.access_token, row.refresh_token, row.expires_at)


def save(factory: sessionmaker[Session], account: str, pair: TokenPair) -> None:
    """Keep PAIR as ACCOUNT's newest (a fresh sign-in replaces whatever was stored)."""
    now = utcnow()
    with transaction(factory) as s:
        insert_ignore(s, OAuthToken, {"account": account, "access_token": pair.access,
                                      "refresh_token": pair.refresh, "expires_at": pair.expires_at,
                                      "updated_at": now}, ["account"])
        s.execute(update(OAuthToken).where(OAuthToken.account == account).values(
            access_token=pair.access, refresh_token=pair.refresh, expires_at=pair.expires_at, updated_at=now))
