"""The delivery engine under faults, with every part real: Celery worker and beat processes, a
private Redis, PostgreSQL, and local X and Mastodon servers that record every request.

The invariant throughout: no delivery reaches a provider twice, and none is silently lost
(each ends sent, or failed/unknown where a person can see it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import start_fake
from sqlalchemy import select, text

from syndicate import settings as settings_mod
from syndicate.engine.dispatch import claim_due
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from tests.cluster import RedisServer, start_beat, start_worker, wait_until

pytestmark = pytest.mark.timeout(240)

FINAL = {"sent", "failed", "unknown", "cancelled", "skipped"}


class Cluster:
    """A settings file plus the processes and fakes one test runs against."""

    def __init__(self, tmp_path: Path, pg_url: str, redis: RedisServer, fakes: dict):
        self.tmp = tmp_path
        self.pg_url = pg_url
        self.redis = redis
        self.fakes = fakes  # name -> (base_url, fake)
        self.procs = []
        self.config = tmp_path / "settings.toml"
        self.env = {}
        for _, fake in fakes.values():
            self.env.update(fake.env())
        self.write_config()
        self.factory = open_ledger(pg_url)

    def write_config(self, claim_ttl: str = "10s", timeouts: dict[str, float] | None = None) -> None:
        """TIMEOUTS: the client timeout per channel (default 20 s): a channel whose fake stalls
        gets a short one, well below the stall, so nothing else on a loaded machine trips it."""
        channels = ""
        for name, (_, fake) in self.fakes.items():
            opts = ", ".join(f'{k} = "{v}"' for k, v in fake.options().items())
            timeout = (timeouts or {}).get(name, 20)
            channels += (f"[channels.{name}]\nkind = \"{name}\"\nprovider = \"{name}\"\n"
                         f"options = {{ {opts}, timeout = {timeout}, rate_limit = \"1000/1s\" }}\n\n")
        self.config.write_text(f"""
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"

[store]
url = "{self.pg_url}"

[broker]
url = "{self.redis.url}"

[run]
tick = "1s"
claim_ttl = "{claim_ttl}"
retry_base = "1s"
retry_max = "2s"
max_attempts = 5

