"""The Mastodon adapter against the local Mastodon fake: Idempotency-Key makes retries safe."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from fakes import start_fake
from test_providers_http import build, job

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable

PAYLOAD = {"status": "Coping with grief: five small steps for hard days https://harborwellness.example/blog/grief/",
           "visibility": "public", "language": "en"}


@pytest.fixture
def masto():
    with start_fake("mastodon") as (_base, fake):
        yield fake


def test_post_status_with_idempotency_key(make_settings, monkeypatch, masto):
    provider = build(make_settings, monkeypatch, masto, "mastodon")
    result = provider.send(job(PAYLOAD, key="syndicate-delivery-42", kind="mastodon"))
    (call,) = masto.calls("POST")
    assert call["path"] == "/api/v1/statuses" and call["json"] == PAYLOAD
    assert call["headers"]["authorization"] == f"Bearer {masto.TOKEN}"
    assert call["headers"]["idempotency-key"] == "syndicate-delivery-42"
    assert result.ref in masto.statuses and result.url == masto.statuses[result.ref]["url"]
    assert provider.deduplicates is True


def test_outcome_unknown_then_retry_posts_once(make_settings, monkeypatch, masto):
    """The reason Mastodon may be retried after a timeout: the instance drops the repeat."""
    provider = build(make_settings, monkeypatch, masto, "mastodon")
    provider.timeout = (1, 0.5)
    masto.fail_next("stall", delay=1)
    with pytest.raises(OutcomeUnknown):
        provider.send(job(PAYLOAD, key="k-1"))
    deadline = time.monotonic() + 5
    while not masto.statuses and time.monotonic() < deadline:  # the stalled request completes later
        time.sleep(0.05)
    (first,) = masto.statuses
    result = provider.send(job(PAYLOAD, key="k-1"))
    assert len(masto.statuses) == 1 and result.ref == first


def test_instance_option_without_scheme(make_settings, monkeypatch, masto):
    options = {"instance": "mastodon.social", "token_env": "SYN_FAKE_MASTO_TOKEN"}
    assert build(make_settings, monkeypatch, masto, "mastodon", options=options).api_base == "https://mastodon.social"
    with pytest.raises(Permanent, match="option instance is not set"):
        build(make_settings, monkeypatch, masto, "mastodon", options={"token_env": "SYN_FAKE_MASTO_TOKEN"}).send(job(PAYLOAD))


def test_rate_limit_reset_from_iso_header(make_settings, monkeypatch, masto):
    masto.fail_next("429", retry_after=1800)
    with pytest.raises(RateLimited) as err:
        build(make_settings, monkeypatch, masto, "mastodon").send(job(PAYLOAD))
    assert 1790 < (err.value.reset_at - datetime.now(UTC)).total_seconds() <= 1801


@pytest.mark.parametrize("kind, error, text", [("401", AuthExpired, "The access token is invalid"),
                                               ("400", Permanent, "Validation failed"),
                                               ("500", Retryable, "Mastodon 500")])
def test_error_mapping(make_settings, monkeypatch, masto, kind, error, text):
    masto.fail_next(kind)
    with pytest.raises(error, match=text):
        build(make_settings, monkeypatch, masto, "mastodon").send(job(PAYLOAD))


def test_validation_error_from_the_instance(make_settings, monkeypatch, masto):
    with pytest.raises(Permanent, match="Mastodon 422: Validation failed: Text can't be blank"):
        build(make_settings, monkeypatch, masto, "mastodon").send(job({"status": "", "visibility": "public"}))


def test_check(make_settings, monkeypatch, masto):
    provider = build(make_settings, monkeypatch, masto, "mastodon")
    assert provider.check() == f"Mastodon @harbor on {masto.base_url} (Harbor Wellness Counseling)"
    masto.max_characters = 1000  # M1: the instance's own limit is read and compared
    assert provider.check().endswith("; the instance allows 1000 characters (option max_characters is 500)")
    masto.max_characters = 400
    assert "WARNING: the instance allows 400 characters but option max_characters is 500: set " \
           "max_characters = 400" in provider.check()
    masto.expire_tokens()
    with pytest.raises(AuthExpired):
        provider.check()
