"""Bounces that arrive by mail: the VERP return path, DSNs (RFC 3464) and ARF complaints (RFC 5965).

A message the SMTP provider sends carries its own envelope sender (VERP) when the channel sets
``return_path = "bounces@example.org"``: ``bounces+D-MAC@example.org``, D the delivery's id and
MAC an HMAC (under the ``web.secret_env`` key) of the delivery and the recipient, cut to 16
base32 letters. The address is neither readable nor forgeable: a bounce maps back to the
recipient by recomputing the MAC over the delivery's recipients (``recipient_sends``), so a
forwarded or rewritten address still finds the person we mailed, and a made-up token finds
nobody. Lower case only: some servers lower-case the local part. Mail outside a delivery
(invitations) uses D = 0, matched against the subscriber list.

``read_report`` turns one message from the bounce mailbox into events:

* ``multipart/report; report-type=delivery-status``: each per-recipient block with
  ``Action: failed`` or ``delayed``; its ``Status`` decides (``classify``);
* ``multipart/report; report-type=feedback-report`` (ARF): a complaint;

and ``apply`` records them through ``suppression.record_event`` (once per report and address:
reading the same report twice changes nothing). Anything else (an auto-reply, spam) is not a
report and is left alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from syndicate.audience import suppression
from syndicate.ledger.models import RecipientSend, Subscriber
from syndicate.settings import Settings, secret

_SALT = b"syndicate.verp\0"
_MAC_LETTERS = 16  # 80 bits
_TOKEN = re.compile(r"^(\d{1,12})-([a-z2-7]{16})$")


# ---------------------------------------------------------------------------- the return path


def _mac(settings: Settings, delivery_id: int, recipient: str) -> str:
    key = secret(settings.web.secret_env, "web.secret_env (the key that signs bounce addresses)")
    digest = hmac.new(_SALT + key.encode(), f"{delivery_id}\0{recipient.strip().lower()}".encode(),
                      hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_MAC_LETTERS]


def return_path(settings: Settings, base: str, delivery_id: int | None, recipient: str) -> str:
    """The envelope sender for RECIPIENT of DELIVERY_ID (None: mail outside a delivery): BASE
    (``bounces@example.org``) with the token after a ``+``."""
    local, _, domain = base.rpartition("@")
    d = delivery_id or 0
    return f"{local}+{d}-{_mac(settings, d, recipient)}@{domain}"


def token_of(base: str, address: str) -> str | None:
    """The token in ADDRESS if it is BASE's VERP form (``local+TOKEN@domain``), else None."""
    local, _, domain = base.lower().rpartition("@")
    a_local, _, a_domain = address.strip().lower().rpartition("@")
    if a_domain != domain or not a_local.startswith(local + "+"):
        return None
    return a_local[len(local) + 1:]


def recipient_of(s: Session, settings: Settings, token: str) -> tuple[int | None, str] | None:
    """(delivery id or None, recipient) that TOKEN was made for, or None (not ours, or forged)."""
    match = _TOKEN.match(token)
    if not match:
        return None
    d, mac = int(match.group(1)), match.group(2)
    if d:
        candidates = s.scalars(select(RecipientSend.recipient).where(RecipientSend.delivery_id == d))
    else:
        candidates = s.scalars(select(Subscriber.email))
    for recipient in candidates:
        if hmac.compare_digest(_mac(settings, d, recipient), mac):
            return (d or None), recipient
    return None


# ---------------------------------------------------------------------------- classifying


def classify(status: str | None, code: int | None = None, text: str = "") -> tuple[str, str]:
    """(kind, subtype) of a refusal: ``("bounce", "hard")`` when the address itself is bad,
    ``("bounce", "soft")`` for a passing trouble, ``("block", CLASS)`` when the refusal is
    about the sender or the content (policy, spam, relaying, a broken server), which says
    nothing about the address and suppresses nobody (``record_event`` only stores it).

    STATUS is the enhanced status code (RFC 3463, ``5.1.1``); without one, the SMTP CODE and its
    TEXT decide."""
    if status and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", status):
        klass, subject, detail = (int(x) for x in status.split("."))
        if klass == 4:
            return "bounce", "soft"
        if klass != 5:
            return "none", ""
        if subject in (3, 5, 6, 7):  # system, protocol, content, security/policy: not the address
            return "block", status
        if (subject, detail) in ((2, 2), (2, 3)):  # mailbox full, message too big
            return "bounce", "soft"
        return "bounce", "hard"  # 5.0.0, 5.1.x addressing, 5.2.x mailbox, 5.4.x routing
    if code is None:
        return "none", ""
    if 400 <= code < 500:
        return "bounce", "soft"
    if code in (550, 551, 553) and not re.search(r"relay|auth|polic|spam|block|reputation|listed", text, re.I):
        return "bounce", "hard"
    if code == 552:
        return "bounce", "soft"
    return "block", str(code)


def status_in(text: str) -> str | None:
    match = re.search(r"\b([245]\.\d{1,3}\.\d{1,3})\b", text or "")
    return match.group(1) if match else None


# ---------------------------------------------------------------------------- reading a report


@dataclass
class Finding:
    kind: str  # bounce | complaint | block
    subtype: str
    email: str  # as the report names it
    diagnostic: str = ""
    occurred_at: datetime | None = None


@dataclass
class Report:
    """One message of the bounce mailbox, read."""

    what: str  # "dsn", "arf", or "" (not a report)
    message_id: str
    tokens: list[str] = field(default_factory=list)  # VERP tokens it was addressed to
    findings: list[Finding] = field(default_factory=list)


