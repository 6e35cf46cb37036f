"""What the desk shows: the queue, and each delivery's stored payload as it will go out.

Pure data for the templates (no Flask here): emails as their first recipient's real message
(personalized exactly as a send would), social posts as cards with the network's own count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlsplit

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, defer

from syndicate.email.message import email_messages
from syndicate.engine.actions import SNIPPET_FIELDS, Measured, measure_snippet, snippet_text
from syndicate.engine.digest import edition_overrides, edition_posts, upcoming_edition
from syndicate.engine.failures import explain
from syndicate.engine.schedule import next_digest, wall_to_utc
from syndicate.ledger.counts import Count, cap_above, capped_count, capped_counts
from syndicate.ledger.models import Delivery, Event, Post, RecipientSend, utcnow
from syndicate.model import PostData
from syndicate.providers.http import IMAGE_ALT_HINT, IMAGE_HINT
from syndicate.render.email import MAX_HTML_BYTES
from syndicate.render.links import absolute, is_http
from syndicate.render.payloads import digest_payload
from syndicate.render.textlength import find_hashtags, find_links
from syndicate.settings import Settings
from syndicate.web.desk import diff

NETWORKS = {"email": "Email", "x": "X", "facebook": "Facebook", "linkedin": "LinkedIn", "pinterest": "Pinterest",
            "mastodon": "Mastodon", "bluesky": "Bluesky", "threads": "Threads"}
STATE_LABELS = {"planned": "Scheduled", "held": "Waiting for approval", "claimed": "Being sent",
                "sending": "Being sent", "sent": "Sent", "failed": "Failed", "unknown": "Outcome unknown",
                "skipped": "Skipped", "cancelled": "Cancelled", "next": "Next edition"}
TABS = OrderedDict([
    ("upcoming", ("Upcoming", ("planned", "claimed", "sending"))),
    ("held", ("Held", ("held",))),
    ("failed", ("Failed", ("failed",))),
    ("unknown", ("Unknown", ("unknown",))),
    ("sent", ("Sent", ("sent",))),
    ("other", ("Skipped & cancelled", ("skipped", "cancelled"))),
])
RECENT = timedelta(days=30)  # how far back the skipped & cancelled tab looks


# ---------------------------------------------------------------- the queue

@dataclass
class QueueRow:
    delivery_id: int | None
    post_id: int | None
    subject: str
    title: str
    channel: str
    kind: str
    state: str
    when: datetime  # due, or sent for sent ones (UTC)
    note: str = ""

    @property
    def group_key(self) -> str:
        # An evergreen re-share (engine/reshare.py) is its own group, apart from the first sharing.
        return f"post:{self.post_id}" if self.post_id and not self.subject.startswith("reshare:") else self.subject


@dataclass
class Group:
    key: str
    title: str
    post_id: int | None
    rows: list[QueueRow] = field(default_factory=list)


def tab_counts(s: Session, cap: int | None = None) -> dict[str, Count]:
    """Each tab's deliveries, counted up to CAP (default COUNT_CAP; "10,000+" past it): one statement whose cost
    does not grow with the million sent deliveries of an old ledger (ledger/counts.py)."""
    return capped_counts(s, {tab: [Delivery.state.in_(states)] for tab, (_, states) in TABS.items()}, cap)


PAGE_SIZE = 100  # rows per queue page: a flood of 30,000 held deliveries stays a quick page
BULK_TABS = ("upcoming", "held", "failed", "unknown")  # tabs whose rows a person can act on in bulk
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class QueuePage:
    rows: list[QueueRow]
    total: Count  # rows on this tab that match the filters, on every page (counted up to a cap)
    first: int  # the position of the first row (1-based), for "showing 101-200 of 29,970"
    next_after: str | None  # the cursor of the next page (None: this is the last)


def queue_page(s: Session, settings: Settings, tab: str, *, channel: str | None = None, day: date | None = None,
               after: str | None = None, first: int = 1, now: datetime | None = None,
               size: int = PAGE_SIZE, cap: int | None = None) -> QueuePage:
    """One page of a tab, keyset-paged (AFTER: the cursor a previous page gave): each page costs
    the same however deep it is. The Sent tab lists one DAY in the site's time zone when given
    (newest first); the skipped tab the last 30 days; the others by due time. The total is
    counted up to CAP ("of 10,000+" on a Sent tab of a million), or past this page on a page
    deeper than that, so that it never reads less than the rows already shown."""
    now = now or utcnow()
    column, newest_first, where = _tab_query(settings, tab, channel, day, now)
    # Not the payload (an email's whole HTML, up to 100 KB): a row of the list shows none of it.
    query = (select(Delivery, Post.title).outerjoin(Post, Delivery.post_id == Post.id).where(*where)
             .options(defer(Delivery.payload)))
    total = capped_count(s, where, cap_above(first + size - 1, cap))
    if after:
        value, last_id = _cursor(after)
        if newest_first:
            query = query.where(or_(column < value, and_(column == value, Delivery.id < last_id)))
        else:
            query = query.where(or_(column > value, and_(column == value, Delivery.id > last_id)))
    order = (column.desc(), Delivery.id.desc()) if newest_first else (column, Delivery.id)
    found = s.execute(query.order_by(*order).limit(size + 1)).all()
    rows = [_queue_row(d, title, settings) for d, title in found[:size]]
    next_after = None
    if len(found) > size:
        last = found[size - 1][0]
        next_after = _make_cursor(getattr(last, column.key), last.id)
    if tab == "upcoming" and not after and not channel:
        rows += next_editions(settings, now)
        rows.sort(key=lambda r: (r.when, r.channel))
    return QueuePage(rows, total, first, next_after)


def _tab_query(settings: Settings, tab: str, channel: str | None, day: date | None, now: datetime):
    """The column a tab is ordered by, whether newest first, and its WHERE clauses."""
    where = [Delivery.state.in_(TABS[tab][1])]
    if channel:
        where.append(Delivery.channel == channel)
    if tab == "sent":
        where.append(Delivery.sent_at.is_not(None))
        if day is not None:
            tz = settings.site.tz
            where += [Delivery.sent_at >= wall_to_utc(day, time(0), tz),
                      Delivery.sent_at < wall_to_utc(day + timedelta(days=1), time(0), tz)]
        return Delivery.sent_at, True, where
    if tab == "other":
        where.append(Delivery.updated_at >= now - RECENT)
        return Delivery.updated_at, True, where
    return Delivery.due_at, False, where


def _queue_row(d: Delivery, title: str | None, settings: Settings) -> QueueRow:
    when = d.sent_at if d.state == "sent" and d.sent_at else d.due_at
    note = explain(d.error_class, d.last_error, d.channel, settings, d.state) or d.hold_reason or ""
    title = title or _digest_title(d.subject)
    if d.subject.startswith("reshare:"):
        title = f"Re-share: {title}"
    return QueueRow(d.id, d.post_id, d.subject, title, d.channel, d.kind, d.state, when, note)


def _make_cursor(value: datetime, delivery_id: int) -> str:
    delta = value - _EPOCH
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}-{delivery_id}"


def _cursor(text: str) -> tuple[datetime, int]:
    try:
        micros, delivery_id = (int(part) for part in text.split("-"))
        return _EPOCH + timedelta(microseconds=micros), delivery_id
    except (ValueError, OverflowError):
        raise ValueError(f"not a page cursor: {text!r}") from None


def next_editions(settings: Settings, now: datetime) -> list[QueueRow]:
    result = []
    for name, channel in settings.enabled_channels().items():
        if channel.mode == "digest":
            at = next_digest(channel, settings, now)
            result.append(QueueRow(None, None, "digest:next", "Next digest edition", name, channel.kind, "next",
                                   at, "what it holds so far is on the Digest page"))
    return result


def group_by_post(rows: list[QueueRow]) -> list[Group]:
    groups: OrderedDict[str, Group] = OrderedDict()
    for row in rows:
        group = groups.setdefault(row.group_key, Group(row.group_key, row.title, row.post_id))
        group.rows.append(row)
    return list(groups.values())


def group_by_channel(rows: list[QueueRow], settings: Settings) -> list[Group]:
    order = {name: i for i, name in enumerate(settings.channels)}
    groups: dict[str, Group] = {}
    for row in rows:
        groups.setdefault(row.channel, Group(row.channel, row.channel, None)).rows.append(row)
    return sorted(groups.values(), key=lambda g: (order.get(g.key, len(order)), g.key))


def _digest_title(subject: str) -> str:
    return f"Digest edition {subject.removeprefix('digest:')}" if subject.startswith("digest:") else subject


# ---------------------------------------------------------------- one delivery

@dataclass
class EmailPreview:
    subject: str
    preheader: str
    sender: str
    to: str
    reply_to: str | None
    html: str
    text: str
    size: int
    sensitive: bool
    list_unsubscribe: str = ""
    limit: int = MAX_HTML_BYTES

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.size / self.limit))

    @property
    def level(self) -> str:
        return "over" if self.size > self.limit else "near" if self.size > 0.85 * self.limit else "ok"

    @property
    def kilobytes(self) -> str:
        return f"{self.size / 1000:.1f}"


def email_preview(payload: dict, settings: Settings, subscribers_active: int | None = None) -> EmailPreview:
    """The email as its first recipient gets it (unsubscribe links personalized like a send)."""
    message = email_messages(payload, settings)[0]
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else payload.get("html", "")
    text = text_part.get_content() if text_part is not None else payload.get("text", "")
    if payload.get("audience") == "subscribers":
        to = "the subscriber list" + (f" ({subscribers_active} active)" if subscribers_active is not None else "")
    else:
        to = ", ".join(payload.get("to") or []) or "(no recipients)"
    return EmailPreview(subject=payload.get("subject", ""), preheader=payload.get("preheader", ""),
                        sender=payload.get("from", ""), to=to, reply_to=payload.get("reply_to"), html=html,
                        text=text, size=len(html.encode()), sensitive=bool(payload.get("sensitive")),
                        list_unsubscribe=str(message.get("List-Unsubscribe", "")))


@dataclass
class Segment:
    kind: str  # "text", "link", "tag"
    value: str


@dataclass
class SocialCard:
    kind: str
    network: str
    text: str  # as a person reads it (and edits it)
    segments: list[Segment]
    measured: Measured
    hashtags: list[str]
    image: str | None = None
    link: str | None = None
    domain: str = ""
    card_title: str = ""
    card_description: str = ""
    spoiler: str = ""
    title: str = ""  # Pinterest's pin title
    title_limit: int = 0
    handle: str = ""
    not_applicable: str = ""
    # A channel posting images (option media = "image"): the picture goes out with the post, in
    # place of the link card, as the networks show it (the adapter falls back to the card when
    # the image cannot be fetched or fitted; the delivery's history says so).
    media_image: str | None = None
    media_alt: str = ""

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.measured.count / max(1, self.measured.limit)))

    @property
    def level(self) -> str:
        m = self.measured
        return "over" if m.count > m.limit else "near" if m.count > 0.9 * m.limit else "ok"

    @property
    def remaining(self) -> int:
        return self.measured.limit - self.measured.count


def social_card(kind: str, payload: dict, settings: Settings, channel: str, post: PostData | None) -> SocialCard:
    options = settings.channels[channel].options if channel in settings.channels else {}
    if kind not in SNIPPET_FIELDS or not payload or SNIPPET_FIELDS[kind] not in payload:
        return SocialCard(kind, NETWORKS.get(kind, kind), "", [], Measured(0, 0), [],
                          not_applicable=str((payload or {}).get("not_applicable") or "nothing to show"))
    text = snippet_text(kind, payload)
    card = SocialCard(kind=kind, network=NETWORKS[kind], text=text, segments=_segments(kind, text, payload),
                      measured=measure_snippet(kind, payload, options),
                      hashtags=[text[s:e] for s, e in find_hashtags(text)])
    post_image = absolute(post.image_url, post.url) if post else None
    card.image = post_image if is_http(post_image) else None
    card.link = post.url if post else None
    card.card_title = post.title if post else ""
    card.card_description = (post.summary or "") if post else ""
    if kind == "facebook":
        card.link = payload.get("link") or card.link
    elif kind == "linkedin":
        article = (payload.get("content") or {}).get("article") or {}
        card.link = article.get("source") or card.link
        card.card_title = article.get("title") or card.card_title
        card.card_description = article.get("description") or ""
        card.image = payload.get("_thumbnail_url") or card.image
    elif kind == "pinterest":
        card.link = payload.get("link") or card.link
        card.image = (payload.get("media_source") or {}).get("url") or card.image
        card.title, card.title_limit = payload.get("title", ""), 100
    elif kind == "bluesky":
        external = (payload.get("embed") or {}).get("external") or {}
        card.link = external.get("uri") or card.link
        card.card_title = external.get("title") or card.card_title
        card.card_description = external.get("description") or ""
        card.image = payload.get("_thumbnail_url") or card.image
    elif kind == "mastodon":
        card.spoiler = payload.get("spoiler_text") or ""
    if kind != "pinterest" and is_http(payload.get(IMAGE_HINT)):
        card.media_image, card.media_alt = payload[IMAGE_HINT], str(payload.get(IMAGE_ALT_HINT) or "").strip()
    card.domain = (urlsplit(card.link).hostname or "").removeprefix("www.") if card.link else ""
    card.handle = _handle(kind, settings, options)
    return card


def _handle(kind: str, settings: Settings, options: dict) -> str:
    """The account's handle as the network shows it (``options.handle``, else made from the site)."""
    if options.get("handle"):
        return str(options["handle"])
    host = (urlsplit(settings.site.url).hostname or "").removeprefix("www.")
    if kind == "bluesky":
        return f"@{host}"
    name = host.split(".")[0]
    if kind == "mastodon":
        instance = (urlsplit(str(options.get("instance") or "")).hostname or "")
        return f"@{name}@{instance}" if instance else f"@{name}"
    if kind in ("facebook", "linkedin"):
        return "Page" if kind == "facebook" else "Organization"
    return f"@{name}"


