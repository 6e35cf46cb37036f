"""OAuth tokens and sessions are encrypted at rest: the raw column holds no token, rotation keeps
every token readable, and a missing or wrong key fails clearly and changes nothing."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from syndicate.cli import main
from syndicate.errors import AuthExpired
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.sealed import SealError
from syndicate.providers import tokens

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
ACCESS, REFRESH = "access-Zq81-secret-value", "refresh-Yp72-secret-value"


def _raw(store_url) -> list[tuple]:
    with transaction(open_ledger(store_url)) as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT account, access_token, refresh_token FROM oauth_tokens ORDER BY account"))]


@pytest.fixture
def ledger_with_tokens(store_url, make_settings, monkeypatch):
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", OLD)
    settings = make_settings(store_url=store_url)
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        s.execute(text("DELETE FROM oauth_tokens"))
    tokens.save(factory, "bluesky:one", tokens.TokenPair(ACCESS, REFRESH), settings=settings)
    tokens.rotate(factory, "x:two", tokens.TokenPair("x-old-access", "x-old-refresh"),
                  lambda stored: tokens.TokenPair("x-new-access-Wn3", "x-new-refresh-Vm4"), settings=settings)
    return settings, factory


def test_the_raw_columns_hold_no_token_in_plain_text(ledger_with_tokens, store_url):
    settings, factory = ledger_with_tokens
    raw = _raw(store_url)
    assert len(raw) == 2
    for _account, access, refresh in raw:
        assert access.startswith("fernet:") and refresh.startswith("fernet:")
    dump = repr(raw)
    for secret in (ACCESS, REFRESH, "x-new-access-Wn3", "x-new-refresh-Vm4", "x-old-"):
        assert secret not in dump
    assert tokens.load(factory, "bluesky:one", settings=settings) == tokens.TokenPair(ACCESS, REFRESH)
    assert tokens.load(factory, "x:two", settings=settings).refresh == "x-new-refresh-Vm4"


def test_rotation_keeps_every_token_readable(ledger_with_tokens, store_url, monkeypatch, tmp_path, capsys):
    settings, factory = ledger_with_tokens
    before = _raw(store_url)
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", f"{NEW}, {OLD}")  # the new key first: it encrypts
    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "H"\nurl = "https://h.example"\n[store]\nurl = "{store_url}"\n')
    assert main(["--config", str(config), "secrets", "rotate"]) == 0
    assert "2 stored token rows" in capsys.readouterr().out
    after = _raw(store_url)
    assert all(a[1] != b[1] and a[2] != b[2] for a, b in zip(after, before, strict=True))
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", NEW)  # the old key is gone: every token still opens
    assert tokens.load(factory, "bluesky:one", settings=settings) == tokens.TokenPair(ACCESS, REFRESH)
    assert tokens.load(factory, "x:two", settings=settings).access == "x-new-access-Wn3"
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", OLD)
    with pytest.raises(AuthExpired):
        tokens.load(factory, "x:two", settings=settings)


def test_a_wrong_key_fails_clearly_and_leaves_the_rows_intact(ledger_with_tokens, store_url, monkeypatch,
                                                             tmp_path, capsys):
    settings, factory = ledger_with_tokens
    before = _raw(store_url)
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", NEW)
    with pytest.raises(AuthExpired, match="SYNDICATE_LEDGER_KEY"):
        tokens.load(factory, "bluesky:one", settings=settings)
    with pytest.raises(AuthExpired, match="no key in SYNDICATE_LEDGER_KEY decrypts"):
        tokens.rotate(factory, "x:two", tokens.TokenPair("a", "b"),
                      lambda stored: pytest.fail("refreshed with tokens it could not read"), settings=settings)
    with pytest.raises(AuthExpired):  # a fresh sign-in does not write over tokens it cannot read
        tokens.save(factory, "bluesky:one", tokens.TokenPair("other", "other"), settings=settings)
    with pytest.raises(SealError):
        tokens.reseal_all(factory, settings)
    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "H"\nurl = "https://h.example"\n[store]\nurl = "{store_url}"\n')
    assert main(["--config", str(config), "secrets", "rotate"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "SYNDICATE_LEDGER_KEY" in message and NEW not in message
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", "not-a-key")
    with pytest.raises(AuthExpired, match="is not a Fernet key"):
        tokens.load(factory, "bluesky:one", settings=settings)
    monkeypatch.delenv("SYNDICATE_LEDGER_KEY")
    with pytest.raises(AuthExpired, match="environment variable SYNDICATE_LEDGER_KEY is not set"):
        tokens.save(factory, "bluesky:three", tokens.TokenPair("a", "b"), settings=settings)
    assert _raw(store_url) == before


def test_plaintext_rows_from_before_are_encrypted_on_first_use_or_by_rotate(store_url, make_settings, monkeypatch):
    monkeypatch.setenv("SYNDICATE_LEDGER_KEY", OLD)
    settings = make_settings(store_url=store_url)
    factory = open_ledger(store_url)
    with transaction(factory) as s:
        s.execute(text("DELETE FROM oauth_tokens"))
        for account in ("old:one", "old:two"):
            s.execute(text("INSERT INTO oauth_tokens (account, access_token, refresh_token, updated_at) "
                           "VALUES (:a, :t, :r, CURRENT_TIMESTAMP)"), {"a": account, "t": ACCESS, "r": REFRESH})
    assert tokens.load(factory, "old:one", settings=settings) == tokens.TokenPair(ACCESS, REFRESH)
    raw = dict((a, (t, r)) for a, t, r in _raw(store_url))
    assert raw["old:one"][0].startswith("fernet:") and raw["old:two"][0] == ACCESS
    assert tokens.reseal_all(factory, settings) == 2
    assert ACCESS not in repr(_raw(store_url)) and REFRESH not in repr(_raw(store_url))
    assert tokens.load(factory, "old:two", settings=settings) == tokens.TokenPair(ACCESS, REFRESH)
