"""Settings: one TOML file, validated on load.

Where the file comes from: ``--config``, else ``$SYNDICATE_CONFIG``, else ``./settings.toml``.
A mistake is reported as one line naming the key (``channels.x.kind: ...``); the CLI exits 2.
Secrets are never values here, only the *names* of environment variables (keys ending in
``_env``), read when a provider needs them. Every key is documented in docs/settings.md.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syndicate import locations
from syndicate import options as options_mod

KINDS = ("email", "x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads")
SOCIAL_KINDS = KINDS[1:]


class SettingsError(Exception):
    """A settings file that cannot be used; ``str()`` is one line naming the key."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str) and (m := _DURATION.match(value)):
        return timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"])
    raise ValueError(f"expected a duration like '15m', '2h' or a number of seconds, got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

# The page or member a LinkedIn post is made as (the Posts API's ``author``); LinkedIn refuses
# any other only at send time, after approval, so it is required when the file is read.
LINKEDIN_AUTHOR = re.compile(r"urn:li:(?:person|organization):[A-Za-z0-9_-]+")
# A BCP-47 tag's shape (language, then subtags): Bluesky's ``langs`` items have ``format:
# language`` and Mastodon takes the primary subtag, so "en_US" or "english" would be refused.
_BCP47 = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


class _Strict(BaseModel):
    # A misspelt key is an error, not silently ignored.
    # defer_build: a model's validator is built on first use, not at import (~30 ms of every command)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Brand(_Strict):
    logo_url: str | None = None
    primary_color: str = "#2f6f6a"
    accent_color: str = "#f4efe6"
    text_color: str = "#1f2a30"


class Author(_Strict):
    """An author's bio, shown under their posts in email (feeds do not carry bios)."""

    bio: str
    photo_url: str | None = None  # absolute URL on the site's own host (no third-party loads)
    url: str | None = None  # their page on the site ("More about Dana")


class Site(_Strict):
    name: str
    url: str
    timezone: str = "UTC"
    address: str = ""  # postal address, printed in every email footer (CAN-SPAM)
    contact_url: str | None = None
    contact_text: str = "We offer in-person and virtual services. Contact us to book a session."
    language: str = "en"
    brand: Brand = Brand()
    # Bios by author name exactly as the feed gives it, e.g. "Dana Reyes, LPC".
    authors: dict[str, Author] = {}

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an absolute http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("language")
    @classmethod
    def _bcp47(cls, v: str) -> str:
        tag = v.strip().replace("_", "-")  # "en_US", a POSIX locale, means the tag "en-US"
        if not _BCP47.fullmatch(tag):
            raise ValueError(f"must be a BCP-47 language tag like 'en' or 'en-US', got {v!r}")
        return tag

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like 'America/New_York')") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Store(_Strict):
    url: str = locations.DEFAULT_STORE_URL
    # The environment variable holding the Fernet key(s) that encrypt OAuth tokens and sessions
    # in the ledger: several comma-separated, the first encrypts and all decrypt (key rotation).
    encryption_key_env: str = "SYNDICATE_LEDGER_KEY"


class Broker(_Strict):
    url: str = "redis://127.0.0.1:6379/0"


class Outbox(_Strict):
    dir: str = "outbox"


class Run(_Strict):
    interval: Duration = timedelta(minutes=15)  # how often `syndicate run` polls and dispatches
    claim_ttl: Duration = timedelta(minutes=5)  # a claim or send older than this is reaped
    batch_size: int = Field(default=200, ge=1)  # deliveries claimed per dispatcher tick
    # Workers: claim no more while this many deliver messages already wait in the broker.
    max_queued: int = Field(default=400, ge=1)
    tick: Duration = timedelta(seconds=5)  # how often beat asks the ledger what is due (workers)
    retry_base: Duration = timedelta(seconds=30)  # first backoff after a retryable error; doubles
    retry_max: Duration = timedelta(hours=6)  # the longest backoff
    max_attempts: int = Field(default=8, ge=1)  # then the delivery fails for a person to look at
    # The longest one worker task may run (Celery's hard limit; the soft limit is 90% of it).
    # A long newsletter batch stops at half of it and continues in the next task.
    task_time_limit: Duration = timedelta(minutes=15)
    # After `syndicate resume`: a delivery whose due time passed more than this long ago while
    # paused is held for a person instead of going out late.
    stale_after: Duration = timedelta(hours=1)


