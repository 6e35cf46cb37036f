"""Exactly once for every email recipient when a worker is killed (-9) at each step of a send.

Everything is real: Celery worker and beat processes, a private Redis, PostgreSQL, the SMTP
server of the email tests (aiosmtpd) and the strict local Postmark API. The worker kills itself
with SIGKILL at one step (tests/faultinject/sitecustomize.py: exactly what `kill -9` does),
the reaper takes the send back after `claim_ttl`, and the resumed send finishes. Then, on the
receiving side, every recipient has the message exactly once, or is `unknown` (never silently
`sent`, never mailed twice by the engine); a person settles each unknown one by what the server
holds (`syndicate resolve ID --recipient EMAIL --sent|--retry`), and in the end everyone has
exactly one copy and `syndicate status` says `sent`.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fakes import start_fake
from sqlalchemy import select, text
from test_providers_email_support import rendered_payload
from test_smtp_support import Recorder, SmtpServer

from syndicate import settings as settings_mod
from syndicate.cli import main
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, RecipientSend, utcnow
from tests.cluster import REPO, RedisServer, start_beat, start_worker, wait_until

pytestmark = pytest.mark.timeout(180)

PEOPLE = [f"reader{i}@example.org" for i in range(4)]
SECRET_ENV = "SYN_FAULT_LINK_SECRET"
FINAL = {"sent", "failed", "unknown", "cancelled"}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def ledger_url(pg_database):
    with open_ledger(pg_database)() as s, s.begin():
        s.execute(text("TRUNCATE events, deliveries, posts, feeds, subscribers, suppressions, recipient_sends "
                       "RESTART IDENTITY CASCADE"))
    return pg_database


class EmailCluster:
    """One email channel ("news") on a real worker and beat; the delivery seeded, due now."""

    def __init__(self, tmp: Path, pg_url: str, redis: RedisServer, channel: str, env: dict[str, str]):
        self.tmp, self.procs = tmp, []
        self.config = tmp / "settings.toml"
        self.env = {SECRET_ENV: "fault-test-signing-key-0123456789abcdef", **env}
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
claim_ttl = "4s"
retry_base = "1s"
retry_max = "2s"

[channels.news]
{channel}
""")
        self.factory = open_ledger(pg_url)
        self.kill_mark = tmp / "killed"

    @property
    def settings(self) -> settings_mod.Settings:
        return settings_mod.load(self.config)

    def seed(self) -> int:
        """The subscribers and one planned delivery of the demo post to them; its id."""
        from syndicate.audience import subscribers

        settings = self.settings
        rows = [subscribers.Row(line=i, email=e) for i, e in enumerate(PEOPLE, start=1)]
        subscribers.import_rows(self.factory, settings, rows, source="test")
        payload = rendered_payload(settings)
        with transaction(self.factory) as s:
            d = Delivery(key="fault-delivery-1", subject="post:fault", channel="news", kind="email",
                         provider=settings.channels["news"].provider, state="planned", due_at=utcnow(),
                         payload=payload)
            s.add(d)
            s.flush()
            return d.id

    def start(self, kill_at: str | None, nth: int = 2):
        """A worker (killing itself at KILL_AT, once) and beat."""
        env = dict(self.env)
        if kill_at:
            env.update(SYNDICATE_TEST_KILL_AT=kill_at, SYNDICATE_TEST_KILL_NTH=str(nth),
                       SYNDICATE_TEST_KILL_MARK=str(self.kill_mark),
                       PYTHONPATH=f"{REPO / 'tests' / 'faultinject'}")
        self.worker = start_worker(self.config, self.tmp, name=f"worker{len(self.procs)}", env=env)
        self.procs.append(self.worker)
        if not any(p.name == "beat" for p in self.procs):
            self.procs.append(start_beat(self.config, self.tmp, env=self.env))

    def delivery(self, delivery_id: int) -> Delivery:
        with transaction(self.factory) as s:
            return s.get(Delivery, delivery_id)

    def recipients(self, delivery_id: int) -> dict[str, str]:
        with transaction(self.factory) as s:
            return dict(s.execute(select(RecipientSend.recipient, RecipientSend.state)
                                  .where(RecipientSend.delivery_id == delivery_id)).all())

    def wait_final(self, delivery_id: int, timeout: float = 60) -> Delivery:
        try:
            wait_until(lambda: self.delivery(delivery_id).state in FINAL, timeout, "the delivery to settle")
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-4000:]}" for p in self.procs)
            raise AssertionError(f"delivery {self.delivery(delivery_id).state}, recipients "
                                 f"{self.recipients(delivery_id)}\n{logs}") from None
        return self.delivery(delivery_id)

    def cli(self, *args: str) -> str:
        """Run a `syndicate` command in this process; what it printed."""
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        printed = self.capsys.readouterr().out
        assert code == 0, (args, code, printed)
        return printed

    def stop(self):
        for proc in self.procs:
            proc.stop()