def _segments(kind: str, text: str, payload: dict) -> list[Segment]:
    """TEXT split into plain text, links and hashtags (Bluesky: exactly where its facets say)."""
    spans: list[tuple[int, int, str]] = []
    if kind == "bluesky":
        data = text.encode()
        for facet in payload.get("facets") or []:
            index = facet.get("index") or {}
            start = len(data[: index.get("byteStart", 0)].decode(errors="ignore"))
            end = len(data[: index.get("byteEnd", 0)].decode(errors="ignore"))
            feature = ((facet.get("features") or [{}])[0].get("$type") or "")
            spans.append((start, end, "tag" if feature.endswith("#tag") else "link"))
    else:
        spans = [(s, e, "link") for s, e in find_links(text)] + [(s, e, "tag") for s, e in find_hashtags(text)]
    result, pos = [], 0
    for start, end, what in sorted(spans):
        if start < pos:
            continue
        if start > pos:
            result.append(Segment("text", text[pos:start]))
        result.append(Segment(what, text[start:end]))
        pos = end
    if pos < len(text):
        result.append(Segment("text", text[pos:]))
    return result


@dataclass
class DeliveryView:
    row: Delivery
    channel_known: bool
    email: EmailPreview | None = None
    social: SocialCard | None = None
    error: str = ""
    problem: str = ""  # the last error in plain words (the raw text is row.last_error)
    events: list[Event] = field(default_factory=list)
    unknown_recipients: list[str] = field(default_factory=list)  # email: may or may not have it
    changes: list = field(default_factory=list)  # diff.Change: rendered again at send time

    @property
    def network(self) -> str:
        return NETWORKS.get(self.row.kind, self.row.kind)

    @property
    def editable(self) -> bool:
        return self.row.state in ("planned", "held") and self.social is not None and not self.social.not_applicable

    @property
    def busy(self) -> bool:
        return self.row.state in ("claimed", "sending")