class Fetch(_Strict):
    timeout: Duration = timedelta(seconds=20)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    user_agent: str = "Syndicate/0.1 (+https://github.com/syndicate)"
    concurrency: int = Field(default=16, ge=1, le=256)  # feeds fetched at once by one poll
    per_host: int = Field(default=2, ge=1)  # requests in flight to one host at most
    # Follow a feed's redirect to another origin on a loopback/private/link-local address.
    internal_redirects: bool = False


class Feed(_Strict):
    name: str
    url: str  # http(s) URL or a file path (relative to the settings file)
    backfill: int = Field(default=0, ge=0)  # how many existing posts the first poll sends
    # A later poll finding more new posts than this holds them all for approval.
    flood_threshold: int = Field(default=5, ge=1)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"must be letters, digits, '.', '_' or '-', got {v!r}")
        return v


class Safety(_Strict):
    enabled: bool = True
    crisis_line: str = "If you are in crisis, call or text 988 (Suicide & Crisis Lifeline, US), or call 911."
    inbox_note: str = (
        "This inbox is not monitored for emergencies. If you need help right now, "
        "call or text 988 or go to your nearest emergency room."
    )
    # Matched case-insensitively against categories, title and text, as whole words.
    sensitive_topics: list[str] = [
        "suicide", "suicidal", "self-harm", "self harm", "self-injury", "NSSI", "cutting", "overdose",
    ]
    hold_social: bool = True  # sensitive posts wait for a human before any social channel
    # Two-person rule at the desk: a sensitive post's delivery cannot be approved by the person
    # who last edited it.
    two_person_rule: bool = False


class Content(_Strict):
    """Content current at send time (engine/fresh.py): checked after a delivery is claimed,
    before it is sent."""

    # The feed's copy changed since planning (an edit on the blog): render the delivery again
    # (a person's edits at the desk are kept) and record the change.
    refresh_at_send: bool = True
    # The post's page answers 404 or 410 (one HEAD, else GET, to the site's own host): the
    # delivery is withdrawn (cancelled, with the reason) instead of sent.
    withdraw_gone: bool = True
    check_timeout: Duration = timedelta(seconds=5)  # that request's time limit; no answer: it is sent


# --- Scheduling: send windows, quiet hours, digests (read by engine/schedule.py) -------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # position = date.weekday()
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")
_DAY_MINUTES, _WEEK_MINUTES = 1440, 10080


def parse_clock(value: Any, *, allow_24: bool = False) -> time:
    """``"08:00"`` (24-hour HH:MM) or a TOML local time; ``"24:00"`` (midnight) when ALLOW_24."""
    if isinstance(value, time) and not (value.second or value.microsecond or value.tzinfo):
        return value
    if isinstance(value, str) and (m := _CLOCK.match(value.strip())):
        hour, minute = int(m.group(1)), int(m.group(2))
        if allow_24 and (hour, minute) == (24, 0):
            return time(0, 0)  # the end of the day: a span ending at 00:00 runs up to midnight
        if hour < 24 and minute < 60:
            return time(hour, minute)
    hint = "HH:MM, 24-hour, '24:00' allowed as an end" if allow_24 else "HH:MM, 24-hour"
    raise ValueError(f"expected a time like '08:00' ({hint}), got {value!r}")


def _parse_clock_end(value: Any) -> time:
    return parse_clock(value, allow_24=True)


def parse_day(value: Any) -> str:
    """One day of the week as ``"mon"`` .. ``"sun"`` (any case)."""
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in DAYS:
        raise ValueError(f"unknown day {value!r} (use {', '.join(DAYS)})")
    return name