def read_report(data: bytes, base: str | None) -> Report:
    msg = message_from_bytes(data, policy=policy.compat32)
    message_id = (msg.get("Message-ID") or "").strip() or "sha256:" + hashlib.sha256(data).hexdigest()[:32]
    report = Report("", message_id)
    if base:
        addressed = [a for _, a in getaddresses(msg.get_all("To", []) + msg.get_all("Delivered-To", [])
                                                + msg.get_all("X-Original-To", []) + msg.get_all("Envelope-To", [])
                                                + msg.get_all("Return-Path", []))]
        report.tokens = [t for t in (token_of(base, a) for a in addressed) if t]
    if msg.get_content_type() != "multipart/report":
        return report
    kind = (msg.get_param("report-type") or "").lower()
    parts = msg.get_payload() if msg.is_multipart() else []
    if kind == "delivery-status":
        report.what = "dsn"
        for part in parts:
            if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
                report.findings += _dsn(part, _date(msg.get("Date")))
    elif kind == "feedback-report":
        report.what = "arf"
        report.findings += _arf(msg, parts)
    if base:
        report.tokens += _original_tokens(parts, base)
    return report


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status / feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload
    text = payload if isinstance(payload, str) else ""
    if part.get("Content-Transfer-Encoding", "").lower() in ("base64", "quoted-printable"):
        text = part.get_payload(decode=True).decode("utf-8", "replace")
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\r?\n\s*\r?\n", text)
            if block.strip()]


def _dsn(part: Message, sent: datetime | None) -> list[Finding]:
    blocks = _blocks(part)
    found = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        action = (block.get("Action") or "").strip().lower()
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a problem
        address = _address(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
        status = (block.get("Status") or "").strip().split()[0] if block.get("Status") else None
        diagnostic = " ".join((block.get("Diagnostic-Code") or "").split())
        if action == "delayed":
            kind, subtype = "bounce", "soft"
        else:
            code = re.search(r"\b([245]\d\d)\b", diagnostic)
            kind, subtype = classify(status or status_in(diagnostic), int(code.group(1)) if code else None, diagnostic)
        if kind == "none":
            continue
        when = _date(block.get("Last-Attempt-Date")) or sent
        found.append(Finding(kind, subtype, address, f"{action} {status or ''} {diagnostic}".strip()[:500], when))
    return found


def _arf(msg: Message, parts: list[Message]) -> list[Finding]:
    fields = next((b for p in parts if p.get_content_type() == "message/feedback-report" for b in _blocks(p)[:1]),
                  None)
    if fields is None:
        return []
    feedback = (fields.get("Feedback-Type") or "abuse").strip().lower()
    if feedback == "not-spam":
        return []
    recipients = [_address(v) for v in fields.get_all("Original-Rcpt-To", [])]
    if not recipients:
        original = _original(parts)
        if original is not None:
            recipients = [a for _, a in getaddresses(original.get_all("To", []))]
    when = _date(fields.get("Arrival-Date") or fields.get("Received-Date")) or _date(msg.get("Date"))
    return [Finding("complaint", feedback, a, f"feedback report: {feedback}", when) for a in recipients if a] or \
        [Finding("complaint", feedback, "", f"feedback report: {feedback}", when)]


def _original(parts: list[Message]) -> Message | None:
    for part in parts:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            return inner[0] if isinstance(inner, list) and inner else None
        if part.get_content_type() == "text/rfc822-headers":
            return HeaderParser().parsestr(part.get_payload(decode=True).decode("utf-8", "replace"))
    return None


def _original_tokens(parts: list[Message], base: str) -> list[str]:
    """VERP tokens in the returned original (its Return-Path): complaints come to another
    address, but the message they quote still names its bounce address."""
    original = _original(parts)
    if original is None:
        return []
    addresses = [a for _, a in getaddresses(original.get_all("Return-Path", []))]
    return [t for t in (token_of(base, a) for a in addresses) if t]


def _address(value: str) -> str:
    """``rfc822; ana@example.org`` -> ana@example.org"""
    value = value.split(";", 1)[1] if ";" in value else value
    return value.strip().strip("<>").strip().lower()


def _date(value) -> datetime | None:
    try:
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------- applying


@dataclass
class Applied:
    recorded: int = 0  # new events
    repeated: int = 0  # already recorded (the same report read again)
    unmatched: int = 0  # a report naming nobody we know


def apply(s: Session, settings: Settings, report: Report) -> Applied:
    """Record REPORT's findings in S's transaction; the VERP token, when it names one of our
    recipients, decides who it is about (the report's own address may be a forwarder's)."""
    done = Applied()
    mapped = None
    for token in report.tokens:
        mapped = recipient_of(s, settings, token)
        if mapped:
            break
    findings = report.findings
    if mapped and findings:
        # One recipient per SMTP transaction: the report is about the one the token names.
        findings = [_worst(findings)]
    for f in findings:
        delivery_id, email = mapped if mapped else (None, f.email)
        if not email:
            done.unmatched += 1
            continue
        new = suppression.record_event(
            s, settings, provider="smtp-dsn" if report.what == "dsn" else "smtp-arf", kind=f.kind,
            subtype=f.subtype, email=email, diagnostic=f.diagnostic, delivery_id=delivery_id,
            event_id=f"{report.message_id}:{email}", occurred_at=f.occurred_at)
        if new:
            done.recorded += 1
        else:
            done.repeated += 1
    return done


def _worst(findings: list[Finding]) -> Finding:
    order = {("complaint", None): 0, ("bounce", "hard"): 1, ("bounce", "soft"): 3}
    return min(findings, key=lambda f: order.get((f.kind, None if f.kind == "complaint" else f.subtype), 2))