def settle_by_what_the_server_holds(cluster: EmailCluster, delivery_id: int, received: Counter, capsys) -> dict:
    """The person's part: each unknown recipient is settled by looking at the receiving side."""
    unknown = [a for a, state in cluster.recipients(delivery_id).items() if state == "unknown"]
    for address in unknown:
        assert received[address] <= 1, (address, received)  # unknown, but never twice
        word = "--sent" if received[address] == 1 else "--retry"
        cluster.cli("resolve", str(delivery_id), "--recipient", address, word)
    return dict.fromkeys(unknown)


def assert_exactly_once_then_settled(cluster, delivery_id, received_now, expect_unknown, capsys):
    d = cluster.wait_final(delivery_id)
    states = cluster.recipients(delivery_id)
    received = received_now()
    assert set(states) == set(PEOPLE), states
    for address in PEOPLE:  # never lost, never twice; unknown is the only other answer
        if states[address] == "sent":
            assert received[address] == 1, (address, states, received)
        else:
            assert states[address] == "unknown" and received[address] <= 1, (address, states, received)
    assert sorted(a for a, s in states.items() if s == "unknown") == sorted(expect_unknown), states
    if expect_unknown:
        # Not `sent` while anyone is unknown: status names it as needing a person.
        assert d.state == "unknown", d.state
        status = json.loads(cluster.cli("status", "--json"))
        assert [(r["state"], r["recipients_unknown"]) for r in status if r["id"] == delivery_id] == [
            ("unknown", len(expect_unknown))]
        assert "email recipients of unknown outcome" in cluster.cli("status")
        listed = json.loads(cluster.cli("recipients", str(delivery_id), "--json"))
        assert {r["recipient"]: r["state"] for r in listed} == states
        settle_by_what_the_server_holds(cluster, delivery_id, received, capsys)
        d = cluster.wait_final(delivery_id)
    assert d.state == "sent", (d.state, d.last_error)
    assert set(cluster.recipients(delivery_id).values()) == {"sent"}
    assert received_now() == Counter(dict.fromkeys(PEOPLE, 1))  # everyone exactly once
    status = json.loads(cluster.cli("status", "--json"))
    assert [r["state"] for r in status if r["id"] == delivery_id] == ["sent"]


# The recipient in hand is the 2nd. What the resumed send must find, by step. One commit a
# recipient, pipelined (PostgreSQL): recipient i+1 is issued, with the answers read before, by a
# commit that starts once i's content is out and ends before i+1's content leaves; i's answer
# goes with i+2's issue. So a kill leaves the recipient whose content went out last unknown
# (the server may hold it) and, once its commit is done, the one issued after it too (never
# mailed: the person settles it by what the server holds, and it is mailed once then).
SMTP_STEPS = {
    "before-mail": PEOPLE[:2],  # 1st: content out, answer unwritten; 2nd: issued, not mailed
    "after-rcpt": PEOPLE[:2],  # the same: 2nd's RCPT answered, its content never sent
    "during-data": PEOPLE[:2],  # 2nd: half its content sent (the server has nothing)
    "after-250": PEOPLE[1:3],  # 1st's answer written with the 3rd's issue; 2nd: 250 read, not written
}
# The ledger thread killed at its 3rd issue statement (the 3rd recipient's, with the 1st's answer),
# while the 2nd's content is out or being answered.
AHEAD_STEPS = {
    "before-ahead-issue": PEOPLE[:2],  # 3rd still `sending`: mailed on resume
    "after-ahead-issue": PEOPLE[1:3],  # 3rd issued, never mailed; 1st's answer written
}


