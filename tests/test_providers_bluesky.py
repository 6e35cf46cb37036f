"""The Bluesky adapter against the local PDS fake: sessions, thumbnails, records, errors."""

from __future__ import annotations

import copy
import io
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fakes import start_fake
from fakes.site import PNG
from PIL import Image
from test_providers_http import build, job

from syndicate.providers import bluesky as bluesky_module
from syndicate.providers.base import AuthExpired, Job, OutcomeUnknown, Permanent, RateLimited, Retryable
from syndicate.providers.bluesky import record_key

TEXT = "Coping with grief: five small steps for hard days harborwellness.example/blog/grief"
PAYLOAD = {
    "$type": "app.bsky.feed.post",
    "text": TEXT,
    "createdAt": "2026-01-01T09:00:00.000Z",
    "langs": ["en"],
    "facets": [{"index": {"byteStart": 50, "byteEnd": 82},
                "features": [{"$type": "app.bsky.richtext.facet#link",
                              "uri": "https://harborwellness.example/blog/grief/"}]}],
    "embed": {"$type": "app.bsky.embed.external",
              "external": {"uri": "https://harborwellness.example/blog/grief/", "title": "Coping with grief",
                           "description": "Five small steps for hard days."}},
}


@pytest.fixture(autouse=True)
def _no_cached_sessions():
    bluesky_module.clear_sessions()
    yield
    bluesky_module.clear_sessions()


@pytest.fixture
def bsky():
    with start_fake("bluesky") as (_base, fake):
        yield fake


@pytest.fixture
def site():
    with start_fake("site") as (base, fake):
        yield base, fake