{channels}""")

    @property
    def settings(self) -> settings_mod.Settings:
        return settings_mod.load(self.config)

    def worker(self, name="worker", concurrency=1):
        proc = start_worker(self.config, self.tmp, name=name, concurrency=concurrency, env=self.env)
        self.procs.append(proc)
        return proc

    def beat(self, name="beat"):
        proc = start_beat(self.config, self.tmp, name=name, env=self.env)
        self.procs.append(proc)
        return proc

    def seed(self, count: int, channel: str = "x", due_in: float = 0) -> list[int]:
        """COUNT planned deliveries with distinct texts, due now (or DUE_IN seconds later)."""
        due = utcnow() + timedelta(seconds=due_in)
        ids = []
        with transaction(self.factory) as s:
            for n in range(count):
                tag = uuid.uuid4().hex[:8]
                payload = {"text": f"Post {n} {tag}"} if channel == "x" else {"status": f"Post {n} {tag}",
                                                                             "visibility": "public"}
                d = Delivery(key=uuid.uuid4().hex, subject=f"test:{tag}", channel=channel, kind=channel,
                             provider=channel, state="planned", due_at=due, payload=payload)
                s.add(d)
                s.flush()
                ids.append(d.id)
        return ids

    def states(self) -> dict[int, str]:
        with transaction(self.factory) as s:
            return dict(s.execute(select(Delivery.id, Delivery.state)).all())

    def wait_final(self, ids: list[int], timeout: float = 90) -> dict[int, str]:
        def done():
            states = self.states()
            return states if all(states[i] in FINAL for i in ids) else None
        try:
            return wait_until(done, timeout, "every delivery to reach a final state")
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.procs)
            raise AssertionError(f"not final: {Counter(self.states().values())}\n{logs}") from None

    def texts(self, channel: str = "x") -> dict[int, str]:
        field = "text" if channel == "x" else "status"
        with transaction(self.factory) as s:
            return {d.id: d.payload[field] for d in s.scalars(select(Delivery).where(Delivery.channel == channel))}

    def stop(self):
        for proc in self.procs:
            proc.stop()


def created(fake, channel: str = "x") -> Counter:
    """How many times each text was accepted by the fake (2xx)."""
    path, field = (r"^/2/tweets$", "text") if channel == "x" else (r"^/api/v1/statuses$", "status")
    return Counter((c["json"] or c["form"] or {}).get(field) for c in fake.calls("POST", path)
                   if c["status"] and 200 <= c["status"] < 300)


def requested(fake, channel: str = "x") -> Counter:
    path, field = (r"^/2/tweets$", "text") if channel == "x" else (r"^/api/v1/statuses$", "status")
    return Counter((c["json"] or c["form"] or {}).get(field) for c in fake.calls("POST", path))


def assert_exactly_once(cluster: Cluster, fake, channel: str = "x") -> dict[int, str]:
    """Sent deliveries reached the provider once; unknown ones at most once; none lost."""
    states = cluster.states()
    texts = cluster.texts(channel)
    accepted = created(fake, channel)
    assert max(accepted.values(), default=0) <= 1, accepted
    for did, txt in texts.items():
        if states[did] == "sent":
            assert accepted[txt] == 1, (did, txt, accepted[txt])
        elif states[did] == "unknown":
            assert accepted[txt] <= 1
        elif states[did] == "failed":
            assert accepted[txt] == 0
        else:
            raise AssertionError(f"delivery {did} left in {states[did]}")
    return states


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path, pg_database, redis_server, request):
    with open_ledger(pg_database)() as s, s.begin():
        s.execute(text("TRUNCATE events, deliveries, posts, feeds RESTART IDENTITY CASCADE"))
    names = getattr(request, "param", ("x",))
    fakes = {}
    stack = [start_fake(name, stall_seconds=30) for name in names]
    for name, ctx in zip(names, stack, strict=True):
        fakes[name] = ctx.__enter__()
    c = Cluster(tmp_path, pg_database, redis_server, fakes)
    yield c
    c.stop()
    for ctx in stack:
        ctx.__exit__(None, None, None)


def test_steady_state_sends_each_delivery_once(cluster):
    _, fake = cluster.fakes["x"]
    ids = cluster.seed(12)
    cluster.worker(concurrency=2)
    cluster.beat()
    states = cluster.wait_final(ids)
    assert Counter(states.values()) == {"sent": 12}
    assert_exactly_once(cluster, fake)


def test_kill9_worker_mid_send_and_before_send(cluster):
    """The worker dies while the provider holds one request (after the provider accepted it)
    and with more claimed deliveries queued (before any provider call)."""
    _, fake = cluster.fakes["x"]
    fake.fail_next("stall", delay=40, path=r"^/2/tweets$")  # the first send hangs inside the provider
    ids = cluster.seed(5)
    worker = cluster.worker()
    cluster.beat()
    wait_until(lambda: fake.calls("POST", r"^/2/tweets$"), 60, "the first send to reach the provider")
    worker.kill9()
    # The stalled request is now processed by the provider: the tweet exists, the worker is gone.
    cluster.worker(name="worker2")
    states = cluster.wait_final(ids, timeout=120)
    assert Counter(states.values()) == {"sent": 4, "unknown": 1}
    assert_exactly_once(cluster, fake)
    [stalled] = [i for i, s in states.items() if s == "unknown"]
    with transaction(cluster.factory) as s:
        assert "mid-send" in s.get(Delivery, stalled).last_error


def test_kill9_worker_mid_chunk_of_a_backlog(cluster):
    """A backlog goes out in deliver_many messages (a chunk of claims each); the worker dies
    while the provider holds one send of a chunk: that one is unknown, the rest of its chunk
    (claimed, never started) and every other chunk are sent, each once."""
    _, fake = cluster.fakes["x"]
    fake.fail_next("stall", delay=40, path=r"^/2/tweets$")
    ids = cluster.seed(60)
    worker = cluster.worker()
    cluster.beat()
    wait_until(lambda: fake.calls("POST", r"^/2/tweets$"), 60, "the first send to reach the provider")
    worker.kill9()
    cluster.worker(name="worker2")
    states = cluster.wait_final(ids, timeout=180)
    assert Counter(states.values()) == {"sent": 59, "unknown": 1}
    assert_exactly_once(cluster, fake)
    assert any("syndicate.deliver_many" in log.read_text(errors="replace") for log in cluster.tmp.glob("worker*.log"))


def test_duplicate_messages_and_two_dispatchers(cluster):
    _, fake = cluster.fakes["x"]
    ids = cluster.seed(30)
    from celery import Celery

    client = Celery(broker=cluster.redis.url)
    # The same task message delivered twice: claim some rows here and publish each claim twice.
    claims = claim_due(cluster.factory, utcnow(), limit=10, ttl=timedelta(minutes=2), actor="test")
    for claim in claims:
        for _ in range(2):
            client.send_task("syndicate.deliver", (claim.delivery_id, claim.token))
    # Two beats, so every dispatcher tick runs twice and two dispatchers race on the rest.
    cluster.worker("w1", concurrency=2)
    cluster.worker("w2", concurrency=2)
    cluster.beat("beat1")
    cluster.beat("beat2")
    states = cluster.wait_final(ids)
    assert Counter(states.values()) == {"sent": 30}
    assert_exactly_once(cluster, fake)
    assert sum(requested(fake).values()) == 30  # no second request even for the duplicates
    client.close()


def test_redis_stopped_and_restarted_empty_mid_run(cluster):
    _, fake = cluster.fakes["x"]
    ids = cluster.seed(30)
    fake.fail_next("stall", count=30, delay=0.15, path=r"^/2/tweets$")  # slow provider: work in flight
    cluster.worker(concurrency=2)
    cluster.beat()
    wait_until(lambda: len(fake.calls("POST", r"^/2/tweets$")) >= 5, 60, "some sends before the outage")
    cluster.redis.stop()  # queues, unacked messages and rate-limit state: all gone
    time.sleep(3)
    cluster.redis.start()
    states = cluster.wait_final(ids, timeout=150)
    assert_exactly_once(cluster, fake)
    assert Counter(states.values())["sent"] >= 28, Counter(states.values())
    assert set(states.values()) <= {"sent", "unknown"}


@pytest.mark.parametrize("cluster", [("x", "mastodon")], indirect=True)
def test_provider_errors_are_classified_and_retried_by_the_rules(cluster):
    _, x = cluster.fakes["x"]
    _, masto = cluster.fakes["mastodon"]
    cluster.write_config(timeouts={"mastodon": 4})
    x.fail_next("429", retry_after=3, path=r"^/2/tweets$")
    x.fail_next("500", count=2, path=r"^/2/tweets$")
    masto.fail_next("stall", delay=12, path=r"^/api/v1/statuses$")  # timeout: outcome unknown
    x_ids = cluster.seed(4)
    m_ids = cluster.seed(2, channel="mastodon")
    cluster.worker()
    cluster.beat()
    states = cluster.wait_final(x_ids + m_ids, timeout=150)
    # X: a 429 and two 500s are retried; every post ends sent once.
    assert [states[i] for i in x_ids] == ["sent"] * 4
    assert_exactly_once(cluster, x)
    calls = x.calls("POST", r"^/2/tweets$")
    limited = next(c for c in calls if c["status"] == 429)
    retry = next(c for c in calls if c["json"]["text"] == limited["json"]["text"] and c["status"] == 201)
    assert retry["time"] - limited["time"] >= 2.5  # Retry-After honoured (3 s, less clock rounding)
    # Mastodon deduplicates by Idempotency-Key: the timed-out status is retried with the same key
    # and the instance answers with the status it already made: one status per delivery.
    assert [states[i] for i in m_ids] == ["sent", "sent"]
    statuses = masto.calls("POST", r"^/api/v1/statuses$")
    keys = Counter(c["headers"].get("Idempotency-Key") or c["headers"].get("idempotency-key") for c in statuses)
    assert len(keys) == 2 and sorted(keys.values()) == [1, 2]
    assert len(masto.statuses) == 2


def test_timeout_without_dedup_and_permanent_errors_wait_for_a_person(cluster):
    _, x = cluster.fakes["x"]
    cluster.write_config(timeouts={"x": 4})
    x.fail_next("stall", delay=12, path=r"^/2/tweets$")
    x.fail_next("400", path=r"^/2/tweets$")
    ids = cluster.seed(3)
    cluster.worker()
    cluster.beat()
    states = cluster.wait_final(ids)
    assert Counter(states.values()) == {"unknown": 1, "failed": 1, "sent": 1}
    assert_exactly_once(cluster, x)
    assert len(x.calls("POST", r"^/2/tweets$")) == 3  # nothing was resent blindly
    with transaction(cluster.factory) as s:
        errors = {d.state: d.error_class for d in s.scalars(select(Delivery))}
    assert errors == {"unknown": "unknown", "failed": "permanent", "sent": None}


def test_two_overlapping_polls_record_and_plan_each_post_once(cluster, tmp_path):
    from feedserver import FeedServer  # the local HTTP feed server of the feed tests

    feed_xml = (Path(__file__).resolve().parents[1] / "syndicate/demo/wellness-feed.xml").read_bytes()
    with FeedServer() as server:
        server.route("/feed.xml", feed_xml, delay=1.0)  # slow: the polls overlap
        cfg = cluster.config.read_text() + (
            f'\n[[feeds]]\nname = "wellness"\nurl = "{server.url("/feed.xml")}"\nbackfill = 5\n')
        cluster.config.write_text(cfg.replace("[channels.x]", "[channels.x]\nhold = true", 1))
        from celery import Celery

        client = Celery(broker=cluster.redis.url)
        cluster.worker("w1", concurrency=2)
        cluster.worker("w2", concurrency=2)
        wait_until(lambda: "ready" in cluster.procs[0].output() and "ready" in cluster.procs[1].output(), 60,
                   "workers to start")
        for _ in range(4):
            client.send_task("syndicate.poll_feed", ("wellness",))

        def all_planned():
            with transaction(cluster.factory) as s:
                posts = s.scalars(select(Post)).all()
                return len(posts) == 5 and all(p.planned_at for p in posts) and posts
        wait_until(all_planned, 60, "the feed to be polled and planned")
        time.sleep(2)  # let any slower overlapping poll finish too
        client.close()
    with transaction(cluster.factory) as s:
        assert len(s.scalars(select(Post)).all()) == 5
        per_post = Counter(d.post_id for d in s.scalars(select(Delivery)))
    assert sorted(per_post.values()) == [1] * 5  # one held X delivery per post, no duplicates
    assert server.hits["/feed.xml"] >= 2


def test_thread_race_on_claims_many_ticks(cluster):
    """Eight dispatcher ticks at once over 200 due rows on PostgreSQL: each claimed once."""
    ids = cluster.seed(200)
    claimed: list = []
    barrier = threading.Barrier(8)

    def tick():
        barrier.wait()
        while batch := claim_due(cluster.factory, utcnow(), limit=7, ttl=timedelta(minutes=5)):
            claimed.extend(c.delivery_id for c in batch)

    threads = [threading.Thread(target=tick) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_dispatch_claims_no_more_than_the_queue_can_hold(cluster):
    """Back-pressure: with no worker consuming, repeated dispatches stop claiming once
    run.max_queued deliver messages wait in the broker (claims would only expire there)."""
    import subprocess
    import sys

    # A lease long enough that the reaper never takes a claim back between the three dispatches
    # (each a fresh process: seconds apiece on a loaded machine); this test is about the queue.
    cluster.write_config(claim_ttl="5m")
    cluster.config.write_text(cluster.config.read_text().replace("max_attempts = 5", "max_attempts = 5\nmax_queued = 5"))
    ids = cluster.seed(30)
    env = {**__import__("os").environ, **cluster.env, "SYNDICATE_CONFIG": str(cluster.config)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "import workers.app; from workers.tasks import dispatch; dispatch()"], env=env,
                       cwd=Path(__file__).resolve().parents[1], check=True, timeout=60)
    states = Counter(cluster.states()[i] for i in ids)
    assert states == {"claimed": 5, "planned": 25}
