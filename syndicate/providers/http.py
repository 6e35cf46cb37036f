"""The shared base of every adapter that calls an HTTP API, and the one place errors are classified.

Every network adapter (X, Facebook, LinkedIn, Pinterest, Mastodon, Bluesky, Threads) is an
``HttpProvider``: one ``requests.Session`` per channel, a base URL, timeouts on every call, and
``error_for()``, which turns whatever went wrong into the error vocabulary of ``base.py``:

=====================================================  ==========================================
what happened                                          error
=====================================================  ==========================================
connection refused, DNS failure, connect timeout, TLS  Retryable (nothing was sent)
read timeout / connection reset after sending          OutcomeUnknown (the post may exist), or
                                                       Retryable for a call marked ``idempotent``
429 (or a provider's own rate-limit code)              RateLimited, ``reset_at`` from Retry-After
                                                       (seconds or HTTP date), x-rate-limit-reset,
                                                       X-RateLimit-Reset or RateLimit-Reset
                                                       (epoch seconds, delta seconds or ISO 8601)
401, or a provider's token-expired/revoked code        AuthExpired
duplicate content (per provider)                       Permanent, message contains "duplicate"
a provider's "transient" flag (Graph's is_transient)   Retryable on reads and deduplicated calls;
                                                       OutcomeUnknown on any other create
any other 4xx                                          Permanent, with the provider's own message
504 on a call that creates something                   OutcomeUnknown (the gateway gave up; the
                                                       backend may have finished the post)
other 5xx                                              Retryable
missing option / environment variable for a secret     AuthExpired (a human must configure it)
=====================================================  ==========================================

Messages are ``"<Service> <status>: <provider message>"``, cut to 300 characters, and every
secret the adapter read is masked out of them: no token ever reaches a log or the ledger. The
requests library puts URLs into its exception texts, so those texts are never used either.

Payload hints
-------------
A stored payload is the network's request body. Keys starting with ``_`` are *hints* from the
renderer to the adapter and are never sent (``body_of()`` strips them):

``_thumbnail_url``
    Absolute URL of the post's image. LinkedIn and Bluesky upload it as the link card's
    thumbnail. It is fetched only from the site's own host (``site.url``) or a host listed in
    the channel option ``image_hosts``, without following redirects, and only if it is an
    ``image/*`` no larger than the network's cap; otherwise the post goes out without a
    thumbnail (never fails because of it).

``_image_url``, ``_image_alt``
    The post's image and its alt text, for a channel whose option ``media = "image"`` asks for
    an image post instead of the link card (X, Mastodon, Threads, Facebook, Bluesky). The
    adapter fetches it by the same rule as a thumbnail (``site_image``: the site's own hosts,
    no redirects, ``image/*``), fits it to the network's size and type limits (re-encoded with
    Pillow where needed), uploads it and posts referencing it. Any failure on the way (fetch,
    fit, upload) falls back to the card, never to a lost post (``media_fallback`` notes why in
    the delivery's events). An upload may be repeated by a retry; the post itself keeps the
    network's exactly-once rule (idempotency key, record key, lookup).

Options every HTTP adapter reads: ``api_base`` (default: the real API host; tests point it at a
local fake), ``timeout`` (read timeout in seconds, default 15), ``connect_timeout`` (default 5).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ProxyError
from urllib3.exceptions import SSLError as Urllib3SSLError

from syndicate.providers.base import (
    AuthExpired,
    Duplicate,
    OutcomeUnknown,
    Permanent,
    Provider,
    ProviderError,
    RateLimited,
    Retryable,
)
from syndicate.settings import SettingsError, secret

log = logging.getLogger(__name__)

HINT_PREFIX = "_"
THUMBNAIL_HINT = "_thumbnail_url"
IMAGE_HINT = "_image_url"
IMAGE_ALT_HINT = "_image_alt"
IMAGE_FETCH_MAX = 20_000_000  # a featured image larger than this is not worth fetching to shrink
MAX_MESSAGE = 300
DEFAULT_TIMEOUT = 15.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# A numeric reset header above this is an epoch time, below it a number of seconds to wait.
_EPOCH_THRESHOLD = 1_000_000_000


def body_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The request body of a stored payload: the payload without its ``_`` hints."""
    return {k: v for k, v in payload.items() if not k.startswith(HINT_PREFIX)}


@dataclass(frozen=True)
class ErrorInfo:
    """What a provider said about a failed call, parsed from its JSON error shape."""

    message: str
    code: str | None = None  # the provider's error code ("190", "ExpiredToken", "REVOKED_ACCESS_TOKEN")
    subcode: str | None = None
    transient: bool = False  # the provider marked it as passing (Graph API's is_transient)


