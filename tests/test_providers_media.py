"""Image posts (channel option media = "image") on X, Mastodon, Threads, Facebook and Bluesky.

Each network gets the post's image the way it documents (upload, then the post referencing it),
from the site's own host only, within its limits, with the image's alt text; a failed upload
falls back to the link card and the post still goes out exactly once.
"""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fakes import start_fake
from PIL import Image
from test_providers_http import build, job

from syndicate.model import PostData
from syndicate.providers import bluesky as bluesky_module
from syndicate.render.social import render_social

ALT = "A calm harbor at dawn, two boats moored by the pier"


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 140)).save(out, "PNG")
    return out.getvalue()


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress: random pixels (well over 1 MB at 1000 x 1000)."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(autouse=True)
def _no_cached_sessions():
    bluesky_module.clear_sessions()
    yield
    bluesky_module.clear_sessions()


@pytest.fixture
def site():
    with start_fake("site") as (base, fake):
        fake.add("/images/harbor.png", png(), "image/png")
        yield base, fake


def post(site_base: str, image: str = "/images/harbor.png", alt: str = ALT, **extra) -> PostData:
    return PostData(identity="p1", fingerprint="p1", url=f"{site_base}/blog/coping-with-grief/",
                    title="Coping with grief: five small steps", summary="Five small steps for hard days.",
                    image_url=f"{site_base}{image}" if image.startswith("/") else image, image_alt=alt,
                    published=datetime(2026, 1, 5, tzinfo=UTC), **extra)


def image_channel(make_settings, monkeypatch, fake, kind, site_base, **options):
    """An adapter of KIND posting images, and the payload the renderer makes for POST."""
    provider = build(make_settings, monkeypatch, fake, kind, site_url=site_base, media="image", **options)
    return provider


def send(provider, kind, data: PostData):
    payload = render_social(kind, data, provider.settings, "ch")
    # As the engine gives it: the first attempt's time is fixed (Bluesky's record key needs it).
    the_job = replace(job(payload, kind=kind, post_url=data.url), first_attempt_at=datetime.now(UTC))
    return the_job, provider.send(the_job)


# -- the renderer ------------------------------------------------------------------------------

def test_renderer_adds_the_image_hint_only_when_asked(make_settings, monkeypatch):
    with start_fake("x") as (_b, fake):
        card = build(make_settings, monkeypatch, fake, "x", site_url="https://harborwellness.example")
        image = build(make_settings, monkeypatch, fake, "x", site_url="https://harborwellness.example",
                      media="image")
    data = post("https://harborwellness.example")
    assert "_image_url" not in render_social("x", data, card.settings, "ch")
    hinted = render_social("x", data, image.settings, "ch")
    assert hinted["_image_url"] == "https://harborwellness.example/images/harbor.png"
    assert hinted["_image_alt"] == ALT
    # A sensitive post goes out as its neutral text and card, never with a picture.
    sensitive = post("https://harborwellness.example", categories=["Suicide prevention"])
    assert "_image_url" not in render_social("x", sensitive, image.settings, "ch")


def test_media_option_is_validated(make_settings):
    from syndicate.settings import SettingsError

    with pytest.raises((SettingsError, ValueError), match="media"):
        make_settings(channels={"ch": {"kind": "x", "provider": "x", "options": {"media": "video"}}})


# -- X -----------------------------------------------------------------------------------------

@pytest.fixture
def x():
    with start_fake("x") as (_base, fake):
        yield fake


def test_x_uploads_the_image_then_posts_with_its_media_id(make_settings, monkeypatch, x, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, x, "x", site_base)
    the_job, result = send(provider, "x", post(site_base))
    upload, metadata, create = x.calls("POST")
    assert upload["path"] == "/2/media/upload" and upload["status"] == 200
    assert upload["json"]["media_category"] == "tweet_image"
    assert base64.b64decode(upload["json"]["media"]) == png()  # small enough: sent as it is
    (media_id,) = x.media
    assert metadata["path"] == "/2/media/metadata" and x.media[media_id]["alt_text"] == ALT
    assert create["path"] == "/2/tweets" and create["json"]["media"] == {"media_ids": [media_id]}
    assert x.posts[result.ref]["body"]["media"]["media_ids"] == [media_id]
    assert "media" not in the_job.notes


def test_x_failed_upload_posts_the_card(make_settings, monkeypatch, x, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, x, "x", site_base)
    x.fail_next(500, path="/2/media/upload")
    the_job, result = send(provider, "x", post(site_base))
    (create,) = x.calls("POST", "/2/tweets")
    assert "media" not in create["json"] and result.ref in x.posts  # the post went out, with its link
    assert the_job.notes["media"].startswith("card: X 500")


