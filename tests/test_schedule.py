"""Scheduling in the site's time zone, across real DST transitions (DESIGN.md, engine rule 7).

Expected instants are worked out by hand from the zones' 2026 rules:
  America/New_York   spring forward Sun 2026-03-08 02:00 EST -> 03:00 EDT (UTC-5 -> UTC-4)
                     fall back      Sun 2026-11-01 02:00 EDT -> 01:00 EST
  Europe/Berlin      spring forward Sun 2026-03-29 02:00 CET -> 03:00 CEST (UTC+1 -> UTC+2)
                     fall back      Sun 2026-10-25 03:00 CEST -> 02:00 CET
  Australia/Sydney   fall back      Sun 2026-04-05 03:00 AEDT -> 02:00 AEST (UTC+11 -> UTC+10)
                     spring forward Sun 2026-10-04 02:00 AEST -> 03:00 AEDT
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from syndicate.engine.schedule import digest_edition_key, due_at, next_digest, wall_to_utc
from syndicate.settings import DAYS, SettingsError, from_dict, span_minutes

NY, BERLIN, SYDNEY = "America/New_York", "Europe/Berlin", "Australia/Sydney"
ZONES = (NY, BERLIN, SYDNEY)
TRANSITIONS = [  # the UTC instants of the transitions above
    datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 16, tzinfo=UTC), datetime(2026, 10, 3, 16, tzinfo=UTC),
]


def site(zone: str, **channel):
    """Settings with one email channel ``c`` configured by CHANNEL; returns (settings, channel)."""
    settings = from_dict({"site": {"name": "Practice", "url": "https://example.org", "timezone": zone},
                          "channels": {"c": {"kind": "email", **channel}}})
    return settings, settings.channels["c"]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def weekly(zone: str, day: str = "tue", at: str = "09:00"):
    return site(zone, mode="digest", digest={"every": "week", "day": day, "at": at})


def daily(zone: str, at: str):
    return site(zone, mode="digest", digest={"every": "day", "at": at})


# --- Weekly Tuesday 09:00 digest in the week of each change ----------------------------------

@pytest.mark.parametrize("zone, after, expected, key", [
    # New York: EST before the spring change (14:00Z), EDT after it (13:00Z); reverse in autumn.
    (NY, utc(2026, 2, 26), utc(2026, 3, 3, 14), "2026-W10"),
    (NY, utc(2026, 3, 4), utc(2026, 3, 10, 13), "2026-W11"),
    (NY, utc(2026, 10, 22), utc(2026, 10, 27, 13), "2026-W44"),
    (NY, utc(2026, 10, 29), utc(2026, 11, 3, 14), "2026-W45"),
    # Berlin: CET 09:00 = 08:00Z, CEST 09:00 = 07:00Z.
    (BERLIN, utc(2026, 3, 20), utc(2026, 3, 24, 8), "2026-W13"),
    (BERLIN, utc(2026, 3, 26), utc(2026, 3, 31, 7), "2026-W14"),
    (BERLIN, utc(2026, 10, 15), utc(2026, 10, 20, 7), "2026-W43"),
    (BERLIN, utc(2026, 10, 22), utc(2026, 10, 27, 8), "2026-W44"),
    # Sydney: AEDT 09:00 = 22:00Z the day before, AEST 09:00 = 23:00Z the day before.
    (SYDNEY, utc(2026, 3, 27), utc(2026, 3, 30, 22), "2026-W14"),
    (SYDNEY, utc(2026, 4, 2), utc(2026, 4, 6, 23), "2026-W15"),
    (SYDNEY, utc(2026, 9, 24), utc(2026, 9, 28, 23), "2026-W40"),
    (SYDNEY, utc(2026, 10, 1), utc(2026, 10, 5, 22), "2026-W41"),
])
def test_weekly_digest_lands_on_the_right_instant_around_each_change(zone, after, expected, key):
    settings, channel = weekly(zone)
    edition = next_digest(channel, settings, after)
    assert edition == expected and edition.tzinfo is UTC
    local = edition.astimezone(ZoneInfo(zone))
    assert (local.strftime("%a"), local.time()) == ("Tue", time(9, 0))
    assert digest_edition_key(channel, settings, edition) == key


def test_next_digest_is_strictly_after_an_edition_instant():
    settings, channel = weekly(NY)
    assert next_digest(channel, settings, utc(2026, 3, 10, 13)) == utc(2026, 3, 17, 13)
    assert next_digest(channel, settings, utc(2026, 3, 10, 12, 59, 59)) == utc(2026, 3, 10, 13)


def test_edition_key_is_stable_until_the_next_edition():
    settings, channel = weekly(NY)
    for at in (utc(2026, 11, 24, 14), utc(2026, 11, 28), utc(2026, 12, 1, 13, 59)):
        assert digest_edition_key(channel, settings, at) == "2026-W48"
    assert digest_edition_key(channel, settings, utc(2026, 12, 1, 14)) == "2026-W49"
    settings, channel = daily(NY, "07:30")
    assert digest_edition_key(channel, settings, utc(2026, 11, 24, 12, 30)) == "2026-11-24"
    assert digest_edition_key(channel, settings, utc(2026, 11, 24, 12, 29)) == "2026-11-23"


# --- Daily digests on gap and fold days ------------------------------------------------------

@pytest.mark.parametrize("zone, gap_day, expected", [
    # 02:30 does not exist: read with the pre-jump offset, it is 03:30 local daylight time.
    (NY, date(2026, 3, 8), utc(2026, 3, 8, 7, 30)),  # 02:30 EST = 07:30Z = 03:30 EDT
    (BERLIN, date(2026, 3, 29), utc(2026, 3, 29, 1, 30)),  # 02:30 CET = 01:30Z = 03:30 CEST
    (SYDNEY, date(2026, 10, 4), utc(2026, 10, 3, 16, 30)),  # 02:30 AEST = 16:30Z = 03:30 AEDT
])
def test_daily_0230_digest_on_the_gap_day_moves_forward_by_the_gap(zone, gap_day, expected):
    settings, channel = daily(zone, "02:30")
    tz = ZoneInfo(zone)
    day_before = wall_to_utc(gap_day - timedelta(days=1), time(2, 30), tz)
    edition = next_digest(channel, settings, day_before)
    assert edition == expected
    assert edition.astimezone(tz).replace(tzinfo=None) == datetime.combine(gap_day, time(3, 30))
    after = next_digest(channel, settings, edition)
    assert after.astimezone(tz).replace(tzinfo=None) == datetime.combine(gap_day + timedelta(days=1),
                                                                        time(2, 30))
    assert edition - day_before == timedelta(hours=24)  # the gap day's edition is an hour late
    assert after - edition == timedelta(hours=23)
    assert digest_edition_key(channel, settings, edition) == gap_day.isoformat()


@pytest.mark.parametrize("zone, at, fold_day, first, second", [
    # The repeated hour: New York 01:00-02:00, Berlin and Sydney 02:00-03:00.
    (NY, "01:30", date(2026, 11, 1), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)),
    (BERLIN, "02:30", date(2026, 10, 25), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)),
    (SYDNEY, "02:30", date(2026, 4, 5), utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30)),
])
def test_daily_digest_in_the_repeated_hour_fires_once(zone, at, fold_day, first, second):
    settings, channel = daily(zone, at)
    editions, t = [], first - timedelta(days=2)
    while t < first + timedelta(days=2):
        t = next_digest(channel, settings, t)
        editions.append(t)
    on_fold_day = [e for e in editions if e.astimezone(ZoneInfo(zone)).date() == fold_day]
    assert on_fold_day == [first]  # the first occurrence only
    assert second not in editions
    keys = [digest_edition_key(channel, settings, e) for e in editions]
    assert len(set(keys)) == len(keys)


def test_a_digest_channels_post_waits_for_the_next_edition():
    settings, channel = site(NY, mode="digest", delay="1h", stagger="2m",
                             digest={"every": "day", "at": "07:30"})
    # Seen 06:45 EST + 1 h = 07:45: too late for today's 07:30, so tomorrow's (12:30Z).
    assert due_at(channel, settings, utc(2026, 1, 6, 11, 45)) == utc(2026, 1, 7, 12, 30)
    # Ready exactly at an edition: that edition carries it; the second channel 2 minutes later.
    assert due_at(channel, settings, utc(2026, 1, 6, 11, 30)) == utc(2026, 1, 6, 12, 30)
    assert due_at(channel, settings, utc(2026, 1, 6, 11, 30), index=1) == utc(2026, 1, 6, 12, 32)


# --- Send windows, quiet hours, stagger ------------------------------------------------------

def test_no_scheduling_settings_means_seen_plus_delay():
    settings, channel = site(NY, delay="15m")
    assert due_at(channel, settings, utc(2026, 3, 8, 7, 10)) == utc(2026, 3, 8, 7, 25)


def test_quiet_hours_wrapping_midnight():
    settings, channel = site(NY, quiet_hours={"start": "21:00", "end": "07:00"})
    # Tue 22:00 EST (03:00Z Wed) waits for Wed 07:00 EST.
    assert due_at(channel, settings, utc(2026, 1, 7, 3)) == utc(2026, 1, 7, 12)
    # 06:59 local still quiet; 07:00 and 20:59 are not.
    assert due_at(channel, settings, utc(2026, 1, 7, 11, 59)) == utc(2026, 1, 7, 12)
    assert due_at(channel, settings, utc(2026, 1, 7, 12)) == utc(2026, 1, 7, 12)
    assert due_at(channel, settings, utc(2026, 1, 8, 1, 59)) == utc(2026, 1, 8, 1, 59)


def test_quiet_hours_ending_in_the_gap_end_an_hour_later_by_the_clock():
    # 02:30 on 2026-03-08 does not exist in New York: the quiet night ends at 03:30 EDT (07:30Z).
    settings, channel = site(NY, quiet_hours={"start": "21:00", "end": "02:30"})
    assert due_at(channel, settings, utc(2026, 3, 8, 7, 10)) == utc(2026, 3, 8, 7, 30)
    # The night before is ordinary: 02:30 EST = 07:30Z.
    assert due_at(channel, settings, utc(2026, 3, 7, 7)) == utc(2026, 3, 7, 7, 30)


def test_quiet_hours_ending_in_the_fold_end_at_the_first_occurrence():
    settings, channel = site(NY, quiet_hours={"start": "22:00", "end": "01:30"})
    # 01:10 EDT (05:10Z) is quiet; the night ends at the first 01:30 (EDT, 05:30Z).
    assert due_at(channel, settings, utc(2026, 11, 1, 5, 10)) == utc(2026, 11, 1, 5, 30)
    # After it the clock shows 01:10 again (EST, 06:10Z): the quiet hours are over by then.
    assert due_at(channel, settings, utc(2026, 11, 1, 6, 10)) == utc(2026, 11, 1, 6, 10)


def test_weekday_window_skips_the_weekend():
    settings, channel = site(BERLIN, send_window={"days": ["mon", "tue", "wed", "thu", "fri"],
                                                  "start": "08:00", "end": "20:00"})
    # Fri 2026-03-27 21:00 CET -> Mon 2026-03-30 08:00 CEST (06:00Z), across the spring change.
    assert due_at(channel, settings, utc(2026, 3, 27, 20)) == utc(2026, 3, 30, 6)
    # Inside the window: right away.
    assert due_at(channel, settings, utc(2026, 3, 30, 9)) == utc(2026, 3, 30, 9)


def test_window_wrapping_midnight_belongs_to_the_day_it_opens():
    settings, channel = site(SYDNEY, send_window={"days": ["fri"], "start": "20:00", "end": "02:00"})
    # Sat 2026-01-10 01:00 AEDT (Fri 14:00Z) is in Friday's window.
    assert due_at(channel, settings, utc(2026, 1, 9, 14)) == utc(2026, 1, 9, 14)
    # Sat 03:00 AEDT waits for Fri 2026-01-16 20:00 AEDT (09:00Z).
    assert due_at(channel, settings, utc(2026, 1, 9, 16)) == utc(2026, 1, 16, 9)


def test_window_opening_in_the_gap_opens_at_the_shifted_instant():
    settings, channel = site(NY, send_window={"days": ["sun"], "start": "02:30", "end": "06:00"})
    # Sun 2026-03-08 01:00 EST: the window opens at "02:30" = 03:30 EDT (07:30Z).
    assert due_at(channel, settings, utc(2026, 3, 8, 6)) == utc(2026, 3, 8, 7, 30)


def test_window_and_quiet_hours_together():
    settings, channel = site(NY, send_window={"start": "06:00", "end": "23:00"},
                             quiet_hours={"start": "12:00", "end": "13:00"})
    assert due_at(channel, settings, utc(2026, 1, 6, 17, 15)) == utc(2026, 1, 6, 18)  # lunch
    assert due_at(channel, settings, utc(2026, 1, 7, 4, 30)) == utc(2026, 1, 7, 11)  # 23:30 -> 06:00


def test_stagger_offsets_each_channel_even_when_a_window_opens():
    settings, channel = site(NY, delay="10m", stagger="45s", quiet_hours={"start": "21:00", "end": "07:00"})
    daytime = utc(2026, 1, 6, 15)
    assert [due_at(channel, settings, daytime, i) for i in range(3)] == [
        utc(2026, 1, 6, 15, 10), utc(2026, 1, 6, 15, 10, 45), utc(2026, 1, 6, 15, 11, 30)]
    night = utc(2026, 1, 7, 3)  # 22:00 EST: all three wait for 07:00, then fan out
    assert [due_at(channel, settings, night, i) for i in range(3)] == [
        utc(2026, 1, 7, 12), utc(2026, 1, 7, 12, 0, 45), utc(2026, 1, 7, 12, 1, 30)]


def test_inputs_must_be_aware_and_outputs_are_utc():
    settings, channel = site(BERLIN, quiet_hours={"start": "22:00", "end": "06:00"})
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(channel, settings, datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError, match="index"):
        due_at(channel, settings, utc(2026, 1, 1), index=-1)
    with pytest.raises(ValueError, match="no digest"):
        next_digest(channel, settings, utc(2026, 1, 1))
    local = datetime(2026, 1, 1, 23, tzinfo=ZoneInfo(BERLIN))
    assert due_at(channel, settings, local) == utc(2026, 1, 2, 5)
    assert due_at(channel, settings, local).tzinfo is UTC


# --- Settings: the new keys and their one-line errors ----------------------------------------

EXAMPLE = """
[site]
name = "Practice"
url = "https://example.org"
timezone = "America/New_York"