def parse_reset(value: str | None, now: datetime | None = None) -> datetime | None:
    """A reset time from one header value: delta seconds, epoch seconds, HTTP date or ISO 8601."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    now = now or datetime.now(UTC)
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if number < 0:
            return None
        if number >= _EPOCH_THRESHOLD:
            return datetime.fromtimestamp(number, UTC)
        return now + timedelta(seconds=number)
    try:
        parsed = parsedate_to_datetime(value)  # RFC 9110 HTTP date
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))  # Mastodon's ISO 8601
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


RESET_HEADERS = ("Retry-After", "x-rate-limit-reset", "X-RateLimit-Reset", "RateLimit-Reset")


def reset_from_headers(headers: Any, names: Iterable[str] = RESET_HEADERS,
                       now: datetime | None = None) -> datetime | None:
    """The first reset time found among ``names`` (case-insensitive headers)."""
    for name in names:
        reset = parse_reset(headers.get(name), now)
        if reset is not None:
            return reset
    return None


def _connect_failure(exc: requests.ConnectionError) -> bool:
    """True when a ConnectionError happened before the request could be sent."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | NameResolutionError | ConnectTimeoutError
                      | Urllib3SSLError | ProxyError)


class HttpProvider(Provider):
    """Base of the HTTP adapters; subclasses set the class attributes and the hooks below."""

    service: ClassVar[str] = "HTTP"  # the name used in messages ("X", "LinkedIn", ...)
    default_api_base: ClassVar[str] = ""
    # Provider error codes (as strings) that mean "credentials expired/revoked", whatever status.
    auth_codes: ClassVar[frozenset[str]] = frozenset()
    # Provider error codes that mean "slow down" even without a 429.
    rate_limit_codes: ClassVar[frozenset[str]] = frozenset()
    # Substrings (lower case) of a provider message that mean the post is a duplicate.
    duplicate_markers: ClassVar[tuple[str, ...]] = ("duplicate",)
    # True where the network itself refuses a repeated post (X, Facebook, LinkedIn): a retry
    # after a lost answer then fails as Duplicate instead of posting twice.
    rejects_duplicates: ClassVar[bool] = False
    image_max_bytes: ClassVar[int] = 1_000_000
    # The account's posting limit as "N/period" (engine.ratelimit paces sends by it; a channel
    # option rate_limit overrides it); None where the provider publishes none worth pacing by.
    default_rate: ClassVar[str | None] = None

    def __init__(self, settings, channel_name, channel):
        super().__init__(settings, channel_name, channel)
        self.options: dict[str, Any] = dict(channel.options)
        self._secrets: set[str] = set()
        self._session: requests.Session | None = None
        read = float(self.options.get("timeout", DEFAULT_TIMEOUT))
        connect = float(self.options.get("connect_timeout", min(DEFAULT_CONNECT_TIMEOUT, read)))
        self.timeout: tuple[float, float] = (connect, read)

    # -- configuration ------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return str(self.options.get("api_base") or self.default_api_base).rstrip("/")

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            # No automatic retries: a retried POST is a second post. The engine decides.
            adapter = HTTPAdapter(max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.settings.fetch.user_agent
            session.trust_env = bool(self.options.get("trust_env", True))
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def secret(self, option: str, what: str | None = None, *, required: bool = True) -> str | None:
        """The secret in the environment variable named by channel option ``option``.

        A missing option or unset variable is AuthExpired: a human must configure it. The
        value is remembered only so that it can be masked out of error messages.
        """
        env_name = self.options.get(option)
        if not env_name and not required:
            return None
        label = f"{self.service} channel {self.channel_name!r} ({what or option})"
        try:
            value = secret(env_name, label)
        except SettingsError as exc:
            if not env_name:
                raise AuthExpired(f"{label}: set option {option} to the name of the environment "
                                  f"variable holding it") from None
            raise AuthExpired(str(exc)) from None
        self._remember(value)
        return value

    def option(self, name: str, *, required: bool = True, default: Any = None) -> Any:
        value = self.options.get(name, default)
        if required and value in (None, ""):
            raise Permanent(f"{self.service} channel {self.channel_name!r}: option {name} is not set")
        return value

    def _remember(self, value: str | None) -> None:
        if value and len(value) >= 4:
            self._secrets.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        # Belt and braces: bearer tokens and token-ish query parameters that slipped through.
        text = re.sub(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+", r"\1***", text)
        text = re.sub(r"(?i)((?:access_|refresh_)?token|password|secret|signature)=([^&\s\"']+)", r"\1=***", text)
        return text

    def _message(self, text: str, status: int | None = None) -> str:
        text = " ".join(self.redact(str(text)).split())
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1].rstrip() + "…"
        prefix = f"{self.service} {status}" if status else self.service
        return f"{prefix}: {text}"

    # -- the call -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        if re.match(r"^https?://", path):
            return path
        return f"{self.api_base}/{path.lstrip('/')}"

    def auth_headers(self) -> dict[str, str]:
        """Headers proving who we are; subclasses override."""
        return {}

    def request(self, method: str, path: str, *, idempotent: bool | None = None, signed: bool = True,
                what: str = "", **kwargs: Any) -> requests.Response:
        """One HTTP call; returns a 2xx response or raises a ProviderError.

        ``idempotent`` (default: True for GET/HEAD) says whether a lost answer matters: a read
        timeout on an idempotent call is Retryable, on anything else OutcomeUnknown. ``signed``
        adds ``auth_headers()``; other keyword arguments go to ``requests``.
        """
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "OPTIONS")
        headers = dict(kwargs.pop("headers", None) or {})
        if signed:
            headers = {**self.auth_headers(), **headers}
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        try:
            resp = self.session.request(method, self.url(path), headers=headers, **kwargs)
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError):
            # Raised while building the request, before anything is sent: a credential with a
            # character no HTTP header may carry (a pasted smart quote, an inner newline).
            raise AuthExpired(self._message("a credential contains characters an HTTP header cannot carry; "
                                            "check the environment variables this channel names")) from None
        except requests.RequestException as exc:
            raise self.error_for_exception(exc, idempotent=idempotent, what=what) from None
        if not 200 <= resp.status_code < 300:
            raise self.error_for(resp, idempotent=idempotent, what=what)
        return resp

    def error_for_exception(self, exc: requests.RequestException, *, idempotent: bool,
                            what: str = "") -> ProviderError:
        """Classify a failure to get any answer. The exception text (it names URLs) is not used."""
        doing = f" while {what}" if what else ""
        if isinstance(exc, requests.ConnectionError) and _connect_failure(exc):
            return Retryable(self._message(f"could not connect{doing} ({type(exc).__name__}); nothing was sent"))
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                      | requests.exceptions.InvalidSchema):
            return Permanent(self._message(f"invalid URL{doing}; check option api_base"))
        if isinstance(exc, requests.exceptions.TooManyRedirects):
            return Permanent(self._message(f"too many redirects{doing}"))
        if isinstance(exc, requests.ReadTimeout):
            detail = f"no answer within {self.timeout[1]:g} s{doing}"
        else:
            detail = f"connection lost{doing} ({type(exc).__name__})"
        if idempotent:
            return Retryable(self._message(detail))
        return OutcomeUnknown(self._message(f"{detail} after the request was sent; it may have gone through"))

    # -- the one error mapping ----------------------------------------------------------------

    def parse_error(self, resp: requests.Response) -> ErrorInfo:
        """The provider's message and code from its JSON error shape; override per provider."""
        data = _json_or_none(resp)
        return generic_error_info(data) or ErrorInfo(message=_text_snippet(resp))

    def rate_limit_reset(self, resp: requests.Response, info: ErrorInfo) -> datetime | None:
        return reset_from_headers(resp.headers)

    def is_duplicate(self, resp: requests.Response, info: ErrorInfo) -> bool:
        text = info.message.lower()
        return any(marker in text for marker in self.duplicate_markers)

    def is_auth_error(self, resp: requests.Response, info: ErrorInfo) -> bool:
        return resp.status_code == 401 or (info.code is not None and info.code in self.auth_codes)

    def is_rate_limited(self, resp: requests.Response, info: ErrorInfo) -> bool:
        return resp.status_code == 429 or (info.code is not None and info.code in self.rate_limit_codes)

    def error_for(self, resp: requests.Response, *, idempotent: bool = False, what: str = "") -> ProviderError:
        """Map one non-2xx response to the error vocabulary (the table in the module doc)."""
        status = resp.status_code
        info = self.parse_error(resp)
        doing = f" ({what})" if what else ""
        message = self._message(info.message + doing, status)
        if self.is_rate_limited(resp, info):
            return RateLimited(message, reset_at=self.rate_limit_reset(resp, info), status=status)
        if self.is_auth_error(resp, info):
            return AuthExpired(message, status=status)
        if 400 <= status < 500 and self.is_duplicate(resp, info):
            if "duplicate" not in message.lower():
                message = self._message(f"duplicate: {info.message}{doing}", status)
            return Duplicate(message, status=status)
        if status in (408, 425):  # the server gave up waiting for our request: nothing was made
            return Retryable(message, status=status)
        if info.transient:
            if idempotent or self.deduplicates:
                return Retryable(message, status=status)
            # "Transient" says a retry may work, not that nothing was made: Graph has created
            # posts on exactly these answers (arsduo/koala#699, facebookarchive/php-graph-sdk#1141).
            return OutcomeUnknown(self._message(f"{info.message}{doing}; a passing error on a create, the post "
                                                f"may have gone through", status), status=status)
        if status in (502, 503) and not idempotent and not (self.deduplicates or self.rejects_duplicates):
            # A gateway error can come back after the backend made the post; where nothing
            # would catch a second copy, a retry is not safe.
            return OutcomeUnknown(self._message(f"{info.message}{doing}; the gateway failed, the post "
                                                f"may have gone through", status), status=status)
        if status == 504 and not idempotent:
            return OutcomeUnknown(self._message(f"{info.message}{doing}; the gateway timed out, the post "
                                                f"may have gone through", status), status=status)
        if status >= 500:
            return Retryable(message, status=status)
        if 300 <= status < 400:
            return Permanent(self._message(f"unexpected redirect{doing}; check option api_base", status),
                             status=status)
        return Permanent(message, status=status)

    # -- helpers for adapters -----------------------------------------------------------------

    def json_of(self, resp: requests.Response) -> dict[str, Any]:
        """The JSON object of a 2xx answer, or {} (a 2xx means it was accepted: never raise)."""
        data = _json_or_none(resp)
        if not isinstance(data, dict):
            log.warning("%s: unexpected non-JSON success answer (%s)", self.service, resp.status_code)
            return {}
        return data

    def site_origins(self) -> set[tuple[str, str, int]]:
        """The (scheme, host, port) origins images may be fetched from: the site's own origin, its
        host (and each ``image_hosts`` host) over http or https on the standard ports, and any
        ``image_hosts`` entry written as a URL with its own port. The whole origin is compared,
        not the host alone, so a thumbnail URL cannot reach another service on the site's
        machine (``http://127.0.0.1:6379/``) when the site is on a loopback or internal host."""
        site = urlsplit(self.settings.site.url)
        origins = {_origin(site)} if site.hostname else set()
        hosts = {site.hostname or ""}
        for entry in self.options.get("image_hosts", []) or []:
            entry = str(entry).strip().lower()
            if "://" in entry:
                origins.add(_origin(urlsplit(entry)))
            else:
                hosts.add(entry)
        origins.update((scheme, host.lower(), port) for host in hosts if host
                       for scheme, port in _DEFAULT_PORTS.items())
        return origins

    def fetch_site_image(self, url: str | None, max_bytes: int | None = None) -> tuple[bytes, str] | None:
        """The bytes and content type of an image on the site's own host(s), or None.

        Never raises: a missing, foreign, oversized or non-image thumbnail just means no
        thumbnail. Redirects are not followed (they could lead off the site).
        """
        if not url:
            return None
        max_bytes = max_bytes or self.image_max_bytes
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or _origin(parts) not in self.site_origins():
            log.info("%s: thumbnail %s is not on the site's own origin; skipped", self.service, url)
            return None
        try:
            with self.session.get(url, timeout=self.timeout, stream=True, allow_redirects=False,
                                  headers={"Accept": "image/*"}) as resp:
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if resp.status_code != 200 or not ctype.startswith("image/"):
                    return None
                length = resp.headers.get("Content-Length")
                if length and length.isdigit() and int(length) > max_bytes:
                    return None
                data = bytearray()
                for chunk in resp.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        return None
                return bytes(data), ctype
        except requests.RequestException:
            return None

    # -- image posts (option media = "image") -------------------------------------------------

    @staticmethod
    def has_image(job) -> bool:
        """True when the renderer gave JOB an image to post (a channel with ``media = "image"``;
        the adapter checks its option too, so a channel switched back to cards gets cards)."""
        return bool(job.payload.get(IMAGE_HINT))

    def site_image(self, job, *, max_bytes: int, accept: Iterable[str],
                   max_pixels: int | None = None) -> SiteImage | None:
        """The post's image (payload hint ``_image_url``) fitted to a network's limits, or None
        (then the post goes out with its card). Only from the site's own hosts, as thumbnails."""
        fetched = self.fetch_site_image(job.payload.get(IMAGE_HINT), IMAGE_FETCH_MAX)
        if fetched is None:
            return None
        fitted = fit_image(fetched[0], fetched[1], max_bytes=max_bytes, accept=accept, max_pixels=max_pixels)
        if fitted is None:
            log.info("%s channel %s: the post's image cannot be fitted to the network's limits",
                     self.service, self.channel_name)
            return None
        data, ctype, width, height = fitted
        return SiteImage(data, ctype, width, height, str(job.payload.get(IMAGE_ALT_HINT) or "").strip())

    def media_fallback(self, job, why: str) -> None:
        """Record that JOB goes out with its link card instead of the image, and why (in the
        delivery's events, via the job's notes). Never raises: the post matters more."""
        log.warning("%s channel %s: image post falls back to the link card: %s", self.service, self.channel_name,
                    why)
        try:
            job.remember("media", f"card: {why}"[:300])
        except Exception:  # noqa: BLE001 - a note that cannot be written must not stop the post
            log.debug("could not note the media fallback", exc_info=True)


