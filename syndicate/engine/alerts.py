"""Alerts: tell staff what needs them, grouped, each thing once (``[alerts]`` settings).

Kinds: ``held`` (waiting for approval, with a link to the desk page), ``failed``, ``unknown``,
``feed`` (failing ``alerts.feed_failures`` polls in a row), ``token`` (a token that cannot be
refreshed expires within ``alerts.token_warning``), ``beat`` (a runner's heartbeat went silent).

Grouped: at most one message per kind per ``alerts.interval``, listing only what was not told
before. What was told is remembered in the ledger (``alerts_sent``: one row per thing, and one
per kind with an empty subject holding when its last message went out), so the embedded `run`
loop and beat's task can both call ``send_alerts``: a compare-and-set on the kind's row lets one
of them send. A message says what and where (channel, title, the desk link, a plain sentence
for an error), never a raw provider answer or a credential.

Sent by email through ``alerts.channel``'s transport (its SMTP server, its ``options.test_smtp``,
or the outbox: ``<outbox>/<channel>/alerts/``) and/or a JSON POST to the URL in the variable
``alerts.webhook_url_env`` names. A message that cannot be sent is forgotten, so it is tried
again at the next interval.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import requests
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import heartbeat
from syndicate.engine.failures import explain
from syndicate.ledger.db import transaction
from syndicate.ledger.models import AlertSent, Delivery, Feed, Heartbeat, OAuthToken, Post, utcnow
from syndicate.ledger.upsert import insert_ignore
from syndicate.settings import Channel, Settings

log = logging.getLogger(__name__)

TITLES = {"held": "waiting for approval", "failed": "failed", "unknown": "sent or not? (outcome unknown)",
          "feed": "feeds failing", "token": "tokens expiring", "beat": "nothing is sending"}
_MAX_LINES = 50  # one message lists this many; the rest are counted
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_USERINFO = re.compile(r"//[^/@\s]+@")  # user:password@ in a URL quoted by an error


@dataclass(frozen=True)
class Item:
    subject: str  # what it is about, remembered once told: "delivery:12:<updated_at>"
    text: str  # one line for people
    link: str | None = None


def send_alerts(factory: sessionmaker[Session], settings: Settings, now: datetime | None = None) -> dict[str, int]:
    """Send each kind's new items, if its interval has passed; {kind: items told}."""
    cfg = settings.alerts
    if not cfg.enabled:
        return {}
    now = now or utcnow()
    told: dict[str, int] = {}
    for kind in cfg.kinds:
        if not _take_turn(factory, kind, now - cfg.interval, now):
            continue
        with transaction(factory) as s:
            items = _COLLECT[kind](s, settings, now)
            seen = set(s.scalars(select(AlertSent.subject).where(AlertSent.kind == kind)))
            new = [i for i in items if i.subject not in seen]
            for item in new:
                insert_ignore(s, AlertSent, {"kind": kind, "subject": item.subject[:300], "at": now},
                              ["kind", "subject"])
        if not new:
            _give_back_turn(factory, kind, now)
            continue
        try:
            _send(settings, kind, new, now)
        except Exception as exc:  # noqa: BLE001 - an alert that cannot go out must not stop the runner
            log.warning("alerts: could not send the %s alert (%s); tried again at the next interval", kind, exc)
            with transaction(factory) as s:
                s.execute(delete(AlertSent).where(AlertSent.kind == kind,
                                                  AlertSent.subject.in_([i.subject[:300] for i in new])))
            _give_back_turn(factory, kind, now)
            continue
        told[kind] = len(new)
    _forget_old(factory, now)
    return told


def _take_turn(factory, kind: str, due_before: datetime, now: datetime) -> bool:
    """Compare-and-set on the kind's row: True for the one caller whose interval has passed."""
    with transaction(factory) as s:
        insert_ignore(s, AlertSent, {"kind": kind, "subject": "", "at": _EPOCH}, ["kind", "subject"])
    with transaction(factory) as s:
        return s.execute(update(AlertSent).where(AlertSent.kind == kind, AlertSent.subject == "",
                                                 AlertSent.at <= due_before).values(at=now)).rowcount == 1


def _give_back_turn(factory, kind: str, now: datetime) -> None:
    """Nothing went out: the next new item may be told at once (the interval counts messages)."""
    with transaction(factory) as s:
        s.execute(update(AlertSent).where(AlertSent.kind == kind, AlertSent.subject == "", AlertSent.at == now)
                  .values(at=_EPOCH))


def _forget_old(factory, now: datetime) -> None:
    with transaction(factory) as s:
        s.execute(delete(AlertSent).where(AlertSent.subject != "", AlertSent.at < now - timedelta(days=90)))


# ---------------------------------------------------------------- what needs a person


def _deliveries(state: str):
    def collect(s: Session, settings: Settings, now: datetime) -> list[Item]:
        rows = s.execute(select(Delivery, Post.title).outerjoin(Post, Delivery.post_id == Post.id)
                         .where(Delivery.state == state).order_by(Delivery.due_at, Delivery.id)).all()
        items = []
        for d, title in rows:
            what = title or d.post_url or d.subject
            if state == "held":
                why = d.hold_reason or "held for approval"
            else:
                why = explain(d.error_class, d.last_error, d.channel, settings, d.state) or d.error_class or state
            link = _desk_link(settings, d)
            items.append(Item(f"delivery:{d.id}:{d.updated_at.isoformat()}",
                              f"delivery {d.id} on {d.channel}: {what}: {_clean(why)}", link))
        return items
    return collect


def _desk_link(settings: Settings, d: Delivery) -> str:
    page = f"/desk/post/{d.post_id}" if d.post_id else f"/desk/delivery/{d.id}"
    return settings.public_url + page