[channels.x]
kind = "x"
delay = "10m"
stagger = "1m"
send_window = { days = ["mon", "tue", "wed", "thu", "fri"], start = "08:00", end = "20:00" }
quiet_hours = { start = "21:00", end = "07:00" }

[channels.weekly]
kind = "email"
mode = "digest"
digest = { every = "week", day = "tue", at = "09:00" }

[channels.morning]
kind = "email"
mode = "digest"
digest = { every = "day", at = 07:30:00 }
"""


def test_example_settings_load():
    settings = from_dict(tomllib.loads(EXAMPLE))
    x = settings.channels["x"]
    assert x.send_window.weekdays == [0, 1, 2, 3, 4] and x.send_window.end == time(20)
    assert x.quiet_hours.start == time(21) and x.stagger == timedelta(minutes=1)
    assert settings.channels["weekly"].digest.day == "tue"
    assert settings.channels["morning"].digest.at == time(7, 30)  # a TOML local time works too
    assert settings.channels["morning"].mode == "digest" and x.mode == "per_post"


def test_window_defaults_and_shorthands():
    _, channel = site(NY, send_window={"days": ["Sun", "mon", "mon"], "end": "24:00", "start": "08:00"})
    assert channel.send_window.days == ["mon", "sun"]
    assert channel.send_window.end == time(0)
    assert span_minutes(time(8), time(0)) == 16 * 60 and span_minutes(time(0), time(0)) == 24 * 60


@pytest.mark.parametrize("channel, message", [
    ({"send_window": {"days": ["tues"]}}, "channels.c.send_window.days: unknown day 'tues'"),
    ({"send_window": {"days": []}}, "channels.c.send_window.days: expected a non-empty list of days"),
    ({"send_window": {"start": "8am"}}, "channels.c.send_window.start: expected a time like '08:00'"),
    ({"send_window": {"start": "24:00"}}, "channels.c.send_window.start: expected a time like '08:00'"),
    ({"quiet_hours": {"start": "21:00", "end": "7:00"}}, "channels.c.quiet_hours.end: expected a time"),
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "channels.c.quiet_hours.start: expected a time"),
    ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "channels.c.quiet_hours: quiet_hours start and end"),
    ({"quiet_hours": {"start": "21:00"}}, "channels.c.quiet_hours.end: required key is missing"),
    ({"send_window": {"start": "08:00", "end": "09:00"}, "quiet_hours": {"start": "07:00", "end": "10:00"}},
     "channels.c: send_window and quiet_hours leave no time in the week to send"),
    ({"stagger": "-1m"}, "channels.c.stagger: expected a duration"),
    ({"stagger": -5}, "channels.c.stagger: must not be negative"),
    ({"mode": "digest"}, 'channels.c: mode = "digest" needs a digest table'),
    ({"mode": "weekly"}, "channels.c.mode: Input should be 'per_post' or 'digest'"),
    ({"digest": {"every": "day"}}, 'channels.c: digest is set but mode is "per_post"'),
    ({"mode": "digest", "digest": {"every": "week"}}, "channels.c.digest: a weekly digest needs day"),
    ({"mode": "digest", "digest": {"every": "day", "day": "mon"}}, "channels.c.digest: day only applies"),
    ({"mode": "digest", "digest": {"every": "month"}}, "channels.c.digest.every: Input should be"),
    ({"mode": "digest", "digest": {"every": "day"}, "quiet_hours": {"start": "21:00", "end": "07:00"}},
     "channels.c: send_window and quiet_hours do not apply to digests"),
    ({"send_window": {"days": ["mon"], "hours": "9-5"}}, "channels.c.send_window.hours: unknown key"),
])
def test_bad_schedule_settings_are_one_line_errors(channel, message):
    with pytest.raises(SettingsError) as err:
        site(NY, **channel)
    assert str(err.value).startswith(f"settings: {message}")
    assert "\n" not in str(err.value)


# --- Properties ------------------------------------------------------------------------------

zones = st.sampled_from(ZONES)
# Any instant 2025-2028, or one within two days of a 2026 transition (where the bugs live).
near_transition = st.builds(lambda t, s: t + timedelta(seconds=s), st.sampled_from(TRANSITIONS),
                            st.integers(-2 * 86400, 2 * 86400))
anywhere = st.datetimes(datetime(2025, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC))
instants = st.one_of(anywhere, near_transition)


def clocks(hours=range(24)):
    """Half-hour wall times within HOURS."""
    return st.builds(lambda h, m: time(h, m), st.sampled_from(list(hours)), st.sampled_from([0, 30]))


def weekly_minutes(weekdays, start: time, end: time) -> set[int]:
    opens = start.hour * 60 + start.minute
    return {(d * 1440 + opens + k) % 10080 for d in weekdays for k in range(span_minutes(start, end))}


def longest_run(minutes: set[int]) -> int:
    """The longest run of consecutive minutes, around the week's end too."""
    best = run = 0
    for m in range(2 * 10080):
        run = run + 1 if m % 10080 in minutes else 0
        best = max(best, run)
    return min(best, 10080)


