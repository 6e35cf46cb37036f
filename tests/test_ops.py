"""Operations against a running `syndicate serve`: the production server, /healthz, /metrics, doctor.

Everything is a real process: `syndicate serve` (waitress), `syndicate run`, `run --once`, `doctor`,
and for the health of a Celery deployment a private redis-server, a `syndicate worker` and the
one `syndicate beat`, on PostgreSQL. /healthz must turn 503 when beat stops, and say it was beat.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from syndicate.ledger.db import open_ledger
from tests.cluster import REPO, Proc, RedisServer, free_port, start_beat, start_worker, wait_until

pytestmark = pytest.mark.timeout(180)

DEMO_FEED = REPO / "syndicate" / "demo" / "wellness-feed.xml"
TOKEN_ENV = "SYN_OPS_TEST_METRICS_TOKEN"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def get(url: str, headers: dict | None = None, follow: bool = True) -> tuple[int, Message, bytes]:
    """Status, headers and body of a GET (an HTTP error is an answer too)."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=15) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def health(base: str) -> tuple[int, dict]:
    status, _, body = get(f"{base}/healthz")
    return status, json.loads(body)


def metrics(base: str, headers: dict | None = None) -> dict[str, float]:
    """Every sample of /metrics by name and labels, parsed by prometheus_client's own parser."""
    status, head, body = get(f"{base}/metrics", headers)
    assert status == 200, (status, body)
    assert head["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(name + "{"))


def write_config(path: Path, store_url: str, broker_url: str | None = None) -> Path:
    broker = f'[broker]\nurl = "{broker_url}"' if broker_url else ""
    path.write_text(f"""
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"

[store]
url = "{store_url}"

[outbox]
dir = "{path.parent / 'outbox'}"

{broker}

[run]
tick = "1s"

[health]
heartbeat_after = "4s"

[metrics]
token_env = "{TOKEN_ENV}"

[[feeds]]
name = "wellness"
url = "{DEMO_FEED}"
backfill = 5

[channels.newsletter]
kind = "email"
provider = "outbox"
to = ["reader@example.org"]

[channels.mastodon]
kind = "mastodon"
provider = "outbox"
options = {{ instance = "https://mastodon.example" }}
""")
    return path


def syndicate(config: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syndicate.cli", "--config", str(config), *args], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


class Serve:
    def __init__(self, config: Path, log_dir: Path, env: dict | None = None, *extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = Proc("serve", ["serve", "--port", str(self.port), "--threads", "4", *extra], config, log_dir, env)
        wait_until(self._up, 60, "syndicate serve to answer")

    def _up(self) -> bool:
        try:
            return get(f"{self.base}/favicon.ico")[0] == 200
        except OSError:
            return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.stop()


def test_serve_is_a_production_server(tmp_path):
    config = write_config(tmp_path / "settings.toml", f"sqlite:///{tmp_path / 'ledger.db'}")
    with Serve(config, tmp_path) as serve:
        status, headers, _ = get(f"{serve.base}/", follow=False)
        assert status == 302 and headers["Location"].endswith("/desk/")
        assert "werkzeug" not in (headers["Server"] or "").lower()
        assert headers["Server"] == "syndicate"
        status, headers, _ = get(f"{serve.base}/desk/static/desk.css")
        assert status == 200 and headers["Cache-Control"] == "public, max-age=3600"
        assert "Werkzeug" not in serve.proc.output() and "development server" not in serve.proc.output()
        # A body over 1 MB is refused by the server from its Content-Length, before it is read.
        conn = http.client.HTTPConnection("127.0.0.1", serve.port, timeout=15)
        try:
            conn.putrequest("POST", "/unsubscribe/x")
            conn.putheader("Content-Length", str(1024 * 1024 + 1))
            conn.endheaders()
            assert conn.getresponse().status == 413
        finally:
            conn.close()


def test_dev_server_only_on_request(tmp_path):
    config = write_config(tmp_path / "settings.toml", f"sqlite:///{tmp_path / 'ledger.db'}")
    with Serve(config, tmp_path, None, "--dev") as serve:
        assert "werkzeug" in get(f"{serve.base}/favicon.ico")[1]["Server"].lower()


def test_metrics_move_after_a_run_and_need_the_token(tmp_path):
    config = write_config(tmp_path / "settings.toml", f"sqlite:///{tmp_path / 'ledger.db'}")
    env = {TOKEN_ENV: "metrics-token-0123456789"}
    auth = {"Authorization": "Bearer metrics-token-0123456789"}
    with Serve(config, tmp_path, env) as serve:
        status, headers, _ = get(f"{serve.base}/metrics")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert get(f"{serve.base}/metrics", {"Authorization": "Bearer wrong"})[0] == 401
        before = metrics(serve.base, auth)
        assert total(before, "syndicate_sends_total") == 0
        assert before['syndicate_due_lag_seconds{}'] == 0

        done = syndicate(config, "run", "--once", env=env)
        assert done.returncode == 0, done.stdout + done.stderr

        after = metrics(serve.base, auth)
        sent = after['syndicate_deliveries{"channel": "newsletter", "state": "sent"}']
        assert sent >= 1
        in_sent = sum(v for k, v in after.items() if k.startswith("syndicate_deliveries{") and '"sent"' in k)
        assert total(after, "syndicate_sends_total") == in_sent  # every send is in the audit trail once
        assert after['syndicate_sends_total{"channel": "mastodon", "provider": "outbox"}'] >= 1
        assert after['syndicate_feed_polls_total{"feed": "wellness"}'] == 1
        assert after['syndicate_feed_up{"feed": "wellness"}'] == 1
        assert 0 <= after['syndicate_feed_last_fetch_seconds{"feed": "wellness"}'] < 30  # how long the fetch took
        assert after['syndicate_health_check_ok{"check": "ledger"}'] == 1
        # The counters come from the ledger: a restarted server reads the same numbers.
    with Serve(config, tmp_path, env) as serve:
        again = metrics(serve.base, auth)
        assert total(again, "syndicate_sends_total") == total(after, "syndicate_sends_total") > 0


def test_metrics_without_a_token_answer_loopback_only(tmp_path):
    config = write_config(tmp_path / "settings.toml", f"sqlite:///{tmp_path / 'ledger.db'}")
    env = {TOKEN_ENV: ""}  # named, but not set: loopback only
    with Serve(config, tmp_path, env) as serve:
        assert "syndicate_deliveries" in get(f"{serve.base}/metrics")[2].decode()
        status, _, body = get(f"{serve.base}/metrics", {"X-Forwarded-For": "203.0.113.9"})
        assert status == 403 and b"metrics.token_env" in body


def test_the_loopback_rule():
    from syndicate.web.ops import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("127.0.0.2")
    assert not _loopback("10.0.0.5") and not _loopback("203.0.113.9") and not _loopback(None)
    assert not _loopback("not an address")


def test_doctor_and_healthz_follow_the_embedded_runner(tmp_path):
    config = write_config(tmp_path / "settings.toml", f"sqlite:///{tmp_path / 'ledger.db'}")
    done = syndicate(config, "doctor")
    assert done.returncode == 1 and "runner" in done.stdout and "never run" in done.stdout, done.stdout
    with Serve(config, tmp_path) as serve:
        # A fresh server gives the runner one heartbeat_after to start.
        status, report = health(serve.base)
        assert status == 200, report
        run = Proc("run", ["run"], config, tmp_path)
        try:
            wait_until(lambda: health(serve.base)[1]["checks"]["runner"]["value"] is not None, 60,
                       "the runner's first heartbeat")
            status, report = health(serve.base)
            assert status == 200 and report["runner"] == "embedded", report
            assert report["checks"]["broker"]["skipped"] is True  # no broker for the embedded runner
            assert report["checks"]["feed:wellness"]["ok"]
            done = syndicate(config, "doctor")
            assert done.returncode == 0 and "healthy" in done.stdout, done.stdout
        finally:
            run.stop()
        wait_until(lambda: health(serve.base)[0] == 503, 30, "/healthz to notice the runner stopped")
        status, report = health(serve.base)
        assert report["failing"] == ["runner"] and "silent" in report["checks"]["runner"]["detail"]
    done = syndicate(config, "doctor", "--json")
    assert done.returncode == 1 and json.loads(done.stdout)["failing"] == ["runner"]


@pytest.fixture
def pg_url(pg_database):
    with open_ledger(pg_database)() as s, s.begin():
        s.execute(text("TRUNCATE events, deliveries, posts, feeds, heartbeats RESTART IDENTITY CASCADE"))
    return pg_database


@pytest.mark.redis
@pytest.mark.postgres
def test_healthz_turns_503_when_beat_stops(tmp_path, pg_url):
    redis = RedisServer(tmp_path).start()
    path = write_config(tmp_path / "settings.toml", pg_url, broker_url=redis.url)
    procs = []
    try:
        with Serve(path, tmp_path) as serve:
            procs += [start_worker(path, tmp_path), start_beat(path, tmp_path)]
            logs = lambda: "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in procs)  # noqa: E731
            try:
                # /healthz gives a fresh server a grace; `doctor` none: wait for both to pass.
                wait_until(lambda: health(serve.base)[1]["runner"] == "workers" and health(serve.base)[0] == 200
                           and syndicate(path, "doctor").returncode == 0, 90, "beat and the worker to be healthy")
            except AssertionError:
                raise AssertionError(f"{health(serve.base)}\n{logs()}") from None
            status, report = health(serve.base)
            assert report["checks"]["broker"]["ok"] and not report["checks"]["broker"]["skipped"]
            assert report["checks"]["beat"]["ok"] and report["checks"]["dispatcher"]["ok"]
            done = syndicate(path, "doctor")
            assert done.returncode == 0, f"{done.stdout}\n{logs()}"

            procs[1].stop()  # beat stops; the worker goes on
            wait_until(lambda: health(serve.base)[0] == 503, 30, "/healthz to notice beat stopped")
            status, report = health(serve.base)
            assert "beat" in report["failing"], report
            assert "silent" in report["checks"]["beat"]["detail"] and "syndicate beat" in report["checks"]["beat"]["detail"]
            # Silent for more than heartbeat_after (4 s); the value is rounded to 0.1 s, so 4.04 s reads 4.0.
            assert report["checks"]["beat"]["value"] >= timedelta(seconds=4).total_seconds()
            done = syndicate(path, "doctor")
            assert done.returncode == 1 and "FAIL beat" in done.stdout, done.stdout

            redis.stop()  # and the broker goes away: named too
            wait_until(lambda: "broker" in health(serve.base)[1]["failing"], 30, "/healthz to notice Redis")
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()


def test_metrics_count_errors_by_class_recipients_and_bounces(make_settings):
    """Ledger rows as the engine and the webhooks write them (suppression.record_event)."""
    from syndicate.audience import suppression
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Delivery, Event, RecipientSend, utcnow
    from syndicate.web import create_app

    settings = make_settings()
    factory = open_ledger(settings.store_url)
    client = create_app(settings).test_client()  # remote address 127.0.0.1: loopback, no token needed

    def scrape() -> dict[str, float]:
        response = client.get("/metrics")
        assert response.status_code == 200
        return {s.name + json.dumps(s.labels, sort_keys=True): s.value
                for f in text_string_to_metric_families(response.get_data(as_text=True)) for s in f.samples}

    assert not any(k.startswith("syndicate_deliverability_events_total{") for k in scrape())  # none yet
    with transaction(factory) as s:
        d = Delivery(key="k1", subject="post:1", channel="newsletter", kind="email", provider="outbox",
                     state="sent", due_at=utcnow(), payload={})
        s.add(d)
        s.flush()
        for to_state, detail in (("planned", "retryable: HTTP 503"), ("planned", "rate_limited: 429"),
                                 ("planned", "retryable: timeout"), ("sent", None)):
            s.add(Event(delivery_id=d.id, actor="worker:w1", action=to_state, from_state="sending",
                        to_state=to_state, detail=detail))
        s.add_all([RecipientSend(delivery_id=d.id, recipient=f"r{i}@example.org", state=state)
                   for i, state in enumerate(("sent", "sent", "unknown"))])
        for n, (kind, subtype) in enumerate((("bounce", "hard"), ("bounce", "soft"), ("complaint", ""))):
            suppression.record_event(s, settings, provider="ses", kind=kind, subtype=subtype,
                                     email=f"r{n}@example.org", event_id=f"ses-{n}")
    samples = scrape()
    errors = 'syndicate_provider_errors_total{"channel": "newsletter", "error_class": "%s", "provider": "outbox"}'
    assert samples[errors % "retryable"] == 2 and samples[errors % "rate_limited"] == 1
    assert errors % "auth" not in samples
    assert samples['syndicate_sends_total{"channel": "newsletter", "provider": "outbox"}'] == 1
    assert samples['syndicate_recipients_sent_total{"channel": "newsletter"}'] == 2
    assert samples['syndicate_deliverability_events_total{"kind": "bounce", "provider": "ses"}'] == 2
    assert samples['syndicate_deliverability_events_total{"kind": "complaint", "provider": "ses"}'] == 1