def parse_days(value: Any) -> list[str]:
    """A list of days, returned in week order without repeats; one day alone is accepted too."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a non-empty list of days like ['mon', 'tue'], got {value!r}")
    names = {parse_day(item) for item in value}
    return [day for day in DAYS if day in names]


Clock = Annotated[time, BeforeValidator(parse_clock)]
ClockEnd = Annotated[time, BeforeValidator(_parse_clock_end)]
Day = Annotated[str, BeforeValidator(parse_day)]
Days = Annotated[list[str], BeforeValidator(parse_days)]


def _minute(t: time) -> int:
    return t.hour * 60 + t.minute


def span_minutes(start: time, end: time) -> int:
    """Length of the daily span START..END in wall minutes: wraps midnight, and END == START is 24 h."""
    return (_minute(end) - _minute(start)) % _DAY_MINUTES or _DAY_MINUTES


def _week_minutes(weekdays: list[int], start: time, end: time) -> set[int]:
    """Minutes of the week (wall clock, ignoring DST) covered by spans opening on WEEKDAYS."""
    opens, length = _minute(start), span_minutes(start, end)
    return {(day * _DAY_MINUTES + opens + k) % _WEEK_MINUTES for day in weekdays for k in range(length)}


class Window(_Strict):
    """Sends may go out on DAYS from START until END; END <= START wraps past midnight, so
    ``days = ["fri"], start = "20:00", end = "02:00"`` is Friday 20:00 to Saturday 02:00."""

    days: Days = list(DAYS)
    start: Clock = time(0, 0)
    end: ClockEnd = time(0, 0)  # equal to start (the default): the whole day

    @property
    def weekdays(self) -> list[int]:
        return [DAYS.index(day) for day in self.days]


class QuietHours(_Strict):
    """No sends from START until END, every day; END < START wraps past midnight."""

    start: Clock
    end: ClockEnd

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet_hours start and end are equal; remove quiet_hours to have none")
        return self


class Digest(_Strict):
    """Digest editions, in the site's time zone: every day at AT, or every week on DAY at AT."""

    every: Literal["day", "week"]
    day: Day | None = None
    at: Clock = time(9, 0)

    @model_validator(mode="after")
    def _day_matches_every(self) -> Digest:
        if self.every == "week" and self.day is None:
            raise ValueError("a weekly digest needs day = 'mon' .. 'sun'")
        if self.every == "day" and self.day is not None:
            raise ValueError("day only applies to every = 'week'")
        return self


class Carry(_Strict):
    """Which posts a channel carries (engine/carry.py): by feed name, by category, by tag. The
    feeds' ``<category>`` holds WordPress tags and categories alike, so ``tags`` matches the same
    list as ``categories`` (case-insensitive); both are accepted so a rule reads as it is meant."""

    feeds: list[str] = []
    categories: list[str] = []
    tags: list[str] = []


class Reshare(_Strict):
    """Evergreen re-share (engine/reshare.py): a social channel shares an older post again, at
    most one a slot of EVERY, only inside the channel's send window. A post qualifies when it
    went out on this channel before, was published more than MIN_AGE ago, has had no delivery
    on the channel for REPEAT_AFTER, and is neither sensitive nor withdrawn."""

    min_age: Duration = timedelta(days=30)  # N: only posts older than this
    repeat_after: Duration = timedelta(days=90)  # M: each post at most once per this, per channel
    every: Duration = timedelta(days=1)  # one re-share per this slot (aligned to local midnight)

    @model_validator(mode="after")
    def _positive(self) -> Reshare:
        for name in ("min_age", "repeat_after", "every"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"reshare.{name} must be positive")
        if self.every < timedelta(minutes=1):
            raise ValueError("reshare.every must be at least one minute")
        return self