@st.composite
def schedules(draw, hours=range(24)):
    """A send window and maybe quiet hours leaving at least two hours in a row each week, so that
    a DST gap (one hour) cannot erase the week's only chance to send."""
    days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
    window = {"days": days, "start": draw(clocks(hours)), "end": draw(clocks(hours))}
    quiet = None
    if draw(st.booleans()):
        quiet = {"start": draw(clocks(hours)), "end": draw(clocks(hours))}
        assume(quiet["start"] != quiet["end"])
    allowed = weekly_minutes([DAYS.index(d) for d in days], window["start"], window["end"])
    if quiet:
        allowed -= weekly_minutes(range(7), quiet["start"], quiet["end"])
    assume(longest_run(allowed) >= 120)
    fmt = {k: (v.strftime("%H:%M") if isinstance(v, time) else v) for k, v in window.items()}
    config = {"send_window": fmt}
    if quiet:
        config["quiet_hours"] = {k: v.strftime("%H:%M") for k, v in quiet.items()}
    return config


def in_span_by_the_clock(local: datetime, weekdays, start: time, end: time) -> bool:
    """Is LOCAL's wall time inside a span opening on WEEKDAYS (checked on the wall clock)?"""
    minute = local.hour * 60 + local.minute
    opens, length = start.hour * 60 + start.minute, span_minutes(start, end)
    for back in (0, 1):  # a span opened today, or yesterday and wrapping midnight
        if (local.weekday() - back) % 7 in weekdays and 0 <= minute + 1440 * back - opens < length:
            return True
    return False