def _feeds(s: Session, settings: Settings, now: datetime) -> list[Item]:
    rows = s.scalars(select(Feed).where(Feed.failing >= settings.alerts.feed_failures).order_by(Feed.name))
    since = lambda f: f.last_ok_at.strftime("%Y-%m-%d %H:%M UTC") if f.last_ok_at else "never"  # noqa: E731
    return [Item(f"feed:{f.name}:{f.last_ok_at.isoformat() if f.last_ok_at else '-'}",
                 f"feed {f.name}: {f.failing} polls in a row failed (last good: {since(f)}): "
                 f"{_clean(f.last_error or 'no error recorded')}") for f in rows]


def _tokens(s: Session, settings: Settings, now: datetime) -> list[Item]:
    """Tokens the ledger knows will expire and cannot refresh itself (no refresh token)."""
    rows = s.scalars(select(OAuthToken).where(OAuthToken.expires_at.is_not(None), OAuthToken.refresh_token.is_(None),
                                              OAuthToken.expires_at <= now + settings.alerts.token_warning))
    return [Item(f"token:{t.id}:{t.expires_at.isoformat()}",
                 f"a {t.account.split(':', 1)[0]} token (ledger row {t.id}) "
                 + (f"expired {t.expires_at:%Y-%m-%d %H:%M} UTC" if t.expires_at <= now
                    else f"expires {t.expires_at:%Y-%m-%d %H:%M} UTC")
                 + ": sign in again and renew it before its channel fails") for t in rows]


def _beats(s: Session, settings: Settings, now: datetime) -> list[Item]:
    items = []
    for row in s.scalars(select(Heartbeat).order_by(Heartbeat.name)):
        pulse = heartbeat.Pulse(row.name, heartbeat.NAMES.get(row.name, row.name), row.host, row.at, row.next_at,
                                row.next_poll_at)
        if not pulse.alive(now):
            items.append(Item(f"beat:{row.name}:{row.at.isoformat()}",
                              f"{pulse.label} on {row.host or 'an unknown host'} last ran {row.at:%Y-%m-%d %H:%M} "
                              "UTC and has not run since: approved posts are not going out"))
    return items


_COLLECT = {"held": _deliveries("held"), "failed": _deliveries("failed"), "unknown": _deliveries("unknown"),
            "feed": _feeds, "token": _tokens, "beat": _beats}


def _clean(text: str) -> str:
    return _USERINFO.sub("//", " ".join(str(text).split()))[:300]


# ---------------------------------------------------------------- how it travels


def _send(settings: Settings, kind: str, items: list[Item], now: datetime) -> None:
    cfg = settings.alerts
    subject = f"[{settings.site.name}] {len(items)} {TITLES[kind]}"
    lines = [f"- {i.text}" + (f"\n  {i.link}" if i.link else "") for i in items[:_MAX_LINES]]
    if len(items) > _MAX_LINES:
        lines.append(f"... and {len(items) - _MAX_LINES} more")
    body = (f"{subject}\n\n" + "\n".join(lines)
            + f"\n\nThe desk: {settings.public_url}/desk/  (one message per kind every {cfg.interval}; "
              "only what is new since the last one)\n")
    if cfg.to and cfg.channel:
        _email(settings, cfg.channel, subject, body, kind, now)
    if cfg.webhook_url_env:
        _webhook(settings, kind, subject, items, now)


def _email(settings: Settings, channel_name: str, subject: str, body: str, kind: str, now: datetime) -> None:
    from syndicate.providers.smtp import SmtpProvider

    channel = settings.channels[channel_name]
    message = EmailMessage()
    sender = channel.from_address or f"alerts@{urlsplit(settings.site.url).hostname}"
    message["From"] = f"{settings.site.name} alerts <{sender}>"
    message["To"] = ", ".join(settings.alerts.to)
    message["Subject"] = subject
    message["Date"] = formatdate(now.timestamp())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    transport = _smtp_of(channel)
    if transport is not None:
        provider = SmtpProvider(settings, channel_name, transport)
        conn = provider.connect()
        try:
            conn.send_message(message, from_addr=sender, to_addrs=list(settings.alerts.to))
        finally:
            conn.quit()
    elif channel.provider == "outbox":
        folder = settings.outbox_dir / channel_name / "alerts"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{now:%Y%m%dT%H%M%S%f}-{kind}.eml").write_bytes(bytes(message))
    else:
        raise RuntimeError(f"alerts.channel {channel_name!r} sends through {channel.provider}, which cannot send "
                           "one message; set options.test_smtp = {host = ..., port = ...} on it")


def _smtp_of(channel: Channel) -> Channel | None:
    if channel.provider == "smtp":
        return channel
    test = channel.options.get("test_smtp")
    if isinstance(test, dict) and test.get("host"):
        return Channel(kind="email", provider="smtp", options=dict(test))
    return None


def _webhook(settings: Settings, kind: str, subject: str, items: list[Item], now: datetime) -> None:
    url = (os.environ.get(settings.alerts.webhook_url_env or "") or "").strip()
    if not url:
        raise RuntimeError(f"alerts.webhook_url_env: environment variable {settings.alerts.webhook_url_env} is not set")
    payload = {"site": settings.site.name, "kind": kind, "title": subject, "at": now.isoformat(),
               "count": len(items), "items": [{"text": i.text, "link": i.link} for i in items[:_MAX_LINES]],
               "text": subject}
    try:
        resp = requests.post(url, json=payload, timeout=10)
    except requests.RequestException as exc:
        raise RuntimeError(f"webhook: {type(exc).__name__}") from None  # the URL (a secret) is not quoted
    if resp.status_code >= 300:
        raise RuntimeError(f"webhook answered HTTP {resp.status_code}")
