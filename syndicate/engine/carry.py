"""What a channel carries: its include/exclude rules, and what keeps a post out of email.

Per channel (``channels.NAME.include`` / ``exclude``, each ``{ feeds, categories, tags }``):

* ``include``: every list that is set must match (the post's feed is one of ``feeds``; one of
  its categories is one of ``categories`` or ``tags``); unset: every post;
* ``exclude``: any list that matches leaves the post out.

For every email channel, a post in ``audience.no_email_category`` (``no-email``) or one a
person kept out of email at the desk (``posts.no_email``) is left out. A per-post delivery left
out is planned ``skipped`` with the reason; a digest edition simply does not take the post.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from syndicate.ledger.models import Feed, Post
from syndicate.settings import Carry, Channel, Settings


def refusal(settings: Settings, name: str, channel: Channel, feed: str, categories: list[str],
            no_email: bool = False) -> str | None:
    """Why channel NAME does not carry a post of FEED with CATEGORIES (None: it does)."""
    have = {c.strip().lower() for c in categories}
    if channel.kind == "email":
        if no_email:
            return "kept out of email at the desk"
        marker = settings.audience.no_email_category.strip().lower()
        if marker and marker in have:
            return f"in the category {settings.audience.no_email_category!r}: kept out of email"
    if channel.include is not None and not _all_match(channel.include, feed, have):
        return f"not what this channel carries (channels.{name}.include)"
    if channel.exclude is not None and _any_match(channel.exclude, feed, have):
        return f"left out by channels.{name}.exclude"
    return None


def _labels(rule: Carry) -> set[str]:
    return {c.strip().lower() for c in [*rule.categories, *rule.tags]}


def _all_match(rule: Carry, feed: str, have: set[str]) -> bool:
    if rule.feeds and feed not in rule.feeds:
        return False
    labels = _labels(rule)
    return not labels or bool(labels & have)


def _any_match(rule: Carry, feed: str, have: set[str]) -> bool:
    return feed in rule.feeds or bool(_labels(rule) & have)


def feed_name(s: Session, post: Post) -> str:
    return s.scalar(select(Feed.name).where(Feed.id == post.feed_id)) or ""


def post_refusal(s: Session, settings: Settings, name: str, post: Post) -> str | None:
    """``refusal`` for a ledger post."""
    return refusal(settings, name, settings.channels[name], feed_name(s, post),
                   list((post.data or {}).get("categories") or []), bool(post.no_email))
