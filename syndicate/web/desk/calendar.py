"""The desk's calendar: a week (or a month) of deliveries per channel, in the site's time zone.

Each delivery sits on the local day of its time (sent: when it went out; else when it is due),
so a delivery at 23:30 New York time is on that day, not on the next UTC day, across DST
changes too (a day is midnight to midnight in the site's zone: 23 or 25 hours on a change).
Each channel's day carries a strip of 24 hours shaded by its quiet hours and send window
(engine/schedule.py ``day_hours``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from syndicate.engine.schedule import day_hours, wall_to_utc
from syndicate.ledger.models import Delivery, Post
from syndicate.settings import Settings

_DAY = timedelta(days=1)


@dataclass
class Entry:
    id: int
    at: datetime  # local
    title: str
    channel: str
    kind: str
    state: str


@dataclass
class Day:
    day: date
    hours: list[str]  # 24 x "open" | "quiet" | "closed"
    entries: list[Entry] = field(default_factory=list)
    in_range: bool = True  # False: a month grid's days from the months either side


@dataclass
class Lane:
    channel: str
    kind: str
    days: list[Day]


@dataclass
class Calendar:
    view: str  # "week" | "month"
    first: date
    days: list[date]
    lanes: list[Lane]
    previous: date
    next: date
    today: date

    @property
    def weeks(self) -> list[list[int]]:
        """The indexes of self.days, seven at a time (a month's grid)."""
        return [list(range(i, min(i + 7, len(self.days)))) for i in range(0, len(self.days), 7)]


def span(view: str, anchor: date) -> tuple[date, list[date], date, date]:
    """(first shown, the days shown, previous anchor, next anchor) of the week or month of ANCHOR."""
    if view == "month":
        start = anchor.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        grid_start = start - timedelta(days=start.weekday())
        grid_end = end + timedelta(days=(7 - end.weekday()) % 7)
        days = [grid_start + n * _DAY for n in range((grid_end - grid_start).days)]
        return start, days, (start - _DAY).replace(day=1), end
    start = anchor - timedelta(days=anchor.weekday())
    return start, [start + n * _DAY for n in range(7)], start - 7 * _DAY, start + 7 * _DAY


def build(s: Session, settings: Settings, view: str, anchor: date, channel: str | None = None) -> Calendar:
    zone = settings.site.tz
    first, days, previous, following = span(view, anchor)
    lo, hi = wall_to_utc(days[0], time(0), zone), wall_to_utc(days[-1] + _DAY, time(0), zone)
    names = [channel] if channel else list(settings.channels)
    rows = s.execute(
        select(Delivery.id, Delivery.channel, Delivery.kind, Delivery.state, Delivery.due_at, Delivery.sent_at,
               Delivery.subject, Post.title)
        .outerjoin(Post, Delivery.post_id == Post.id)
        .where(Delivery.channel.in_(names),
               or_(and_(Delivery.state == "sent", Delivery.sent_at >= lo, Delivery.sent_at < hi),
                   and_(or_(Delivery.state != "sent", Delivery.sent_at.is_(None)),
                        Delivery.due_at >= lo, Delivery.due_at < hi)))
        .order_by(Delivery.due_at, Delivery.id)).all()
    lanes = {name: Lane(name, settings.channels[name].kind if name in settings.channels else "",
                        [Day(d, _hours(settings, name, d), in_range=view == "week" or d.month == first.month)
                         for d in days])
             for name in names}
    index = {d: i for i, d in enumerate(days)}
    for r in rows:
        at = (r.sent_at if r.state == "sent" and r.sent_at else r.due_at).astimezone(zone)
        i = index.get(at.date())
        if i is None or r.channel not in lanes:
            continue
        title = r.title or (f"Digest {r.subject.removeprefix('digest:')}" if r.subject.startswith("digest:")
                            else r.subject)
        if r.subject.startswith("reshare:"):  # an evergreen re-share of an older post (engine/reshare.py)
            title = f"Re-share: {title}"
        lanes[r.channel].days[i].entries.append(Entry(r.id, at, title, r.channel, r.kind, r.state))
    for lane in lanes.values():
        for d in lane.days:
            d.entries.sort(key=lambda e: (e.at, e.id))
    return Calendar(view, first, days, list(lanes.values()), previous, following, datetime.now(zone).date())


def _hours(settings: Settings, name: str, day: date) -> list[str]:
    channel = settings.channels.get(name)
    return day_hours(channel, day, settings.site.tz) if channel else ["open"] * 24
