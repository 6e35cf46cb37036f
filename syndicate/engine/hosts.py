"""Politeness toward feed hosts, shared by the poll (engine/poll.py) and the quiet run
(engine/quiet.py): which host a location belongs to, and the order feeds are taken in.
Standard library only."""

from __future__ import annotations

from urllib.parse import urlsplit


def host_key(location: str) -> str:
    """The key of a location's per-host bound ('' for local files: no bound)."""
    if not location.lower().startswith(("http://", "https://")):
        return ""
    try:
        return (urlsplit(location).hostname or "").lower()
    except ValueError:
        return ""


def interleaved(hosts: list[str]) -> list[int]:
    """Indices taken round-robin across hosts, so the pool is not filled with feeds all waiting
    for one host's slots while other hosts sit idle."""
    by_host: dict[str, list[int]] = {}
    for i, host in enumerate(hosts):
        by_host.setdefault(host, []).append(i)
    groups = list(by_host.values())
    return [g[k] for k in range(max(map(len, groups))) for g in groups if k < len(g)]