def allowed_by_the_clock(t: datetime, channel, zone: str) -> bool:
    local = t.astimezone(ZoneInfo(zone))
    w, q = channel.send_window, channel.quiet_hours
    inside = in_span_by_the_clock(local, w.weekdays, w.start, w.end)
    return inside and not (q and in_span_by_the_clock(local, range(7), q.start, q.end))


def in_span_by_the_rule(t: datetime, weekdays, start: time, end: time, tz: ZoneInfo) -> bool:
    """Is instant T inside a span whose ends are wall times resolved with fold=0 (the stated rule)?"""
    today = t.astimezone(tz).date()
    for opened in (today - timedelta(days=2), today - timedelta(days=1), today):
        closes = opened if end > start else opened + timedelta(days=1)
        lo = datetime.combine(opened, start, tzinfo=tz).astimezone(UTC)
        hi = datetime.combine(closes, end, tzinfo=tz).astimezone(UTC)
        if opened.weekday() in weekdays and lo <= t < hi:
            return True
    return False


def allowed_by_the_rule(t: datetime, channel, zone: str) -> bool:
    tz, w, q = ZoneInfo(zone), channel.send_window, channel.quiet_hours
    inside = in_span_by_the_rule(t, w.weekdays, w.start, w.end, tz)
    return inside and not (q and in_span_by_the_rule(t, range(7), q.start, q.end, tz))