def test_x_image_from_another_host_is_never_fetched(make_settings, monkeypatch, x, site):
    site_base, site_fake = site
    provider = image_channel(make_settings, monkeypatch, x, "x", site_base)
    the_job, result = send(provider, "x", post(site_base, image="https://cdn.elsewhere.example/harbor.png"))
    assert x.calls("POST", "/2/media") == [] and site_fake.calls() == []
    assert result.ref in x.posts and the_job.notes["media"].startswith("card: no usable image")


# -- Mastodon ------------------------------------------------------------------------------------

@pytest.fixture
def masto():
    with start_fake("mastodon") as (_base, fake):
        yield fake


def test_mastodon_uploads_with_description_then_posts_media_ids(make_settings, monkeypatch, masto, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, masto, "mastodon", site_base)
    _job, result = send(provider, "mastodon", post(site_base))
    (upload,) = masto.calls("POST", "/api/v2/media")
    assert upload["files"]["file"]["content_type"] == "image/png" and upload["form"] == {"description": ALT}
    (media_id,) = masto.media
    status = masto.statuses[result.ref]
    assert [m["id"] for m in status["media_attachments"]] == [media_id]
    assert status["media_attachments"][0]["description"] == ALT
    (create,) = masto.calls("POST", "/api/v1/statuses")
    assert create["json"]["media_ids"] == [media_id]


def test_mastodon_waits_for_processing_and_keeps_its_idempotency_key(make_settings, monkeypatch, masto, site):
    site_base, _ = site
    masto.processing_reads = 2
    provider = image_channel(make_settings, monkeypatch, masto, "mastodon", site_base)
    the_job, first = send(provider, "mastodon", post(site_base))
    assert [c["status"] for c in masto.calls("GET", "/api/v1/media/")] == [206, 206, 200]
    # A retry after a lost answer uploads again but makes no second status.
    again = provider.send(the_job)
    assert again.ref == first.ref and len(masto.statuses) == 1 and len(masto.media) == 2


def test_mastodon_resizes_to_the_instance_limits(make_settings, monkeypatch, masto, site):
    site_base, site_fake = site
    site_fake.add("/images/big.png", noisy_png(400, 300), "image/png")
    masto.image_size_limit = 60_000
    masto.image_matrix_limit = 50_000  # pixels: 400 x 300 is too many
    provider = image_channel(make_settings, monkeypatch, masto, "mastodon", site_base)
    _job, result = send(provider, "mastodon", post(site_base, image="/images/big.png"))
    (media,) = masto.media.values()
    assert media["type"] == "image/jpeg" and len(media["bytes"]) <= 60_000
    assert media["width"] * media["height"] <= 50_000
    assert masto.statuses[result.ref]["media_attachments"]


def test_mastodon_failed_upload_posts_the_card(make_settings, monkeypatch, masto, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, masto, "mastodon", site_base)
    masto.fail_next(422, path="/api/v2/media")
    the_job, result = send(provider, "mastodon", post(site_base))
    (create,) = masto.calls("POST", "/api/v1/statuses")
    assert "media_ids" not in create["json"] and result.ref in masto.statuses
    assert the_job.notes["media"].startswith("card:")


# -- Threads -------------------------------------------------------------------------------------

@pytest.fixture
def th():
    with start_fake("threads") as (_base, fake):
        yield fake


def test_threads_makes_an_image_container(make_settings, monkeypatch, th, site):
    site_base, site_fake = site
    provider = image_channel(make_settings, monkeypatch, th, "threads", site_base)
    the_job, result = send(provider, "threads", post(site_base))
    (container,) = th.calls("POST", "/threads$")
    params = container["form"]
    assert params["media_type"] == "IMAGE" and params["image_url"] == f"{site_base}/images/harbor.png"
    assert params["alt_text"] == ALT and "link_attachment" not in params
    assert f"{site_base}/blog/coping-with-grief/" in params["text"]
    assert th.posts[result.ref]["media_type"] == "IMAGE"
    assert the_job.notes["threads_container"] == th.posts[result.ref]["container"]


def test_threads_image_the_network_cannot_use_falls_back_to_text(make_settings, monkeypatch, th, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, th, "threads", site_base)
    th.fail_next(400, path="/threads$")  # the IMAGE container is refused
    the_job, result = send(provider, "threads", post(site_base))
    refused, text = th.calls("POST", "/threads$")
    assert refused["form"]["media_type"] == "IMAGE" and refused["status"] == 400
    assert text["form"]["media_type"] == "TEXT" and text["form"]["link_attachment"].endswith("/coping-with-grief/")
    assert len(th.posts) == 1 and th.posts[result.ref]["media_type"] == "TEXT"
    assert the_job.notes["media"].startswith("card:")


