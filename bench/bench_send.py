"""Sending: N messages to a local SMTP sink (aiosmtpd, its own process) vs the sink's capacity.

The limit is a bare smtplib loop on one connection sending ready-made bytes: what the sink (and
smtplib) can take at all. Beside it, the same loop opening one connection per message (what a
naive sender pays), and ours: the SMTP provider's whole path for one delivery to N recipients
(per recipient: a signed unsubscribe token, the personalized MIME message, and its exactly-once
records: claimed 50 to a commit, then one issue commit each, pipelined with the wire, see
docs/engine.md), on a fresh PostgreSQL database.
"""

from __future__ import annotations

import json
import smtplib
import sys
import time
import uuid
from datetime import timedelta

from bench.common import BENCH, REPO, WORK, Child, Context, FreshDatabase, Row

SENDER = "news@harborwellness.example"


def run(ctx: Context) -> None:
    count = 1_000 if ctx.quick else 10_000
    root = WORK / "send"
    root.mkdir(parents=True, exist_ok=True)
    sink = Child([sys.executable, str(BENCH / "smtpsink.py")], root / "sink.log", stdout_pipe=True)
    try:
        port = int(sink.readline(30))
        with FreshDatabase("send") as store_url:
            settings = _settings(store_url, port, root)
            data = _sample_message(settings)
            ctx.log(f"    message size {len(data):,} B; {count:,} messages per side")
            one = _bare(port, data, count, reuse=True, max_seconds=120)
            ctx.log(f"    bare smtplib, one connection: {one[0]:,.0f}/s ({one[1]:,} sent)")
            per = _bare(port, data, count, reuse=False, max_seconds=60)
            ctx.log(f"    bare smtplib, a connection per message: {per[0]:,.0f}/s ({per[1]:,} sent)")
            ours = _ours(settings, count)
            ctx.log(f"    ours (SMTP provider, one delivery): {ours[0]:,.0f}/s ({ours[1]})")
    finally:
        sink.stop()
        totals = sink.rest()
    received = json.loads(totals[-1]) if totals else {}
    expected = one[1] + per[1] + ours[2]
    check = (f"the sink counted {received.get('messages', '?'):,} messages, {expected:,} expected"
             if received else "sink totals unavailable")
    scale = f"{count:,} messages of {len(data) / 1024:.0f} KiB"
    ctx.add(Row("Sending", "bare smtplib, a new connection per message", per[0], one[0], "/s",
                "bare smtplib, one connection (sink capacity)", better="higher", scale=scale,
                note=f"{per[1]:,} messages (time-capped at 60 s); {check}"))
    ctx.add(Row("Sending", "ours: SMTP provider, one delivery to N recipients (one connection)", ours[0], one[0],
                "/s", "bare smtplib, one connection (sink capacity)", better="higher", scale=scale,
                note=f"{ours[1]}; per recipient: token + personalized MIME + one issue commit, pipelined (PostgreSQL)"))
    ctx.add(Row("Sending", "ours: SMTP provider", ours[0], per[0], "/s", "bare smtplib, a connection per message",
                better="higher", scale=scale))


def _settings(store_url: str, port: int, root):
    from syndicate import settings as settings_mod

    return settings_mod.from_dict({
        "site": {"name": "Harbor Wellness Counseling", "url": "https://harborwellness.example",
                 "timezone": "America/New_York", "address": "120 Water Street\nPortland, ME 04101"},
        "store": {"url": store_url},
        "web": {"public_url": "https://harborwellness.example"},
        "channels": {"newsletter": {
            "kind": "email", "provider": "smtp", "from_address": SENDER, "from_name": "Harbor Wellness",
            "unsubscribe_mailto": "unsubscribe@harborwellness.example",
            "options": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 30}}},
    }, base_dir=root)


def _post():
    from syndicate.feeds import parse

    return parse((REPO / "syndicate" / "demo" / "wellness-feed.xml").read_bytes(),
                 url="https://harborwellness.example/feed/").posts[0]


def _sample_message(settings) -> bytes:
    from email import policy

    from syndicate.audience import subscribers
    from syndicate.email.message import personalize
    from syndicate.render.payloads import build_payload

    payload = build_payload(_post(), settings, "newsletter")
    address = "reader@example.org"
    message = personalize(payload, address, subscribers.unsubscribe_token(settings, address))
    return message.as_bytes(policy=policy.SMTP)


def _bare(port: int, data: bytes, count: int, *, reuse: bool, max_seconds: float) -> tuple[float, int]:
    start = time.perf_counter()
    sent = 0
    conn = smtplib.SMTP("127.0.0.1", port, timeout=30) if reuse else None
    try:
        while sent < count and time.perf_counter() - start < max_seconds:
            if reuse:
                conn.sendmail(SENDER, [f"reader{sent}@example.org"], data)
            else:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                    c.sendmail(SENDER, [f"reader{sent}@example.org"], data)
            sent += 1
    finally:
        if conn is not None:
            conn.quit()
    return sent / (time.perf_counter() - start), sent


def _ours(settings, count: int) -> tuple[float, str, int]:
    from syndicate.ledger.db import open_ledger, transaction
    from syndicate.ledger.models import Delivery, utcnow
    from syndicate.providers.base import Job
    from syndicate.providers.smtp import SmtpProvider
    from syndicate.render.payloads import build_payload

    factory = open_ledger(settings.store_url)
    payload = build_payload(_post(), settings, "newsletter")
    payload["to"] = [f"reader{n}@example.org" for n in range(count)]
    now = utcnow()
    with transaction(factory) as s:
        row = Delivery(key=uuid.uuid4().hex, subject="bench:send", channel="newsletter", kind="email",
                       provider="smtp", state="sending", due_at=now, payload=payload,
                       lease_until=now + timedelta(hours=1))
        s.add(row)
        s.flush()
        job = Job(delivery_id=row.id, key=row.key, channel="newsletter", kind="email", payload=payload)
    provider = SmtpProvider(settings, "newsletter", settings.channels["newsletter"])
    start = time.perf_counter()
    try:
        result = provider.send(job)
    finally:
        provider.close()
    took = time.perf_counter() - start
    sent = (result.details or {}).get("sent", 0)
    return sent / took, result.ref, sent