@pytest.mark.parametrize("step", list(SMTP_STEPS) + list(AHEAD_STEPS))
def test_smtp_worker_killed_at_each_step_of_the_exchange(tmp_path, ledger_url, redis_server, step, capsys):
    handler = Recorder()
    with SmtpServer(handler) as server:
        channel = (f'kind = "email"\nprovider = "smtp"\nfrom_address = "news@harborwellness.example"\n'
                   f'options = {{ host = "127.0.0.1", port = {server.port}, security = "none", timeout = 10, '
                   f'audience = "subscribers" }}')
        cluster = EmailCluster(tmp_path, ledger_url, redis_server, channel, {})
        cluster.capsys = capsys
        try:
            delivery_id = cluster.seed()
            cluster.start(kill_at=step, nth=3 if step in AHEAD_STEPS else 2)
            wait_until(cluster.kill_mark.exists, 60, f"the worker to be killed at {step}")
            received = lambda: Counter(a.lower() for r in handler.received for a in r.rcpt_tos)  # noqa: E731
            expected = SMTP_STEPS[step] if step in SMTP_STEPS else AHEAD_STEPS[step]
            assert_exactly_once_then_settled(cluster, delivery_id, received, expected, capsys)
        finally:
            cluster.stop()


def test_smtp_whole_worker_killed_mid_content_and_a_new_worker_resumes(tmp_path, ledger_url, redis_server,
                                                                         capsys):
    """The whole worker group dies (not only the pool child): a new worker process resumes."""
    handler = Recorder()
    with SmtpServer(handler) as server:
        channel = (f'kind = "email"\nprovider = "smtp"\nfrom_address = "news@harborwellness.example"\n'
                   f'options = {{ host = "127.0.0.1", port = {server.port}, security = "none", timeout = 10, '
                   f'audience = "subscribers" }}')
        cluster = EmailCluster(tmp_path, ledger_url, redis_server, channel, {})
        cluster.capsys = capsys
        try:
            delivery_id = cluster.seed()
            cluster.start(kill_at="after-rcpt", nth=3)
            wait_until(cluster.kill_mark.exists, 60, "the pool child to be killed")
            cluster.worker.kill9()  # and the main process with it
            cluster.start(kill_at=None)
            received = lambda: Counter(a.lower() for r in handler.received for a in r.rcpt_tos)  # noqa: E731
            # Killed after the 3rd's RCPT: its issue (with the 1st's answer) committed; the 2nd's
            # answer unwritten.
            assert_exactly_once_then_settled(cluster, delivery_id, received, PEOPLE[1:3], capsys)
        finally:
            cluster.stop()


# Postmark, two recipients a batch: the 2nd batch is in hand.
API_STEPS = {
    "before-issue": [],  # claimed, not issued: mailed on resume
    "after-issue": PEOPLE[2:],  # issued, the request never sent: unknown (the API has nothing)
    "after-answer": PEOPLE[2:],  # the API accepted, the answer not recorded: unknown (the API has them)
}


@pytest.mark.parametrize("step", list(API_STEPS))
def test_batched_api_worker_killed_at_each_step_of_a_batch(tmp_path, ledger_url, redis_server, step, capsys):
    with start_fake("postmark") as (_, fake):
        options = ", ".join(f'{k} = "{v}"' for k, v in fake.options().items())
        channel = (f'kind = "email"\nprovider = "postmark"\nfrom_address = "news@harborwellness.example"\n'
                   f'options = {{ {options}, timeout = 10, batch_size = 2, audience = "subscribers" }}')
        cluster = EmailCluster(tmp_path, ledger_url, redis_server, channel, fake.env())
        cluster.capsys = capsys
        try:
            delivery_id = cluster.seed()
            cluster.start(kill_at=step)
            wait_until(cluster.kill_mark.exists, 60, f"the worker to be killed at {step}")
            received = lambda: Counter(m["to"].lower() for m in fake.delivered)  # noqa: E731
            assert_exactly_once_then_settled(cluster, delivery_id, received, API_STEPS[step], capsys)
        finally:
            cluster.stop()
