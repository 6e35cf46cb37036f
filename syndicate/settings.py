"""Settings: one TOML file, validated on load.

Where the file comes from: ``--config``, else ``$SYNDICATE_CONFIG``, else ``./settings.toml``.
A mistake is reported as one line naming the key (``channels.x.kind: ...``); the CLI exits 2.
Secrets are never values here, only the *names* of environment variables (keys ending in
``_env``), read when a provider needs them. Every key is documented in docs/settings.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

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


class _Strict(BaseModel):
    # A misspelt key is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Brand(_Strict):
    logo_url: str | None = None
    primary_color: str = "#2f6f6a"
    accent_color: str = "#f4efe6"
    text_color: str = "#1f2a30"


class Site(_Strict):
    name: str
    url: str
    timezone: str = "UTC"
    address: str = ""  # postal address, printed in every email footer (CAN-SPAM)
    contact_url: str | None = None
    contact_text: str = "We offer in-person and virtual services. Contact us to book a session."
    language: str = "en"
    brand: Brand = Brand()

    @field_validator("url")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an absolute http(s) URL, got {v!r}")
        return v.rstrip("/")

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
    url: str = "sqlite:///syndicate.db"


class Broker(_Strict):
    url: str = "redis://127.0.0.1:6379/0"


class Outbox(_Strict):
    dir: str = "outbox"


class Run(_Strict):
    interval: Duration = timedelta(minutes=15)  # how often `syndicate run` polls and dispatches
    claim_ttl: Duration = timedelta(minutes=5)  # a claim or send older than this is reaped
    batch_size: int = Field(default=50, ge=1)  # deliveries claimed per dispatcher tick


class Fetch(_Strict):
    timeout: Duration = timedelta(seconds=20)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    user_agent: str = "Syndicate/0.1 (+https://github.com/syndicate)"


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


class Channel(_Strict):
    kind: Literal["email", "x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads"]
    provider: str = "outbox"
    enabled: bool = True
    template: str | None = None  # template name override (file under templates/)
    delay: Duration = timedelta(0)  # wait after a post is first seen
    hold: bool = False  # every delivery waits for approval
    # Email
    from_address: str | None = None
    from_name: str | None = None
    to: list[str] = []  # outbox/SMTP demo recipients (the subscriber list comes later)
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    # Social
    hashtags: dict[str, str] = {}  # category -> hashtag (without '#')
    max_hashtags: int = Field(default=3, ge=0)
    utm: dict[str, str] = {}  # e.g. {source = "x", medium = "social"}; off when empty
    # Provider-specific options (board id, author URN, instance URL, ...); secrets as *_env names.
    options: dict[str, Any] = {}

    @field_validator("options")
    @classmethod
    def _no_inline_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if re.search(r"(secret|token|password|api_key|apikey)$", key, re.I):
                raise ValueError(
                    f"option {key!r} looks like a secret; name an environment variable instead "
                    f"({key}_env = \"MY_VAR\")"
                )
        return v


class Settings(_Strict):
    site: Site
    store: Store = Store()
    broker: Broker = Broker()
    outbox: Outbox = Outbox()
    run: Run = Run()
    fetch: Fetch = Fetch()
    safety: Safety = Safety()
    feeds: list[Feed] = []
    channels: dict[str, Channel] = {}
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

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def outbox_dir(self) -> Path:
        return self.resolve_path(self.outbox.dir)

    @property
    def store_url(self) -> str:
        """The store URL, a relative SQLite path made relative to the settings file."""
        url = os.environ.get("SYNDICATE_STORE_URL") or self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.resolve_path(url[len(prefix):]))
        return url

    def feed_location(self, feed: Feed) -> str:
        if re.match(r"^https?://", feed.url):
            return feed.url
        return str(self.resolve_path(feed.url))

    def enabled_channels(self) -> dict[str, Channel]:
        return {name: ch for name, ch in self.channels.items() if ch.enabled}


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key (misspelt?)"
    elif first["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    more = len(err.errors()) - 1
    return f"{key}: {msg}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def default_path() -> Path:
    return Path(os.environ.get("SYNDICATE_CONFIG") or "settings.toml")


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


def secret(name_of_env: str | None, what: str) -> str:
    """Read a secret from the environment variable a setting names; never echo the value."""
    if not name_of_env:
        raise SettingsError(f"{what}: no environment variable named for this secret")
    value = os.environ.get(name_of_env)
    if not value:
        raise SettingsError(f"{what}: environment variable {name_of_env} is not set")
    return value