# Boundaries kept out of 00:00-04:00 (where these zones change) are never in a gap or fold, so
# the rule and the plain wall clock must agree exactly: check against the wall clock.
@hsettings(max_examples=150, deadline=None)
@given(zone=zones, seen=instants, config=schedules(hours=range(4, 24)))
def test_due_at_is_the_first_wall_clock_allowed_instant(zone, seen, config):
    settings, channel = site(zone, **config)
    due = due_at(channel, settings, seen)
    assert due.tzinfo is UTC
    assert seen <= due <= seen + timedelta(days=8)
    assert allowed_by_the_clock(due, channel, zone)
    # Nothing earlier was allowed (allowed slices are 30-minute multiples: a 10-minute probe
    # cannot step over one).
    probe = seen
    while probe < due:
        assert not allowed_by_the_clock(probe, channel, zone), probe
        probe += timedelta(minutes=10)
    if due > seen:
        assert not allowed_by_the_clock(due - timedelta(microseconds=1), channel, zone)


# Boundaries anywhere, 02:30 included: check against an independent reading of the stated rule.
@hsettings(max_examples=150, deadline=None)
@given(zone=zones, seen=instants, config=schedules(), index=st.integers(0, 7),
       stagger=st.integers(0, 600), delay=st.integers(0, 3 * 3600))
