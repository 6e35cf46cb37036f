"""The bounce mailbox: DSNs and complaints read over IMAP and applied (``syndicate bounces fetch``).

An SMTP channel with ``return_path`` sends each message with its own bounce address
(``audience/bounces.py``); the mailbox behind that address is read here. SMTP channel options::

    return_path = "bounces@harborwellness.example"
    bounce_imap_host = "imap.harborwellness.example"
    bounce_imap_user = "bounces@harborwellness.example"
    bounce_imap_password_env = "BOUNCE_IMAP_PASSWORD"
    # bounce_imap_port (993 / 143 by security), bounce_imap_security ("tls", "starttls",
    # "none": a local server only), bounce_imap_folder ("INBOX"), bounce_imap_done (a folder
    # handled reports are moved to; unset: they are deleted), bounce_imap_ca_file, timeout

Each message is read without marking it seen, its events are committed (``record_event``,
once per report and address), and only then is it moved or deleted: a crash in between
leaves it to be read again, which records nothing twice. A message that is not a report (an
auto-reply, spam) stays where it is, flagged ``$SyndicateSkipped`` so it is not read again.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from dataclasses import dataclass, field

from syndicate.providers.base import AuthExpired, Permanent, ProviderError, Retryable
from syndicate.settings import Settings, SettingsError, secret

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
SKIPPED = "$SyndicateSkipped"
BATCH = 500  # messages one fetch reads; the rest wait for the next one


@dataclass
class Fetched:
    channel: str
    read: int = 0
    reports: int = 0
    recorded: int = 0
    repeated: int = 0
    unmatched: int = 0
    skipped: int = 0  # not reports: left in the mailbox
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.channel}: {self.read} read, {self.reports} reports, {self.recorded} new events, "
                f"{self.repeated} already recorded, {self.unmatched} naming nobody we know, "
                f"{self.skipped} not reports (left)")


def mailboxes(settings: Settings) -> list[str]:
    """The channels with a bounce mailbox."""
    return [name for name, ch in settings.enabled_channels().items()
            if ch.kind == "email" and ch.options.get("bounce_imap_host")]


def fetch_all(settings: Settings) -> list[Fetched]:
    """Every bounce mailbox, read (beat's ``syndicate.fetch_bounces``, the embedded runner's
    polling pass); one that cannot be read is logged and tried again next time, the others go on."""
    fetched = []
    for name in mailboxes(settings):
        try:
            fetched.append(fetch(settings, name))
        except ProviderError as exc:
            log.warning("bounce mailbox of %s: %s", name, exc)
    return fetched


def fetch(settings: Settings, channel_name: str) -> Fetched:
    # The ledger and the report reader load here, not with the module: a worker's main
    # process asks `mailboxes` whether to schedule reading and must not load SQLAlchemy for it.
    from syndicate.audience import bounces
    from syndicate.ledger.db import open_ledger, transaction

    options = settings.channels[channel_name].options
    base = options.get("return_path")
    factory = open_ledger(settings.store_url)
    result = Fetched(channel_name)
    conn = _connect(channel_name, options)
    try:
        folder = options.get("bounce_imap_folder") or "INBOX"
        done = options.get("bounce_imap_done")
        _ok(conn.select(_quote(folder)), f"select {folder}")
        if done:
            conn.create(_quote(done))  # NO when it exists: fine
        typ, data = conn.uid("SEARCH", "UNDELETED", "UNKEYWORD", SKIPPED)
        _ok((typ, data), "search")
        uids = (data[0] or b"").split()[:BATCH]
        deleted = False
        for uid in uids:
            raw = _body(conn, uid)
            if raw is None:
                continue
            result.read += 1
            report = bounces.read_report(raw, base)
            if not report.what:
                result.skipped += 1
                conn.uid("STORE", uid, "+FLAGS", f"({SKIPPED})")
                continue
            result.reports += 1
            with transaction(factory) as s:
                applied = bounces.apply(s, settings, report)
            result.recorded += applied.recorded
            result.repeated += applied.repeated
            result.unmatched += applied.unmatched
            deleted |= _handled(conn, uid, done)
        if deleted:
            conn.expunge()
    except (imaplib.IMAP4.error, OSError) as exc:
        raise Retryable(f"bounce mailbox of {channel_name}: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    log.info("%s", result.summary())
    return result


def _connect(channel_name: str, options: dict) -> imaplib.IMAP4:
    security = str(options.get("bounce_imap_security", "tls")).lower()
    if security not in DEFAULT_PORTS:
        raise Permanent(f"channel {channel_name!r}: bounce_imap_security must be tls, starttls or none")
    host = options["bounce_imap_host"]
    port = int(options.get("bounce_imap_port") or DEFAULT_PORTS[security])
    timeout = float(options.get("timeout", 30))
    where = f"bounce mailbox {host}:{port}"
    try:
        user = options.get("bounce_imap_user") or options.get("return_path")
        password = secret(options.get("bounce_imap_password_env"),
                          f"channel {channel_name!r} (bounce_imap_password_env)")
    except SettingsError as exc:
        raise AuthExpired(str(exc)) from None
    if not user:
        raise Permanent(f"channel {channel_name!r}: set bounce_imap_user")
    context = ssl.create_default_context(cafile=options.get("bounce_imap_ca_file"))
    try:
        if security == "tls":
            conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout)
        else:
            conn = imaplib.IMAP4(host, port, timeout=timeout)
            if security == "starttls":
                conn.starttls(ssl_context=context)
    except ssl.SSLCertVerificationError as exc:
        raise Permanent(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
    except (OSError, imaplib.IMAP4.error) as exc:
        raise Retryable(f"{where}: cannot connect: {type(exc).__name__}: {exc}") from None
    try:
        conn.login(user, password)
    except imaplib.IMAP4.error:
        try:
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        raise AuthExpired(f"{where}: login refused for {user}") from None
    return conn


def _body(conn: imaplib.IMAP4, uid: bytes) -> bytes | None:
    typ, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")  # PEEK: a person reading the box sees it unread
    if typ != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return None


def _handled(conn: imaplib.IMAP4, uid: bytes, done: str | None) -> bool:
    """Move UID to DONE, or delete it; True when an EXPUNGE is needed."""
    if done:
        if b"MOVE" in _capabilities(conn):
            typ, _ = conn.uid("MOVE", uid, _quote(done))
            if typ == "OK":
                return False
        typ, _ = conn.uid("COPY", uid, _quote(done))
        _ok((typ, _), f"copy to {done}")
    conn.uid("STORE", uid, "+FLAGS", r"(\Deleted)")
    return True


def _capabilities(conn: imaplib.IMAP4) -> set[bytes]:
    return {c.encode() if isinstance(c, str) else c for c in conn.capabilities}


def _ok(answer, what: str) -> None:
    typ, data = answer
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{what}: {typ} {data!r}")


def _quote(folder: str) -> str:
    return folder if re.fullmatch(r"[A-Za-z0-9._/-]+", folder) else '"' + folder.replace('"', r"\"") + '"'
