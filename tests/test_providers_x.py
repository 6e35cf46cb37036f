"""The X adapter against the local X fake: OAuth 2.0 (with refresh) and OAuth 1.0a, errors, spec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakes import start_fake
from test_providers_http import build, job, spec_validator

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable

PAYLOAD = {"text": "Coping with grief: five small steps for hard days https://harborwellness.example/blog/grief/"}


@pytest.fixture
def x_fake():
    with start_fake("x") as (_base, fake):
        yield fake


def test_post_with_oauth2_user_token(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x")
    result = provider.send(job(PAYLOAD))
    (call,) = x_fake.calls("POST", r"^/2/tweets$")
    assert call["headers"]["authorization"] == f"Bearer {x_fake.ACCESS_TOKEN}"
    assert call["headers"]["content-type"] == "application/json"
    assert call["json"] == PAYLOAD
    assert result.ref == next(iter(x_fake.posts))
    assert result.url == f"https://x.com/i/web/status/{result.ref}"
    assert provider.deduplicates is False


def test_body_and_answer_match_the_official_openapi(make_settings, monkeypatch, x_fake):
    request_schema = spec_validator("x-v2-openapi.json", "CreatePostsRequest")
    build(make_settings, monkeypatch, x_fake, "x").send(job(PAYLOAD))
    (call,) = x_fake.calls("POST", r"^/2/tweets$")
    request_schema.validate(call["json"])
    # And the fake answers what X documents (so the adapter is tested against the real shape).
    response_schema = spec_validator("x-v2-openapi.json", "CreatePostsResponse")
    post = next(iter(x_fake.posts.values()))
    response_schema.validate({"data": {"id": post["id"], "text": post["text"], "edit_history_tweet_ids": [post["id"]]}})
    with pytest.raises(Exception):  # noqa: B017 - the validator really rejects a wrong body
        request_schema.validate({"text": "x", "status": "not a CreatePostsRequest field"})


def test_username_option_gives_the_profile_url(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", username="@harborwellness")
    result = provider.send(job(PAYLOAD))
    assert result.url == f"https://x.com/harborwellness/status/{result.ref}"


def test_post_with_oauth1_signature_verified_by_the_fake(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.oauth1_options())
    result = provider.send(job(PAYLOAD))
    (call,) = x_fake.calls("POST", r"^/2/tweets$")
    auth = call["headers"]["authorization"]
    assert auth.startswith("OAuth ") and 'oauth_signature_method="HMAC-SHA1"' in auth
    assert x_fake.CONSUMER_SECRET not in auth and x_fake.OAUTH1_TOKEN_SECRET not in auth
    assert result.ref in x_fake.posts
    assert provider.check().startswith("X @harborwellness (Harbor Wellness), OAuth 1.0a user context")


def test_oauth1_with_a_wrong_secret_is_auth_expired(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.oauth1_options())
    monkeypatch.setenv("SYN_FAKE_X_ATS", "not-the-secret")
    with pytest.raises(AuthExpired, match="X 401"):
        provider.send(job(PAYLOAD))
    assert x_fake.posts == {}


def test_expired_token_is_refreshed_once_and_kept_in_the_ledger(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.refresh_options())
    x_fake.expire_access_tokens()
    result = provider.send(job(PAYLOAD))
    assert result.ref in x_fake.posts
    posts = x_fake.calls("POST", r"^/2/tweets$")
    assert [c["status"] for c in posts] == [401, 201]
    (refresh,) = x_fake.calls("POST", r"^/2/oauth2/token$")
    assert refresh["form"] == {"grant_type": "refresh_token", "refresh_token": x_fake.REFRESH_TOKEN,
                               "client_id": x_fake.CLIENT_ID}
    assert posts[1]["headers"]["authorization"] == "Bearer x-fake-access-token-r1"
    # X rotated the refresh token: a second instance (another worker process, or this one after a
    # restart) reads the new pair from the ledger; the spent one in the environment is never sent.
    other = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.refresh_options())
    other.send(job({"text": "A second post"}))
    assert len(x_fake.calls("POST", r"^/2/oauth2/token$")) == 1
    x_fake.expire_access_tokens()
    other.send(job({"text": "A third post"}))
    second = x_fake.calls("POST", r"^/2/oauth2/token$")[1]
    assert second["form"]["refresh_token"] == "x-fake-refresh-token-r1"


def test_only_a_refresh_token_configured(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.refresh_options(), drop=("token_env",))
    assert provider.send(job(PAYLOAD)).ref in x_fake.posts
    assert len(x_fake.calls("POST", r"^/2/oauth2/token$")) == 1


def test_rejected_refresh_token_is_auth_expired(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.refresh_options())
    monkeypatch.setenv("SYN_FAKE_X_REFRESH", "revoked-refresh-token")
    x_fake.expire_access_tokens()
    with pytest.raises(AuthExpired) as err:
        provider.send(job(PAYLOAD))
    assert "SYN_FAKE_X_REFRESH" in str(err.value) and "revoked-refresh-token" not in str(err.value)
    assert x_fake.posts == {}


def test_401_without_refresh_is_auth_expired_after_one_call(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("401")
    with pytest.raises(AuthExpired) as err:
        provider.send(job(PAYLOAD))
    assert len(x_fake.calls("POST")) == 1
    assert x_fake.ACCESS_TOKEN not in str(err.value)


def test_rate_limit_reset_from_x_rate_limit_reset(make_settings, monkeypatch, x_fake):
    x_fake.fail_next("429", retry_after=600)
    with pytest.raises(RateLimited) as err:
        build(make_settings, monkeypatch, x_fake, "x").send(job(PAYLOAD))
    wait = (err.value.reset_at - datetime.now(UTC)).total_seconds()
    assert 590 < wait <= 601


def test_daily_cap_uses_the_24_hour_reset(make_settings, monkeypatch, x_fake):
    x_fake.daily_cap_reset = 20 * 3600
    x_fake.fail_next("429", retry_after=60)
    with pytest.raises(RateLimited) as err:
        build(make_settings, monkeypatch, x_fake, "x").send(job(PAYLOAD))
    assert (err.value.reset_at - datetime.now(UTC)).total_seconds() > 19 * 3600


def test_duplicate_content_is_permanent(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x")
    provider.send(job(PAYLOAD))
    with pytest.raises(Permanent, match="duplicate") as err:
        provider.send(job(PAYLOAD))
    assert err.value.status == 403


def test_other_errors(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x")
    x_fake.fail_next("400")
    with pytest.raises(Permanent, match="X 400: One or more parameters"):
        provider.send(job(PAYLOAD))
    x_fake.fail_next("503")
    with pytest.raises(Retryable):
        provider.send(job(PAYLOAD))
    x_fake.fail_next("stall", delay=3)
    provider.timeout = (1, 0.5)
    with pytest.raises(OutcomeUnknown):
        provider.send(job(PAYLOAD))


def test_check(make_settings, monkeypatch, x_fake):
    provider = build(make_settings, monkeypatch, x_fake, "x")
    assert provider.check() == "X @harborwellness (Harbor Wellness), OAuth 2.0 user token"
    refreshable = build(make_settings, monkeypatch, x_fake, "x", options=x_fake.refresh_options())
    assert refreshable.check().endswith("(refreshable)")
    wrong = build(make_settings, monkeypatch, x_fake, "x")
    monkeypatch.setenv("SYN_FAKE_X_TOKEN", "wrong")
    with pytest.raises(AuthExpired, match="X 401"):
        wrong.check()
    unset = build(make_settings, monkeypatch, x_fake, "x")
    monkeypatch.setenv("SYN_FAKE_X_TOKEN", "")
    with pytest.raises(AuthExpired, match="SYN_FAKE_X_TOKEN is not set"):
        unset.check()


def test_workers_racing_on_an_expired_token_refresh_it_once(make_settings, monkeypatch, x_fake):
    """Four instances (as four worker processes would, sharing nothing but the ledger) all meet
    the expired token at once: exactly one spends the refresh token, all four post."""
    import threading

    settings_kwargs = {"options": x_fake.refresh_options()}
    providers = [build(make_settings, monkeypatch, x_fake, "x", **settings_kwargs) for _ in range(4)]
    for p in providers:
        p.auth_headers()  # each has read the (soon expired) pair
    x_fake.expire_access_tokens()
    barrier, errors = threading.Barrier(4), []

    def post(i, provider):
        barrier.wait()
        try:
            provider.send(job({"text": f"Post {i}"}))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(i, p)) for i, p in enumerate(providers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(x_fake.calls("POST", r"^/2/oauth2/token$")) == 1
    assert len(x_fake.posts) == 4


def test_monthly_usage_cap_is_not_a_15_minute_window(make_settings, monkeypatch, x_fake):
    """X1: X's 429 UsageCapExceeded (remaining 39999) must not be retried every window."""
    x_fake.usage_capped = True
    with pytest.raises(AuthExpired, match="monthly usage cap") as err:
        build(make_settings, monkeypatch, x_fake, "x").send(job({"text": "Coping with grief"}))
    assert not isinstance(err.value, RateLimited) and err.value.status == 429
    assert x_fake.posts == {}
