"""Rate limits per provider account, shared by every worker (Celery's rate_limit is per worker).

A limit is "N/period" (channel option ``rate_limit``, e.g. "300/3h"; else the provider's
``default_rate``). The algorithm is GCRA (a leaky bucket kept as one timestamp), run atomically
inside Redis with Redis's own clock, so workers on hosts with skewed clocks agree. When a
provider answers 429 with a reset time, the account is blocked until then for every worker.
The embedded runner, which has no Redis, uses the same algorithm in memory.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from syndicate.settings import Channel, Settings, parse_duration

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(.+)$")


@dataclass(frozen=True)
class Rate:
    count: int
    period: float  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        m = _RATE.match(text or "")
        if not m or int(m.group(1)) < 1:
            raise ValueError(f"rate limit must look like '300/3h', got {text!r}")
        return cls(int(m.group(1)), parse_duration(m.group(2)).total_seconds())

    @property
    def interval(self) -> float:
        return self.period / self.count


# The options naming a channel's credential, in the order consulted: channels of one provider
# whose credential comes from the same environment variable share that provider account's limit.
CREDENTIAL_OPTIONS = ("token_env", "page_token_env", "api_key_env", "server_token_env")


def account_key(channel_name: str, channel: Channel) -> str:
    """Channels that share credentials share a limit: the account is option ``account`` if set,
    else the name of the credential's environment variable (CREDENTIAL_OPTIONS, the first one
    set), else the channel's own name; prefixed by the provider."""
    opts = channel.options
    account = opts.get("account") or next((opts[o] for o in CREDENTIAL_OPTIONS if opts.get(o)), None) or channel_name
    return f"{channel.provider}:{account}"


def rate_for(channel: Channel) -> Rate | None:
    from syndicate import providers

    text = channel.options.get("rate_limit")
    if text is None:
        try:
            text = getattr(providers.get(channel.provider), "default_rate", None)
        except providers.UnknownProvider:
            return None
    return Rate.parse(text) if text else None


class MemoryLimiter:
    """GCRA in one process (the embedded runner)."""

    def __init__(self):
        self._tat: dict[str, float] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, rate: Rate | None) -> float:
        """0 if a send may go now (and it is counted), else the seconds to wait."""
        with self._lock:
            now = time.time()
            if (until := self._blocked.get(key, 0)) > now:
                return until - now
            if rate is None:
                return 0.0
            tat = max(self._tat.get(key, now), now)
            allow_at = tat - (rate.period - rate.interval)
            if now < allow_at:
                return allow_at - now
            self._tat[key] = tat + rate.interval
            return 0.0

    def block(self, key: str, until: datetime) -> None:
        with self._lock:
            self._blocked[key] = max(self._blocked.get(key, 0), until.timestamp())


# KEYS[1] = tat key, KEYS[2] = block key; ARGV = period, interval (seconds, float), has_rate (0/1)
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then return tostring(blocked - now) end
if ARGV[3] == '0' then return '0' end
local period = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or tostring(now))
if tat < now then tat = now end
local allow_at = tat - (period - interval)
if now < allow_at then return tostring(allow_at - now) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil((tat + interval - now) * 1000) + 1000)
return '0'
"""


class RedisLimiter:
    """GCRA shared by all workers through the broker's Redis."""

    def __init__(self, url: str, prefix: str = "syndicate:rl:"):
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.prefix = prefix
        self._script = self.redis.register_script(_GCRA)

    def acquire(self, key: str, rate: Rate | None) -> float:
        args = [rate.period, rate.interval, 1] if rate else [0, 0, 0]
        return float(self._script(keys=[self.prefix + key, self.prefix + key + ":block"], args=args))

    def block(self, key: str, until: datetime) -> None:
        ms = int((until.timestamp() - time.time()) * 1000)
        if ms > 0:
            self.redis.set(self.prefix + key + ":block", repr(until.timestamp()), px=ms)


_memory = MemoryLimiter()
_redis: dict[str, RedisLimiter] = {}


def limiter_for(settings: Settings, shared: bool = True):
    """The Redis limiter for workers (shared=True), the in-memory one for the embedded runner."""
    if not shared or not settings.broker.url.startswith(("redis://", "rediss://", "unix://")):
        return _memory
    url = settings.broker.url
    if url not in _redis:
        _redis[url] = RedisLimiter(url)
    return _redis[url]