def test_threads_image_container_in_error_falls_back_to_text(make_settings, monkeypatch, th, site):
    site_base, site_fake = site
    provider = image_channel(make_settings, monkeypatch, th, "threads", site_base)
    # Our check sees a PNG; by the time Threads fetches it, the page is gone: the container ends ERROR.
    real_fetch = type(provider).fetch_site_image

    def fetch_then_break(self, url, max_bytes=None):
        found = real_fetch(self, url, max_bytes)
        site_fake.add("/images/harbor.png", b"gone", "text/html", status=404)
        return found

    monkeypatch.setattr(type(provider), "fetch_site_image", fetch_then_break)
    the_job, result = send(provider, "threads", post(site_base))
    image, text = th.calls("POST", "/threads$")
    assert image["form"]["media_type"] == "IMAGE" and text["form"]["media_type"] == "TEXT"
    assert th.posts[result.ref]["media_type"] == "TEXT" and len(th.posts) == 1
    assert "Media download has failed" in the_job.notes["media"]


def test_threads_only_takes_jpeg_or_png(make_settings, monkeypatch, th, site):
    site_base, site_fake = site
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    site_fake.add("/images/anim.gif", gif.getvalue(), "image/gif")
    provider = image_channel(make_settings, monkeypatch, th, "threads", site_base)
    the_job, result = send(provider, "threads", post(site_base, image="/images/anim.gif"))
    (container,) = th.calls("POST", "/threads$")
    assert container["form"]["media_type"] == "TEXT" and result.ref in th.posts


# -- Facebook ------------------------------------------------------------------------------------

@pytest.fixture
def fb():
    with start_fake("facebook") as (_base, fake):
        yield fake


def test_facebook_uploads_an_unpublished_photo_then_posts_it_with_the_link(make_settings, monkeypatch, fb, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, fb, "facebook", site_base)
    the_job, result = send(provider, "facebook", post(site_base))
    upload, feed = fb.calls("POST")
    assert upload["path"].endswith(f"/{fb.PAGE_ID}/photos")
    assert upload["form"] == {"published": "false", "alt_text_custom": ALT}
    assert upload["files"]["source"]["content_type"] == "image/png"
    (photo_id,) = fb.photos
    assert json.loads(feed["form"]["attached_media[0]"]) == {"media_fbid": photo_id} and "link" not in feed["form"]
    posted = fb.posts[result.ref]
    assert posted["photos"] == [photo_id] and posted["message"].endswith(f"{site_base}/blog/coping-with-grief/")
    # The lookup (asked before any resend) finds the photo post by its message.
    assert provider.lookup(the_job).ref == result.ref


def test_facebook_failed_upload_posts_the_card(make_settings, monkeypatch, fb, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, fb, "facebook", site_base)
    fb.fail_next(400, path="/photos")
    the_job, result = send(provider, "facebook", post(site_base))
    (feed,) = fb.calls("POST", "/feed")
    assert feed["form"]["link"].endswith("/coping-with-grief/") and "attached_media[0]" not in feed["form"]
    assert fb.posts[result.ref]["photos"] == [] and the_job.notes["media"].startswith("card:")


# -- Bluesky -------------------------------------------------------------------------------------

@pytest.fixture
def bsky():
    with start_fake("bluesky") as (_base, fake):
        yield fake


def test_bluesky_uploads_the_blob_then_embeds_images_with_alt(make_settings, monkeypatch, bsky, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, bsky, "bluesky", site_base)
    the_job, result = send(provider, "bluesky", post(site_base))
    (upload,) = bsky.calls("POST", "uploadBlob")
    assert upload["headers"]["content-type"] == "image/png"
    record = bsky.records[result.ref]
    embed = record["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    (image,) = embed["images"]
    assert image["alt"] == ALT and image["aspectRatio"] == {"width": 64, "height": 48}
    assert image["image"]["ref"]["$link"] in bsky.blobs
    # The link stays in the text, with its facet.
    assert record["facets"][0]["features"][0]["uri"] == f"{site_base}/blog/coping-with-grief/"
    # A retry writes the same record under the same key: one post.
    provider.send(the_job)
    assert len(bsky.records) == 1


def test_bluesky_shrinks_an_image_over_a_megabyte(make_settings, monkeypatch, bsky, site):
    site_base, site_fake = site
    big = noisy_png(1000, 1000)
    assert len(big) > 1_000_000
    site_fake.add("/images/big.png", big, "image/png")
    provider = image_channel(make_settings, monkeypatch, bsky, "bluesky", site_base)
    _job, result = send(provider, "bluesky", post(site_base, image="/images/big.png"))
    (upload,) = bsky.calls("POST", "uploadBlob")
    assert upload["headers"]["content-type"] == "image/jpeg" and upload["body_size"] <= 1_000_000
    assert bsky.records[result.ref]["embed"]["$type"] == "app.bsky.embed.images"


def test_bluesky_failed_upload_keeps_the_card(make_settings, monkeypatch, bsky, site):
    site_base, _ = site
    provider = image_channel(make_settings, monkeypatch, bsky, "bluesky", site_base)
    bsky.fail_next(500, path="uploadBlob")
    the_job, result = send(provider, "bluesky", post(site_base))
    record = bsky.records[result.ref]
    assert record["embed"]["$type"] == "app.bsky.embed.external"
    assert the_job.notes["media"].startswith("card:")
