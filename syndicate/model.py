"""Plain domain records shared by the feed reader, the renderers and the ledger.

These are not database rows (see ``syndicate.ledger.models``); they are what a parsed
feed yields and what a template is rendered from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime

# A delivery's states: planned -> claimed -> sending -> sent | failed | unknown; also held,
# skipped, cancelled. Here (not in ledger/models.py) so the command line can offer them without
# loading SQLAlchemy.
STATES = ("planned", "held", "claimed", "sending", "sent", "failed", "unknown", "skipped", "cancelled")
FINAL_STATES = ("sent", "failed", "skipped", "cancelled")


@dataclass
class PostData:
    """One normalized item of a feed."""

    identity: str  # stable id: guid, else link, else a content hash
    fingerprint: str  # normalized URL + title: survives http->https and permalink moves
    url: str  # absolute link to the post
    title: str
    summary: str = ""  # plain text, short
    content_html: str = ""  # feed HTML as given (sanitized later, before templates)
    author: str = ""
    categories: list[str] = field(default_factory=list)
    image_url: str | None = None
    image_alt: str = ""
    published: datetime | None = None  # timezone-aware UTC, or None when the feed gives none
    updated: datetime | None = None
    content_hash: str = ""  # hash of title + content: tells an edit from a new post

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("published", "updated"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PostData:
        """The inverse of to_dict (how the ledger stores a post); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("published", "updated"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


@dataclass
class ParsedFeed:
    """What one feed document holds."""

    title: str
    link: str
    format: str  # rss20, atom10, json11, ...
    posts: list[PostData]
    warnings: list[str] = field(default_factory=list)  # recoverable problems (bozo, dropped items)
