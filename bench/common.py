"""What every benchmark shares: result rows, timing, machine facts, peers, processes.

Every figure is a ratio of two numbers measured in the same run: ours and a peer's (or a
limit's). A row says which way is better, what the goal is (if the issue sets one), and the
scale it was measured at, so a reader never compares a number from one run with another's.
"""

from __future__ import annotations

import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"  # gitignored: peers' installs, databases, logs
PEER_PYTHON = WORK / "r2e" / "bin" / "python"
RSS2EMAIL_VERSION = "3.14"
MJML_NPM_VERSION = "5.4.1"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --- results ---------------------------------------------------------------------------------


@dataclass
class Row:
    area: str
    figure: str
    ours: float
    peer: float
    unit: str  # "s", "/s", "MiB", ...
    peer_name: str
    better: str = "lower"  # "lower": ours/peer < 1 is good; "higher": ours/peer > 1 is good
    goal: float | None = None  # a bound on ours/peer (<= for lower, >= for higher)
    scale: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.ratio <= self.goal if self.better == "lower" else self.ratio >= self.goal

    def as_dict(self) -> dict:
        return {**self.__dict__, "ratio": self.ratio, "met": self.met}


@dataclass
class Context:
    quick: bool = False
    scale: float = 1.0  # multiplies the dispatch and sending counts (the slow ones)
    repeats: int = 3
    log: Callable[[str], None] = print
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        sign = "<=" if row.better == "lower" else ">="
        goal = f" (goal {sign} {row.goal:g}x)" if row.goal is not None else ""
        self.log(f"  {row.area} / {row.figure}: ours {fmt(row.ours, row.unit)} vs {row.peer_name} "
                 f"{fmt(row.peer, row.unit)} = {row.ratio:.3g}x{goal}")
        return row


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "/s":
        return f"{value:,.0f}/s" if value >= 100 else f"{value:,.1f}/s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:.3g} {unit}".strip()


def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered) + 0.5) - 1))]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --- the machine -----------------------------------------------------------------------------


def machine() -> dict:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else "-"
    return {"nproc": os.cpu_count(), "memory": f"{mem_kib / 1024 / 1024:.1f} GiB", "cpu": cpu or platform.machine(),
            "python": platform.python_version(), "node": node_version, "os": platform.platform(terse=True),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# --- peers: installed by the bench itself, under bench/.work --------------------------------


def ensure_rss2email(log: Callable[[str], None]) -> Path:
    """rss2email from PyPI in its own venv (it must not share our dependencies)."""
    r2e = WORK / "r2e" / "bin" / "r2e"
    if r2e.exists() and _r2e_version() == RSS2EMAIL_VERSION:
        return r2e
    log(f"installing rss2email {RSS2EMAIL_VERSION} into {WORK / 'r2e'} ...")
    WORK.mkdir(parents=True, exist_ok=True)
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base_python, "-m", "venv", str(WORK / "r2e")], check=True)
    subprocess.run([str(PEER_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"rss2email=={RSS2EMAIL_VERSION}"], check=True)
    return r2e


def _r2e_version() -> str:
    out = subprocess.run([str(PEER_PYTHON), "-c", "import rss2email; print(rss2email.__version__)"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def ensure_mjml(log: Callable[[str], None]) -> Path:
    """npm mjml (the reference compiler) into bench/.work/node_modules, with the machine's node."""
    pkg = WORK / "node_modules" / "mjml" / "package.json"
    if pkg.exists() and json.loads(pkg.read_text()).get("version") == MJML_NPM_VERSION:
        return WORK / "node_modules"
    if not shutil.which("node") or not shutil.which("npm"):
        raise RuntimeError("node and npm are needed for the MJML peer (apt-get install nodejs npm)")
    log(f"installing npm mjml {MJML_NPM_VERSION} into {WORK / 'node_modules'} ...")
    WORK.mkdir(parents=True, exist_ok=True)
    manifest = WORK / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "syndicate-bench-peers", "private": true}\n')
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(WORK),
                    f"mjml@{MJML_NPM_VERSION}"], check=True, cwd=WORK)
    return WORK / "node_modules"


# --- processes -------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Child:
    """A helper process in its own session (so it and its children stop together)."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, cwd: Path = REPO,
                 stdout_pipe: bool = False):
        self.log = log
        self.proc = subprocess.Popen(
            args, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdout=subprocess.PIPE if stdout_pipe else log.open("ab"),
            stderr=log.open("ab"), start_new_session=True, text=stdout_pipe)
        self.lines: queue.Queue[str | None] = queue.Queue()
        if stdout_pipe:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)  # end of output

    def readline(self, timeout: float = 30) -> str | None:
        """The next line the process printed (None once it ended)."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.proc.args[:3]} printed nothing in {timeout:.0f}s; see {self.log}") from None

    def rest(self, timeout: float = 10) -> list[str]:
        """Every line still to come, until the process's output ends."""
        out = []
        while (line := self.readline(timeout)) is not None:
            out.append(line)
        return out

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def tree_rss_mib(pid: int) -> float:
    """Resident memory of PID and all its descendants, in MiB (from /proc)."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def shared_feeds() -> Path:
    from tests.conftest import shared_dir

    shared = shared_dir()
    if shared is None:
        raise RuntimeError("the feeds corpus was not found: set SYNDICATE_SHARED to the shared/ folder")
    return shared / "feeds"


def pg_admin_url() -> str:
    return os.environ.get("SYNDICATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class FreshDatabase:
    """A PostgreSQL database made for one benchmark and dropped after it (WITH FORCE)."""

    def __init__(self, prefix: str):
        import uuid

        self.name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
        self.admin_url = pg_admin_url()
        self.url = self.admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def __enter__(self) -> str:
        from sqlalchemy import create_engine, text

        self._admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self.url

    def __exit__(self, *exc) -> None:
        from sqlalchemy import text

        from syndicate.ledger.db import close_ledger

        close_ledger(self.url)
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()
