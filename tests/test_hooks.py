"""Bounce and complaint webhooks on a real `syndicate serve`: each service's documented sample
events, signed as the service signs them (an RSA certificate for SNS served by a local HTTP
server, an ECDSA key for SendGrid, Postmark's basic auth, Mailgun's HMAC), suppress the
addresses, and the next edition (real SMTP) does not reach them; forged, unsigned, stale,
replayed and malformed requests change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from test_smtp_support import SECRET, SmtpServer, free_port, smtp_channel, wait_for

from syndicate.audience import subscribers
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import DeliverabilityEvent
from syndicate.settings import load
from tests.conftest import REPO

PEOPLE = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org", "eve@example.org",
          "fay@example.org", "gus@example.org", "hal@example.org"]
POSTMARK = "postmark-user:pm-secret-3f9a"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


# ---------------------------------------------------------------------------- keys made here


def _rsa_cert():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


class CertServer:
    """Serves the SNS signing certificate and answers SubscribeURL, recording each GET."""

    def __init__(self, pem: bytes):
        self.pem, self.hits = pem, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                body = outer.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def sns_sign(key, message: dict, version: str) -> dict:
    """Sign MESSAGE as SNS does (the keys, in order, each name and value on its own line)."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def sns_notification(cert_url: str, body: dict, message_id: str) -> dict:
    return {"Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC, "Message": json.dumps(body),
            "Timestamp": "2026-03-02T12:00:00.000Z", "SigningCertURL": cert_url,
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}


def ses_bounce(address: str) -> dict:  # the documented SES bounce notification, our address in it
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "reportingMTA": "dns; email.example.com",
                       "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2016-01-27T14:59:38.237Z",
                       "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"},
            "mail": {"timestamp": "2016-01-27T14:59:38.237Z", "source": "news@harborwellness.example",
                     "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
                     "destination": [address]}}


def ses_complaint(address: str) -> dict:
    return {"notificationType": "Complaint",
            "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)", "complaintFeedbackType": "abuse",
                          "complainedRecipients": [{"emailAddress": address}],
                          "arrivalDate": "2016-01-27T14:59:38.237Z", "timestamp": "2016-01-27T14:59:38.237Z",
                          "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},
            "mail": {"timestamp": "2016-01-27T14:59:38.237Z", "source": "news@harborwellness.example",
                     "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
                     "destination": [address]}}


