"""OAuth tokens that rotate, shared through the ledger by every worker process.

X hands out a new refresh token with every refresh and accepts each one once. Kept in one
process's memory, the newest pair is invisible to the other workers, and after a restart the
environment's refresh token is already spent. So the pair lives in the ledger (``oauth_tokens``)
and a refresh happens under the row's lock: the first process to find the access token rejected
refreshes; the others wait for the lock, see the new pair, and use it.

The tokens are encrypted at rest (ledger/sealed.py: Fernet, the key from the variable
``store.encryption_key_env`` names). A missing or wrong key fails the send as ``auth`` with a
message naming the variable, before any call, and never writes over what is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.errors import AuthExpired
from syndicate.ledger.db import transaction
from syndicate.ledger.models import OAuthToken, utcnow
from syndicate.ledger.sealed import Sealer, SealError, is_sealed, sealer
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Settings


@dataclass
class TokenPair:
    access: str | None
    refresh: str | None
    expires_at: datetime | None = None

    def fresh(self, now: datetime) -> bool:
        return bool(self.access) and (self.expires_at is None or self.expires_at > now + timedelta(seconds=60))


@contextmanager
def _sealed(settings: Settings) -> Iterator[Sealer]:
    """The sealer; a missing or wrong key is an ``auth`` failure of the send (nothing was sent)."""
    try:
        yield sealer(settings)
    except SealError as exc:
        raise AuthExpired(str(exc)) from None


def _pair(row: OAuthToken, seal: Sealer) -> TokenPair:
    return TokenPair(seal.open(row.access_token), seal.open(row.refresh_token), row.expires_at)


def _values(pair: TokenPair, seal: Sealer) -> dict:
    return {"access_token": seal.seal(pair.access), "refresh_token": seal.seal(pair.refresh),
            "expires_at": pair.expires_at}


def load(factory: sessionmaker[Session], account: str, *, settings: Settings) -> TokenPair | None:
    """The newest pair stored for ACCOUNT, if any process has refreshed it before. A row kept
    in plain text (before encryption) is encrypted now."""
    with _sealed(settings) as seal, transaction(factory) as s:
        row = s.scalar(select(OAuthToken).where(OAuthToken.account == account))
        if row is None:
            return None
        pair = _pair(row, seal)
        if not (is_sealed(row.access_token) and is_sealed(row.refresh_token)):
            s.execute(update(OAuthToken).where(OAuthToken.account == account,
                                               OAuthToken.access_token == row.access_token)
                      .values(**_values(pair, seal)))
        return pair


def rotate(factory: sessionmaker[Session], account: str, current: TokenPair,
           refresh: Callable[[TokenPair], TokenPair], *, settings: Settings) -> TokenPair:
    """Refresh ACCOUNT's tokens once across all processes and return the newest pair.

    CURRENT is the pair the caller used (refused, or about to expire). If the stored pair is
    another one and still fresh, another process refreshed first: it is returned without
    calling REFRESH, which would spend a refresh token already spent.
    """
    now = utcnow()
    with _sealed(settings) as seal, transaction(factory) as s:
        insert_ignore(s, OAuthToken, {"account": account, **_values(current, seal), "updated_at": now},
                      ["account"])
        # Take the row's lock (PostgreSQL) or the database's write lock (SQLite) before reading,
        # so that exactly one process spends the refresh token.
        s.execute(update(OAuthToken).where(OAuthToken.account == account).values(updated_at=now))
        row = s.scalar(select(OAuthToken).where(OAuthToken.account == account))
        stored = _pair(row, seal)  # a wrong key stops here, before the call: everything rolls back
        if stored.access != current.access and stored.fresh(now):
            return stored
        new = refresh(stored)  # the HTTP call, under the lock; an error rolls everything back
        new = TokenPair(new.access, new.refresh or stored.refresh, new.expires_at)
        for name, value in _values(new, seal).items():
            setattr(row, name, value)
        return new


def save(factory: sessionmaker[Session], account: str, pair: TokenPair, *, settings: Settings) -> None:
    """Keep PAIR as ACCOUNT's newest (a fresh sign-in replaces whatever was stored). A stored
    pair the key cannot open is not replaced: the error names the key's variable."""
    now = utcnow()
    with _sealed(settings) as seal, transaction(factory) as s:
        insert_ignore(s, OAuthToken, {"account": account, **_values(pair, seal), "updated_at": now}, ["account"])
        row = s.scalar(select(OAuthToken).where(OAuthToken.account == account).with_for_update())
        _pair(row, seal)
        s.execute(update(OAuthToken).where(OAuthToken.account == account).values(**_values(pair, seal),
                                                                                  updated_at=now))


def reseal_all(factory: sessionmaker[Session], settings: Settings) -> int:
    """Re-encrypt every stored token under the first key (`syndicate secrets rotate`); plaintext
    rows are encrypted. One transaction: one row no key opens changes nothing (SealError)."""
    seal = sealer(settings)
    with transaction(factory) as s:
        rows = list(s.scalars(select(OAuthToken).order_by(OAuthToken.id).with_for_update()))
        for row in rows:
            row.access_token, row.refresh_token = seal.reseal(row.access_token), seal.reseal(row.refresh_token)
    return len(rows)