@dataclass(frozen=True)
class SiteImage:
    """An image ready to upload: its bytes, type, size in pixels and alt text."""

    data: bytes
    content_type: str
    width: int
    height: int
    alt: str


def fit_image(data: bytes, content_type: str, *, max_bytes: int, accept: Iterable[str],
              max_pixels: int | None = None) -> tuple[bytes, str, int, int] | None:
    """DATA as (bytes, type, width, height) within a network's limits: kept as it is when its type
    is in ACCEPT, it is at most MAX_BYTES and MAX_PIXELS, else re-encoded as a JPEG (scaled down as
    needed). None when Pillow cannot read it or it cannot be made to fit."""
    import io

    from PIL import Image

    accept = {a.lower() for a in accept}
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if (content_type in accept and len(data) <= max_bytes
                    and (max_pixels is None or width * height <= max_pixels)):
                return data, content_type, width, height
            if "image/jpeg" not in accept:
                return None
            img = img.convert("RGB")
            if max_pixels and width * height > max_pixels:
                scale = (max_pixels / (width * height)) ** 0.5
                img = img.resize((max(1, int(width * scale)), max(1, int(height * scale))))
            for _ in range(10):
                out = io.BytesIO()
                img.save(out, "JPEG", quality=85, optimize=True)
                if out.tell() <= max_bytes:
                    return out.getvalue(), "image/jpeg", img.width, img.height
                img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return None


