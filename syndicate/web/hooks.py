"""Bounce and complaint webhooks: what each mail service reports, checked and stored.

``POST /hooks/ses`` (Amazon SNS), ``/hooks/sendgrid`` (Event Webhook), ``/hooks/postmark`` and
``/hooks/mailgun``. Each request is authenticated the way its service signs it, then every
bounce, complaint and unsubscribe in it goes through ``audience.suppression.record_event``
(stored once per service event id, so the service's retries change nothing):

* SNS: the signature (SignatureVersion 1: SHA1, 2: SHA256, RSA PKCS#1 v1.5) is checked with
  the certificate at ``SigningCertURL``, fetched only from ``https://sns.<region>.amazonaws.com``
  (``deliverability.sns_cert_hosts`` adds hosts, for tests); a ``SubscriptionConfirmation`` is
  confirmed by fetching its ``SubscribeURL`` under the same rule; ``deliverability.sns_topic_arns``
  limits the topics, since anyone can make a topic that SNS signs.
* SendGrid: ECDSA (P-256, SHA-256) over timestamp + body, with the verification key.
* Postmark: HTTP basic auth, or a secret path part, compared in constant time.
* Mailgun: HMAC-SHA256 of timestamp + token under the signing key; a stale timestamp or a
  token seen before is refused.

Unsigned or wrongly signed: 401/403 and nothing changes; a body that cannot be read: 400 with
the reason. No CSRF token (the signature is the authority), no session, JSON answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from flask import Blueprint, Flask, jsonify, request
from sqlalchemy import delete

from syndicate.audience import suppression
from syndicate.ledger.db import transaction
from syndicate.ledger.models import WebhookToken, utcnow
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import SettingsError, secret
from syndicate.web import ledger, settings

log = logging.getLogger(__name__)

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
MAX_BODY = 2 * 1024 * 1024  # SendGrid batches many events in one POST
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_certs: dict[str, object] = {}  # SigningCertURL -> public key (certificates are long-lived)


def init_app(app: Flask) -> None:
    """Register the hooks on APP, outside the desk's CSRF protection (they are signed instead)."""
    from syndicate.web.desk import csrf

    app.register_blueprint(bp)
    csrf.exempt(bp)