class Channel(_Strict):
    kind: Literal["email", "x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads"]
    provider: str = "outbox"
    enabled: bool = True
    template: str | None = None  # template name override (file under templates/)
    delay: Duration = timedelta(0)  # wait after a post is first seen
    hold: bool = False  # every delivery waits for approval
    # Scheduling, in the site's time zone (engine/schedule.py). Unset: send as soon as due.
    mode: Literal["per_post", "digest"] = "per_post"
    send_window: Window | None = None  # days and hours when sends may go out
    quiet_hours: QuietHours | None = None  # never send in these hours (may wrap midnight)
    stagger: Duration = timedelta(0)  # the Nth channel waits N x stagger: networks don't fire at once
    digest: Digest | None = None  # mode = "digest": when editions go out
    # Email
    from_address: str | None = None
    from_name: str | None = None
    to: list[str] = []  # fixed recipients; options.audience = "subscribers" mails the subscriber list instead
    reply_to: str | None = None
    # "{token}" in these is replaced by each recipient's signed token at send time. Unset: the
    # web app's one-click endpoint (web.public_url + "/unsubscribe/{token}"), and a mailto to
    # the From address.
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    # What the channel carries (engine/carry.py): a post must match ``include`` (when set) and
    # must not match ``exclude``.
    include: Carry | None = None
    exclude: Carry | None = None
    # Social
    hashtags: dict[str, str] = {}  # category -> hashtag (without '#')
    max_hashtags: int = Field(default=3, ge=0)
    utm: dict[str, str] = {}  # e.g. {source = "x", medium = "social"}; off when empty
    # Also utm_campaign = the post's slug (a digest: its edition) and utm_content = the channel's name.
    utm_per_post: bool = False
    reshare: Reshare | None = None  # evergreen re-share of older posts (social channels); off when unset
    # Provider-specific options (board id, author URN, instance URL, ...); secrets as *_env names.
    # Checked against the provider's declared options (syndicate/options.py): a typo is an error.
    options: dict[str, Any] = {}

    @field_validator("options")
    @classmethod
    def _known_options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for key in v:
            if re.search(r"(secret|token|password|api_key|apikey)$", key, re.I):
                raise ValueError(
                    f"option {key!r} looks like a secret; name an environment variable instead "
                    f"({key}_env = \"MY_VAR\")"
                )
        if "kind" not in info.data or "provider" not in info.data:
            return v  # the kind or provider is wrong itself: that error is the one to show
        return options_mod.validate(info.data["provider"], info.data["kind"], v)

    @field_validator("stagger")
    @classmethod
    def _stagger_not_negative(cls, v: timedelta) -> timedelta:
        if v < timedelta(0):
            raise ValueError(f"must not be negative, got {v}")
        return v

    @model_validator(mode="after")
    def _schedule_consistent(self) -> Channel:
        if self.mode == "digest":
            if self.digest is None:
                raise ValueError('mode = "digest" needs a digest table, e.g. {every = "week", day = "tue"}')
            if self.send_window or self.quiet_hours:
                # An edition's time is its schedule; a window could silently move or drop it.
                raise ValueError("send_window and quiet_hours do not apply to digests; set digest.at instead")
        elif self.digest is not None:
            raise ValueError('digest is set but mode is "per_post"; add mode = "digest"')
        if self.reshare is not None and self.kind not in SOCIAL_KINDS:
            raise ValueError("reshare applies to social channels only")
        if not self._has_send_time():
            raise ValueError("send_window and quiet_hours leave no time in the week to send")
        author = str(self.options.get("author_urn") or "").strip()
        if self.kind == "linkedin" and not LINKEDIN_AUTHOR.fullmatch(author):
            raise ValueError("a linkedin channel needs options.author_urn, urn:li:organization:<id> or "
                             "urn:li:person:<id> (the page or member the token posts as)")
        return self

    def _has_send_time(self) -> bool:
        """Some minute of the week is inside the window and outside quiet hours (so that
        scheduling always finds a time; DST can remove at most one night's slice)."""
        window = self.send_window or Window()
        if not self.quiet_hours:  # a span is never empty: any day at all is time to send (no 10,080-minute set)
            return bool(window.weekdays)
        allowed = _week_minutes(window.weekdays, window.start, window.end)
        allowed -= _week_minutes(list(range(7)), self.quiet_hours.start, self.quiet_hours.end)
        return bool(allowed)


class Web(_Strict):
    """The web app (`syndicate serve`): unsubscribe and confirm pages, later the preview desk."""

    # Where subscribers' mail clients reach `syndicate serve` (behind the practice's proxy);
    # unsubscribe and confirm links in emails point here. Unset: the site's URL.
    public_url: str | None = None
    # Name of the environment variable holding the key that signs unsubscribe and confirm
    # links (HMAC). Changing the key invalidates the links in emails already sent.
    secret_env: str = "SYNDICATE_SECRET"
    # Rotating that key: put the previous key in the variable this names; links and desk
    # sessions signed with it stay valid until old_secret_until (a date, UTC), never after.
    old_secret_env: str = "SYNDICATE_SECRET_OLD"
    old_secret_until: date | None = None
    # Desk sessions end after this many hours without a request (idle), and this many hours
    # after signing in whatever the activity (absolute). Signing out ends them at once.
    session_idle_hours: float = Field(default=12, gt=0)
    session_max_hours: float = Field(default=24, gt=0)
    # Reverse proxies in front of `syndicate serve` (0: none). With 1 or more, the client's
    # address, scheme and host are read from that many X-Forwarded-For/-Proto/-Host entries.
    proxy_hops: int = Field(default=0, ge=0, le=5)

    @field_validator("public_url")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an absolute http(s) URL, got {v!r}")
        return v.rstrip("/") if v else v


