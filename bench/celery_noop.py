"""The Celery + Redis ceiling for the dispatch benchmark: a no-op task with our Celery rules.

Same broker, same worker count and concurrency, and the settings of workers/app.py that shape
throughput (acks_late, reject_on_worker_lost, prefetch 1, JSON, results ignored), so the
difference to our deliveries/s is what the ledger and the outbox cost, not Celery's own.

    BENCH_BROKER=redis://127.0.0.1:P/1 celery -A bench.celery_noop worker -c 1
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/15")
app = Celery("bench_noop", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    enable_utc=True,
)
_counter = None


@app.task(name="bench.noop")
def noop(delivery_id: int, token: str) -> str:
    """Arguments shaped like syndicate.deliver's; counts itself done in Redis."""
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(BROKER)
    _counter.incr("bench:noop:done")
    return "sent"
