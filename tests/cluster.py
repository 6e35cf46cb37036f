"""Real processes for the engine's fault tests: a private Redis, Celery workers and beat.

Everything runs on 127.0.0.1 with ports picked at random; every process is started in its own
session so a test can kill -9 the whole worker (main process and pool children) at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class RedisServer:
    """A private, disposable redis-server (so stopping it cannot disturb anything else)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._up, 10, "redis-server to accept connections")
        return self

    def _up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop hard: queues, unacked messages and rate-limit state are all lost."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Proc:
    """A Syndicate CLI process (worker or beat) with its log in a file."""

    def __init__(self, name: str, args: list[str], config: Path, log_dir: Path, env: dict | None = None):
        self.name = name
        self.log = log_dir / f"{name}.log"
        full_env = {**os.environ, "SYNDICATE_CONFIG": str(config), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syndicate.cli", "--config", str(config), *args],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=full_env, cwd=REPO,
            start_new_session=True)

    def kill9(self) -> None:
        """kill -9 the process and its pool children: no cleanup, no acks, no goodbyes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_worker(config: Path, log_dir: Path, name: str = "worker", concurrency: int = 1,
                 env: dict | None = None) -> Proc:
    return Proc(name, ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h",
                       "--loglevel", "INFO"], config, log_dir, env)


def start_beat(config: Path, log_dir: Path, name: str = "beat", env: dict | None = None) -> Proc:
    return Proc(name, ["beat", "--loglevel", "INFO", "--schedule-file", str(log_dir / f"{name}-schedule")],
                config, log_dir, env)
