"""Polling: the 71 corpus feeds as 200 URLs (20 ms latency, ETag/304) vs rss2email.

Both sides poll the same URLs from the same server process in the same run: a first poll
(empty state: fetch, parse, record everything) and an unchanged poll right after (every URL
answers 304 to the validators stored by the first). Each side runs as its own process and
is timed from "modules imported" to "state saved" (bench/poll_driver.py, bench/r2e_timed.py);
the whole command, start-up included, is recorded too.

Ours: the library's path (``poll_feeds`` with the default settings, as ``run_once`` does), the
same with ``fetch.concurrency = 16``, and ``poll_feed`` for one feed after another (each per-feed
worker task's path, with no concurrency of its own). The prototypes that led to ``poll_feeds``
were removed once it landed (git history has them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    BENCH,
    PEER_PYTHON,
    REPO,
    WORK,
    Child,
    Context,
    Row,
    ensure_rss2email,
    median,
)

COUNT, HOSTS, DELAY = 200, 20, 0.02
DRIVERS = {
    "library": "library: poll_feeds (run_once), default fetch.concurrency (16), <= 2 per host",
    "library-16": "library: poll_feeds with fetch.concurrency = 16",
    "sequential": "library: poll_feed, one feed after another",
}


def run(ctx: Context) -> None:
    ensure_rss2email(ctx.log)
    root = WORK / "poll"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    server = Child([sys.executable, str(BENCH / "feedsrv.py"), "--count", str(COUNT), "--hosts", str(HOSTS),
                    "--delay", str(DELAY)], root / "feedsrv.log", stdout_pipe=True)
    try:
        urls = json.loads(server.readline(30))["urls"]
        urls_file = root / "urls.json"
        urls_file.write_text(json.dumps(urls))
        r2e_config = root / "r2e.cfg"
        r2e_config.write_text(_r2e_config(urls))
        times: dict[tuple[str, str], list[float]] = {}
        walls: dict[tuple[str, str], list[float]] = {}
        facts: dict[str, str] = {}
        sides = ["rss2email", *DRIVERS]
        for rep in range(ctx.repeats):
            # Rotate the order so no side always runs first (the machine is shared and noisy).
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                state = root / f"{side}-{rep}"
                state.mkdir()
                for phase in ("first", "unchanged"):
                    took, wall, fact = (_r2e(r2e_config, state) if side == "rss2email"
                                        else _ours(side, urls_file, state))
                    times.setdefault((side, phase), []).append(took)
                    walls.setdefault((side, phase), []).append(wall)
                    facts[f"{side}/{phase}"] = fact
                    ctx.log(f"    poll {side} {phase} (repeat {rep + 1}): {took:.2f} s ({wall:.2f} s with start-up)"
                            f" {fact}")
    finally:
        server.stop()

    peer = {phase: median(times[("rss2email", phase)]) for phase in ("first", "unchanged")}
    peer_wall = {phase: median(walls[("rss2email", phase)]) for phase in ("first", "unchanged")}
    scale = (f"{COUNT} URLs over {HOSTS} loopback hosts, {DELAY * 1000:.0f} ms/answer; "
             f"median of {ctx.repeats}")
    goals = {"first": 0.5, "unchanged": 0.1}
    for driver, label in DRIVERS.items():
        for phase in ("first", "unchanged"):
            ctx.add(Row("Polling", f"{phase} poll: {label}", median(times[(driver, phase)]), peer[phase], "s",
                        f"r2e run --no-send ({phase} run)", goal=goals[phase], scale=scale,
                        note=f"ours {facts[f'{driver}/{phase}']}; rss2email {facts[f'rss2email/{phase}']}"))
    for phase in ("first", "unchanged"):
        ctx.add(Row("Polling", f"{phase} poll, whole command with start-up (library path)",
                    median(walls[("library", phase)]), peer_wall[phase], "s", f"r2e process ({phase} run)",
                    scale=scale, note="python start-up, imports and ledger open included on both sides"))


def _r2e_config(urls: list[str]) -> str:
    lines = ["[DEFAULT]", "to = bench@localhost", "same-server-fetch-interval = 0", "verbose = error", ""]
    for i, url in enumerate(urls):
        lines += [f"[feed.f{i:03d}]", f"url = {url}", ""]
    return "\n".join(lines)


def _r2e(config: Path, state: Path) -> tuple[float, float, str]:
    data = state / "r2e.json"
    env = {"XDG_RUNTIME_DIR": str(state)}  # its run lock, kept away from any real r2e
    start = time.perf_counter()
    out = subprocess.run([str(PEER_PYTHON), str(BENCH / "r2e_timed.py"), "-c", str(config), "-d", str(data),
                          "run", "--no-send"], capture_output=True, text=True, env=_env(env), timeout=300)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"rss2email failed: {out.stderr[-2000:]}")
    took = json.loads(out.stdout.strip().splitlines()[-1])["run_seconds"]
    feeds = json.loads(data.read_text())["feeds"]
    seen = sum(len(f.get("seen") or {}) for f in feeds)
    return took, wall, f"({seen} entries seen, {sum(1 for f in feeds if f.get('etag'))} ETags kept)"


def _ours(driver: str, urls_file: Path, state: Path) -> tuple[float, float, str]:
    store = f"sqlite:///{state / 'ledger.db'}"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(BENCH / "poll_driver.py"), "--urls", str(urls_file), "--store", store,
                          "--driver", driver], capture_output=True, text=True, cwd=REPO, env=_env({}), timeout=300)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"poll driver {driver} failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(result["statuses"].items()))
    return result["poll_seconds"], wall, f"({statuses}; {result['posts']} posts recorded)"


def _env(extra: dict) -> dict:
    import os

    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