def delivery_view(row: Delivery, settings: Settings, post: PostData | None, events: list[Event],
                  subscribers_active: int | None = None) -> DeliveryView:
    view = DeliveryView(row, row.channel in settings.channels, events=events,
                        problem=explain(row.error_class, row.last_error, row.channel, settings, row.state) or "",
                        changes=diff.changes(events))
    payload = row.payload or {}
    try:
        if row.kind == "email":
            if "html" in payload:
                view.email = email_preview(payload, settings, subscribers_active)
            else:
                view.error = "Nothing to preview: this delivery has no rendered message."
        else:
            view.social = social_card(row.kind, payload, settings, row.channel, post)
    except Exception as exc:  # a preview must never take the page down; say what broke
        view.error = f"This preview could not be shown ({type(exc).__name__}: {exc})."
    return view


def unknown_recipients_by_delivery(s: Session, ids: list[int]) -> dict[int, list[str]]:
    """Each email delivery's recipients of unknown outcome, for a person to settle."""
    result: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for delivery_id, recipient in s.execute(
                select(RecipientSend.delivery_id, RecipientSend.recipient)
                .where(RecipientSend.delivery_id.in_(ids), RecipientSend.state == "unknown")
                .order_by(RecipientSend.id)):
            result[delivery_id].append(recipient)
    return result


