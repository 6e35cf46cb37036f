"""The whole command as a user meets it: `syndicate run --once` vs rss2email's `r2e run --no-send`.

The 71 corpus feeds as 200 URLs over 50 loopback hosts (20 ms an answer, ETag/304; served by
bench/feedsrv.py in its own process), the demo's channels configured (all on the outbox), every
feed with ``backfill = 0``. Both sides run as their own process, timed from spawn to exit, with
their user+sys CPU (from wait4) beside the wall time: a first run (empty state) and an unchanged
run right after (every URL answers 304). The same pair again with a CPU-bound process beside them
on the same cores (a busy loop per core but one), which is what a shared machine does to a
CPU-bound command and barely to one that waits on the network.

Start-up: `syndicate --help`, and `syndicate run --once` from spawn until its first request
reaches a one-feed server (settings read, ledger opened: everything before the first request),
each less a bare `python -c pass` measured in the same run. The feed answers 304 to its
conditional GET (a warm-up run first records it), so the row measures what users get on an
unchanged run: the quiet run of engine/quiet.py.

With ``BENCH_BASELINE=/path/to/an/older/tree`` in the environment, that tree's code runs too, as a
third side ("before", the same venv with the tree first on PYTHONPATH): before and after
measured side by side in one run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import BENCH, PEER_PYTHON, REPO, WORK, Child, Context, Row, ensure_rss2email, median

COUNT, HOSTS, DELAY = 200, 50, 0.02
SYNDICATE = Path(sys.executable).parent / "syndicate"
BASELINE = os.environ.get("BENCH_BASELINE")
R2E = PEER_PYTHON.parent / "r2e"


def run(ctx: Context) -> None:
    ensure_rss2email(ctx.log)
    root = WORK / "command"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _compile_bytecode()
    _startup(ctx, root)
    server = Child([sys.executable, str(BENCH / "feedsrv.py"), "--count", str(COUNT), "--hosts", str(HOSTS),
                    "--delay", str(DELAY)], root / "feedsrv.log", stdout_pipe=True)
    try:
        urls = json.loads(server.readline(30))["urls"]
        r2e_config = root / "r2e.cfg"
        r2e_config.write_text(_r2e_config(urls))
        runs: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for load in ("quiet", "busy"):
            hogs = _hogs() if load == "busy" else []
            try:
                for rep in range(ctx.repeats):
                    sides = ["ours", "rss2email", *(["before"] if BASELINE else [])]
                    for side in sides[rep % len(sides):] + sides[:rep % len(sides)]:
                        state = root / f"{load}-{side}-{rep}"
                        state.mkdir()
                        if side != "rss2email":
                            (state / "settings.toml").write_text(_settings(urls))
                        for phase in ("first", "unchanged"):
                            wall, cpu = (_r2e(r2e_config, state) if side == "rss2email"
                                         else _ours(state, BASELINE if side == "before" else None))
                            runs.setdefault((load, side, phase), []).append((wall, cpu))
                            ctx.log(f"    {load} {side} {phase} (repeat {rep + 1}): {wall:.2f} s wall, "
                                    f"{cpu:.2f} s CPU")
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    finally:
        server.stop()
    scale = f"{COUNT} URLs over {HOSTS} loopback hosts, {DELAY * 1000:.0f} ms/answer, demo channels; median of " \
            f"{ctx.repeats}"
    goals = {("quiet", "first"): 0.5, ("quiet", "unchanged"): 0.1, ("busy", "first"): 1.0,
             ("busy", "unchanged"): 1.0}
    for load in ("quiet", "busy"):
        beside = "" if load == "quiet" else f", {_hog_count()} CPU-bound process(es) beside"
        for phase in ("first", "unchanged"):
            ours = runs[(load, "ours", phase)]
            peer = runs[(load, "rss2email", phase)]
            wall, peer_wall = median([w for w, _ in ours]), median([w for w, _ in peer])
            cpu, peer_cpu = median([c for _, c in ours]), median([c for _, c in peer])
            ctx.add(Row("Command", f"{phase} run, whole `syndicate run --once` (wall{beside})", wall, peer_wall,
                        "s", f"r2e run --no-send ({phase} run)", goal=goals[(load, phase)], scale=scale,
                        note=f"user+sys CPU: ours {cpu:.2f} s, rss2email {peer_cpu:.2f} s"))
            ctx.add(Row("Command", f"{phase} run, whole `syndicate run --once` (user+sys CPU{beside})", cpu,
                        peer_cpu, "s", f"r2e run --no-send ({phase} run)", scale=scale))
            if BASELINE:
                before = runs[(load, "before", phase)]
                ctx.add(Row("Command", f"{phase} run, wall{beside}: this tree vs the baseline tree", wall,
                            median([w for w, _ in before]), "s", f"baseline {BASELINE}", scale=scale,
                            note=f"baseline user+sys CPU {median([c for _, c in before]):.2f} s"))


def _compile_bytecode() -> None:
    """Byte-compile the trees measured, as pip does for an installed package (and did for
    rss2email): with PYTHONDONTWRITEBYTECODE set (some shells and CI have it) an editable tree
    would otherwise compile its ~70 modules from source on every run, ~0.15 s of CPU each time."""
    for tree in [REPO, *([Path(BASELINE)] if BASELINE else [])]:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "syndicate")], check=True,
                       stdout=subprocess.DEVNULL)


# --- start-up ---------------------------------------------------------------------------------


def _startup(ctx: Context, root: Path) -> None:
    bare, help_, first, before = [], [], [], []
    server = _OneFeed()
    state = root / "startup"
    state.mkdir()
    (state / "settings.toml").write_text(_settings([f"http://127.0.0.1:{server.port}/feed.xml"]))
    command = [str(SYNDICATE), "-c", str(state / "settings.toml"), "run", "--once"]
    _until_first_request(command, server)  # warm-up: the ledger made, the feed's ETag recorded
    for _ in range(max(3, ctx.repeats * 3)):
        bare.append(_spawn([sys.executable, "-c", "pass"])[0])
        help_.append(_spawn([str(SYNDICATE), "--help"])[:2])
        if BASELINE:
            before.append(_spawn([str(SYNDICATE), "--help"], env={"PYTHONPATH": BASELINE}, cwd=root)[:2])
        first.append(_until_first_request(command, server))
    server.close()
    python = median(bare)
    scale = "each less a bare `python -c pass` of the same run; median of " + str(len(bare))
    help_wall, help_cpu = median([w for w, _ in help_]), median([c for _, c in help_])
    ctx.add(Row("Start-up", "`syndicate --help`, less Python's own start-up", help_wall - python, 0.15, "s",
                "goal (absolute)", goal=1.0, scale=scale,
                note=f"python -c pass: {python * 1000:.0f} ms; user+sys CPU of `--help` {help_cpu * 1000:.0f} ms"))
    if BASELINE:
        ctx.add(Row("Start-up", "`syndicate --help` user+sys CPU: this tree vs the baseline tree", help_cpu,
                    median([c for _, c in before]), "s", f"baseline {BASELINE}", scale=scale))
    ctx.add(Row("Start-up", "`syndicate run --once` until its first request (imports, settings, ledger open)",
                median(first) - python, 0.15, "s", "goal (absolute)", goal=1.0, scale=scale,
                note="an existing, current SQLite ledger; one feed on a local socket, answering 304"))


class _OneFeed:
    """One feed on a local socket: 200 with an ETag to an unconditional GET, else 304; it notes
    when each request's connection was accepted."""

    BODY = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://blog.example/</link>'
            b"<description>d</description><item><title>One</title><link>https://blog.example/one/</link>"
            b"<guid>https://blog.example/one/</guid></item></channel></rss>")

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[float] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(time.perf_counter())
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                    head += chunk
                if b"if-none-match" in head.lower():
                    conn.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nConnection: close\r\n\r\n')
                else:
                    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nETag: "v1"\r\n'
                                 + f"Content-Length: {len(self.BODY)}\r\nConnection: close\r\n\r\n".encode()
                                 + self.BODY)

    def close(self) -> None:
        self.listener.close()


