"""A worker outlives Redis restarts and goes on sending every email exactly once.

Everything is real: a `syndicate worker` and `syndicate beat` process, a private redis-server
that the test kills (no save: queues and unacked messages are lost) and starts again on the same
port, twice, PostgreSQL, and an SMTP server (aiosmtpd) that records every message. Each time
Redis goes away a delivery is in the middle of its send (the worker holds its message unacked),
while the worker, with room for a second task, has a BRPOP in flight: the state in which Celery's
reconnection crashed the worker with celery/kombu 5.7.0 (`AttributeError: 'NoneType' object has no
attribute 'hostname'` in `restore_unacked_once`; see workers/broker.py). Deliveries planned after each restart must be sent to
every subscriber exactly once by the same worker process, still alive at the end.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select, text
from test_providers_email_support import rendered_payload
from test_smtp_support import Recorder, SmtpServer

from syndicate import settings as settings_mod
from syndicate.cli.workers import worker_argv
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Event, RecipientSend, utcnow
from tests.cluster import REPO, RedisServer, start_beat, start_worker, wait_until

pytestmark = pytest.mark.timeout(120)

PEOPLE = [f"reader{i}@example.org" for i in range(3)]
SECRET_ENV = "SYN_RESTART_LINK_SECRET"
FINAL = {"sent", "failed", "unknown", "cancelled"}


class Deployment:
    """One SMTP email channel mailing the subscribers, a worker and beat, a private Redis."""

    def __init__(self, tmp, pg_url: str, redis: RedisServer, smtp_port: int):
        self.tmp, self.redis, self.procs = tmp, redis, []
        self.env = {SECRET_ENV: "restart-test-signing-key-0123456789abcdef"}
        self.config = tmp / "settings.toml"
        self.config.write_text(f"""
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "{pg_url}"

[broker]
url = "{redis.url}"

[web]
public_url = "https://harborwellness.example/news"
secret_env = "{SECRET_ENV}"

[run]
tick = "1s"
claim_ttl = "30s"
retry_base = "1s"
retry_max = "2s"

[channels.news]
kind = "email"
provider = "smtp"
from_address = "news@harborwellness.example"
options = {{ host = "127.0.0.1", port = {smtp_port}, security = "none", timeout = 10, audience = "subscribers" }}
""")
        self.factory = open_ledger(pg_url)
        from syndicate.audience import subscribers

        settings = settings_mod.load(self.config)
        rows = [subscribers.Row(line=i, email=e) for i, e in enumerate(PEOPLE, start=1)]
        subscribers.import_rows(self.factory, settings, rows, source="test")
        self.payload = rendered_payload(settings)

    def start(self):
        # Concurrency 2: with one send running, the worker still waits on a BRPOP for the next.
        self.worker = start_worker(self.config, self.tmp, env=self.env, concurrency=2)
        self.procs += [self.worker, start_beat(self.config, self.tmp, env=self.env)]

    def plan(self, label: str) -> int:
        """One email delivery due now, its subject naming LABEL; its id."""
        payload = {**self.payload, "subject": f"Issue {label}"}
        with transaction(self.factory) as s:
            d = Delivery(key=f"restart-{label}", subject=f"post:{label}", channel="news", kind="email",
                         provider="smtp", state="planned", due_at=utcnow(), payload=payload)
            s.add(d)
            s.flush()
            return d.id

    def state(self, delivery_id: int) -> str:
        with transaction(self.factory) as s:
            return s.get(Delivery, delivery_id).state

    def recipients(self, delivery_id: int) -> dict[str, str]:
        with transaction(self.factory) as s:
            return dict(s.execute(select(RecipientSend.recipient, RecipientSend.state)
                                  .where(RecipientSend.delivery_id == delivery_id)).all())

    def wait_sent(self, ids: list[int], timeout: float = 30) -> None:
        try:
            wait_until(lambda: all(self.state(i) in FINAL for i in ids), timeout, "the deliveries to settle")
        except AssertionError:
            raise AssertionError(f"states {[self.state(i) for i in ids]}\n{self.logs()}") from None
        assert [self.state(i) for i in ids] == ["sent"] * len(ids), self.logs()

    def actors(self, ids: list[int]) -> set[str]:
        """Who recorded the sends of these deliveries (the claims are the dispatcher's)."""
        with transaction(self.factory) as s:
            return set(s.scalars(select(Event.actor).where(Event.delivery_id.in_(ids),
                                                           Event.actor != "dispatcher")))

    def restart_redis(self) -> None:
        self.redis.stop()  # kill -9: queues, unacked messages, rate-limit state all gone
        time.sleep(1.5)  # long enough for the worker to notice and start reconnecting
        self.redis.start()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in self.procs)

    def stop(self):
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def ledger_url(pg_database):
    with open_ledger(pg_database)() as s, s.begin():
        s.execute(text("TRUNCATE events, deliveries, posts, feeds, subscribers, suppressions, recipient_sends "
                       "RESTART IDENTITY CASCADE"))
    return pg_database