def sendgrid_events(bounced: str, complained: str) -> list[dict]:  # the documented sample events
    return [
        {"email": bounced, "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
         "event": "bounce", "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
         "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "reason": "500 unknown recipient",
         "status": "5.0.0", "type": "bounce"},
        {"email": complained, "timestamp": 1513299569, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
         "event": "spamreport", "category": "cat facts", "sg_event_id": "37nvH5QBz858KGVYCM4uOA==",
         "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
        {"email": "someone@example.org", "timestamp": 1513299569, "event": "delivered",
         "sg_event_id": "rWVYmVk90MjZJ9iohOBa3w==", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001"},
    ]


def postmark_bounce(address: str) -> dict:
    return {"RecordType": "Bounce", "MessageStream": "outbound", "ID": 4323372036854775807, "Type": "HardBounce",
            "TypeCode": 1, "Name": "Hard bounce", "Tag": "Test", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {"a_key": "a_value"}, "ServerID": 23,
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "Test bounce details", "Email": address, "From": "news@harborwellness.example",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True,
            "CanActivate": True, "Subject": "Test subject", "Content": "<Full dump of bounce>"}


def postmark_complaint(address: str) -> dict:
    return {"RecordType": "SpamComplaint", "MessageStream": "outbound", "ID": 42, "Type": "SpamComplaint",
            "TypeCode": 512, "Name": "Spam complaint", "Tag": "Test",
            "MessageID": "00000000-0000-0000-0000-000000000000", "ServerID": 1234, "Description": "",
            "Details": "Test spam complaint details", "Email": address, "From": "news@harborwellness.example",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": True, "Inactive": True,
            "CanActivate": False, "Subject": "Test subject", "Content": "<Abuse report dump>"}


def mailgun_failed(address: str, key: str = MAILGUN_KEY, timestamp: int | None = None, token: str | None = None):
    timestamp = str(timestamp or int(time.time()))
    token = token or hashlib.sha256(os.urandom(16)).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1521233195.375624,
                           "log-level": "error", "severity": "permanent", "reason": "bounce", "recipient": address,
                           "recipient-domain": "example.org",
                           "delivery-status": {"attempt-no": 1, "message": "", "code": 550,
                                               "description": "550 5.1.1 mailbox does not exist"},
                           "message": {"headers": {"to": address, "message-id": "20130503182626.18666.16540@mg.example",
                                                   "subject": "Test permanent_fail webhook"},
                                       "attachments": [], "size": 111},
                           "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False}}}


# ---------------------------------------------------------------------------- the server


def _post(url: str, body, headers: dict | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def world(tmp_path, demo_feed_path, monkeypatch):
    """A running `syndicate serve`, an SMTP server, a certificate server, and the keys."""
    rsa_key, pem = _rsa_cert()
    certs = CertServer(pem)
    sg_key = ec.generate_private_key(ec.SECP256R1())
    sg_public = base64.b64encode(sg_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    smtp = SmtpServer().__enter__()
    port = free_port()
    channel = smtp_channel(smtp.port)
    options = ", ".join(f"{k} = {json.dumps(v)}" for k, v in channel["options"].items())
    config = tmp_path / "settings.toml"
    config.write_text(f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
address = "120 Water Street, Portland, ME 04101"
[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"
[web]
public_url = "http://127.0.0.1:{port}"
[deliverability]
sns_topic_arns = ["{TOPIC}"]
sns_cert_hosts = ["{certs.host}"]
sendgrid_public_key_env = "SG_WEBHOOK_KEY"
postmark_secret_env = "PM_WEBHOOK_SECRET"
mailgun_signing_key_env = "MG_SIGNING_KEY"
[[feeds]]
name = "wellness"
url = "{demo_feed_path}"
backfill = 1
[channels.news]
kind = "email"
provider = "smtp"
from_address = "{channel["from_address"]}"
unsubscribe_mailto = "{channel["unsubscribe_mailto"]}"
options = {{ {options} }}
''')
    env = {**os.environ, "SYNDICATE_SECRET": SECRET, "SG_WEBHOOK_KEY": sg_public, "PM_WEBHOOK_SECRET": POSTMARK,
           "MG_SIGNING_KEY": MAILGUN_KEY}
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)
    settings = load(config)
    subscribers.import_rows(ledger(settings), settings, [subscribers.Row(i, a) for i, a in enumerate(PEOPLE)], "t")
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli", "--config", str(config), "serve", "--port",
                             str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(f"{base}/healthz"), 30, "syndicate serve to answer")
        yield {"base": base, "settings": settings, "rsa": rsa_key, "certs": certs, "sg": sg_key, "smtp": smtp,
               "cert_url": f"http://{certs.host}/SimpleNotificationService-test.pem"}
    finally:
        proc.terminate()
        proc.wait(10)
        certs.close()
        smtp.__exit__(None, None, None)


def _events(settings) -> int:
    with transaction(ledger(settings)) as s:
        return s.query(DeliverabilityEvent).count()


def _suppressed(settings) -> set[str]:
    with transaction(ledger(settings)) as s:
        return subscribers.suppressed_among(s, PEOPLE, settings)


def _sendgrid_headers(key, body: bytes, timestamp: str | None = None) -> dict:
    timestamp = timestamp or str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


def test_signed_events_from_every_service_keep_the_next_edition_away(world):
    base, settings, key, cert_url = world["base"], world["settings"], world["rsa"], world["cert_url"]

    # SES via SNS: the subscription is confirmed by fetching SubscribeURL from the (test) SNS host.
    confirm = sns_sign(key, {"Type": "SubscriptionConfirmation", "MessageId": "c-1", "Token": "tok", "TopicArn": TOPIC,
                             "Message": "You have chosen to subscribe", "Timestamp": "2026-03-02T12:00:00.000Z",
                             "SubscribeURL": f"http://{world['certs'].host}/?Action=ConfirmSubscription&Token=tok",
                             "SigningCertURL": cert_url}, "1")
    assert _post(f"{base}/hooks/ses", confirm) == (200, {"confirmed": True})
    assert any("ConfirmSubscription" in hit for hit in world["certs"].hits)
    bounce = sns_sign(key, sns_notification(cert_url, ses_bounce("ana@example.org"), "m-1"), "1")
    assert _post(f"{base}/hooks/ses", bounce)[0] == 200
    complaint = sns_sign(key, sns_notification(cert_url, ses_complaint("Ben@Example.org"), "m-2"), "2")
    assert _post(f"{base}/hooks/ses", complaint) == (200, {"recorded": 1, "events": 1})
    assert _post(f"{base}/hooks/ses", complaint) == (200, {"recorded": 0, "events": 1})  # SNS retries: stored once

    # SendGrid: two of the documented events matter; the batch is signed with the ECDSA key.
    body = json.dumps(sendgrid_events("cleo@example.org", "dev@example.org")).encode()
    assert _post(f"{base}/hooks/sendgrid", body, _sendgrid_headers(world["sg"], body)) == (
        200, {"recorded": 2, "events": 2})

    # Postmark: basic auth in the webhook URL, or the secret as the last path part.
    auth = {"Authorization": "Basic " + base64.b64encode(POSTMARK.encode()).decode()}
    assert _post(f"{base}/hooks/postmark", postmark_bounce("eve@example.org"), auth)[0] == 200
    assert _post(f"{base}/hooks/postmark/{POSTMARK}", postmark_complaint("fay@example.org"))[0] == 200

    # Mailgun: HMAC over timestamp + token.
    assert _post(f"{base}/hooks/mailgun", mailgun_failed("gus@example.org"))[0] == 200

    assert _suppressed(settings) == set(PEOPLE) - {"hal@example.org"}
    run_once(settings, datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    assert world["smtp"].handler.counts() == {"hal@example.org": 1}  # the next edition reaches only hal


def test_forged_unsigned_stale_replayed_and_malformed_requests_change_nothing(world):
    base, settings, key, cert_url = world["base"], world["settings"], world["rsa"], world["cert_url"]
    before = _events(settings)
    other_key, _ = _rsa_cert()

    # SNS: another key; a tampered message; a certificate from a foreign host; an unknown topic;
    # a SubscribeURL that is not SNS's (never fetched).
    assert _post(f"{base}/hooks/ses", sns_sign(other_key, sns_notification(
        cert_url, ses_bounce("ana@example.org"), "f-1"), "1"))[0] == 403
    signed = sns_sign(key, sns_notification(cert_url, ses_bounce("hal@example.org"), "f-2"), "2")
    assert _post(f"{base}/hooks/ses", {**signed, "Message": json.dumps(ses_bounce("ana@example.org"))})[0] == 403
    for url in ("https://sns.us-east-1.amazonaws.com.evil.example/cert.pem", "http://sns.us-east-1.amazonaws.com/c.pem",
                "https://evil.example/SimpleNotificationService.pem"):
        status, answer = _post(f"{base}/hooks/ses", sns_sign(key, sns_notification(
            url, ses_bounce("ana@example.org"), "f-3"), "1"))
        assert status == 403 and "SigningCertURL" in answer["error"]
    foreign = sns_notification(cert_url, ses_bounce("ana@example.org"), "f-4") | {"TopicArn": "arn:aws:sns:x:1:other"}
    assert _post(f"{base}/hooks/ses", sns_sign(key, foreign, "1"))[0] == 403
    hits = len(world["certs"].hits)
    confirm = sns_sign(key, {"Type": "SubscriptionConfirmation", "MessageId": "c-2", "Token": "t", "TopicArn": TOPIC,
                             "Message": "m", "Timestamp": "2026-03-02T12:00:00.000Z",
                             "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription",
                             "SigningCertURL": cert_url}, "1")
    assert _post(f"{base}/hooks/ses", confirm)[0] == 403 and len(world["certs"].hits) == hits
    assert _post(f"{base}/hooks/ses", b"{not json")[0] == 400
    assert _post(f"{base}/hooks/ses", {"hello": 1})[0] == 400

    # SendGrid: no headers, another key, a changed body, an old timestamp.
    body = json.dumps(sendgrid_events("ana@example.org", "ben@example.org")).encode()
    assert _post(f"{base}/hooks/sendgrid", body)[0] == 401
    assert _post(f"{base}/hooks/sendgrid", body, _sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body))[0] \
        == 403
    assert _post(f"{base}/hooks/sendgrid", body.replace(b"ana@", b"hal@"), _sendgrid_headers(world["sg"], body))[0] \
        == 403
    stale = str(int(time.time()) - 3600)
    assert _post(f"{base}/hooks/sendgrid", body, _sendgrid_headers(world["sg"], body, stale))[0] == 403
    malformed = b'{"event": "bounce"}'
    status, answer = _post(f"{base}/hooks/sendgrid", malformed, _sendgrid_headers(world["sg"], malformed))
    assert status == 400 and "array" in answer["error"]

    # Postmark: no auth, a wrong secret, in the header or the path.
    assert _post(f"{base}/hooks/postmark", postmark_bounce("ana@example.org"))[0] == 401
    wrong = {"Authorization": "Basic " + base64.b64encode(b"postmark-user:guess").decode()}
    assert _post(f"{base}/hooks/postmark", postmark_bounce("ana@example.org"), wrong)[0] == 403
    assert _post(f"{base}/hooks/postmark/guess", postmark_bounce("ana@example.org"))[0] == 403

    # Mailgun: another key, a stale timestamp, a replayed token.
    assert _post(f"{base}/hooks/mailgun", mailgun_failed("ana@example.org", key="other"))[0] == 403
    assert _post(f"{base}/hooks/mailgun", mailgun_failed("ana@example.org", timestamp=int(time.time()) - 3600))[0] \
        == 403
    event = mailgun_failed("hal@example.org")
    assert _post(f"{base}/hooks/mailgun", event)[0] == 200
    replay = {**event, "event-data": {**event["event-data"], "recipient": "ana@example.org", "id": "other"}}
    assert _post(f"{base}/hooks/mailgun", replay)[0] == 403

    assert _events(settings) == before + 1 and _suppressed(settings) == {"hal@example.org"}


def test_a_hook_whose_secret_is_not_set_takes_nothing(world, tmp_path):
    from syndicate.web import create_app

    settings = world["settings"]
    client = create_app(settings.model_copy(update={"deliverability": settings.deliverability.model_copy(
        update={"mailgun_signing_key_env": "NOT_SET_ANYWHERE"})})).test_client()
    assert client.post("/hooks/mailgun", json=mailgun_failed("ana@example.org")).status_code == 403
    assert _suppressed(settings) == set()