def shrink_image(data: bytes, max_bytes: int) -> bytes | None:
    """DATA re-encoded as a JPEG of at most MAX_BYTES (scaled down as needed), or None when it
    is not an image Pillow can read. For networks that refuse a larger thumbnail (Bluesky's
    ``thumb`` has ``maxSize: 1000000``) rather than going without one."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            img.thumbnail((2000, 2000))
            for _ in range(8):
                out = io.BytesIO()
                img.save(out, "JPEG", quality=80, optimize=True)
                if out.tell() <= max_bytes:
                    return out.getvalue()
                img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return None


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except (ValueError, json.JSONDecodeError):
        return None


def _text_snippet(resp: requests.Response) -> str:
    text = (resp.text or "").strip()
    if not text or text.startswith("<"):
        return resp.reason or f"HTTP {resp.status_code}"
    return text[:200]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def generic_error_info(data: Any) -> ErrorInfo | None:
    """Understand the common JSON error shapes: Graph API, RFC 7807 problems, {"error": ...}, ..."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):  # Graph API (Facebook, Threads)
        message = err.get("error_user_msg") or err.get("message") or err.get("type") or "error"
        return ErrorInfo(message=str(message), code=_str(err.get("code")), subcode=_str(err.get("error_subcode")),
                         transient=bool(err.get("is_transient")))
    errors = data.get("errors")
    detail = data.get("detail") or data.get("message")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # X v2 problems
        first = errors[0]
        message = detail if data.get("title") else None
        parts = [p for p in (message, first.get("message") or first.get("detail")) if p]
        return ErrorInfo(message="; ".join(dict.fromkeys(str(p) for p in parts)) or "error",
                         code=_str(first.get("code") or data.get("type")))
    if isinstance(err, str):  # Mastodon {"error": "..."}, Bluesky {"error": "ExpiredToken", "message": ...}
        message = data.get("message") or data.get("error_description") or err
        return ErrorInfo(message=str(message), code=err)
    if detail:  # RFC 7807 / LinkedIn / Pinterest {"code", "message"}
        code = data.get("serviceErrorCode") or data.get("code") or data.get("type") or data.get("reason")
        return ErrorInfo(message=str(detail), code=_str(code))
    if data.get("title"):
        return ErrorInfo(message=str(data["title"]), code=_str(data.get("type")))
    return None


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(parts) -> tuple[str, str, int]:
    """(scheme, host, port) of a split URL, the port made explicit; -1 for a port that does not
    parse, so a malformed URL matches no origin."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, -1)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port