def test_post_creates_a_session_and_a_record(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    result = provider.send(job(PAYLOAD, kind="bluesky"))
    session, create = bsky.calls("POST")
    assert session["path"] == "/xrpc/com.atproto.server.createSession"
    assert session["json"] == {"identifier": bsky.IDENTIFIER, "password": bsky.APP_PASSWORD}
    assert create["path"] == "/xrpc/com.atproto.repo.putRecord"
    assert create["headers"]["authorization"].startswith("Bearer eyJ.fake-access.")
    body = create["json"]
    assert body["repo"] == bsky.DID and body["collection"] == "app.bsky.feed.post"
    record = body["record"]
    assert {k: v for k, v in record.items() if k != "createdAt"} == {k: v for k, v in PAYLOAD.items() if k != "createdAt"}
    sent_at = datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 30  # stamped when sent, not when planned
    rkey = result.ref.rsplit("/", 1)[1]
    assert result.ref in bsky.records
    assert result.url == f"https://bsky.app/profile/{bsky.IDENTIFIER}/post/{rkey}"


def test_session_is_reused_across_instances(make_settings, monkeypatch, bsky):
    build(make_settings, monkeypatch, bsky, "bluesky").send(job(PAYLOAD))
    build(make_settings, monkeypatch, bsky, "bluesky").send(job({**PAYLOAD, "text": "second", "facets": []}))
    assert bsky.sessions_created == 1


def test_expired_access_token_is_refreshed_and_the_call_repeated(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    provider.check()
    bsky.expire_access()
    result = provider.send(job(PAYLOAD))
    assert result.ref in bsky.records
    assert bsky.sessions_refreshed == 1 and bsky.sessions_created == 1
    creates = bsky.calls("POST", "putRecord")
    assert [c["status"] for c in creates] == [400, 200]
    refresh = bsky.calls("POST", "refreshSession")[0]
    assert refresh["headers"]["authorization"].startswith("Bearer eyJ.fake-refresh.")


def test_expired_refresh_token_signs_in_again(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    provider.check()
    bsky.expire_access()
    bsky.expire_refresh()
    assert provider.send(job(PAYLOAD)).ref in bsky.records
    assert bsky.sessions_created == 2 and len(bsky.records) == 1


def test_wrong_app_password_is_auth_expired(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    monkeypatch.setenv("SYN_FAKE_BSKY_PASSWORD", "wrong-password")
    with pytest.raises(AuthExpired, match="Invalid identifier or password") as err:
        provider.send(job(PAYLOAD))
    assert "wrong-password" not in str(err.value)
    assert bsky.records == {}


def test_thumbnail_from_the_site_is_uploaded(make_settings, monkeypatch, bsky, site):
    site_base, _ = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    result = build(make_settings, monkeypatch, bsky, "bluesky", site_url=site_base).send(job(payload))
    (upload,) = bsky.calls("POST", "uploadBlob")
    assert upload["headers"]["content-type"] == "image/png" and upload["body_size"] == len(PNG)
    record = bsky.records[result.ref]
    thumb = record["embed"]["external"]["thumb"]
    assert thumb["$type"] == "blob" and thumb["mimeType"] == "image/png" and thumb["size"] == len(PNG)
    assert "_thumbnail_url" not in record


@pytest.mark.parametrize("image", ["page.html", "moved.png", "missing.png"])
def test_no_thumbnail_when_the_image_is_unsuitable(make_settings, monkeypatch, bsky, site, image):
    site_base, _ = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/{image}"}
    result = build(make_settings, monkeypatch, bsky, "bluesky", site_url=site_base).send(job(payload))
    assert bsky.calls("POST", "uploadBlob") == []
    assert "thumb" not in bsky.records[result.ref]["embed"]["external"]


def test_no_thumbnail_from_another_host(make_settings, monkeypatch, bsky, site):
    site_base, site_fake = site
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    build(make_settings, monkeypatch, bsky, "bluesky").send(job(payload))  # site is harborwellness.example
    assert site_fake.requests == [] and bsky.calls("POST", "uploadBlob") == []


def test_failed_upload_still_posts(make_settings, monkeypatch, bsky, site):
    site_base, _ = site
    bsky.fail_next("500", path="uploadBlob")
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/hero.png"}
    result = build(make_settings, monkeypatch, bsky, "bluesky", site_url=site_base).send(job(payload))
    assert "thumb" not in bsky.records[result.ref]["embed"]["external"]


@pytest.mark.parametrize("kind, error", [("429", RateLimited), ("400", Permanent), ("500", Retryable),
                                         ("stall", OutcomeUnknown), ("401", AuthExpired)])
def test_error_mapping_on_create_record(make_settings, monkeypatch, bsky, kind, error):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    provider.timeout = (1, 0.5)
    bsky.fail_next(kind, path="putRecord", count=2, retry_after=300, delay=2)
    with pytest.raises(error) as err:
        provider.send(job(PAYLOAD))
    if error is RateLimited:
        assert 290 < (err.value.reset_at - datetime.now(UTC)).total_seconds() <= 301


def test_rate_limited_sign_in(make_settings, monkeypatch, bsky):
    bsky.fail_next("429", path="createSession", retry_after=300)
    with pytest.raises(RateLimited):
        build(make_settings, monkeypatch, bsky, "bluesky").send(job(PAYLOAD))


def test_check(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    assert provider.check() == f"Bluesky @{bsky.IDENTIFIER} ({bsky.DID}) on {bsky.base_url}"
    with pytest.raises(Permanent, match="option identifier is not set"):
        build(make_settings, monkeypatch, bsky, "bluesky", drop=("identifier",)).check()


def test_record_key_is_a_tid_derived_from_the_delivery():
    """B2: the same delivery always gets the same TID; another delivery another one."""
    first = datetime(2026, 12, 4, 9, 30, 0, 123456, tzinfo=UTC)
    key = record_key(first, "delivery-42")
    assert re.fullmatch(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}", key)
    assert record_key(first, "delivery-42") == key != record_key(first, "delivery-43")
    assert record_key(first + timedelta(seconds=1), "delivery-42") > key  # TIDs sort by time


def test_a_retry_writes_the_same_record(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    first = datetime.now(UTC) - timedelta(minutes=3)
    attempt = Job(delivery_id=7, key="delivery-7", channel="ch", kind="bluesky", payload=PAYLOAD,
                  first_attempt_at=first)
    one, two = provider.send(attempt), provider.send(replace(attempt, attempt=2))
    assert one.ref == two.ref and len(bsky.records) == 1 and len(bsky.writes) == 2
    record = bsky.records[one.ref]
    assert record["createdAt"] == first.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_strict_fake_refuses_what_a_pds_refuses(make_settings, monkeypatch, bsky):
    provider = build(make_settings, monkeypatch, bsky, "bluesky")
    for bad, why in [({"langs": ["en_US"]}, "langs/0 must be a valid language"),
                     ({"text": "👨‍👩‍👧‍👦" * 150, "facets": []}, "text must not be longer than 3000"),
                     ({"text": "x" * 301, "facets": []}, "text must not be longer than 300 graphemes")]:
        with pytest.raises(Permanent, match=why):
            provider.send(job({**PAYLOAD, **bad}))
    assert bsky.records == {}


def test_a_new_process_resumes_the_session_kept_in_the_ledger(make_settings, monkeypatch, bsky):
    """B5: createSession is limited to 30 per 5 minutes; a recycled worker must not sign in again."""
    build(make_settings, monkeypatch, bsky, "bluesky").send(job(PAYLOAD))
    bluesky_module.clear_sessions()  # what a new worker process starts with
    build(make_settings, monkeypatch, bsky, "bluesky").send(job({**PAYLOAD, "text": "second", "facets": []}))
    assert bsky.sessions_created == 1 and len(bsky.records) == 2
    bluesky_module.clear_sessions()
    bsky.expire_access()  # the kept access JWT has expired meanwhile: refreshed once, not a new sign-in
    build(make_settings, monkeypatch, bsky, "bluesky").send(job({**PAYLOAD, "text": "third", "facets": []}))
    assert bsky.sessions_created == 1 and bsky.sessions_refreshed == 1 and len(bsky.records) == 3
    bluesky_module.clear_sessions()
    build(make_settings, monkeypatch, bsky, "bluesky").send(job({**PAYLOAD, "text": "fourth", "facets": []}))
    assert bsky.sessions_created == 1 and bsky.sessions_refreshed == 1  # the refreshed pair was kept


def test_a_large_image_is_shrunk_to_the_thumbnail_limit(make_settings, monkeypatch, bsky, site):
    """B4: thumb has maxSize 1000000; a bigger featured image is re-encoded, not dropped."""
    site_base, site_fake = site
    noise = Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3))
    raw = io.BytesIO()
    noise.save(raw, "PNG")
    assert raw.tell() > 1_000_000
    site_fake.add("/images/big.png", raw.getvalue(), "image/png")
    payload = {**copy.deepcopy(PAYLOAD), "_thumbnail_url": f"{site_base}/images/big.png"}
    result = build(make_settings, monkeypatch, bsky, "bluesky", site_url=site_base).send(job(payload))
    (upload,) = bsky.calls("POST", "uploadBlob")
    assert upload["headers"]["content-type"] == "image/jpeg" and upload["body_size"] <= 1_000_000
    assert bsky.records[result.ref]["embed"]["external"]["thumb"]["mimeType"] == "image/jpeg"
