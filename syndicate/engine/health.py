"""Is Syndicate doing its work? One list of checks, read by `GET /healthz` and `syndicate doctor`.

A health check that answers "ok" whatever the workers, beat or the schedule are doing is worse
than none (Postiz #1748, Mixpost #131). Each check here proves a part of the work from the
ledger: the ledger answers, the broker answers (workers only), the runner's heartbeat is fresh,
nothing due waits unclaimed, no send hangs past its lease, every feed was fetched lately. Each
has its threshold under ``[health]`` (docs/settings.md); any check beyond it makes the whole
report unhealthy (HTTP 503, a non-zero exit). Details are for people and never hold a secret
(no URL of the broker or the ledger, only host and port).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine import pause
from syndicate.engine.heartbeat import NAMES
from syndicate.ledger.models import Delivery, Feed, Heartbeat, utcnow
from syndicate.settings import Settings

_BROKER_TIMEOUT = 3.0  # seconds: a health check must answer quickly even when Redis hangs


@dataclass(frozen=True)
class Check:
    name: str  # "ledger", "broker", "beat", "dispatcher", "runner", "due", "sending", "feed:NAME"
    ok: bool
    detail: str  # one line for people
    value: float | None = None  # what was measured (seconds, or a count), compared with threshold
    threshold: float | None = None
    skipped: bool = False  # not applicable here (counts as ok)


@dataclass(frozen=True)
class Report:
    at: datetime
    runner: str  # "embedded", "workers", or "none yet"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict:
        """The JSON of /healthz and `doctor --json`: one entry per check, by name."""
        return {"ok": self.ok, "at": self.at.isoformat(), "runner": self.runner,
                "failing": [c.name for c in self.failing],
                "checks": {c.name: {k: v for k, v in asdict(c).items() if k != "name"} for c in self.checks}}


@dataclass
class _Context:
    settings: Settings
    factory: sessionmaker[Session]
    now: datetime
    started_at: datetime | None  # when the observer (the web server) started; None for doctor
    beats: dict[str, Heartbeat]
    runner: str


def evaluate(settings: Settings, factory: sessionmaker[Session], now: datetime | None = None,
             started_at: datetime | None = None) -> Report:
    """Run every check. STARTED_AT (the web server's start) gives a fresh deployment one
    ``heartbeat_after`` to start its runner before "nothing has run yet" counts as a failure."""
    now = now or utcnow()
    try:
        with factory() as s:
            s.execute(select(1))
            beats = {b.name: b for b in s.scalars(select(Heartbeat))}
    except Exception as exc:  # noqa: BLE001 - any failure to read is the answer
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split()[:30]) or type(exc).__name__
        return Report(now, "unknown", [Check("ledger", False, f"the ledger cannot be read: {reason}")])
    ctx = _Context(settings, factory, now, started_at, beats, _runner(settings, beats))
    checks = [Check("ledger", True, "the ledger answers")]
    for check in CHECKS:
        checks += check(ctx)
    return Report(now, ctx.runner, checks)


def _runner(settings: Settings, beats: dict[str, Heartbeat]) -> str:
    if settings.health.runner != "auto":
        return settings.health.runner
    celery = [b.at for name, b in beats.items() if name in ("beat", "dispatcher")]
    embedded = beats.get("runner")
    if celery and (embedded is None or max(celery) >= embedded.at):
        return "workers"
    return "embedded" if embedded is not None else "none yet"


def _broker(ctx: _Context) -> list[Check]:
    if ctx.runner != "workers":
        return [Check("broker", True, "not used: the embedded runner needs no broker", skipped=True)]
    url = ctx.settings.broker.url
    where = _where(url)
    try:
        if url.split(":", 1)[0] in ("redis", "rediss", "unix"):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=_BROKER_TIMEOUT,
                                          socket_connect_timeout=_BROKER_TIMEOUT)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=_BROKER_TIMEOUT) as conn:
                conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001
        return [Check("broker", False, f"the broker at {where} does not answer ({type(exc).__name__}): "
                                       "workers get no work")]
    return [Check("broker", True, f"the broker at {where} answers")]


def _where(url: str) -> str:
    """host:port of a broker URL, without user or password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.hostname or 'localhost'}:{parts.port}" if parts.port else (parts.hostname or "localhost")
    except ValueError:
        return "(unreadable URL)"


def _heartbeats(ctx: _Context) -> list[Check]:
    names = {"workers": ("beat", "dispatcher"), "embedded": ("runner",)}.get(ctx.runner, ("runner",))
    return [_heartbeat(ctx, name) for name in names]


_START_HINT = {"beat": "is `syndicate beat` running?",
               "dispatcher": "are `syndicate worker`s running (they run beat's dispatcher ticks)?",
               "runner": "start `syndicate run` (or `syndicate beat` and workers)"}