class Subscribers(_Strict):
    """The subscriber list the tool keeps (`syndicate subscribers ...`)."""

    # Double opt-in: imported addresses stay "pending" (never mailed) until they click the
    # confirm link that `syndicate subscribers invite` sends them.
    double_opt_in: bool = False


class Topic(_Strict):
    """A named topic readers can follow: the feed categories it gathers (case-insensitive)."""

    label: str
    categories: list[str] = Field(min_length=1)


class Signup(_Strict):
    """Public signup (`GET/POST /subscribe`, audience/signup.py): double opt-in, abuse limits."""

    enabled: bool = True
    # The email channel whose From address and transport carry confirmation and welcome emails
    # (its SMTP server, options.test_smtp, or the outbox). Unset: the first email channel.
    channel: str | None = None
    welcome: bool = False  # a welcome email after confirming (templates/email/welcome.*)
    min_fill_seconds: float = Field(default=2.0, ge=0)  # a form sent faster than this is a bot's
    per_ip_per_hour: int = Field(default=20, ge=1)
    per_address_per_hour: int = Field(default=5, ge=1)
    confirm_every: Duration = timedelta(minutes=10)  # at most one confirmation email per address


class Audience(_Strict):
    """Readers' choices: topics, cadences, and what keeps a post out of email."""

    topics: dict[str, Topic] = {}  # name -> label and the categories it gathers
    no_email_category: str = "no-email"  # a post in this category is never emailed
    # Rate-limit counters: "redis" (broker.url; shared by every `serve` process), "memory"
    # (one process: the embedded default), or "auto" (Redis if it answers, else memory).
    limits: Literal["auto", "redis", "memory"] = "auto"
    signup: Signup = Signup()


class Deliverability(_Strict):
    """Bounces, complaints and unsubscribes the mail services report (audience/suppression.py,
    the webhooks of web/hooks.py). A hard bounce or a complaint suppresses an address at once;
    soft bounces do when SOFT_BOUNCE_LIMIT of them arrive within SOFT_BOUNCE_DAYS."""

    soft_bounce_limit: int = Field(default=3, ge=1)
    soft_bounce_days: int = Field(default=30, ge=1)
    # `syndicate check --dns`: the DNS servers asked ("192.0.2.53" or "127.0.0.1:5353");
    # empty: the system's resolver.
    dns_nameservers: list[str] = []
    # Amazon SNS (POST /hooks/ses): the topics whose notifications are accepted (empty: any
    # topic, signed by SNS); the signing certificate must come from sns.<region>.amazonaws.com.
    sns_topic_arns: list[str] = []
    # Tests only: more hosts ("127.0.0.1:8443") that may serve the SNS signing certificate and
    # the SubscribeURL, over plain http too. Never set this in production.
    sns_cert_hosts: list[str] = []
    # Environment variables holding each service's webhook secret; a hook whose secret is not
    # set answers 403 and changes nothing.
    sendgrid_public_key_env: str | None = None  # the Event Webhook's verification key (base64 DER)
    postmark_secret_env: str | None = None  # "user:password" for basic auth, or the secret path part
    mailgun_signing_key_env: str | None = None  # the HTTP webhook signing key
    webhook_max_age: Duration = timedelta(minutes=5)  # a signed timestamp older than this is refused


class Health(_Strict):
    """What `GET /healthz` and `syndicate doctor` call unhealthy (engine/health.py)."""

    # Which runner to expect: "embedded" (`syndicate run`), "workers" (beat + workers: the broker
    # is pinged too), or "auto" (whichever wrote the newest heartbeat).
    runner: Literal["auto", "embedded", "workers"] = "auto"
    heartbeat_after: Duration = timedelta(minutes=2)  # beat, the dispatcher or `run` silent longer
    due_after: Duration = timedelta(minutes=15)  # a due delivery still unclaimed after this
    sending_after: Duration = timedelta(minutes=5)  # a send still `sending` this long past its lease
    feed_after: Duration = timedelta(days=1)  # a feed without a successful fetch for this long


