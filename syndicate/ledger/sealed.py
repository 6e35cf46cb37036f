"""Secrets at rest: OAuth tokens and sessions kept in the ledger, encrypted with Fernet.

The key comes from the environment variable ``store.encryption_key_env`` names (never from the
settings file). Several keys, comma-separated, allow rotation (MultiFernet): the first encrypts,
every one decrypts; `syndicate secrets rotate` re-encrypts every stored token under the first.

A sealed value is ``fernet:<token>``. A value without the prefix is a plaintext row written
before encryption existed: it is read as is and sealed the next time its row is written (or by
`syndicate secrets rotate`). A value no key opens is an error naming the variable, and nothing
is written over it.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from syndicate.settings import Settings, SettingsError

PREFIX = "fernet:"


class SealError(SettingsError):
    """The key is missing, malformed, or opens nothing stored; ``str()`` names the variable."""


class Sealer:
    def __init__(self, keys: list[str], env: str):
        self.env = env
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise SealError(f"store.encryption_key_env: {env} is not a Fernet key (32 url-safe base64-encoded "
                            "bytes; make one with `syndicate secrets keygen`; several are comma-separated)") from None

    def seal(self, plain: str | None) -> str | None:
        if plain is None:
            return None
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        if stored is None or not stored.startswith(PREFIX):
            return stored  # None, or a row from before encryption: sealed when next written
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealError(f"store.encryption_key_env: no key in {self.env} decrypts the tokens stored in the "
                            "ledger (a wrong or removed key?); nothing was changed: set the key they were "
                            "encrypted with (first the new one, then the old: 'NEW,OLD')") from None

    def reseal(self, stored: str | None) -> str | None:
        """STORED under the first key (a plaintext value is sealed)."""
        return self.seal(self.open(stored))


def is_sealed(value: str | None) -> bool:
    return value is None or value.startswith(PREFIX)


def sealer(settings: Settings) -> Sealer:
    """The sealer for the key(s) in the environment; SealError naming the variable if unset."""
    env = settings.store.encryption_key_env
    keys = [k.strip() for k in (os.environ.get(env) or "").split(",") if k.strip()]
    if not keys:
        raise SealError(f"store.encryption_key_env: environment variable {env} is not set; it holds the key that "
                        "encrypts OAuth tokens in the ledger (make one with `syndicate secrets keygen`)")
    return Sealer(keys, env)


def new_key() -> str:
    return Fernet.generate_key().decode()
