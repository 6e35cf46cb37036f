"""Rendering without sending: what each channel would receive for one post."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from syndicate.email.message import email_messages, personalize, preview_token
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Post
from syndicate.model import PostData
from syndicate.render import NotApplicable
from syndicate.render.payloads import build_payload
from syndicate.settings import Settings


def preview_payloads(settings: Settings, post: Post, channels: list[str]) -> dict[str, dict]:
    """The payload per channel: the stored one where a delivery exists (what will be sent),
    else freshly rendered."""
    stored = _stored_payloads(settings, post)
    data = PostData.from_dict(post.data)
    result = {}
    for name in channels:
        if name in stored:
            result[name] = stored[name]
            continue
        try:
            result[name] = build_payload(data, settings, name)
        except NotApplicable as exc:
            result[name] = {"not_applicable": str(exc)}
    return result


def dry_run_text(kind: str, payload: dict) -> str:
    """What a channel would receive, for reading in a terminal: an email's headers and its
    plain-text part (not its HTML), a social post's text, then the other fields in brief."""
    from syndicate.engine.actions import SNIPPET_FIELDS, snippet_text

    if "not_applicable" in payload:
        return f"not sent on this channel: {payload['not_applicable']}"
    if kind == "email" and "html" in payload:
        to = payload.get("to") or []
        lines = [f"Subject: {payload.get('subject', '')}", f"Preheader: {payload.get('preheader', '')}",
                 f"To: {', '.join(to[:3])}{' ...' if len(to) > 3 else ''}" if to
                 else f"To: {payload.get('audience') or 'the subscriber list'}",
                 f"(HTML part: {len(payload['html'].encode()) // 1024} KB, not shown)", "", payload.get("text", "")]
        return "\n".join(lines).rstrip()
    field_name = SNIPPET_FIELDS.get(kind)
    rest = {k: v for k, v in payload.items() if k != field_name}
    text = snippet_text(kind, payload) if field_name else ""
    details = json.dumps(rest, ensure_ascii=False)
    return (text + "\n" if text else "") + (f"(other fields: {details[:600]}{' ...' if len(details) > 600 else ''})"
                                            if rest else "")


def _stored_payloads(settings: Settings, post: Post) -> dict[str, dict]:
    with transaction(open_ledger(settings.store_url)) as s:
        rows = s.scalars(select(Delivery).where(Delivery.subject == f"post:{post.id}"))
        return {r.channel: r.payload for r in rows if r.payload}


def write_preview(settings: Settings, post: Post, channels: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, payload in preview_payloads(settings, post, channels).items():
        if settings.channels[name].kind == "email" and "html" in payload:
            written += _write(out / f"{name}.html", payload["html"].encode())
            written += _write(out / f"{name}.txt", payload["text"].encode())
            written += _write(out / f"{name}.eml", bytes(email_messages(payload, settings)[0]))
        else:
            written += _write(out / f"{name}.json", json.dumps(payload, indent=2, ensure_ascii=False).encode())
    return written


def _write(path: Path, data: bytes) -> list[Path]:
    path.write_bytes(data)
    return [path]


@dataclass
class DigestPreview:
    channel: str
    key: str  # the edition, e.g. "2026-W49"
    at: datetime  # when it goes out (UTC)
    since: datetime  # posts first seen after this go in it
    subject: str | None = None  # None: no new posts, the edition would be skipped
    posts: int = 0
    files: list[Path] = field(default_factory=list)


def write_digest_preview(settings: Settings, channel: str, out: Path, now: datetime,
                         latest: int | None = None) -> DigestPreview:
    """Render CHANNEL's next digest edition as of NOW into OUT (.html, .txt and the .eml a
    subscriber would get). LATEST: show the N latest posts instead, to see the design."""
    from syndicate.engine.digest import edition_posts, upcoming_edition
    from syndicate.render.payloads import digest_payload

    with transaction(open_ledger(settings.store_url)) as s:
        edition = upcoming_edition(s, settings, channel, now)
        posts = edition_posts(edition)
        if latest:
            rows = s.scalars(select(Post).where(Post.plan != "ignore").order_by(Post.id.desc()).limit(latest))
            posts = [PostData.from_dict(p.data) for p in rows]
    result = DigestPreview(channel, edition.key, edition.at, edition.since, posts=len(posts))
    if not posts:
        return result
    payload = digest_payload(posts, settings, channel, edition.as_dict())
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{channel}-{edition.key}"
    to = (payload["to"] or ["subscriber@example.org"])[0]
    result.subject = payload["subject"]
    result.files = (_write(base.with_suffix(".html"), payload["html"].encode())
                    + _write(base.with_suffix(".txt"), payload["text"].encode())
                    + _write(base.with_suffix(".eml"), bytes(personalize(payload, to, preview_token(settings, to)))))
    return result
