"""The quiet run: `syndicate run --once` when all the pass would do is record 304s.

Most runs of a cron'd `run --once` find every feed unchanged and nothing due. The full pass
(engine/runner.py) then spends most of its second loading SQLAlchemy, pydantic, requests and the
renderers to learn that. This module, standard library only, proves the same from what the last
full pass recorded (``quiet_state``, written by ``runner.remember_quiet``) and from live checks,
and hands over to the full pass at the first thing it cannot prove:

1. the command is exactly ``[-c FILE] run --once`` (no ``--at``, no ``-v``), the full path is not
   forced (``SYNDICATE_FULL_RUN``), no proxy or netrc would change the requests;
2. the ledger is SQLite, at the newest revision, and holds a ``quiet_state`` whose fingerprint
   matches this settings file's bytes, its path, the code, and the environment variables the
   full pass reads: those settings were validated by the full pass, and ``plan`` holds the
   validated values the quiet run needs (no defaults repeated here);
3. nothing time-driven is due (``quiet_until``: the next digest edition or re-share; alerts
   make it "now") and nothing another process wrote waits (``pending_work``: posts to plan,
   deliveries due, expired claims, the pause button);
4. every feed is http(s), known to the ledger at the same URL with validators, and answers its
   conditional GET with 304 (the same headers, politeness and time limit as engine/poll.py).

Then it records the 304s exactly as engine/poll.py does and prints what the full pass prints for
an unchanged run. A 200, a redirect, an error or a timeout hands over: the full pass polls again.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import sqlite3
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from syndicate import __version__, locations
from syndicate.engine.hosts import host_key, interleaved
from syndicate.ledger import head_revision

FORCE_FULL_ENV = "SYNDICATE_FULL_RUN"  # set (non-empty): always the full pass (tests, the bench)
# Which parser judged a kept unreadable body (feeds.unparsed, engine/poll.py): a newer version
# reads the body again instead of trusting the 304.
UNPARSED_BY = __version__
# What the full pass reads from the environment beyond the settings file, whatever the settings
# say (the variables the settings name are added by remember_quiet).
ENV_ALWAYS = (locations.STORE_URL_ENV, "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
_PACKAGE = Path(__file__).resolve().parents[1]
_CODE_DIRS = ("", "engine", "feeds", "ledger", "cli", "providers")  # the code whose change must end the proof
_SQLITE = "sqlite:///"
# The 304s a quiet run that then handed over did get, for the full pass in this process to use
# instead of asking again (take_answered): feed URL -> (the ETag and Last-Modified sent, seconds).
_answered: dict[str, tuple[str | None, str | None, float]] = {}


class HandOver(Exception):
    """Something the quiet run cannot prove: the full pass runs (the reason is for tests and -v)."""


# --- what the full pass records and this checks -------------------------------------------------


def code_stamp() -> str:
    """The package's version and its modules' sizes and times: new code, a new proof."""
    parts = [__version__]
    for sub in _CODE_DIRS:
        with os.scandir(_PACKAGE / sub) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.endswith(".py"):
                    st = entry.stat()
                    parts.append(f"{sub}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def fingerprint(config: Path, raw: bytes, env_names: list[str]) -> str:
    """sha256 of the settings file (bytes and where it is), the code, and the values of ENV_NAMES.
    One digest: the secrets among those values cannot be read back from it."""
    digest = hashlib.sha256()
    for part in (code_stamp(), str(config.resolve()), *(f"{n}={os.environ.get(n, '')}" for n in env_names)):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(raw)
    return digest.hexdigest()


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite store URL, or None for any other store (the full pass opens those)."""
    if not url.startswith(_SQLITE) or ":memory:" in url or "?" in url:
        return None
    return url[len(_SQLITE):]