def test_due_at_obeys_the_dst_rule_everywhere(zone, seen, config, index, stagger, delay):
    settings, channel = site(zone, stagger=stagger, delay=delay, **config)
    earliest = seen + timedelta(seconds=delay + index * stagger)
    due = due_at(channel, settings, seen, index)
    assert earliest <= due <= earliest + timedelta(days=8)
    assert allowed_by_the_rule(due, channel, zone)
    if index == 0 and due > earliest:  # unstaggered, it is the first allowed instant
        assert not allowed_by_the_rule(due - timedelta(microseconds=1), channel, zone)


@hsettings(max_examples=200, deadline=None)
@given(zone=zones, after=instants, every=st.sampled_from(["day", "week"]), day=st.sampled_from(DAYS),
       at=st.builds(lambda h, m: time(h, m), st.integers(0, 23), st.sampled_from([0, 15, 30, 45])))
def test_next_digest_properties(zone, after, every, day, at):
    digest = {"every": every, "at": at.strftime("%H:%M")} | ({"day": day} if every == "week" else {})
    settings, channel = site(zone, mode="digest", digest=digest)
    tz, period = ZoneInfo(zone), timedelta(days=7 if every == "week" else 1)
    first = next_digest(channel, settings, after)
    second = next_digest(channel, settings, first)
    assert after < first < second
    assert period - timedelta(hours=1) <= second - first <= period + timedelta(hours=1)
    assert first - after <= period + timedelta(hours=1)
    for edition in (first, second):
        assert_wall_time_is_configured_or_shifted_by_the_gap(edition, at, tz)
        if every == "week":
            assert DAYS[edition.astimezone(tz).weekday()] == day
    keys = [digest_edition_key(channel, settings, e) for e in (first, second)]
    assert keys[0] != keys[1]
    assert digest_edition_key(channel, settings, second - timedelta(microseconds=1)) == keys[0]


def assert_wall_time_is_configured_or_shifted_by_the_gap(edition: datetime, at: time, tz: ZoneInfo):
    local = edition.astimezone(tz)
    assert local.fold == 0  # never the second pass through a repeated hour
    wall = datetime.combine(local.date(), at)
    exists = wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
    if exists:
        assert local.time() == at
    else:  # a gap day: the pre-jump offset (fold=0) minus the post-jump one (fold=1) is the gap
        gap = wall.replace(tzinfo=tz, fold=1).utcoffset() - wall.replace(tzinfo=tz, fold=0).utcoffset()
        assert gap > timedelta(0)
        assert local.replace(tzinfo=None) == wall + gap
