"""The LinkedIn adapter against the local LinkedIn fake: versioned headers, posts, thumbnails."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from fakes import start_fake
from fakes.site import PNG
from test_providers_http import build, job

from syndicate.providers.base import AuthExpired, OutcomeUnknown, Permanent, RateLimited, Retryable
from syndicate.providers.versions import LINKEDIN_DEFAULT, linkedin_sunset

AUTHOR = "urn:li:organization:5515715"
PAYLOAD = {
    "author": AUTHOR,
    "commentary": "Coping with grief: five small steps for hard days \\(a practical guide\\).",
    "visibility": "PUBLIC",
    "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
    "content": {"article": {"source": "https://harborwellness.example/blog/grief/", "title": "Coping with grief",
                            "description": "Five small steps for hard days."}},
    "lifecycleState": "PUBLISHED",
    "isReshareDisabledByAuthor": False,
}


@pytest.fixture
def li():
    with start_fake("linkedin") as (_base, fake):
        yield fake


@pytest.fixture
def site():
    with start_fake("site") as (base, fake):
        yield base, fake


def test_post_with_versioned_headers(make_settings, monkeypatch, li):
    result = build(make_settings, monkeypatch, li, "linkedin").send(job(PAYLOAD, kind="linkedin"))
    (call,) = li.calls("POST", "^/rest/posts$")
    headers = call["headers"]
    assert headers["authorization"] == f"Bearer {li.TOKEN}"
    assert headers["linkedin-version"] == LINKEDIN_DEFAULT and headers["x-restli-protocol-version"] == "2.0.0"
    assert call["json"] == PAYLOAD
    assert result.ref == next(iter(li.posts)) and result.ref.startswith("urn:li:share:")
    assert result.url == f"https://www.linkedin.com/feed/update/{result.ref}/"


def test_thumbnail_hint_is_uploaded_and_set(make_settings, monkeypatch, li, site):
    site_base, site_fake = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    result = build(make_settings, monkeypatch, li, "linkedin", site_url=site_base).send(job(payload))
    init, post = li.calls("POST")
    assert init["path"] == "/rest/images" and init["query"] == {"action": "initializeUpload"}
    assert init["json"] == {"initializeUploadRequest": {"owner": AUTHOR}}
    (put,) = li.calls("PUT")
    assert put["headers"]["content-type"] == "image/png" and put["body_size"] == len(PNG)
    urn = next(iter(li.images))
    assert li.images[urn]["bytes"] == PNG
    assert post["json"]["content"]["article"]["thumbnail"] == urn
    assert "_thumbnail_url" not in post["json"]  # hints are never sent
    assert result.ref in li.posts


def test_thumbnail_off_site_or_failing_is_skipped_not_fatal(make_settings, monkeypatch, li, site):
    site_base, _ = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    # The site is elsewhere: the image is not fetched at all.
    build(make_settings, monkeypatch, li, "linkedin").send(job(payload))
    assert li.calls("POST", "images") == [] and "thumbnail" not in li.calls("POST")[0]["json"]["content"]["article"]
    # The upload fails: the post still goes out, without a thumbnail.
    li.reset()
    li.fail_next("500", path="^/rest/images$")
    payload["commentary"] = "another post"
    result = build(make_settings, monkeypatch, li, "linkedin", site_url=site_base).send(job(payload))
    assert result.ref in li.posts and "thumbnail" not in li.posts[result.ref]["content"]["article"]


def test_rate_limited_thumbnail_stops_the_send_before_posting(make_settings, monkeypatch, li, site):
    site_base, _ = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    li.fail_next("429", path="^/rest/images$", retry_after=60)
    with pytest.raises(RateLimited):
        build(make_settings, monkeypatch, li, "linkedin", site_url=site_base).send(job(payload))
    assert li.posts == {}


def test_token_goes_only_to_linkedin_upload_hosts(make_settings, monkeypatch, li):
    provider = build(make_settings, monkeypatch, li, "linkedin")
    assert provider._trusted_upload_host(f"{li.base_url}/dms-uploads/1")
    assert provider._trusted_upload_host("https://www.linkedin.com/dms-uploads/sp/x")
    assert not provider._trusted_upload_host("https://evil.example/upload")


def test_duplicate_is_permanent(make_settings, monkeypatch, li):
    provider = build(make_settings, monkeypatch, li, "linkedin")
    first = provider.send(job(PAYLOAD))
    with pytest.raises(Permanent, match=f"duplicate of {first.ref}") as err:
        provider.send(job(PAYLOAD))
    assert err.value.status == 422


def test_retired_version_says_which_option(make_settings, monkeypatch, li):
    # 202411 was the old default: sunset on 2025-11-17, the fake (like LinkedIn) answers 426.
    provider = build(make_settings, monkeypatch, li, "linkedin", linkedin_version="202411")
    with pytest.raises(Permanent, match="linkedin_version") as err:
        provider.send(job(PAYLOAD))
    assert err.value.status == 426
    with pytest.raises(Permanent, match="linkedin_version.*202411"):
        provider.check()  # check() reads a versioned /rest endpoint: it fails as the post would
    assert li.calls("GET")[-1]["path"] == "/rest/me"
    result = build(make_settings, monkeypatch, li, "linkedin").send(job(PAYLOAD))
    assert result.ref in li.posts


def test_default_version_is_live_for_months_to_come():
    """Fails once the default LinkedIn-Version is older than 11 months: move it (docs/settings.md)."""
    year, month = int(LINKEDIN_DEFAULT[:4]), int(LINKEDIN_DEFAULT[4:6])
    today = date.today()
    assert (today.year * 12 + today.month) - (year * 12 + month) <= 11, "move versions.LINKEDIN_DEFAULT on"
    assert linkedin_sunset(LINKEDIN_DEFAULT) > today + timedelta(days=60)


def test_check_warns_before_the_sunset(make_settings, monkeypatch, li):
    soon = (date.today() + timedelta(days=40))
    old = f"{soon.year - 1}{soon.month:02d}"  # still active, retired within 60 days
    detail = build(make_settings, monkeypatch, li, "linkedin", linkedin_version=old).check()
    assert f"WARNING: LinkedIn version {old} is retired on" in detail and "linkedin_version" in detail
    assert "WARNING" not in build(make_settings, monkeypatch, li, "linkedin").check()


@pytest.mark.parametrize("kind, error", [("401", AuthExpired), ("429", RateLimited), ("400", Permanent),
                                         ("503", Retryable), ("stall", OutcomeUnknown)])
def test_error_mapping(make_settings, monkeypatch, li, kind, error):
    provider = build(make_settings, monkeypatch, li, "linkedin")
    provider.timeout = (1, 0.5)
    li.fail_next(kind, retry_after=30, delay=2)
    with pytest.raises(error) as err:
        provider.send(job(PAYLOAD))
    assert li.TOKEN not in str(err.value)


def test_revoked_token_is_auth_expired(make_settings, monkeypatch, li):
    provider = build(make_settings, monkeypatch, li, "linkedin")
    li.expire_tokens()
    with pytest.raises(AuthExpired, match="Invalid access token"):
        provider.send(job(PAYLOAD))


def test_check(make_settings, monkeypatch, li):
    provider = build(make_settings, monkeypatch, li, "linkedin")
    sunset = linkedin_sunset(LINKEDIN_DEFAULT)
    assert provider.check() == (f"LinkedIn member Dana Harbor, LinkedIn-Version {LINKEDIN_DEFAULT} "
                                f"(sunset {sunset}); posting as {AUTHOR}")
    (call,) = li.calls("GET")
    assert call["path"] == "/rest/me" and call["headers"]["linkedin-version"] == LINKEDIN_DEFAULT
    li.fail_next("403")
    assert "token accepted" in provider.check()
    li.expire_tokens()
    with pytest.raises(AuthExpired):
        provider.check()


def test_thumbnail_is_used_only_once_linkedin_has_processed_it(make_settings, monkeypatch, li, site):
    """L3: the Images API processes uploads asynchronously; a post citing an unprocessed image
    can be dropped later, so the adapter waits for AVAILABLE and otherwise posts without it."""
    site_base, _ = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    li.processing_polls = 2
    result = build(make_settings, monkeypatch, li, "linkedin", site_url=site_base).send(job(payload))
    statuses = li.calls("GET", "^/rest/images/")
    assert len(statuses) == 3 and li.posts[result.ref]["content"]["article"]["thumbnail"] in li.images
    li.reset()
    li.processing_fails = True
    result = build(make_settings, monkeypatch, li, "linkedin", site_url=site_base).send(
        job({**payload, "commentary": "Another post"}))
    assert "thumbnail" not in li.posts[result.ref]["content"]["article"]
