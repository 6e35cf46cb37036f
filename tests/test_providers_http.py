"""The shared HTTP base: error mapping, timeouts, secrets, thumbnails, and the fakes themselves.

Real HTTP to local fake servers (tests/fakes), no mocks of requests. The helpers at the top
(``build``, ``job``, ``spec_validator``) are used by every tests/test_providers_*.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from fakes import start_fake
from fakes.specs import SpecsMissing, openapi_validator

from syndicate import providers
from syndicate.providers.base import (
    AuthExpired,
    Job,
    OutcomeUnknown,
    Permanent,
    RateLimited,
    Retryable,
)
from syndicate.providers.http import HttpProvider, body_of, parse_reset
from tests.cluster import free_port

REPO = Path(__file__).resolve().parents[1]


# -- helpers shared by the provider tests ---------------------------------------------------------

def build(make_settings, monkeypatch, fake, kind: str, *, site_url: str | None = None, options=None,
          drop: tuple[str, ...] = (), **extra):
    """An adapter of KIND whose channel points at FAKE, with the fake's credentials in the env."""
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    opts = {**(options if options is not None else fake.options()), "timeout": 2, **extra}
    for key in drop:
        opts.pop(key, None)
    sections = {"site": {"url": site_url}} if site_url else {}
    settings = make_settings(channels={"ch": {"kind": kind, "provider": kind, "options": opts}}, **sections)
    return providers.get(kind)(settings, "ch", settings.channels["ch"])


def job(payload: dict, *, key: str = "delivery-42-3f9a", kind: str = "x", post_url: str | None = None) -> Job:
    return Job(delivery_id=42, key=key, channel="ch", kind=kind, payload=copy.deepcopy(payload),
               post_url=post_url or "https://harborwellness.example/blog/coping-with-grief/")


def spec_validator(filename: str, schema_name: str):
    """A jsonschema validator for components/schemas/SCHEMA_NAME of ../shared/specs/FILENAME,
    with every $ref resolved inside the spec. Fails (never skips) when the specs are missing."""
    try:
        return openapi_validator(filename, schema_name)
    except SpecsMissing as exc:
        pytest.fail(str(exc))


# -- a minimal adapter on the base, to test the base alone ----------------------------------------

class EchoProvider(HttpProvider):
    name = "echo"
    service = "Echo"

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.secret('token_env', 'token')}"}


@pytest.fixture
def echo(make_settings, monkeypatch):
    def make(base_url: str, **options):
        monkeypatch.setenv("SYN_TEST_ECHO_TOKEN", "super-secret-echo-token-123")
        opts = {"api_base": base_url, "token_env": "SYN_TEST_ECHO_TOKEN", "timeout": 0.5, **options}
        settings = make_settings(channels={"ch": {"kind": "x", "options": opts}})
        return EchoProvider(settings, "ch", settings.channels["ch"])
    return make


# -- reset times --------------------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value, expected", [
    ("120", NOW + timedelta(seconds=120)),  # Retry-After seconds
    ("Sun, 01 Mar 2026 12:30:00 GMT", NOW + timedelta(minutes=30)),  # Retry-After HTTP date
    (str(int((NOW + timedelta(hours=1)).timestamp())), NOW + timedelta(hours=1)),  # epoch (X, Bluesky)
    ("2026-03-01T15:00:00.000Z", NOW + timedelta(hours=3)),  # ISO 8601 (Mastodon)
    ("", None), ("soon", None), ("-5", None),
])
def test_parse_reset(value, expected):
    assert parse_reset(value, now=NOW) == expected


def test_hints_are_never_sent():
    assert body_of({"text": "hi", "_thumbnail_url": "https://x/y.png"}) == {"text": "hi"}


# -- the error mapping, through real HTTP -----------------------------------------------------------

def test_connection_refused_is_retryable(echo):
    provider = echo(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Retryable) as err:
        provider.request("POST", "/anything", json={})
    assert type(err.value) is Retryable
    assert "nothing was sent" in str(err.value)


def test_dns_failure_is_retryable(echo):
    provider = echo("http://no-such-host.invalid")
    with pytest.raises(Retryable):
        provider.request("POST", "/anything", json={})


def test_stall_after_sending_is_outcome_unknown_and_the_post_exists(echo):
    with start_fake("mastodon") as (base, fake):
        fake.fail_next("stall", delay=1.5)
        provider = echo(base)
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown) as err:
            provider.request("POST", "/api/v1/statuses", json={"status": "hello"},
                             headers={"Authorization": f"Bearer {fake.TOKEN}"})
        assert time.monotonic() - started < 1.4  # the read timeout (0.5 s) cut it short
        assert "may have gone through" in str(err.value)
        deadline = time.monotonic() + 5
        while not fake.statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake.statuses) == 1  # the fake processed it after the client gave up


