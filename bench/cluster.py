"""Real processes for the dispatch and latency benchmarks: a settings file, a private Redis,
Celery workers and beat (tests/cluster.py's helpers), all on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import tree_rss_mib, wait_for
from tests.cluster import Proc, RedisServer, start_beat, start_worker

__all__ = ["RedisServer", "Proc", "write_config", "start_workers", "start_beat", "wait_ready", "rss"]


def write_config(path: Path, *, store_url: str, broker_url: str, outbox: Path, run: dict,
                 channels: str, feeds: str = "") -> Path:
    run_toml = "\n".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in run.items())
    path.write_text(f"""
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "{store_url}"

[broker]
url = "{broker_url}"

[outbox]
dir = "{outbox}"

[run]
{run_toml}

{feeds}

{channels}
""")
    return path


def start_workers(config: Path, log_dir: Path, count: int, env: dict | None = None) -> list[Proc]:
    return [start_worker(config, log_dir, name=f"worker{i + 1}", concurrency=1, env=env) for i in range(count)]


def wait_ready(procs: list[Proc], timeout: float = 60) -> None:
    """Until every worker has logged "ready" (its pool is up and it consumes)."""
    def ready():
        for p in procs:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited: {p.output()[-2000:]}")
        return all(" ready." in p.output() for p in procs)

    wait_for(ready, timeout, "workers to be ready", interval=0.2)
    time.sleep(0.5)


def rss(procs: list[Proc]) -> float:
    """Resident memory of the worker processes with their pool children, in MiB."""
    return sum(tree_rss_mib(p.proc.pid) for p in procs)