class Refused(Exception):
    """A request answered with STATUS and a one-line reason; nothing was changed."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@bp.errorhandler(Refused)
def _refused(exc: Refused):
    log.warning("webhook %s refused (%d): %s", request.path, exc.status, exc.reason)
    return jsonify(error=exc.reason), exc.status


@bp.before_request
def _bigger_bodies():
    request.max_content_length = MAX_BODY


@dataclass
class Report:
    """One event as a service reported it, before it is recorded."""

    kind: str  # bounce | complaint | unsubscribe | other
    email: str
    subtype: str = ""
    diagnostic: str = ""
    event_id: str | None = None
    occurred_at: datetime | None = None
    message_id: str | None = None


def _record(provider: str, reports: list[Report]):
    cfg = settings()
    new = 0
    with transaction(ledger()) as s:
        for r in reports:
            if not r.email:
                continue
            new += suppression.record_event(
                s, cfg, provider=provider, kind=r.kind, email=r.email, subtype=r.subtype,
                diagnostic=r.diagnostic, event_id=r.event_id, occurred_at=r.occurred_at,
                delivery_id=suppression.delivery_of(s, r.email, r.message_id))
    return jsonify(recorded=new, events=len(reports))


def _json_body():
    try:
        return json.loads(request.get_data(cache=True) or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None


def _secret(name: str | None, what: str) -> str:
    try:
        return secret(name, what)
    except SettingsError:
        # Not configured: no event can be trusted, so none is taken.
        raise Refused(403, f"{what} is not configured on this server") from None


def _time(value) -> datetime | None:
    """An ISO 8601 string or Unix seconds, as an aware datetime; None when unreadable."""
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str) and value:
            value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))  # .NET's 7 digits
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _fresh(timestamp: str) -> None:
    max_age = settings().deliverability.webhook_max_age.total_seconds()
    try:
        age = abs(time.time() - float(timestamp))
    except (TypeError, ValueError):
        raise Refused(403, "the signed timestamp is missing or not a number") from None
    if age > max_age:
        raise Refused(403, "the signed timestamp is too old (a replay?)")


# ---------------------------------------------------------------------------- Amazon SES via SNS

_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def _sns_url_allowed(url: str) -> bool:
    parts = urlsplit(url or "")
    if parts.netloc in settings().deliverability.sns_cert_hosts:
        return parts.scheme in ("http", "https")
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or "")) and parts.port in (None, 443)


def _sns_key(url: str):
    if not _sns_url_allowed(url) or not urlsplit(url).path.endswith(".pem"):
        raise Refused(403, "SigningCertURL is not an Amazon SNS certificate URL")
    if url not in _certs:
        try:
            response = requests.get(url, timeout=10, allow_redirects=False)
            response.raise_for_status()
            cert = x509.load_pem_x509_certificate(response.content)
        except (requests.RequestException, ValueError) as exc:
            raise Refused(403, f"cannot read the SNS signing certificate: {exc.__class__.__name__}") from None
        _certs[url] = cert.public_key()
    return _certs[url]


def sns_string_to_sign(message: dict) -> bytes:
    """The canonical text SNS signs: name and value lines of the signed keys, in order."""
    fields = _SNS_FIELDS.get(message.get("Type"))
    if fields is None:
        raise Refused(400, f"unknown SNS message Type {message.get('Type')!r}")
    lines = []
    for name in fields:
        if name in message and message[name] is not None:
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode()


def _sns_verify(message: dict) -> None:
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise Refused(403, f"unsupported SNS SignatureVersion {version!r}")
    try:
        signature = base64.b64decode(message.get("Signature") or "", validate=True)
    except ValueError:
        raise Refused(403, "the SNS signature is not base64") from None
    key = _sns_key(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    try:
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, TypeError, ValueError):
        raise Refused(403, "the SNS signature does not verify") from None


@bp.post("/ses")
def ses():
    message = _json_body()
    if not isinstance(message, dict) or "Type" not in message:
        raise Refused(400, "not an SNS message (no Type)")
    _sns_verify(message)
    topics = settings().deliverability.sns_topic_arns
    if topics and message.get("TopicArn") not in topics:
        raise Refused(403, "notifications from this SNS topic are not accepted (deliverability.sns_topic_arns)")
    if message["Type"] == "SubscriptionConfirmation":
        url = message.get("SubscribeURL") or ""
        if not _sns_url_allowed(url):
            raise Refused(403, "SubscribeURL is not an Amazon SNS URL")
        try:
            requests.get(url, timeout=10, allow_redirects=False).raise_for_status()
        except requests.RequestException as exc:
            raise Refused(502, f"confirming the SNS subscription failed: {exc.__class__.__name__}") from None
        log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))
        return jsonify(confirmed=True)
    if message["Type"] != "Notification":
        return jsonify(recorded=0, events=0)
    try:
        body = json.loads(message.get("Message") or "")
    except ValueError:
        raise Refused(400, "the SNS Message is not an SES notification (not JSON)") from None
    return _record("ses", ses_reports(body, message.get("MessageId") or ""))


def ses_reports(body: dict, sns_id: str) -> list[Report]:
    """The bounces and complaints of one SES notification (``notificationType``, or
    ``eventType`` for event publishing)."""
    if not isinstance(body, dict):
        raise Refused(400, "the SES notification is not an object")
    kind = body.get("notificationType") or body.get("eventType")
    message_id = (body.get("mail") or {}).get("messageId")
    if kind == "Bounce":
        bounce = body.get("bounce") or {}
        subtype = "hard" if bounce.get("bounceType") == "Permanent" else "soft"
        when = _time(bounce.get("timestamp"))
        event = bounce.get("feedbackId") or sns_id
        return [Report("bounce", r.get("emailAddress", ""), subtype,
                       " ".join(filter(None, (bounce.get("bounceType"), bounce.get("bounceSubType"), r.get("status"),
                                              r.get("diagnosticCode")))),
                       f"{event}:{r.get('emailAddress', '').lower()}", when, message_id)
                for r in bounce.get("bouncedRecipients") or []]
    if kind == "Complaint":
        complaint = body.get("complaint") or {}
        when = _time(complaint.get("timestamp"))
        event = complaint.get("feedbackId") or sns_id
        return [Report("complaint", r.get("emailAddress", ""), complaint.get("complaintFeedbackType") or "",
                       complaint.get("complaintSubType") or "", f"{event}:{r.get('emailAddress', '').lower()}",
                       when, message_id)
                for r in complaint.get("complainedRecipients") or []]
    return []  # Delivery, Send, Open...: not ours to act on


# ---------------------------------------------------------------------------- SendGrid

_SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
_SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
_SENDGRID_KINDS = {"spamreport": "complaint", "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe"}


def _sendgrid_verify() -> None:
    encoded = _secret(settings().deliverability.sendgrid_public_key_env,
                      "deliverability.sendgrid_public_key_env (SendGrid's verification key)")
    signature, timestamp = request.headers.get(_SENDGRID_SIGNATURE), request.headers.get(_SENDGRID_TIMESTAMP)
    if not signature or not timestamp:
        raise Refused(401, f"{_SENDGRID_SIGNATURE} and {_SENDGRID_TIMESTAMP} are required")
    try:
        key = serialization.load_der_public_key(base64.b64decode(encoded))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("not an elliptic curve key")
    except ValueError:
        raise Refused(403, "deliverability.sendgrid_public_key_env does not hold an ECDSA public key") from None
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + request.get_data(cache=True),
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Refused(403, "the SendGrid signature does not verify") from None
    _fresh(timestamp)


@bp.post("/sendgrid")
def sendgrid():
    _sendgrid_verify()
    events = _json_body()
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise Refused(400, "a SendGrid Event Webhook body is a JSON array of events")
    return _record("sendgrid", [r for r in map(sendgrid_report, events) if r])


def sendgrid_report(event: dict) -> Report | None:
    name = event.get("event")
    if name == "bounce":
        kind, subtype = "bounce", "soft" if event.get("type") == "blocked" else "hard"
    elif name in _SENDGRID_KINDS:
        kind, subtype = _SENDGRID_KINDS[name], ""
    elif name == "dropped":
        kind, subtype = "dropped", ""  # SendGrid's own suppression said no: stored, not acted on
    else:
        return None
    diagnostic = " ".join(filter(None, (str(event.get("status") or ""), event.get("reason") or "",
                                        event.get("bounce_classification") or "")))
    return Report(kind, event.get("email") or "", subtype, diagnostic, event.get("sg_event_id"),
                  _time(event.get("timestamp")), event.get("sg_message_id"))


# ---------------------------------------------------------------------------- Postmark

# Blocked (an ISP's block) and DMARCPolicy (our own domain's policy) say nothing about the address: soft.
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
_POSTMARK_NOT_BOUNCES = {"AutoResponder", "OpenRelayTest", "ChallengeVerification", "VirusNotification",
                         "AddressChange", "Subscribe", "InboundError"}


@bp.post("/postmark")
@bp.post("/postmark/<token>")
def postmark(token: str | None = None):
    expected = _secret(settings().deliverability.postmark_secret_env,
                       "deliverability.postmark_secret_env (Postmark's webhook secret)")
    auth = request.authorization
    given = token if token is not None else (f"{auth.username}:{auth.password}" if auth and auth.type == "basic"
                                             else None)
    if given is None:
        raise Refused(401, "basic auth or the secret path part is required")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Refused(403, "wrong Postmark webhook secret")
    event = _json_body()
    if not isinstance(event, dict) or "RecordType" not in event:
        raise Refused(400, "not a Postmark webhook (no RecordType)")
    report = postmark_report(event)
    return _record("postmark", [report] if report else [])


def postmark_report(event: dict) -> Report | None:
    record = event.get("RecordType")
    event_id = str(event["ID"]) if event.get("ID") is not None else None
    if record == "SpamComplaint" or (record == "Bounce" and event.get("Type") == "SpamNotification"):
        return Report("complaint", event.get("Email") or "", event.get("Type") or "",
                      event.get("Description") or "", event_id, _time(event.get("BouncedAt")), event.get("MessageID"))
    if record == "Bounce":
        kind = event.get("Type") or ""
        if kind == "Unsubscribe":
            return Report("unsubscribe", event.get("Email") or "", kind, event.get("Description") or "", event_id,
                          _time(event.get("BouncedAt")), event.get("MessageID"))
        if kind in _POSTMARK_NOT_BOUNCES:
            return Report("other", event.get("Email") or "", kind, event.get("Description") or "", event_id,
                          _time(event.get("BouncedAt")), event.get("MessageID"))
        return Report("bounce", event.get("Email") or "", "hard" if kind in _POSTMARK_HARD else "soft",
                      f"{kind}: {event.get('Description') or ''} {event.get('Details') or ''}".strip(), event_id,
                      _time(event.get("BouncedAt")), event.get("MessageID"))
    if record == "SubscriptionChange" and event.get("SuppressSending"):
        when = event.get("ChangedAt")
        return Report("unsubscribe", event.get("Recipient") or "", event.get("SuppressionReason") or "", "",
                      f"subscription:{event.get('MessageID')}:{when}", _time(when), event.get("MessageID"))
    return None


# ---------------------------------------------------------------------------- Mailgun

_MAILGUN_KINDS = {"complained": "complaint", "unsubscribed": "unsubscribe"}


def _mailgun_verify(body: dict) -> None:
    key = _secret(settings().deliverability.mailgun_signing_key_env,
                  "deliverability.mailgun_signing_key_env (Mailgun's webhook signing key)")
    signed = body.get("signature")
    if not isinstance(signed, dict) or not all(isinstance(signed.get(k), str | int)
                                               for k in ("timestamp", "token", "signature")):
        raise Refused(401, "the signature block (timestamp, token, signature) is required")
    timestamp, token = str(signed["timestamp"]), str(signed["token"])
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(signed["signature"])):
        raise Refused(403, "the Mailgun signature does not verify")
    _fresh(timestamp)
    max_age = settings().deliverability.webhook_max_age
    with transaction(ledger()) as s:
        s.execute(delete(WebhookToken).where(WebhookToken.at < utcnow() - 2 * max_age - timedelta(minutes=1)))
        if not insert_ignore(s, WebhookToken, {"provider": "mailgun", "token": token[:200], "at": utcnow()},
                             ["provider", "token"]):
            raise Refused(403, "this Mailgun token was used before (a replay)")


@bp.post("/mailgun")
def mailgun():
    body = _json_body()
    if not isinstance(body, dict):
        raise Refused(400, "a Mailgun webhook body is a JSON object")
    _mailgun_verify(body)
    data = body.get("event-data")
    if not isinstance(data, dict):
        raise Refused(400, "no event-data in the Mailgun webhook")
    report = mailgun_report(data)
    return _record("mailgun", [report] if report else [])


def mailgun_report(data: dict) -> Report | None:
    name = data.get("event")
    message_id = ((data.get("message") or {}).get("headers") or {}).get("message-id")
    when = _time(data.get("timestamp"))
    if name == "failed":
        status = data.get("delivery-status") or {}
        diagnostic = " ".join(filter(None, (str(status.get("code") or ""), status.get("message") or "",
                                            status.get("description") or "", data.get("reason") or "")))
        return Report("bounce", data.get("recipient") or "", "hard" if data.get("severity") == "permanent" else "soft",
                      diagnostic, data.get("id"), when, message_id)
    if name in _MAILGUN_KINDS:
        return Report(_MAILGUN_KINDS[name], data.get("recipient") or "", "", "", data.get("id"), when, message_id)
    return None
