"""The subscriber list: import, list, remove; double opt-in; suppressions; signed link tokens.

Rules:
* An address is stored normalized (checked with email-validator, lower-cased), once.
* An import is idempotent: importing the same file twice changes nothing the second time.
* A suppressed address (unsubscribed, removed) is never mailed again, even if a later
  import or a channel's ``to`` list names it: the SMTP provider asks ``is_suppressed`` for
  every recipient, and an import skips it.
* With ``subscribers.double_opt_in`` an imported address is ``pending`` (never mailed) until
  its owner follows the confirm link.

Links in emails carry a token signed with HMAC (itsdangerous) under the key in the
environment variable ``web.secret_env`` names: the unsubscribe token (no expiry, because a
year-old newsletter's link must still work) and the confirm token (expires after 30 days).
A token is opaque: the address inside is encrypted (an HMAC-SHA256 keystream under a key
derived from the secret, then signed: encrypt-then-MAC), so a forwarded email or an access log
does not give the address away. Tokens of the older kind (the address in plain
base64, signed) are still accepted, so links in emails already sent keep working. During a
key rotation the previous key (``web.old_secret_env``, until ``web.old_secret_until``) is
accepted for reading.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.audience import suppression
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Subscriber, Suppression, utcnow
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Settings, old_signing_secrets, signing_secret

CONFIRM_MAX_AGE = 30 * 86400  # seconds a confirm link stays valid
_UNSUBSCRIBE_SALT = "syndicate.unsubscribe"
_CONFIRM_SALT = "syndicate.confirm"


class InvalidAddress(ValueError):
    """Not a usable email address; ``str()`` says why in one line."""


class BadToken(ValueError):
    """A link token that was not signed by us (forged, cut short) or has expired."""


def normalize(address: str) -> str:
    """The address as stored and compared: syntax checked (no DNS lookup), lower-cased."""
    address = (address or "").strip()
    if not address:
        raise InvalidAddress("empty address")
    from email_validator import EmailNotValidError, validate_email  # ~20 ms: only when an address is read

    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    return checked.normalized.lower()


# ------------------------------------------------------------------ tokens


def _keys(settings: Settings) -> list[str]:
    """The signing key first, then any previous one still accepted (rotation)."""
    return [signing_secret(settings.web), *old_signing_secrets(settings.web)]


def _stream(key: str, nonce: bytes, length: int) -> bytes:
    enc = hmac.new(key.encode(), b"syndicate link token encryption", hashlib.sha256).digest()
    blocks = (hmac.new(enc, nonce + i.to_bytes(4, "big"), hashlib.sha256).digest()
              for i in range(length // 32 + 1))
    return b"".join(blocks)[:length]


def _seal(key: str, address: str) -> str:
    # Deterministic (the nonce is derived from the address): one address, one token.
    data = address.encode()
    nonce = hmac.new(key.encode(), b"nonce" + data, hashlib.sha256).digest()[:12]
    sealed = nonce + bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data)), strict=True))
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def _unseal(key: str, value: object) -> object:
    if not isinstance(value, str):
        return None
    try:
        sealed = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        nonce, data = sealed[:12], sealed[12:]
        return bytes(a ^ b for a, b in zip(data, _stream(key, nonce, len(data)), strict=True)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _loads(settings: Settings, salt: str, token: str, max_age: int | None = None) -> object:
    """The payload of TOKEN signed under SALT with any accepted key (sealed payloads opened)."""
    expired = None
    for key in _keys(settings):
        for legacy in (False, True):
            name = salt if legacy else salt + ".sealed"
            try:
                if max_age is None:
                    value = URLSafeSerializer(key, salt=name).loads(token)
                else:
                    value = URLSafeTimedSerializer(key, salt=name).loads(token, max_age=max_age)
            except SignatureExpired as exc:
                expired = exc
                continue
            except BadSignature:
                continue
            return value if legacy else _unseal(key, value)
    if expired is not None:
        raise expired
    raise BadSignature("no key matched")


def unsubscribe_token(settings: Settings, address: str) -> str:
    key = signing_secret(settings.web)
    return URLSafeSerializer(key, salt=_UNSUBSCRIBE_SALT + ".sealed").dumps(_seal(key, address.lower()))


def read_unsubscribe_token(settings: Settings, token: str) -> str:
    try:
        address = _loads(settings, _UNSUBSCRIBE_SALT, token)
    except BadSignature:
        raise BadToken("this unsubscribe link is not valid (it may have been cut short)") from None
    if not isinstance(address, str) or "@" not in address:
        raise BadToken("this unsubscribe link is not valid")
    return address


def confirm_token(settings: Settings, address: str) -> str:
    key = signing_secret(settings.web)
    return URLSafeTimedSerializer(key, salt=_CONFIRM_SALT + ".sealed").dumps(_seal(key, address.lower()))


def read_confirm_token(settings: Settings, token: str, max_age: int = CONFIRM_MAX_AGE) -> str:
    try:
        address = _loads(settings, _CONFIRM_SALT, token, max_age=max_age)
    except SignatureExpired:
        raise BadToken("this confirmation link has expired; ask to be invited again") from None
    except BadSignature:
        raise BadToken("this confirmation link is not valid (it may have been cut short)") from None
    if not isinstance(address, str) or "@" not in address:
        raise BadToken("this confirmation link is not valid")
    return address


def confirm_url(settings: Settings, address: str) -> str:
    return f"{settings.public_url}/confirm/{confirm_token(settings, address)}"


# ------------------------------------------------------------------ reading a CSV


@dataclass
class Row:
    line: int
    email: str
    name: str = ""
    status: str = ""  # "" (the default for new addresses) or one of IMPORT_STATUSES


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0  # already there; the name changed
    unchanged: int = 0
    suppressed: int = 0  # on the suppression list: not added back
    duplicates: int = 0  # the same address twice in the file
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # (line, value, why)
    pending: int = 0  # of the added, how many wait for confirmation (double opt-in)
    marked: int = 0  # the file says unsubscribed, bounced or complained: suppressed now


# The status column: our words, and the words of the services people export from. Mailchimp:
# subscribed, unsubscribed, cleaned (bounced), pending; Buttondown's subscriber types;
# Substack's email_disabled (true: no email) instead of a status.
IMPORT_STATUSES = ("subscribed", "unsubscribed", "bounced", "complained", "pending")
_STATUS_WORDS = {
    **{w: "subscribed" for w in ("subscribed", "active", "regular", "premium", "gifted", "trialed", "paid",
                                 "free", "comp", "true", "yes")},
    **{w: "unsubscribed" for w in ("unsubscribed", "removed", "blocked", "archived")},
    **{w: "bounced" for w in ("bounced", "cleaned", "undeliverable")},
    **{w: "complained" for w in ("complained", "spam", "spammy")},
    **{w: "pending" for w in ("pending", "unactivated", "unconfirmed")},
}
_EMAIL_COLUMNS = ("email", "email address", "email_address", "e-mail")
_NAME_COLUMNS = ("name", "full name", "full_name")
_STATUS_COLUMNS = ("status", "member status", "subscriber_type", "subscriber type", "type")


def read_csv(text: str) -> tuple[list[Row], list[tuple[int, str, str]]]:
    """Rows of ``email[,name]``, or of any columns under a header row that names the address
    (``email``, Mailchimp's ``Email Address``, ...), a name (``name``, or ``First Name`` and
    ``Last Name``) and a status (``status``, Buttondown's ``subscriber_type``/``type``, or
    Substack's ``email_disabled``).

    Returns (rows with a valid address, invalid rows as (line, value, why)).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows, invalid = [], []
    cols = {"email": 0, "name": 1}
    for index, record in enumerate(reader, start=1):
        cells = [c.strip() for c in record]
        if not any(cells):
            continue
        if index == 1 and "@" not in "".join(cells) and (header := _header(cells)):
            cols = header
            continue
        value = _cell(cells, cols.get("email"))
        name = _cell(cells, cols.get("name")) or " ".join(
            filter(None, (_cell(cells, cols.get("first")), _cell(cells, cols.get("last")))))
        try:
            status = _status(_cell(cells, cols.get("status")), _cell(cells, cols.get("disabled")))
            rows.append(Row(index, normalize(value), name, status))
        except InvalidAddress as exc:
            invalid.append((index, value, str(exc)))
    return rows, invalid


def _header(cells: list[str]) -> dict[str, int] | None:
    lowered = [c.lower() for c in cells]
    found = {}
    for key, names in (("email", _EMAIL_COLUMNS), ("name", _NAME_COLUMNS), ("status", _STATUS_COLUMNS),
                       ("first", ("first name", "first_name", "fname")), ("last", ("last name", "last_name", "lname")),
                       ("disabled", ("email_disabled",))):
        for name in names:
            if name in lowered:
                found[key] = lowered.index(name)
                break
    return found if "email" in found else None


def _cell(cells: list[str], col: int | None) -> str:
    return cells[col] if col is not None and col < len(cells) else ""


def _status(word: str, email_disabled: str = "") -> str:
    if email_disabled.strip().lower() in ("true", "1", "yes"):
        return "unsubscribed"
    word = word.strip().lower()
    if not word:
        return ""
    if word not in _STATUS_WORDS:
        raise InvalidAddress(f"unknown status {word!r} (use {', '.join(IMPORT_STATUSES)})")
    return _STATUS_WORDS[word]


# ------------------------------------------------------------------ the list


def import_rows(factory: sessionmaker[Session], settings: Settings, rows: Iterable[Row],
                source: str, now: datetime | None = None) -> ImportReport:
    """Add ROWS to the list (see the module doc); safe to run twice. A row whose status says
    unsubscribed, bounced or complained suppresses its address (it is never mailed); a
    suppressed address stays suppressed whatever the file says."""
    now = now or utcnow()
    report = ImportReport()
    default = "pending" if settings.subscribers.double_opt_in else "active"
    rows = list(rows)
    seen: set[str] = set()
    with transaction(factory) as s:
        suppressed = suppression.suppressed_among(s, [r.email for r in rows], settings)
        for row in rows:
            if row.email in seen:
                report.duplicates += 1
                continue
            seen.add(row.email)
            if row.email in suppressed:
                report.suppressed += 1
                continue
            if row.status in ("unsubscribed", "bounced", "complained"):
                _import_suppressed(s, row, source, now)
                report.marked += 1
                continue
            status = "pending" if row.status == "pending" else default
            values = {"email": row.email, "name": row.name, "status": status, "source": source[:200],
                      "created_at": now, "confirmed_at": now if status == "active" else None}
            if insert_ignore(s, Subscriber, values, ["email"]):
                report.added += 1
                report.pending += status == "pending"
                continue
            existing = s.scalar(select(Subscriber).where(Subscriber.email == row.email))
            if row.name and existing.name != row.name:
                existing.name = row.name
                report.updated += 1
            else:
                report.unchanged += 1
    return report


def _import_suppressed(s: Session, row: Row, source: str, now: datetime) -> None:
    """The file says ROW left (or its mail bounced, or it complained): kept, and suppressed."""
    insert_ignore(s, Subscriber, {"email": row.email, "name": row.name, "status": row.status, "source": source[:200],
                                  "created_at": now, "unsubscribed_at": now}, ["email"])
    suppression.suppress(s, row.email, f"{source}: {row.status}", status=row.status, now=now)


def import_csv(factory: sessionmaker[Session], settings: Settings, path: Path) -> ImportReport:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    rows, invalid = read_csv(text)
    report = import_rows(factory, settings, rows, source=f"import:{path.name}")
    report.invalid = invalid
    return report


def list_subscribers(factory: sessionmaker[Session], status: str | None = None,
                     limit: int | None = None) -> list[Subscriber]:
    """The list by address (with STATUS only), the first LIMIT of it."""
    with transaction(factory) as s:
        query = select(Subscriber).order_by(Subscriber.email)
        if status:
            query = query.where(Subscriber.status == status)
        return list(s.scalars(query.limit(limit) if limit else query))


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    with transaction(factory) as s:
        return status_counts(s)


def status_counts(s: Session) -> dict[str, int]:
    """Subscribers per status, and the suppressed addresses."""
    result = dict(s.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all())
    result["suppressed"] = s.scalar(select(func.count()).select_from(Suppression)) or 0
    return result


def active_recipients(s: Session) -> list[str]:
    """The addresses a subscriber-list send goes to, in a stable order (oldest first)."""
    return list(s.scalars(
        select(Subscriber.email).where(Subscriber.status == "active",
                                       Subscriber.email.not_in(select(Suppression.email)))
        .order_by(Subscriber.id)))


def suppressed_among(s: Session, addresses: Iterable[str], settings: Settings | None = None) -> set[str]:
    """The one suppression check (``audience/suppression.py``)."""
    return suppression.suppressed_among(s, addresses, settings)


def is_suppressed(factory: sessionmaker[Session], address: str, settings: Settings | None = None) -> bool:
    with transaction(factory) as s:
        return suppression.is_suppressed(s, address, settings)


def suppress(factory: sessionmaker[Session], address: str, reason: str, now: datetime | None = None) -> bool:
    """Never mail ADDRESS again; mark its subscription unsubscribed. True if newly suppressed."""
    with transaction(factory) as s:
        return suppression.suppress(s, address, reason, now=now)


def remove(factory: sessionmaker[Session], address: str, now: datetime | None = None) -> bool:
    """An operator takes ADDRESS off the list; it is suppressed so no import brings it back.
    False when the address was neither on the list nor suppressed."""
    address = normalize(address)
    with transaction(factory) as s:
        known = s.scalar(select(Subscriber.id).where(Subscriber.email == address)) is not None
        known = known or bool(suppressed_among(s, [address]))
    suppress(factory, address, "removed by an operator", now)
    return known


def confirm(factory: sessionmaker[Session], address: str, now: datetime | None = None) -> str:
    """The owner of ADDRESS followed its confirm link: pending becomes active.

    Returns the resulting status ("active", "unsubscribed" if suppressed meanwhile, or
    "unknown" if the address is not on the list).
    """
    now = now or utcnow()
    with transaction(factory) as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email == address.lower()))
        if row is None:
            return "unknown"
        if suppressed_among(s, [row.email]):
            return "unsubscribed"
        if row.status == "pending":
            row.status, row.confirmed_at = "active", now
        return row.status


def list_active(factory: sessionmaker[Session], address: str) -> bool:
    """Is ADDRESS an active subscriber?"""
    with transaction(factory) as s:
        return s.scalar(select(Subscriber.status).where(Subscriber.email == address.lower())) == "active"


def pending_to_invite(factory: sessionmaker[Session]) -> list[Subscriber]:
    with transaction(factory) as s:
        return list(s.scalars(select(Subscriber).where(Subscriber.status == "pending",
                                                      Subscriber.invited_at.is_(None))
                              .order_by(Subscriber.id)))


def mark_invited(factory: sessionmaker[Session], address: str, now: datetime | None = None) -> None:
    with transaction(factory) as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email == address))
        if row is not None:
            row.invited_at = now or utcnow()