class Metrics(_Strict):
    """`GET /metrics`: a bearer token from this variable; unset, only loopback clients are served."""

    token_env: str | None = None


ALERT_KINDS = ("held", "failed", "unknown", "feed", "token", "beat")


class Alerts(_Strict):
    """Alerts to staff (engine/alerts.py): by email through an email channel's provider, and/or
    a webhook; one message per kind per INTERVAL, each thing told once."""

    to: list[str] = []  # staff addresses
    channel: str | None = None  # the email channel whose provider sends them (smtp, or the outbox)
    webhook_url_env: str | None = None  # the variable holding a webhook URL (JSON POST); URLs are secrets
    interval: Duration = timedelta(hours=1)  # at most one message per kind in this time
    kinds: list[Literal["held", "failed", "unknown", "feed", "token", "beat"]] = list(ALERT_KINDS)
    feed_failures: int = Field(default=3, ge=1)  # a feed failing this many polls in a row
    token_warning: Duration = timedelta(days=7)  # a token that cannot be refreshed, expiring within this

    @property
    def enabled(self) -> bool:
        return bool((self.to and self.channel) or self.webhook_url_env)


class Settings(_Strict):
    site: Site
    store: Store = Store()
    broker: Broker = Broker()
    outbox: Outbox = Outbox()
    run: Run = Run()
    fetch: Fetch = Fetch()
    safety: Safety = Safety()
    content: Content = Content()  # content current at send time
    feeds: list[Feed] = []
    channels: dict[str, Channel] = {}
    web: Web = Web()  # `syndicate serve`: public URL and the link-signing key's variable
    subscribers: Subscribers = Subscribers()  # the subscriber list: double opt-in
    audience: Audience = Audience()  # signup, topics, readers' choices (issue 17)
    deliverability: Deliverability = Deliverability()  # bounces, complaints, webhooks
    health: Health = Health()  # thresholds of /healthz and `syndicate doctor`
    metrics: Metrics = Metrics()  # who may read /metrics
    alerts: Alerts = Alerts()  # telling staff what needs them (engine/alerts.py)
    templates_dir: str | None = None  # a practice's overrides, searched before the shipped ones
    # Where the file was read from: relative paths (feeds, outbox, sqlite) resolve against it.
    base_dir: Path = Path(".")

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, v: dict[str, Channel]) -> dict[str, Channel]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"channel name {name!r} must be letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _signup_channel(self) -> Settings:
        # Signup asked for outright (audience.signup.enabled or .channel set) with no way to mail
        # a confirmation is an error; left at the default, signup is simply off (signup_open).
        problem = self._signup_problem()
        if problem and self.audience.signup.model_fields_set & {"enabled", "channel"}:
            raise ValueError(problem)
        return self

    def _signup_problem(self) -> str | None:
        """Why the signup channel cannot mail one confirmation, or None: a campaign provider
        mails only its own audience (unless the channel has options.test_smtp)."""
        name = self.signup_channel() if self.audience.signup.enabled else None
        channel = self.channels.get(name) if name else None
        if channel is None or channel.provider not in options_mod.CAMPAIGN_PROVIDERS or channel.options.get("test_smtp"):
            return None
        return (f"audience.signup.enabled: channel {name!r} sends through {channel.provider}, which cannot mail one "
                "confirmation; set audience.signup.channel to an SMTP or API channel, give it options.test_smtp, "
                "or set audience.signup.enabled = false")

    @property
    def signup_open(self) -> bool:
        """Whether ``GET/POST /subscribe`` answer: signup enabled, with a way to mail confirmations."""
        return self.audience.signup.enabled and self._signup_problem() is None

    def signup_channel(self) -> str | None:
        """The email channel that carries confirmation and welcome emails: audience.signup.channel,
        else the first enabled one mailing the subscriber list, else the first enabled email one."""
        if self.audience.signup.channel:
            return self.audience.signup.channel
        emails = [n for n, ch in self.enabled_channels().items() if ch.kind == "email"]
        listed = [n for n in emails if self.channels[n].options.get("audience") == "subscribers"]
        return (listed or emails or [None])[0]

    @model_validator(mode="after")
    def _alerts_channel(self) -> Settings:
        channel = self.alerts.channel
        if self.alerts.to and not channel:
            raise ValueError("alerts.channel: name the email channel whose provider sends the alerts")
        if channel and (channel not in self.channels or self.channels[channel].kind != "email"):
            raise ValueError(f"alerts.channel: {channel!r} is not an email channel in [channels]")
        return self

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def outbox_dir(self) -> Path:
        return self.resolve_path(self.outbox.dir)

    @property
    def store_url(self) -> str:
        """The store URL, a relative SQLite path made relative to the settings file."""
        return locations.store_url(self.store.url, self.base_dir)

    def feed_location(self, feed: Feed) -> str:
        if re.match(r"^https?://", feed.url):
            return feed.url
        return str(self.resolve_path(feed.url))

    @property
    def public_url(self) -> str:
        """Where the web app (unsubscribe, confirm) is reached from an email."""
        return self.web.public_url or self.site.url

    def enabled_channels(self) -> dict[str, Channel]:
        return {name: ch for name, ch in self.channels.items() if ch.enabled}


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if isinstance(problem := (first.get("ctx") or {}).get("error"), options_mod.OptionError):
        key, msg = f"{key}.{problem.key}", problem.message  # channels.x.options.tokn_env: unknown option
    elif first["type"] == "extra_forbidden":
        msg = "unknown key (misspelt?)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    more = len(err.errors()) - 1
    return f"{key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def default_path() -> Path:
    return locations.config_path()


