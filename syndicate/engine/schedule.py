"""When a delivery is due: computed in the site's time zone, stored in UTC.

Pure functions. Every datetime given must be aware; every datetime returned is UTC. Local rules
(send window, quiet hours, digest editions) are evaluated with zoneinfo in
``settings.site.timezone`` (DESIGN.md, "The delivery engine", rule 7): cron-style schedulers
have a long history of DST bugs, so the rule for the two awkward cases is stated here and
tested across real transitions (tests/test_schedule.py).

The DST rule. A local wall time W on a local date D is the instant
``datetime.combine(D, W, tzinfo=zone, fold=0)``, converted to UTC (``wall_to_utc``):

* A wall time that does not exist (the spring-forward gap) moves forward by the gap's length:
  02:30 in New York on 2026-03-08 is read with the offset in force before the jump (EST), i.e.
  07:30Z = 03:30 EDT. A daily 02:30 digest goes out at 03:30 that day: late, never skipped.
* An ambiguous wall time (the fall-back fold) is its FIRST occurrence: 01:30 in New York on
  2026-11-01 is 01:30 EDT = 05:30Z, never 01:30 EST, so a 01:30 edition is sent once.

Window and quiet-hour boundaries obey the same rule, and membership is decided between the
resulting instants: a span opening on D at START runs until END on D, or on D + 1 when
END <= START (it wraps midnight). So quiet hours "22:00" to "01:30" on the fall-back night end
at the first 01:30; and a window that would close in the gap closes at the shifted instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import count
from zoneinfo import ZoneInfo

from syndicate.settings import DAYS, Channel, Digest, QuietHours, Settings, Window

Span = tuple[datetime, datetime]  # [start, end) in UTC

_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # the smallest step: "at or after X" is "strictly after X - tick"
# Validation guarantees an allowed minute every week; a DST night can remove at most one
# week's slice, so two weeks and a day always contain the answer.
_HORIZON_DAYS = 15


def wall_to_utc(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall time WALL on local date DAY in ZONE, by the module's DST rule."""
    return datetime.combine(day, wall.replace(fold=0), tzinfo=zone).astimezone(UTC)


def due_at(channel: Channel, settings: Settings, seen_at: datetime, index: int = 0) -> datetime:
    """The first moment CHANNEL may send a post first seen at SEEN_AT.

    INDEX is the channel's position among the site's channels: it waits INDEX x ``stagger``
    so that several networks do not all fire in the same second. The stagger is applied after
    the window too, otherwise every channel would open together when a quiet night ends; the
    result is therefore never before ``seen_at + delay + index * stagger``, lies inside the send
    window and outside quiet hours. A digest channel's post is due at the first edition at or
    after ``seen_at + delay`` (plus the stagger).
    """
    _require_aware(seen_at, "seen_at")
    if index < 0:
        raise ValueError(f"index must not be negative, got {index}")
    ready = seen_at.astimezone(UTC) + channel.delay
    offset = index * channel.stagger
    zone = settings.site.tz
    if channel.mode == "digest":
        return _edition_after(_require_digest(channel), zone, ready - _TICK) + offset
    first = _first_allowed(ready, channel, zone)
    return _first_allowed(first + offset, channel, zone) if offset else first


def may_send_at(channel: Channel, settings: Settings, t: datetime) -> bool:
    """True when T is inside CHANNEL's send window and outside its quiet hours."""
    _require_aware(t, "t")
    t = t.astimezone(UTC)
    return _first_allowed(t, channel, settings.site.tz) == t


def next_digest(channel: Channel, settings: Settings, after: datetime) -> datetime:
    """The instant of CHANNEL's next digest edition strictly after AFTER."""
    _require_aware(after, "after")
    return _edition_after(_require_digest(channel), settings.site.tz, after.astimezone(UTC))


def digest_edition_key(channel: Channel, settings: Settings, at: datetime) -> str:
    """A stable name for the edition in force at AT (the latest one at or before it):
    ``"2026-W48"`` (ISO week) for a weekly digest, ``"2026-11-24"`` for a daily one.

    Pass an edition instant (from ``next_digest``) to name that edition; any instant up to the
    next edition gives the same key. Keys come from the edition's local date, not from its
    instant, so a DST shift never makes two editions share one.
    """
    _require_aware(at, "at")
    digest = _require_digest(channel)
    day = _edition_day_at_or_before(digest, settings.site.tz, at.astimezone(UTC))
    if digest.every == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.isoformat()


# --- Digest editions ---------------------------------------------------------------------


def _is_edition_day(digest: Digest, day: date) -> bool:
    return digest.every == "day" or day.weekday() == _weekday(digest.day)