def test_stall_on_an_idempotent_read_is_retryable(echo):
    with start_fake("mastodon") as (base, fake):
        fake.fail_next("stall", delay=1.5)
        with pytest.raises(Retryable) as err:
            echo(base).request("GET", "/api/v1/accounts/verify_credentials")
        assert type(err.value) is Retryable


def test_connection_dropped_after_sending_is_outcome_unknown(echo):
    with start_fake("mastodon") as (base, fake):
        fake.fail_next("drop")
        with pytest.raises(OutcomeUnknown):
            echo(base).request("POST", "/api/v1/statuses", json={"status": "hello"})


# A 503 on a create may come after the post was made: with nothing to catch a second copy (this
# provider neither deduplicates nor refuses duplicates), the outcome is unknown.
@pytest.mark.parametrize("kind, error", [("500", Retryable), ("503", OutcomeUnknown), ("504", OutcomeUnknown),
                                         ("401", AuthExpired), ("400", Permanent), ("429", RateLimited)])
def test_status_mapping(echo, kind, error):
    with start_fake("mastodon") as (base, fake):
        fake.fail_next(kind, retry_after=90)
        with pytest.raises(error) as err:
            echo(base).request("POST", "/api/v1/statuses", json={"status": "x"})
        assert type(err.value) is error
        assert str(err.value).startswith("Echo ")
        if error is RateLimited:
            assert err.value.reset_at is not None
            assert abs((err.value.reset_at - datetime.now(UTC)).total_seconds() - 90) < 5


def test_gateway_timeout_on_a_read_is_retryable(echo):
    with start_fake("mastodon") as (base, fake):
        fake.fail_next("504")
        with pytest.raises(Retryable) as err:
            echo(base).request("GET", "/api/v1/accounts/verify_credentials")
        assert type(err.value) is Retryable


def test_secrets_never_appear_in_messages(echo):
    with start_fake("site") as (base, fake):
        provider = echo(base)
        provider.auth_headers()  # reads (and so knows to mask) the token
        fake.add("/echo", b'{"error": "bad token super-secret-echo-token-123"}', "application/json", status=400)
        with pytest.raises(Permanent) as err:
            provider.request("GET", "/echo")
        assert "super-secret" not in str(err.value) and "***" in str(err.value)
        fake.add("/echo2", b'{"error": "token=abc123def&x=1 Bearer abc.def.ghi"}', "application/json", status=400)
        with pytest.raises(Permanent) as err:
            provider.request("GET", "/echo2")
        assert "abc123def" not in str(err.value) and "abc.def.ghi" not in str(err.value)


def test_long_messages_are_cut(echo):
    with start_fake("site") as (base, fake):
        fake.add("/long", json.dumps({"error": "x" * 5000}).encode(), "application/json", status=400)
        with pytest.raises(Permanent) as err:
            echo(base).request("GET", "/long")
        assert len(str(err.value)) <= 320


def test_missing_secret_is_auth_expired_naming_the_variable(make_settings, monkeypatch):
    monkeypatch.delenv("SYN_TEST_UNSET_TOKEN", raising=False)
    settings = make_settings(channels={"ch": {"kind": "x", "options": {"token_env": "SYN_TEST_UNSET_TOKEN"}}})
    provider = EchoProvider(settings, "ch", settings.channels["ch"])
    with pytest.raises(AuthExpired, match="SYN_TEST_UNSET_TOKEN is not set"):
        provider.auth_headers()
    settings = make_settings(channels={"ch": {"kind": "x", "options": {}}})
    with pytest.raises(AuthExpired, match="set option token_env"):
        EchoProvider(settings, "ch", settings.channels["ch"]).auth_headers()


def test_timeouts_come_from_options(echo):
    provider = echo("http://127.0.0.1:9", timeout=7, connect_timeout=2)
    assert provider.timeout == (2.0, 7.0)
    assert echo("http://127.0.0.1:9", timeout=30).timeout == (5.0, 30.0)


# -- thumbnails: only from the site, capped, images only --------------------------------------------

def test_site_images_only(echo, make_settings, monkeypatch):
    with start_fake("site") as (site, fake):
        monkeypatch.setenv("SYN_TEST_ECHO_TOKEN", "t0ken-value")
        settings = make_settings(site={"url": site}, channels={"ch": {"kind": "x", "options": {"token_env": "X"}}})
        provider = EchoProvider(settings, "ch", settings.channels["ch"])
        data, ctype = provider.fetch_site_image(f"{site}/images/hero.png")
        assert ctype == "image/png" and data.startswith(b"\x89PNG")
        assert provider.fetch_site_image(f"{site}/images/huge.png") is None  # over 1,000,000 bytes
        assert provider.fetch_site_image(f"{site}/images/page.html") is None  # not an image
        assert provider.fetch_site_image(f"{site}/images/moved.png") is None  # redirects not followed
        assert provider.fetch_site_image(f"{site}/images/none.png") is None  # 404
        assert provider.fetch_site_image(None) is None
        before = len(fake.requests)
        foreign = site.replace("127.0.0.1", "localhost")
        assert provider.fetch_site_image(f"{foreign}/images/hero.png") is None  # another host: not fetched
        assert provider.fetch_site_image("file:///etc/passwd") is None
        assert len(fake.requests) == before