def test_worker_outlives_two_redis_restarts_and_sends_each_email_once(tmp_path, ledger_url):
    redis = RedisServer(tmp_path).start()
    handler = Recorder(delay=0.4)  # a slow server: each send is still in flight when Redis dies
    try:
        with SmtpServer(handler) as smtp:
            app = Deployment(tmp_path, ledger_url, redis, smtp.port)
            app.start()
            try:
                labels, ids = [], []
                for restart in (1, 2):
                    label = f"before-restart-{restart}"
                    in_flight = app.plan(label)
                    labels.append(label)
                    ids.append(in_flight)
                    wait_until(lambda lbl=label: any(r.message["Subject"] == f"Issue {lbl}" for r in handler.received),
                               30, f"the send of {label} to start")
                    app.restart_redis()
                    app.wait_sent([in_flight])
                    label = f"after-restart-{restart}"
                    ids.append(app.plan(label))
                    app.wait_sent(ids[-1:])
                    labels.append(label)
                    assert app.worker.proc.poll() is None, f"the worker died\n{app.logs()}"
                time.sleep(2)  # room for a late duplicate to arrive
                received = Counter((r.message["Subject"], a.lower()) for r in handler.received for a in r.rcpt_tos)
                assert received == Counter({(f"Issue {lbl}", p): 1 for lbl in labels for p in PEOPLE}), received
                assert app.worker.proc.poll() is None, f"the worker died\n{app.logs()}"
                # The audit trail names the worker by its Celery node name (--hostname worker@%h).
                assert app.actors(ids) == {f"worker:worker@{socket.gethostname()}"}
            finally:
                app.stop()
    finally:
        redis.stop()


def test_a_worker_without_the_link_signing_key_stops_at_once_with_one_line(tmp_path):
    """SMTP mails each subscriber a signed unsubscribe link: no key, no worker (not a worker
    whose every email fails later)."""
    config = tmp_path / "settings.toml"
    config.write_text(f"""
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "sqlite:///{tmp_path / 'ledger.db'}"

[channels.news]
kind = "email"
provider = "smtp"
from_address = "news@harborwellness.example"
options = {{ host = "127.0.0.1", port = 2525, audience = "subscribers" }}
""")
    env = {k: v for k, v in os.environ.items() if k != "SYNDICATE_SECRET"}
    done = subprocess.run([sys.executable, "-m", "syndicate.cli", "--config", str(config), "worker"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        "syndicate: error: channels.news signs unsubscribe links: set SYNDICATE_SECRET (web.secret_env) "
        "for every worker, the same value `syndicate serve` has"], done.stderr


def test_each_worker_process_gets_its_own_node_name_by_default():
    args = argparse.Namespace(loglevel="INFO", concurrency=2, hostname=None)
    assert f"--hostname=syndicate-{os.getpid()}@%h" in worker_argv(args)
    args.hostname = "worker3@%h"
    assert "--hostname=worker3@%h" in worker_argv(args)