def ledger_time(when: datetime) -> str:
    """A time as the ledger stores it on SQLite (SQLAlchemy's format: naive UTC, microseconds)."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# What the full pass would act on that other processes may have written since it ran (`syndicate
# post`, the desk's approvals, workers): the same conditions as the full pass's own queries, in
# SQL for the standard library's sqlite3. Each is one index lookup. tests/test_quiet.py builds a
# ledger with each kind of pending work and checks the quiet run hands over.
PENDING_WORK = {
    # engine/planner.py plan_pending: posts not planned yet (partial index ix_posts_unplanned)
    "a post to plan": "SELECT 1 FROM posts WHERE planned_at IS NULL LIMIT 1",
    # engine/dispatch.py claim_due: planned and due (ix_deliveries_state_due)
    "a delivery due": "SELECT 1 FROM deliveries WHERE state = 'planned' AND due_at <= :now LIMIT 1",
    # engine/dispatch.py reap_expired: a claim or send whose lease ran out (ix_deliveries_state_due)
    "an expired claim": "SELECT 1 FROM deliveries WHERE state IN ('claimed', 'sending') AND lease_until < :now LIMIT 1",
    # engine/pause.py: the full pass prints the pause
    "sending is paused": "SELECT 1 FROM pause_switch WHERE paused LIMIT 1",
}


def pending_work(conn: sqlite3.Connection, now: datetime) -> str | None:
    """What the full pass would do now besides polling, or None."""
    for what, sql in PENDING_WORK.items():
        if conn.execute(sql, {"now": ledger_time(now)}).fetchone():
            return what
    return None


# --- the quiet run ------------------------------------------------------------------------------


def take_answered() -> dict[str, tuple[str | None, str | None, float]]:
    """The 304s of the quiet run that just handed over (once): engine/poll.py uses one for a feed
    whose validators are still the ones sent, and asks every other feed itself."""
    answered = dict(_answered)
    _answered.clear()
    return answered


def try_run(argv: list[str]) -> int | None:
    """Run `run --once` quietly and return its exit code, or None: the full pass must run."""
    _answered.clear()
    try:
        report = _run(argv)
    except HandOver:
        return None
    except Exception:  # noqa: BLE001 - a surprise here (nothing written, nothing printed): the full pass
        return None
    return report()  # the 304s are recorded: what is left is saying so


def _run(argv: list[str]):
    config = _config_of(argv)
    _check_environment()
    path = locations.config_path(config)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
        configured = (data.get("store") or {}).get("url", locations.DEFAULT_STORE_URL)
    except (OSError, ValueError, AttributeError) as exc:  # the full pass says what is wrong
        raise HandOver(f"settings: {type(exc).__name__}") from None
    if not isinstance(configured, str) or (db := sqlite_path(locations.store_url(configured, path.resolve().parent))) is None:
        raise HandOver("not a SQLite store")
    now = datetime.now(UTC)
    conn = _open(db)
    try:
        plan = _plan(conn, path, raw, now)
        printer = _Printer()
        feeds = _feeds(conn, plan["feeds"], printer)
        printer.check([part for _, lead, text in plan["say_first"] for part in (lead, text)])
        outcomes = _poll(feeds, plan, printer)
        _record(conn, feeds, outcomes, now)
    finally:
        conn.close()
    return lambda: printer.summary(plan["say_first"], feeds)


def _config_of(argv: list[str]) -> str | None:
    """The settings file of exactly ``[-c FILE | --config FILE | --config=FILE] run --once``."""
    args, config = list(argv), None
    if args and args[0] in ("-c", "--config") and len(args) > 1:
        config, args = args[1], args[2:]
    elif args and args[0].startswith("--config="):
        config, args = args[0].removeprefix("--config="), args[1:]
    if args != ["run", "--once"] or (config is not None and (not config or config.startswith("-"))):
        raise HandOver("not a plain `run --once`")
    return config


def _check_environment() -> None:
    if os.environ.get(FORCE_FULL_ENV):
        raise HandOver(f"{FORCE_FULL_ENV} is set")
    # requests takes proxies and credentials from these: the full pass knows what they mean.
    if any(name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value
           for name, value in os.environ.items()):
        raise HandOver("a proxy is set")
    if os.environ.get("NETRC") or Path("~/.netrc").expanduser().exists() or Path("~/_netrc").expanduser().exists():
        raise HandOver("a netrc file may add credentials")


def _open(db: str) -> sqlite3.Connection:
    if not Path(db).is_file():
        raise HandOver("no ledger yet")
    try:
        conn = sqlite3.connect(f"file:{Path(db).as_posix()}?mode=rw".replace("#", "%23"), uri=True, timeout=30,
                               isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")  # as ledger/db.py: wait for another writer
        conn.execute("PRAGMA synchronous=NORMAL")  # as ledger/db.py: a poll's commit is not fsynced
        return conn
    except sqlite3.Error as exc:
        raise HandOver(f"ledger: {exc}") from None


def _plan(conn: sqlite3.Connection, path: Path, raw: bytes, now: datetime) -> dict:
    """The validated settings the last full pass recorded, if they are still the ones in force."""
    try:
        versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
        if versions != [head_revision()]:
            raise HandOver("the ledger is not at the newest revision")
        row = conn.execute("SELECT fingerprint, plan, quiet_until FROM quiet_state WHERE id = 1").fetchone()
        if row is None:
            raise HandOver("no full pass recorded")
        fp, plan_text, quiet_until = row
        plan = json.loads(plan_text)
        if fp != fingerprint(path, raw, plan["env"]):
            raise HandOver("the settings, the code or the environment changed")
        if ledger_time(now) >= quiet_until:
            raise HandOver("time-driven work is due (a digest edition, a re-share, alerts)")
        if what := pending_work(conn, now):
            raise HandOver(what)
    except sqlite3.Error as exc:
        raise HandOver(f"ledger: {exc}") from None
    return plan


class _Feed:
    __slots__ = ("id", "name", "url", "etag", "last_modified", "unparsed_error")

    def __init__(self, row: tuple):
        self.id, self.name, self.url, self.etag, self.last_modified, unparsed, last_error = row
        # The validators are of a body that could not be read: a 304 repeats its error.
        self.unparsed_error = last_error if unparsed else None


def _feeds(conn: sqlite3.Connection, configured: list[list[str]], printer: _Printer) -> list[_Feed]:
    rows = {r[1]: r for r in conn.execute(
        "SELECT id, name, url, etag, last_modified, unparsed, last_error FROM feeds")}
    feeds = []
    for name, location in configured:
        if not location.lower().startswith(("http://", "https://")):
            raise HandOver(f"feed {name}: not an http(s) URL")  # a file is read and parsed every pass
        try:
            _parse_url(location)
        except ValueError:
            raise HandOver(f"feed {name}: a URL requests would rewrite") from None
        row = rows.get(name)
        if row is None or row[2] != location or not (row[3] or row[4]):
            raise HandOver(f"feed {name}: new, moved, or without validators")
        if row[5] and (row[5] != UNPARSED_BY or not row[6]):
            raise HandOver(f"feed {name}: its unreadable body was judged by another version")
        feed = _Feed(row)
        printer.check([feed.name, feed.unparsed_error or ""])
        feeds.append(feed)
    return feeds


# --- polling --------------------------------------------------------------------------------------


def _poll(feeds: list[_Feed], plan: dict, printer: _Printer) -> dict[int, float]:
    """Every feed's conditional GET, as engine/poll.py makes them: {feed id: seconds} when all
    answered 304; else HandOver."""
    if not feeds:
        return {}
    fetch = plan["fetch"]
    workers = max(1, min(fetch["concurrency"], len(feeds)))
    hosts = [host_key(f.url) for f in feeds]
    slots = {host: threading.BoundedSemaphore(max(1, fetch["per_host"])) for host in set(hosts)}
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in interleaved(hosts):
        todo.put(i)
    done: queue.SimpleQueue[tuple[int, float | None]] = queue.SimpleQueue()
    stop = threading.Event()
    headers = {"User-Agent": fetch["user_agent"], **plan["headers"]}  # requests' order

    def work() -> None:
        client = _Client(fetch["timeout"])
        try:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                with slots[hosts[i]]:
                    seconds = client.unchanged(feeds[i], headers)
                done.put((i, seconds))
        except BaseException:  # noqa: BLE001 - anything unexpected: the full pass
            done.put((-1, None))
        finally:
            client.close()

    # Daemon threads, as engine/poll.py: a hand-over does not wait for a slow server.
    threads = [threading.Thread(target=work, name=f"quiet-{n}", daemon=True) for n in range(workers)]
    with printer.progress(plan["progress"]):
        for thread in threads:
            thread.start()
        seconds: dict[int, float] = {}
        try:
            for _ in feeds:
                i, took = done.get()
                if took is None:
                    _answered.update({f.url: (f.etag, f.last_modified, seconds[f.id]) for f in feeds
                                      if f.id in seconds})
                    raise HandOver("a feed did not answer 304")
                seconds[feeds[i].id] = took
        finally:
            stop.set()
    for thread in threads:
        thread.join()
    return seconds


class _Client:
    """Conditional GETs over kept-alive connections (the standard library's http.client), one
    per origin (one client per thread). Only a plain 304 is an answer; anything else is None
    and the full pass fetches the feed."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.conns: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def unchanged(self, feed: _Feed, headers: dict[str, str]) -> float | None:
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            scheme, host, port, target = _parse_url(feed.url)
        except ValueError:
            return None
        asked = dict(headers)
        if feed.etag:
            asked["If-None-Match"] = feed.etag
        if feed.last_modified:
            asked["If-Modified-Since"] = feed.last_modified
        key = (scheme, host, port)
        for attempt in (1, 2):  # a kept connection the server closed meanwhile: once more on a new one
            reused = key in self.conns
            conn = self.conns.pop(key, None) or self._connect(scheme, host, port)
            try:
                conn.timeout = _remaining(deadline)
                if conn.sock is not None:
                    conn.sock.settimeout(conn.timeout)
                conn.request("GET", target, headers=asked)  # Host as requests writes it, by http.client
                resp = conn.getresponse()
                if resp.status == 304:
                    resp.read()  # a 304 has no body; this readies the connection for the next request
            except (OSError, ValueError, http.client.HTTPException):
                conn.close()
                if reused and attempt == 1:
                    continue
                return None
            if resp.status != 304:
                conn.close()
                return None
            if resp.will_close:
                conn.close()
            else:
                self.conns[key] = conn
            return time.monotonic() - started
        return None

    def _connect(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=_tls())
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()


_PORTS = {"http": 80, "https": 443}
_tls_context = None
_tls_lock = threading.Lock()


def _parse_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of a plain ASCII URL, as requests would send it;
    ValueError for anything requests would rewrite (non-ASCII, credentials, escapes to add)."""
    # requests re-quotes a URL (%7E becomes ~, a space %20): one it could rewrite goes to the full pass
    if not url.isascii() or any(c <= " " or c in '"<>\\^`{|}%' for c in url):
        raise ValueError(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or "@" in parts.netloc or not parts.hostname or "[" in parts.netloc:
        raise ValueError(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, parts.port or _PORTS[scheme], target


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _tls():
    """The TLS context requests would use: its CA bundle (certifi's, or the environment's)."""
    global _tls_context
    with _tls_lock:
        if _tls_context is None:
            import ssl

            cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            if not cafile:
                import certifi

                cafile = certifi.where()
            if os.path.isdir(cafile):
                raise ValueError("a CA directory: the full pass")
            context = ssl.create_default_context(cafile=cafile)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.set_alpn_protocols(["http/1.1"])
            _tls_context = context
        return _tls_context


# --- recording and printing -----------------------------------------------------------------------


def _record(conn: sqlite3.Connection, feeds: list[_Feed], seconds: dict[int, float], now: datetime) -> None:
    """engine/poll.py's _record_polled for these answers, in one transaction: each 304 of a
    readable feed with how long it took, each 304 of a kept unreadable body as its error again."""
    at = ledger_time(now)
    ok = [(at, at, seconds[f.id], f.id) for f in feeds if f.unparsed_error is None]
    failed = [f for f in feeds if f.unparsed_error is not None]
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE feeds SET last_polled_at = ?, last_ok_at = ?, last_error = NULL, failing = 0, "
                         "last_fetch_seconds = ? WHERE id = ?", ok)
        conn.executemany("UPDATE feeds SET last_polled_at = ?, last_error = ? WHERE id = ?",
                         [(at, f.unparsed_error, f.id) for f in failed])
        conn.executemany("UPDATE feeds SET failing = failing + 1 WHERE id = ?", [(f.id,) for f in failed])
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise HandOver(f"ledger: {exc}") from None


# rich's emoji codes (":smile:"): text that could hold one is printed through rich.
_EMOJI = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
_EMOJI_NAME = re.compile(r"[\w!#&()*+\-.’]+")


class _Printer:
    """What the full pass prints for an unchanged run (cli/report.py print_run_summary), the same
    markup through rich on a terminal; piped (cron, the bench) the plain text rich would write,
    without loading rich, for text in which rich would find no markup or emoji code."""

    def __init__(self):
        forced = any(os.environ.get(n) for n in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"))
        self.console = None
        if forced or sys.stdout.isatty():
            from rich.console import Console  # as cli/common.py's `out`

            self.console = Console(highlight=False, soft_wrap=True)

    def check(self, texts: list) -> None:
        if self.console is not None:
            return
        for text in texts:
            if "[" in text or any(_EMOJI_NAME.fullmatch(m.group(2)) for m in _EMOJI.finditer(text)):
                raise HandOver("text rich would read as markup")

    def progress(self, message: str):
        if self.console is None:
            return _Nothing()
        status = self.console.status("working…")
        status.update(message)
        return status

    def summary(self, say_first: list, feeds: list[_Feed]) -> int:
        """Print the run's lines as (rich markup, the plain text rich writes for it); the exit code."""
        lines = [(f"[{style}]{lead}[/] {text}", f"{lead} {text}") for style, lead, text in say_first]
        for feed in feeds:
            if feed.unparsed_error is not None:
                text = f"feed {feed.name}: {feed.unparsed_error}"
                lines.append((f"[red]{text}[/]", text))
            else:
                text = f"feed {feed.name}: unchanged, 0 new"
                lines.append((text, text))
        lines.append(("delivered: 0 sent", "delivered: 0 sent"))
        for markup, plain in lines:
            if self.console is not None:
                self.console.print(markup)
            else:
                sys.stdout.write(plain + "\n")
        sys.stdout.flush()
        return 3 if any(f.unparsed_error is not None for f in feeds) else 0  # cli/engine.py EXIT_FEED


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