def _heartbeat(ctx: _Context, name: str) -> Check:
    limit = ctx.settings.health.heartbeat_after
    row = ctx.beats.get(name)
    label = NAMES.get(name, name) if ctx.runner != "none yet" else "no runner (syndicate run, or beat and workers)"
    if row is None:
        if ctx.started_at is not None and ctx.now - ctx.started_at <= limit:
            return Check(name, True, f"{label} has not run yet (this server started "
                                     f"{human(ctx.now - ctx.started_at)} ago)", threshold=limit.total_seconds())
        return Check(name, False, f"{label} has never run: {_START_HINT[name]}", threshold=limit.total_seconds())
    age = max(timedelta(0), ctx.now - row.at)
    seconds = round(age.total_seconds(), 1)
    if age > limit:
        return Check(name, False, f"{label} silent for {human(age)} (threshold {human(limit)}; last on "
                                  f"{row.host or 'an unnamed host'}): {_START_HINT[name]}",
                     seconds, limit.total_seconds())
    return Check(name, True, f"{label} ran {human(age)} ago on {row.host or 'an unnamed host'}",
                 seconds, limit.total_seconds())


def _pause(ctx: _Context) -> list[Check]:
    """The pause switch: shown, not failed (a person paused on purpose); `due` then waits too."""
    with ctx.factory() as s:
        state = pause.paused(s)
    if state is None:
        return [Check("pause", True, "sending goes on (not paused)")]
    return [Check("pause", True, state.line())]


def _due(ctx: _Context) -> list[Check]:
    limit = ctx.settings.health.due_after
    with ctx.factory() as s:
        if pause.paused(s) is not None:  # nothing is claimed on purpose: not a fault
            return [Check("due", True, "paused: due deliveries wait for `syndicate resume`", skipped=True)]
        oldest, count = s.execute(select(func.min(Delivery.due_at), func.count())
                                  .where(Delivery.state == "planned", Delivery.due_at <= ctx.now)).one()
    if oldest is None:
        return [Check("due", True, "nothing due waits", 0.0, limit.total_seconds())]
    lag = max(timedelta(0), ctx.now - oldest)
    text = f"{count} due deliver{'y' if count == 1 else 'ies'}, the oldest due {human(lag)} ago"
    if lag > limit:
        return [Check("due", False, f"{text} and still unclaimed (threshold {human(limit)}): nothing is "
                                    "sending them", lag.total_seconds(), limit.total_seconds())]
    return [Check("due", True, text, lag.total_seconds(), limit.total_seconds())]


def _sending(ctx: _Context) -> list[Check]:
    grace = ctx.settings.health.sending_after
    with ctx.factory() as s:
        count, oldest = s.execute(select(func.count(), func.min(Delivery.lease_until))
                                  .where(Delivery.state == "sending",
                                         Delivery.lease_until < ctx.now - grace)).one()
    if not count:
        return [Check("sending", True, "no send hangs past its lease", 0, grace.total_seconds())]
    return [Check("sending", False, f"{count} deliver{'y' if count == 1 else 'ies'} still `sending` "
                                    f"{human(ctx.now - oldest)} after the lease ended: the reaper is not "
                                    "running (it would mark them unknown)", count, grace.total_seconds())]


def _feeds(ctx: _Context) -> list[Check]:
    limit = ctx.settings.health.feed_after
    names = [f.name for f in ctx.settings.feeds]
    if not names:
        return []
    with ctx.factory() as s:
        rows = {r.name: r for r in s.scalars(select(Feed).where(Feed.name.in_(names)))}
    checks = []
    for name in names:
        row = rows.get(name)
        key = f"feed:{name}"
        if row is not None and row.last_ok_at is not None:
            age = max(timedelta(0), ctx.now - row.last_ok_at)
            if age > limit:
                error = f": {_short(row.last_error)}" if row.last_error else ""
                checks.append(Check(key, False, f"no successful fetch for {human(age)} (threshold "
                                                f"{human(limit)}){error}", age.total_seconds(), limit.total_seconds()))
            else:
                checks.append(Check(key, True, f"fetched {human(age)} ago" + (
                    f"; the last try failed: {_short(row.last_error)}" if row.last_error else ""),
                    age.total_seconds(), limit.total_seconds()))
        elif row is not None and row.last_polled_at is not None:
            checks.append(Check(key, False, f"never fetched successfully: {_short(row.last_error or 'no reason')}",
                                threshold=limit.total_seconds()))
        else:
            checks.append(Check(key, True, "not polled yet", threshold=limit.total_seconds()))
    return checks


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def human(delta: timedelta) -> str:
    """3s, 2m 10s, 1h 5m, 2d 3h."""
    seconds = int(delta.total_seconds())
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            rest = (seconds % size) // sub_size
            return f"{seconds // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{seconds}s"


# The checks, in the order shown. Each takes the context and returns its entries; a new one
# is one function and one line here.
CHECKS: list[Callable[[_Context], list[Check]]] = [_pause, _broker, _heartbeats, _due, _sending, _feeds]
