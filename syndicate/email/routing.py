"""Who gets which posts: each person receives each post once.

This is the one place where a subscriber-list email decides its recipients and what each of
them gets (``recipients.pending_recipients`` asks it, every provider mailing the list goes
through that). A delivery planned for the list carries a ``route`` (set when it is planned:
``route_for``): the cadence its channel serves ("post", "day", "week") and its posts with their
topics. For each active, unsuppressed subscriber, in order:

1. the channel's cadence must be one the person chose (never chose: every cadence);
2. of the delivery's posts, those in a topic the person follows (no topics chosen: all);
3. minus every post the person already has a receipt for from another delivery of the same
   cadence (two per-post channels, a post in two topics' channels), or of another cadence
   unless the person asked for both (a per-post reader does not get the post again in the
   digest; one who chose "every post" *and* the weekly digest does);
4. what is left is recorded as this delivery's receipts (``post_receipts``, unique per person,
   post and cadence, ``INSERT ... ON CONFLICT DO NOTHING``: two sends racing for one person and
   post, one wins) and the person gets exactly the posts whose receipts this delivery holds.
   Nothing left: the person is not a recipient of this delivery.

A resumed send (a retry, a reaped lease) finds the receipts it already holds and uses them as
they are, so a person's digest does not change between attempts, whatever they chose since.

A digest reader whose posts are fewer than the edition's gets a *variant* of the edition,
rendered here from the same templates with only their posts (``_variants``/``_routes`` in the
job's payload, in memory only; ``payload_for`` picks a recipient's). Staff preview the whole
edition; the public archive shows the whole edition too.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from syndicate.audience import preferences, subscribers
from syndicate.email import privacy
from syndicate.ledger.models import Post, PostReceipt, utcnow
from syndicate.ledger.upsert import insert_ignore_many
from syndicate.model import PostData
from syndicate.render.payloads import EDITED, digest_payload
from syndicate.settings import Channel, Settings

log = logging.getLogger(__name__)

ROUTES, VARIANTS = "_routes", "_variants"  # in-memory keys of a job's payload ("_": never sent)
_VARIANT_FIELDS = ("subject", "preheader", "html", "text", "sensitive")


def route_for(settings: Settings, channel: Channel, posts: list[tuple[int, list[str]]]) -> dict | None:
    """The ``route`` of a list delivery of CHANNEL carrying POSTS ((post id, categories), in the
    email's order); None for a channel with fixed recipients."""
    if channel.kind != "email" or channel.options.get("audience") != "subscribers":
        return None
    return {"cadence": preferences.channel_cadence(channel),
            "posts": [[pid, preferences.topics_of(categories, settings)] for pid, categories in posts]}


def select_recipients(s: Session, settings: Settings | None, payload: dict, delivery_id: int) -> list[str]:
    """The recipients of a list delivery by the rules above (receipts written in S's
    transaction); stores each digest reader's posts in ``payload[ROUTES]`` where they differ
    from the whole edition."""
    addresses = subscribers.active_recipients(s)
    route = payload.get("route")
    if not route or not route.get("posts"):
        return addresses  # planned before routes existed: the whole list, as then
    cadence = route["cadence"]
    posts = [(int(pid), list(topics)) for pid, topics in route["posts"]]
    ids = [pid for pid, _ in posts]
    mine: dict[str, set[int]] = defaultdict(set)
    taken: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for email, pid, did, their_cadence in s.execute(
            select(PostReceipt.email, PostReceipt.post_id, PostReceipt.delivery_id, PostReceipt.cadence)
            .where(PostReceipt.post_id.in_(ids))):
        if did == delivery_id:
            mine[email].add(pid)
        else:
            taken[email][pid].add(their_cadence)
    choices = preferences.choices_of(s, [a for a in addresses if a not in mine])
    now, rows = utcnow(), []
    for address in addresses:
        if address in mine:
            continue  # a resumed send: what this delivery took stays as it was
        chosen = choices.get(address)
        if not preferences.wants(chosen, cadence):
            continue
        for pid, topics in posts:
            if preferences.follows(chosen, topics) and not _has_it(chosen, cadence, taken[address].get(pid, ())):
                rows.append({"email": address, "post_id": pid, "delivery_id": delivery_id, "cadence": cadence,
                             "at": now})
    if rows:
        insert_ignore_many(s, PostReceipt, rows, ["email", "post_id", "cadence"], returning=PostReceipt.id)
        mine = defaultdict(set)
        for email, pid in s.execute(select(PostReceipt.email, PostReceipt.post_id)
                                    .where(PostReceipt.delivery_id == delivery_id)):
            mine[email].add(pid)
    whole = tuple(sorted(ids))
    routes = {a: tuple(sorted(mine[a])) for a in addresses if mine.get(a)}
    payload[ROUTES] = {a: list(p) for a, p in routes.items() if p != whole}
    return [a for a in addresses if a in routes]


def _has_it(chosen, cadence: str, cadences: set[str] | tuple) -> bool:
    """Does a person already have this post, by the rule (3)?"""
    return any(c == cadence or not preferences.asked_for_both(chosen, cadence, c) for c in cadences)


def prepare_variants(s: Session, settings: Settings, channel_name: str, payload: dict) -> None:
    """Render each distinct set of posts in ``payload[ROUTES]`` (a digest edition for fewer
    posts than the whole) into ``payload[VARIANTS]``."""
    routes = payload.get(ROUTES) or {}
    if not routes or "edition" not in payload:
        return
    channel = settings.channels[channel_name]
    wanted = {tuple(p) for p in routes.values()}
    rows = {p.id: p for p in s.scalars(select(Post).where(Post.id.in_({pid for ps in wanted for pid in ps})))}
    order = [int(pid) for pid, _ in payload["route"]["posts"]]
    overrides = None
    if payload.get(EDITED):  # a person's subject/preheader for the edition: every variant keeps it
        overrides = {k: payload[k] for k in ("subject", "preheader") if k in payload[EDITED]}
    variants = {}
    for posts in wanted:
        chosen = [PostData.from_dict(rows[pid].data) for pid in order if pid in posts and pid in rows]
        rendered = privacy.apply(digest_payload(chosen, settings, channel_name, payload["edition"], overrides),
                                 settings, channel)
        variants[_key(posts)] = {k: rendered[k] for k in _VARIANT_FIELDS}
    payload[VARIANTS] = variants


def _key(posts) -> str:
    return ",".join(str(p) for p in sorted(posts))


def payload_for(payload: dict, recipient: str) -> dict:
    """RECIPIENT's payload: the delivery's, or the variant of their posts."""
    posts = (payload.get(ROUTES) or {}).get(recipient)
    variant = (payload.get(VARIANTS) or {}).get(_key(posts)) if posts else None
    return {**payload, **variant} if variant else payload


def groups(payload: dict, recipients: list[str]) -> list[tuple[dict, list[str]]]:
    """RECIPIENTS grouped by the payload each gets (the delivery's first), order kept within
    a group: a batch API sends one body to many."""
    by_key: dict[str, list[str]] = {}
    for recipient in recipients:
        posts = (payload.get(ROUTES) or {}).get(recipient)
        key = _key(posts) if posts and _key(posts) in (payload.get(VARIANTS) or {}) else ""
        by_key.setdefault(key, []).append(recipient)
    return [(payload if not key else {**payload, **payload[VARIANTS][key]}, members)
            for key, members in sorted(by_key.items())]