def _until_first_request(args: list[str], server: _OneFeed) -> float:
    start = time.perf_counter()
    seen = len(server.accepted)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    code = proc.wait(120)
    if code != 0 or len(server.accepted) == seen:
        raise RuntimeError(f"{args[:4]} exited {code} after {len(server.accepted) - seen} requests")
    return server.accepted[seen] - start


# --- the two sides ------------------------------------------------------------------------------


def _spawn(args: list[str], env: dict | None = None, cwd: Path = REPO) -> tuple[float, float, int]:
    """(wall, user+sys CPU of the process and its children, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    err = threading.Thread(target=lambda: setattr(proc, "err_text", proc.stderr.read()), daemon=True)
    err.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.join(5)
    code = proc.returncode
    if code not in (0, 3):  # 3: some corpus feeds are broken on purpose
        raise RuntimeError(f"{args[:4]} exited {code}: {getattr(proc, 'err_text', b'')[-2000:]!r}")
    return wall, usage.ru_utime + usage.ru_stime, code


def _ours(state: Path, tree: str | None = None) -> tuple[float, float]:
    env = {"PYTHONPATH": tree} if tree else None
    wall, cpu, _ = _spawn([str(SYNDICATE), "-c", str(state / "settings.toml"), "run", "--once"], env=env, cwd=state)
    return wall, cpu


def _r2e(config: Path, state: Path) -> tuple[float, float]:
    wall, cpu, _ = _spawn([str(R2E), "-c", str(config), "-d", str(state / "r2e.json"), "run", "--no-send"],
                          env={"XDG_RUNTIME_DIR": str(state)})
    return wall, cpu


def _settings(urls: list[str]) -> str:
    """The demo's settings.toml with its feed replaced by URLS (backfill 0) and a fresh ledger."""
    demo = (REPO / "settings.toml").read_text()
    head, _, rest = demo.partition("[[feeds]]")
    rest = rest[rest.index("\n[", 1):]  # drop the demo feed's own table
    feeds = "".join(f'[[feeds]]\nname = "f{i:03d}"\nurl = "{url}"\nbackfill = 0\n\n' for i, url in enumerate(urls))
    return head.replace('url = "sqlite:///syndicate.db"', 'url = "sqlite:///ledger.db"') + feeds + rest.lstrip()


def _r2e_config(urls: list[str]) -> str:
    lines = ["[DEFAULT]", "to = bench@localhost", "same-server-fetch-interval = 0", "verbose = error", ""]
    for i, url in enumerate(urls):
        lines += [f"[feed.f{i:03d}]", f"url = {url}", ""]
    return "\n".join(lines)


def _hog_count() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def _hogs() -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(_hog_count())]