def _edition_after(digest: Digest, zone: ZoneInfo, after: datetime) -> datetime:
    # Start a day early: in a zone whose clocks jump near midnight, a gap-shifted edition of
    # the day before can fall on AFTER's local date (cheap insurance; not so in NY/Berlin/Sydney).
    first = _local_date(after, zone) - _DAY
    for day in _days_from(first):
        if _is_edition_day(digest, day) and (instant := wall_to_utc(day, digest.at, zone)) > after:
            return instant
    raise AssertionError("unreachable: _days_from is endless")


def _edition_day_at_or_before(digest: Digest, zone: ZoneInfo, at: datetime) -> date:
    # An edition of date D is never before D's local midnight, so none after AT's local date.
    last = _local_date(at, zone)
    for back in count():
        day = last - back * _DAY
        if _is_edition_day(digest, day) and wall_to_utc(day, digest.at, zone) <= at:
            return day
    raise AssertionError("unreachable: count() is endless")


# --- Send windows and quiet hours --------------------------------------------------------


def _first_allowed(t: datetime, channel: Channel, zone: ZoneInfo) -> datetime:
    """The earliest instant >= T inside CHANNEL's send window and outside its quiet hours."""
    if channel.send_window is None and channel.quiet_hours is None:
        return t
    # Spans opening the day before T's local date may still be open at T.
    first_day = _local_date(t, zone) - _DAY
    windows = _window_spans(channel.send_window, first_day, zone)
    quiet = _quiet_spans(channel.quiet_hours, first_day, zone)
    horizon = windows[-1][1] if windows else t
    while t < horizon:
        if _containing(windows, t) is None:
            t = min((start for start, _ in windows if start > t), default=horizon)
        elif (q := _containing(quiet, t)) is not None:
            t = q[1]
        else:
            return t
    # Settings validation makes this unreachable; fail loudly rather than send at a wrong time.
    raise ValueError(f"no allowed send time within {_HORIZON_DAYS} days after {t.isoformat()}")


def day_hours(channel: Channel, day: date, zone: ZoneInfo) -> list[str]:
    """For each wall hour of DAY (at its half hour), whether CHANNEL may send then: "open",
    "quiet" (its quiet hours) or "closed" (outside its send window). For the desk's calendar."""
    if channel.send_window is None and channel.quiet_hours is None:
        return ["open"] * 24
    first_day = day - _DAY
    windows = _window_spans(channel.send_window, first_day, zone)
    quiet = _quiet_spans(channel.quiet_hours, first_day, zone)
    hours = []
    for hour in range(24):
        t = wall_to_utc(day, time(hour, 30), zone)
        hours.append("closed" if _containing(windows, t) is None
                     else "quiet" if _containing(quiet, t) is not None else "open")
    return hours


def _window_spans(window: Window | None, first_day: date, zone: ZoneInfo) -> list[Span]:
    if window is None:  # only quiet hours: always open, up to the search horizon
        return [(datetime.min.replace(tzinfo=UTC), wall_to_utc(first_day + _HORIZON_DAYS * _DAY,
                                                                time(0), zone))]
    return _spans(window.weekdays, window.start, window.end, first_day, zone)


def _quiet_spans(quiet: QuietHours | None, first_day: date, zone: ZoneInfo) -> list[Span]:
    if quiet is None:
        return []
    return _spans(range(7), quiet.start, quiet.end, first_day, zone)


def _spans(weekdays: Iterable[int], start: time, end: time, first_day: date, zone: ZoneInfo) -> list[Span]:
    """The spans opening on WEEKDAYS for the search horizon, as UTC instants. A span that DST
    empties (both ends shifted onto or past each other in a gap) is dropped."""
    weekdays = set(weekdays)
    spans = []
    for day in (first_day + n * _DAY for n in range(_HORIZON_DAYS)):
        if day.weekday() not in weekdays:
            continue
        closes_on = day if end > start else day + _DAY  # end <= start wraps midnight
        span = (wall_to_utc(day, start, zone), wall_to_utc(closes_on, end, zone))
        if span[0] < span[1]:
            spans.append(span)
    return spans


def _containing(spans: list[Span], t: datetime) -> Span | None:
    """The span containing T that ends last (spans may overlap around a DST gap)."""
    return max((s for s in spans if s[0] <= t < s[1]), key=lambda s: s[1], default=None)


# --- Small helpers -----------------------------------------------------------------------


def _require_aware(value: datetime, name: str) -> None:
    # A naive datetime would be read in the server's zone, not the site's: refuse it.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _require_digest(channel: Channel) -> Digest:
    if channel.digest is None:
        raise ValueError("this channel has no digest schedule (mode = \"digest\" with a digest table)")
    return channel.digest


def _local_date(t: datetime, zone: ZoneInfo) -> date:
    return t.astimezone(zone).date()


def _weekday(name: str | None) -> int:
    return DAYS.index(name or "")


def _days_from(first: date) -> Iterator[date]:
    return (first + n * _DAY for n in count())