def load(path: str | Path | None = None) -> Settings:
    """Read and validate a settings file; raise SettingsError with a one-line message."""
    path = Path(path) if path else default_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found (use --config or $SYNDICATE_CONFIG)") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read settings file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, base_dir=path.resolve().parent, source=str(path))


def from_dict(data: dict, base_dir: Path | str = ".", source: str = "settings") -> Settings:
    if "base_dir" in data:
        raise SettingsError(f"{source}: base_dir: unknown key (misspelt?)")
    try:
        settings = Settings(**data, base_dir=Path(base_dir))
    except ValidationError as exc:
        raise SettingsError(f"{source}: {_format_error(exc)}") from None
    names = [f.name for f in settings.feeds]
    if dup := {n for n in names if names.count(n) > 1}:
        raise SettingsError(f"{source}: feeds: duplicate feed name {sorted(dup)[0]!r}")
    return settings


SECRET_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def signing_secret(web: Web) -> str:
    """The key that signs unsubscribe and confirm links and (derived) desk sessions.

    Refused when it is too weak to resist offline guessing: every subscriber holds a token
    signed with it, so a short key can be found from one newsletter.
    """
    value = secret(web.secret_env, "web.secret_env (the key that signs unsubscribe links and desk sessions)")
    _check_strength(web.secret_env, value)
    return value


def old_signing_secrets(web: Web, today: date | None = None) -> list[str]:
    """The previous key while a rotation lasts (web.old_secret_env, until web.old_secret_until)."""
    value = (os.environ.get(web.old_secret_env or "") or "").strip()
    today = today or datetime.now(UTC).date()
    if not value or web.old_secret_until is None or today > web.old_secret_until:
        return []
    _check_strength(web.old_secret_env, value)
    return [value]


def weak_secret_reason(value: str) -> str | None:
    """Why VALUE is too weak for a signing key (under ~128 bits), or None."""
    if len(value) < 32:
        return f"it has only {len(value)} characters; use at least 32 random ones"
    if len(value) * math.log2(len(set(value))) < 128:
        return "it uses too few different characters to be unguessable"
    return None


def _check_strength(name: str, value: str) -> None:
    reason = weak_secret_reason(value)
    if reason:
        raise SettingsError(f"{name} is too weak to sign links ({reason}); {SECRET_HINT}")


def secret(name_of_env: str | None, what: str) -> str:
    """Read a secret from the environment variable a setting names; never echo the value."""
    if not name_of_env:
        raise SettingsError(f"{what}: no environment variable named for this secret")
    # Env files and secret mounts often end a value with a newline; no credential has one.
    value = (os.environ.get(name_of_env) or "").strip()
    if not value:
        raise SettingsError(f"{what}: environment variable {name_of_env} is not set")
    return value
