"""What the renderer produces is what each adapter sends and each fake API accepts.

The contract between syndicate/render/social.py (payload = the network's request body, plus
``_`` hints) and the adapters, checked end to end for every network: render the demo post,
send it through the adapter to the local fake, and check what arrived (against the official
OpenAPI description for X and Pinterest).
"""

from __future__ import annotations

import pytest
from fakes import start_fake
from fakes.site import PNG
from test_providers_http import job, spec_validator
from test_render_support import demo_post

from syndicate import providers
from syndicate.providers import bluesky as bluesky_module
from syndicate.render import render_social

IMAGE_PATH = "/wp-content/uploads/2024/03/calm-lake.jpg"


@pytest.fixture(autouse=True)
def _fresh_caches():
    bluesky_module.clear_sessions()  # X's rotated tokens live in each test's own ledger


@pytest.fixture
def site():
    with start_fake("site") as (base, fake):
        fake.add(IMAGE_PATH, PNG, "image/jpeg")
        yield base, fake


def _send(kind, make_settings, monkeypatch, site_base):
    with start_fake(kind) as (_base, fake):
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        options = {**fake.options(), "timeout": 5,
                   **({"board_id": "549755885175"} if kind == "pinterest" else {}),
                   **({"author_urn": "urn:li:organization:5515715"} if kind == "linkedin" else {})}
        settings = make_settings(site={"url": site_base},
                                 channels={"ch": {"kind": kind, "provider": kind, "options": options}})
        post = demo_post(url=f"{site_base}/2024/03/before-your-first-session/")
        payload = render_social(kind, post, settings, "ch")
        provider = providers.get(kind)(settings, "ch", settings.channels["ch"])
        try:
            result = provider.send(job(payload, kind=kind, post_url=post.url))
        finally:
            provider.close()
        return payload, result, fake


@pytest.mark.parametrize("kind", ["x", "facebook", "linkedin", "pinterest", "mastodon", "bluesky", "threads"])
def test_rendered_payload_is_accepted(kind, make_settings, monkeypatch, site):
    site_base, _ = site
    payload, result, fake = _send(kind, make_settings, monkeypatch, site_base)
    assert result.ref and result.url
    sent = [r for r in fake.requests if r["method"] in ("POST", "PUT")]
    assert sent and all(r["status"] in (200, 201) for r in sent)
    for r in sent:  # hints never leave the adapter
        assert "_thumbnail_url" not in str(r["json"] or r["form"] or "")


def test_rendered_x_body_matches_the_spec(make_settings, monkeypatch, site):
    validator = spec_validator("x-v2-openapi.json", "CreatePostsRequest")
    _, _, fake = _send("x", make_settings, monkeypatch, site[0])
    validator.validate(fake.calls("POST", "^/2/tweets$")[0]["json"])


def test_rendered_pin_body_matches_the_spec(make_settings, monkeypatch, site):
    validator = spec_validator("pinterest-v5-openapi.yaml", "PinCreate")
    _, _, fake = _send("pinterest", make_settings, monkeypatch, site[0])
    validator.validate(fake.calls("POST", "^/v5/pins$")[0]["json"])


@pytest.mark.parametrize("kind", ["linkedin", "bluesky"])
def test_rendered_thumbnail_hint_becomes_an_uploaded_thumbnail(kind, make_settings, monkeypatch, site):
    site_base, site_fake = site
    payload, result, fake = _send(kind, make_settings, monkeypatch, site_base)
    assert payload["_thumbnail_url"] == f"{site_base}{IMAGE_PATH}"
    assert site_fake.calls("GET", IMAGE_PATH)
    if kind == "linkedin":
        assert fake.posts[result.ref]["content"]["article"]["thumbnail"] in fake.images
    else:
        assert fake.records[result.ref]["embed"]["external"]["thumb"]["size"] == len(PNG)