def events_by_delivery(s: Session, ids: list[int]) -> dict[int, list[Event]]:
    result: dict[int, list[Event]] = {i: [] for i in ids}
    if ids:
        for event in s.scalars(select(Event).where(Event.delivery_id.in_(ids))
                               .order_by(Event.at.desc(), Event.id.desc())):
            result[event.delivery_id].append(event)
    return result


# ---------------------------------------------------------------- the next digest editions

@dataclass
class DigestView:
    channel: str
    at: datetime
    since: datetime
    key: str
    titles: list[str]
    email: EmailPreview | None
    error: str = ""


def next_digests(s: Session, settings: Settings, now: datetime | None = None,
                 subscribers_active: int | None = None) -> list[DigestView]:
    """Each digest channel's next edition as it would be sent now (the posts ready so far)."""
    now = now or utcnow()
    result = []
    for name, channel in settings.enabled_channels().items():
        if channel.mode != "digest":
            continue
        edition = upcoming_edition(s, settings, name, now)
        at = next_digest(channel, settings, now)
        posts = edition_posts(edition)
        overrides = edition_overrides(s, name, edition.key)
        view = DigestView(name, at, edition.since, edition.key, [p.title for p in posts], None)
        if posts and channel.kind == "email":
            try:
                view.email = email_preview(digest_payload(posts, settings, name, {**edition.as_dict(),
                                                                                   "at": at.isoformat()},
                                                          overrides), settings, subscribers_active)
            except Exception as exc:
                view.error = f"The edition could not be rendered ({type(exc).__name__}: {exc})."
        result.append(view)
    return result