def test_site_images_must_match_the_whole_origin_not_only_the_host(make_settings):
    """Security probe row 59: with the site on a loopback host, a thumbnail URL on another port
    of that host (another service on the machine) is not fetched."""
    with start_fake("site") as (site, fake), start_fake("site") as (other, other_fake):
        settings = make_settings(site={"url": site}, channels={"ch": {"kind": "x", "options": {}}})
        provider = EchoProvider(settings, "ch", settings.channels["ch"])
        assert provider.fetch_site_image(f"{site}/images/hero.png") is not None  # the site's origin
        port = other.rsplit(":", 1)[1]
        assert provider.fetch_site_image(f"http://127.0.0.1:{port}/images/hero.png") is None
        assert provider.fetch_site_image(f"https://127.0.0.1:{port}/images/hero.png") is None
        assert provider.fetch_site_image("http://127.0.0.1:99999/images/hero.png") is None  # no such port
        assert other_fake.requests == []


def test_provider_links_are_kept_only_when_they_are_web_links():
    """Security probe row 47: a hostile instance's `javascript:` URL never reaches the desk."""
    from syndicate.providers.base import SendResult

    assert SendResult("1", "https://social.example/@a/1").url == "https://social.example/@a/1"
    assert SendResult("1", "javascript:alert(1)").url is None
    assert SendResult("1", " JavaScript:alert(1)").url is None
    assert SendResult("1", "data:text/html,x").url is None
    assert SendResult("1", "https:relative").url is None
    assert SendResult("1", None).url is None


def test_image_hosts_option_allows_a_cdn(make_settings):
    with start_fake("site") as (site, _fake):
        settings = make_settings(channels={"ch": {"kind": "x", "options": {"image_hosts": ["127.0.0.1"]}}})
        provider = EchoProvider(settings, "ch", settings.channels["ch"])
        # A bare host allows the standard ports only; the fake listens on another port.
        assert provider.fetch_site_image(f"{site}/images/hero.png") is None
        settings = make_settings(channels={"ch": {"kind": "x", "options": {"image_hosts": [site]}}})
        provider = EchoProvider(settings, "ch", settings.channels["ch"])
        assert provider.fetch_site_image(f"{site}/images/hero.png") is not None


# -- the fakes as a separate process ----------------------------------------------------------------

def test_fake_runs_as_a_process_and_records_json_lines(tmp_path):
    record = tmp_path / "x.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes", "x", "--port", "0", "--record", str(record),
                             "--fail", "500:1:^/2/tweets$"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        config = json.loads(proc.stdout.readline())
        assert config["options"]["api_base"] == base and config["env"]["SYN_FAKE_X_TOKEN"] == "x-fake-access-token-1"
        auth = {"Authorization": "Bearer x-fake-access-token-1"}
        assert requests.post(f"{base}/2/tweets", json={"text": "a"}, headers=auth, timeout=5).status_code == 500
        assert requests.post(f"{base}/2/tweets", json={"text": "a"}, headers=auth, timeout=5).status_code == 201
        requests.post(f"{base}/_fake/faults", json={"kind": "429", "count": 1, "retry_after": 5}, timeout=5)
        assert requests.post(f"{base}/2/tweets", json={"text": "b"}, headers=auth, timeout=5).status_code == 429
        lines = [json.loads(line) for line in record.read_text().splitlines()]
        assert [(r["method"], r["path"], r["fault"]) for r in lines] == [
            ("POST", "/2/tweets", "500"), ("POST", "/2/tweets", None), ("POST", "/2/tweets", "429")]
        assert lines[1]["json"] == {"text": "a"}
        assert len(requests.get(f"{base}/_fake/requests", timeout=5).json()) == 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize("name", ["x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads"])
def test_every_fake_rejects_missing_credentials_and_records_it(name):
    paths = {"x": "/2/users/me", "facebook": "/v21.0/104000000000001", "linkedin": "/v2/userinfo",
             "pinterest": "/v5/user_account", "mastodon": "/api/v1/accounts/verify_credentials",
             "bluesky": "/xrpc/com.atproto.server.getSession", "threads": "/v1.0/me"}
    with start_fake(name) as (base, fake):
        resp = requests.get(base + paths[name], timeout=5)
        assert resp.status_code in (400, 401)
        assert fake.calls("GET")[0]["path"] == paths[name]
        fake.reset()
        assert fake.requests == []
