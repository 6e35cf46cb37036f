"""The worker main process's timer heap, kept to the timers that may still run (issue 18, memory).

For each task it hands to a pool child, Celery's main process sets a timer for the task's soft
time limit (0.9 x ``run.task_time_limit``: 13.5 minutes by default) and cancels it when the task
ends. kombu's timer only marks a cancelled entry: the entry, with its arguments, stays in the
heap until its time comes. So the main process held one entry (about 0.5 KB) for every task of
the last 13.5 minutes, memory that grew with the work: 100,000 single-delivery messages in that
window are some 25 MB per worker. Once a minute, the cancelled entries are dropped.
"""

from __future__ import annotations

import heapq

from celery import bootsteps

PURGE_EVERY = 60.0  # seconds


def purge(timer) -> int:
    """Drop the cancelled entries of a kombu TIMER's heap; returns how many."""
    queue = getattr(timer, "_queue", None)  # kombu's own Hub reads it too; gone: nothing to do
    if not queue:
        return 0
    live = [item for item in queue if not item.entry.canceled]
    dropped = len(queue) - len(live)
    if dropped:
        heapq.heapify(live)
        queue[:] = live  # in place: the hub's timer iterator holds this very list
    return dropped


class PurgeCancelledTimers(bootsteps.StartStopStep):
    """A worker step: purge the event loop's timer every PURGE_EVERY seconds."""

    requires = ("celery.worker.components:Hub",)

    def start(self, w):
        if getattr(w, "hub", None) is not None:
            w.hub.call_repeatedly(PURGE_EVERY, purge, w.hub.timer)
