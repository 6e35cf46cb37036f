"""DKIM on every SMTP message: the messages the real SMTP server (aiosmtpd) receives verify with
dkimpy against the published key, cover the one-click unsubscribe headers, and break when
those are changed on the way."""

from __future__ import annotations

import subprocess

import dkim
import pytest
from test_smtp_support import PUBLIC_URL, SECRET, SmtpServer, smtp_channel

from syndicate.audience import subscribers
from syndicate.email import dkim as dkim_mod
from syndicate.engine.runner import ledger, run_once
from tests.test_smtp import T0

PEOPLE = ["ana@example.org", "ben@example.org"]


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("dkim") / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    return path.read_text()


@pytest.fixture
def settings_for(make_settings, demo_feed_path, monkeypatch, rsa_key):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    monkeypatch.setenv("TEST_DKIM_KEY", rsa_key.replace("\n", "\\n"))  # one line, as in an env file

    def build(port: int, **options):
        settings = make_settings(feeds=[{"name": "wellness", "url": str(demo_feed_path), "backfill": 1}],
                                 channels={"news": smtp_channel(port, **options)}, web={"public_url": PUBLIC_URL})
        rows = [subscribers.Row(i, a) for i, a in enumerate(PEOPLE, 1)]
        subscribers.import_rows(ledger(settings), settings, rows, source="test")
        return settings

    return build


def _dns(record: str):
    def lookup(name, timeout=5):
        return record.encode() if name == b"mail2026._domainkey.harborwellness.example." else None

    return lookup


def test_every_message_verifies_and_signs_the_unsubscribe_headers(settings_for, rsa_key):
    with SmtpServer() as server:
        settings = settings_for(server.port, dkim_selector="mail2026", dkim_private_key_env="TEST_DKIM_KEY")
        run_once(settings, T0)
    got = server.handler.received
    assert sorted(r.rcpt_tos[0] for r in got) == PEOPLE
    record = dkim_mod.public_record(dkim_mod.read_key(rsa_key))
    for r in got:
        sig = dkim_mod.parse_tags(" ".join(r.message["DKIM-Signature"].split()))
        assert (sig["a"], sig["c"], sig["d"], sig["s"]) == ("rsa-sha256", "relaxed/relaxed",
                                                            "harborwellness.example", "mail2026")
        signed = [h.strip() for h in sig["h"].split(":")]
        for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
                     "list-unsubscribe", "list-unsubscribe-post"):
            assert name in signed, name
        assert signed.count("from") == 2 and signed.count("list-unsubscribe") == 2  # oversigned
        assert dkim.verify(r.data, dnsfunc=_dns(record))
        # Each recipient's own unsubscribe link is what was signed: changing it breaks the signature.
        unsubscribe = r.message["List-Unsubscribe"]
        token = subscribers.unsubscribe_token(settings, r.rcpt_tos[0])
        assert token in unsubscribe
        tampered = r.data.replace(token.encode(), subscribers.unsubscribe_token(settings, "x@example.org").encode(), 1)
        assert tampered != r.data and not dkim.verify(tampered, dnsfunc=_dns(record))
        added = r.data.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe-Post: List-Unsubscribe=Nope\r\n\r\n", 1)
        assert not dkim.verify(added, dnsfunc=_dns(record))  # a second one added on the way
        assert not dkim.verify(r.data.replace(b"Subject: ", b"Subject: RE: ", 1), dnsfunc=_dns(record))
    # Another key at the selector: nothing verifies.
    other = subprocess.run(["openssl", "genrsa", "2048"], check=True, capture_output=True, text=True).stdout
    assert not dkim.verify(got[0].data, dnsfunc=_dns(dkim_mod.public_record(dkim_mod.read_key(other))))


def test_the_dkim_domain_option_sets_d(settings_for, rsa_key):
    with SmtpServer() as server:
        settings = settings_for(server.port, dkim_selector="s1", dkim_domain="Mail.HarborWellness.example",
                                dkim_private_key_env="TEST_DKIM_KEY")
        run_once(settings, T0)
    assert server.handler.received and all(
        dkim_mod.parse_tags(" ".join(r.message["DKIM-Signature"].split()))["d"] == "mail.harborwellness.example"
        for r in server.handler.received)


def test_no_signature_without_a_selector(settings_for):
    with SmtpServer() as server:
        run_once(settings_for(server.port), T0)
    assert server.handler.received and all(r.message["DKIM-Signature"] is None for r in server.handler.received)


def test_a_missing_or_broken_key_mails_nobody(settings_for, monkeypatch):
    from syndicate.cli.report import status_rows

    with SmtpServer() as server:
        settings = settings_for(server.port, dkim_selector="s1", dkim_private_key_env="UNSET_DKIM_KEY")
        run_once(settings, T0)
        monkeypatch.setenv("BROKEN_DKIM_KEY", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----")
        broken = settings_for(server.port, dkim_selector="s1", dkim_private_key_env="BROKEN_DKIM_KEY")
    assert server.handler.received == []
    row = next(r for r in status_rows(settings) if r["channel"] == "news")
    assert row["state"] == "failed" and "UNSET_DKIM_KEY is not set" in row["last_error"]
    with pytest.raises(dkim_mod.DkimKeyError, match="not an RSA private key") as caught:
        dkim_mod.signer(broken.channels["news"].options, "news@harborwellness.example", "news")
    assert "bm90IGEga2V5" not in str(caught.value)


def test_the_published_record_is_the_keys_public_half(rsa_key, tmp_path):
    key = dkim_mod.read_key(rsa_key)
    (tmp_path / "k.pem").write_text(rsa_key)
    der = subprocess.run(["openssl", "rsa", "-in", str(tmp_path / "k.pem"), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64

    assert dkim_mod.public_key(key) == base64.b64encode(der).decode()
    assert dkim_mod.record_matches(key, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
    assert not dkim_mod.record_matches(key, "v=DKIM1; k=rsa; p=")
    assert not dkim_mod.record_matches(key, "v=DKIM1; p=bm90IGEga2V5")


def test_the_openssl_signature_is_the_one_dkimpy_makes(rsa_key):
    import hashlib

    from dkim.crypto import parse_pem_private_key

    key = dkim_mod.read_key(rsa_key)
    private = parse_pem_private_key(key)
    digest = dkim.HashThrough(hashlib.sha256(b"canonical headers"))
    assert dkim_mod._rsa_sign(digest, private) == dkim_mod._pure_rsa_sign(digest, private)
    assert dkim.RSASSA_PKCS1_v1_5_sign is dkim_mod._rsa_sign
