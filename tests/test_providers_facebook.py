"""The Facebook Pages adapter against the local Graph API fake."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fakes import start_fake
from test_providers_http import build, job

from syndicate.providers.base import (
    AuthExpired,
    Duplicate,
    Job,
    OutcomeUnknown,
    Permanent,
    RateLimited,
    Retryable,
)
from syndicate.providers.versions import GRAPH_DEFAULT, graph_sunset

PAYLOAD = {"message": "Coping with grief: five small steps for hard days.",
           "link": "https://harborwellness.example/blog/grief/"}


@pytest.fixture
def fb():
    with start_fake("facebook") as (_base, fake):
        yield fake


def test_post_to_the_page_feed(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    result = provider.send(job(PAYLOAD, kind="facebook"))
    (call,) = fb.calls("POST")
    assert call["path"] == f"/{GRAPH_DEFAULT}/{fb.PAGE_ID}/feed"
    assert call["form"] == PAYLOAD  # form-encoded, as the Graph API documents
    assert call["headers"]["authorization"] == f"Bearer {fb.TOKEN}"
    assert "access_token" not in call["query"]  # the token never goes into a URL
    assert result.ref.startswith(f"{fb.PAGE_ID}_")
    assert result.url == f"https://www.facebook.com/{result.ref}"


def test_graph_version_option(make_settings, monkeypatch, fb):
    build(make_settings, monkeypatch, fb, "facebook", version="v23.0").send(job(PAYLOAD))
    assert fb.calls("POST")[0]["path"] == f"/v23.0/{fb.PAGE_ID}/feed"


def test_token_error_190_is_auth_expired(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    fb.expire_tokens()
    with pytest.raises(AuthExpired, match="Facebook 400: Error validating access token") as err:
        provider.send(job(PAYLOAD))
    assert fb.TOKEN not in str(err.value)
    fb.reset()
    fb.fail_next("401")
    with pytest.raises(AuthExpired):
        provider.send(job(PAYLOAD))


def test_rate_limit_code_32_with_business_use_case_reset(make_settings, monkeypatch, fb):
    fb.fail_next("429", retry_after=600)
    with pytest.raises(RateLimited) as err:
        build(make_settings, monkeypatch, fb, "facebook").send(job(PAYLOAD))
    wait = (err.value.reset_at - datetime.now(UTC)).total_seconds()
    assert 590 < wait <= 601  # estimated_time_to_regain_access: 10 minutes


def test_duplicate_506_is_permanent(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    provider.send(job(PAYLOAD))
    with pytest.raises(Permanent, match="(?i)duplicate"):
        provider.send(job(PAYLOAD))


def test_other_errors(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    fb.fail_next("400")
    with pytest.raises(Permanent, match=r"Invalid parameter"):
        provider.send(job(PAYLOAD))
    # Graph code 2 on HTTP 500 (the fake's 5xx): Facebook has posted on exactly this answer.
    for status in ("500", "502", "503"):
        fb.fail_next(status)
        with pytest.raises(OutcomeUnknown, match="may have gone through"):
            provider.send(job(PAYLOAD))
    fb.fail_next("500", method="GET")
    with pytest.raises(Retryable):  # a read is safe to repeat
        provider.check()
    provider.timeout = (1, 0.5)
    fb.fail_next("stall", delay=2)
    with pytest.raises(OutcomeUnknown):
        provider.send(job(PAYLOAD))


def test_unknown_page_is_permanent(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook", page_id="999")
    with pytest.raises(Permanent, match="does not exist"):
        provider.send(job(PAYLOAD))


def test_check(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    assert provider.check() == (f"Facebook page Harbor Wellness Counseling ({fb.PAGE_ID}), Graph {GRAPH_DEFAULT} "
                                f"(available until {graph_sunset(GRAPH_DEFAULT)})")
    assert fb.calls("GET")[0]["query"] == {"fields": "id,name"}
    fb.expire_tokens()
    with pytest.raises(AuthExpired):
        provider.check()
    no_page = build(make_settings, monkeypatch, fb, "facebook", drop=("page_id",))
    with pytest.raises(Permanent, match="option page_id is not set"):
        no_page.check()


def test_default_graph_version_is_live_for_months_to_come():
    """F2: fails once the default Graph version is within 60 days of its published sunset (or
    has none on record): move versions.GRAPH_DEFAULT on (docs/settings.md, "Moving a pin")."""
    sunset = graph_sunset(GRAPH_DEFAULT)
    assert sunset is not None and sunset > date.today() + timedelta(days=60), "move versions.GRAPH_DEFAULT on"


def test_check_warns_60_days_before_the_graph_sunset(make_settings, monkeypatch, fb):
    from syndicate.providers import versions

    soon = date.today() + timedelta(days=30)
    monkeypatch.setitem(versions.GRAPH_SUNSETS, "v21.0", soon)
    detail = build(make_settings, monkeypatch, fb, "facebook", version="v21.0").check()
    assert f"WARNING: Graph API version v21.0 is retired on {soon:%Y-%m-%d}" in detail
    assert "option version" in detail


def test_code_368_already_posted_is_duplicate_and_posting_too_fast_waits(make_settings, monkeypatch, fb):
    """F3: Meta's 368 means "temporarily blocked"; its "already posted" form is a duplicate."""
    provider = build(make_settings, monkeypatch, fb, "facebook")
    fb.refuse_next("(#368) You've already posted this", 368)
    with pytest.raises(Duplicate):
        provider.send(job(PAYLOAD))
    fb.refuse_next("We limit how often you can post, comment or do other things in a given amount of time", 368,
                   1390008)
    with pytest.raises(RateLimited) as err:
        provider.send(job(PAYLOAD))
    assert 3500 < (err.value.reset_at - datetime.now(UTC)).total_seconds() <= 3600
    fb.refuse_next("(#368) The action attempted has been deemed abusive or is otherwise disallowed", 368)
    with pytest.raises(Permanent) as err:
        provider.send(job(PAYLOAD))
    assert not isinstance(err.value, Duplicate)
    assert fb.posts == {}


def test_lookup_finds_the_post_an_earlier_attempt_made(make_settings, monkeypatch, fb):
    provider = build(make_settings, monkeypatch, fb, "facebook")
    first = datetime.now(UTC) - timedelta(minutes=1)
    attempt = Job(delivery_id=1, key="k", channel="ch", kind="facebook", payload=PAYLOAD, first_attempt_at=first)
    assert provider.lookup(attempt) is None  # nothing on the page yet
    made = provider.send(attempt)
    provider.send(job({**PAYLOAD, "message": "Another post"}))
    found = provider.lookup(attempt)
    assert found.ref == made.ref and found.details["found_by"] == "lookup"
    (read, *_) = fb.calls("GET", "/posts$")
    assert read["query"]["fields"] == "id,message,created_time" and int(read["query"]["since"]) <= first.timestamp()
