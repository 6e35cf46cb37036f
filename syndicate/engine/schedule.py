"""When a delivery is due: computed in the site's time zone, stored in UTC."""

from __future__ import annotations

from datetime import datetime

from syndicate.settings import Channel, Settings


def due_at(channel: Channel, settings: Settings, seen_at: datetime) -> datetime:
    """The first moment CHANNEL may send a post first seen at SEEN_AT."""
    return seen_at + channel.delay
