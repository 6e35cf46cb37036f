"""Social bodies: exact shapes, network length rules, safe messaging, official schemas."""

from __future__ import annotations

import pytest
from fakes.specs import openapi_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_providers_http import spec_validator
from test_render_support import (
    FIXED_NOW,
    SOCIAL,
    assert_snapshot,
    demo_post,
    demo_settings,
    sensitive_post,
)

from syndicate.render import NotApplicable, RenderError, render_social
from syndicate.render.social import bcp47, camel_case, display_link
from syndicate.render.textlength import (
    bluesky_length,
    char_length,
    grapheme_length,
    mastodon_length,
    threads_length,
    x_length,
)
from syndicate.settings import SettingsError

POST_URL = "https://wellness.example/2024/03/before-your-first-session/"
SETTINGS = demo_settings()


def render(kind, post=None, settings=SETTINGS, channel=None):
    return render_social(kind, post or demo_post(), settings, channel or kind, now=FIXED_NOW)


@pytest.mark.parametrize("kind", SOCIAL)
def test_demo_bodies_match_their_snapshots(kind):
    assert_snapshot(f"social_{kind}.json", render(kind))


@pytest.mark.parametrize("kind", SOCIAL)
def test_sensitive_bodies_match_their_snapshots(kind):
    post = sensitive_post()
    if kind == "pinterest":
        post.image_url = "/wp-content/uploads/2022/06/sunrise.jpg"
    assert_snapshot(f"social_{kind}_sensitive.json", render(kind, post))


def test_x_body():
    body = render("x")
    assert list(body) == ["text"]
    assert POST_URL in body["text"] and "#AnxietyRelief #TherapyTips #SelfCare" in body["text"]
    assert x_length(body["text"]) <= 280


def test_facebook_params():
    body = render("facebook")
    assert set(body) == {"message", "link"} and body["link"] == POST_URL
    assert POST_URL not in body["message"]  # the link is the card, not repeated


def test_linkedin_body_and_little_text_escaping():
    post = demo_post(title="Anxiety (and what helps) #1 @ work: *really* [sic] <3 ~ _ | {x} \\ ok")
    body = render("linkedin", post)
    assert body["author"] == "urn:li:organization:2414183"
    assert body["commentary"].startswith(
        r"Anxiety \(and what helps\) \#1 \@ work: \*really\* \[sic\] \<3 \~ \_ \| \{x\} \\ ok")
    assert r"{hashtag|\#|AnxietyRelief}" in body["commentary"]
    assert body["visibility"] == "PUBLIC"
    assert body["distribution"]["feedDistribution"] == "MAIN_FEED"
    assert body["content"]["article"] == {"source": POST_URL, "title": post.title, "description": post.summary}
    assert body["lifecycleState"] == "PUBLISHED" and body["isReshareDisabledByAuthor"] is False
    assert body["_thumbnail_url"] == "https://wellness.example/wp-content/uploads/2024/03/calm-lake.jpg"


@pytest.mark.parametrize("author", [None, "", "urn:li:organization:0 ", "organization:123", "urn:li:share:1"])
def test_linkedin_needs_a_real_author(author):
    """L2: no made-up author; a missing or malformed author_urn stops the settings from loading."""
    channels = SETTINGS.model_dump()["channels"]
    channels["linkedin"]["options"] = {} if author is None else {"author_urn": author}
    if author == "urn:li:organization:0 ":  # well-formed (spaces trimmed): LinkedIn decides
        assert render("linkedin", settings=demo_settings(channels=channels))["author"] == "urn:li:organization:0"
        return
    with pytest.raises(SettingsError, match=r"channels\.linkedin.*options\.author_urn"):
        demo_settings(channels=channels)


def test_pinterest_body():
    body = render("pinterest")
    assert body["board_id"] == "549755885175" and body["link"] == POST_URL
    assert body["media_source"] == {"source_type": "image_url",
                                    "url": "https://wellness.example/wp-content/uploads/2024/03/calm-lake.jpg"}
    assert body["alt_text"] == "A calm lake at dawn"
    assert body["title"] == demo_post().title


def test_pinterest_without_image_is_not_applicable():
    with pytest.raises(NotApplicable, match="image") as info:
        render("pinterest", demo_post(image_url=None))
    assert "image" in info.value.reason


def test_pinterest_needs_a_board():
    channels = SETTINGS.model_dump()["channels"]
    channels["pinterest"]["options"] = {}
    with pytest.raises(RenderError, match="board_id"):
        render("pinterest", settings=demo_settings(channels=channels))


def test_mastodon_body():
    body = render("mastodon")
    assert body["visibility"] == "public" and body["language"] == "en"
    assert POST_URL in body["status"] and "spoiler_text" not in body


def test_bluesky_record_with_facets_and_card():
    body = render("bluesky")
    assert body["$type"] == "app.bsky.feed.post"
    assert body["createdAt"] == "2024-03-05T14:30:00.000Z" and body["langs"] == ["en"]
    raw = body["text"].encode()
    links = [f for f in body["facets"] if f["features"][0]["$type"] == "app.bsky.richtext.facet#link"]
    assert [f["features"][0]["uri"] for f in links] == [POST_URL]
    shown = raw[links[0]["index"]["byteStart"]:links[0]["index"]["byteEnd"]].decode()
    assert shown == display_link(POST_URL) == "wellness.example/2024/03/before…"
    tags = [f["features"][0]["tag"] for f in body["facets"] if "tag" in f["features"][0]]
    assert tags == ["AnxietyRelief", "TherapyTips", "SelfCare"]
    assert body["embed"] == {"$type": "app.bsky.embed.external", "external": {
        "uri": POST_URL, "title": demo_post().title, "description": demo_post().summary}}


def test_bluesky_byte_offsets_with_multibyte_text():
    body = render("bluesky", demo_post(title="Calm 😀 ünïcödé 中文"))
    raw = body["text"].encode()
    for facet in body["facets"]:
        piece = raw[facet["index"]["byteStart"]:facet["index"]["byteEnd"]].decode()
        feature = facet["features"][0]
        assert piece == ("#" + feature["tag"] if "tag" in feature else display_link(feature["uri"]))


def test_threads_body():
    body = render("threads")
    assert body["media_type"] == "TEXT" and POST_URL in body["text"]


def test_utm_only_when_configured():
    assert "utm_" not in str(render("x"))
    channels = SETTINGS.model_dump()["channels"]
    channels["x"]["utm"] = {"source": "x", "medium": "social", "campaign": "blog"}
    body = render("x", settings=demo_settings(channels=channels))
    assert f"{POST_URL}?utm_campaign=blog&utm_medium=social&utm_source=x" in body["text"]


def test_hashtags_mapped_camel_cased_deduplicated_capped():
    assert camel_case("therapy tips") == "TherapyTips" and camel_case("self-care") == "SelfCare"
    channels = SETTINGS.model_dump()["channels"]
    channels["x"].update(hashtags={"Anxiety": "AnxietyRelief", "News": ""}, max_hashtags=2)
    post = demo_post(categories=["News", "Anxiety", "anxiety relief", "2024", "Mindfulness"])
    body = render("x", post, demo_settings(channels=channels))
    assert body["text"].endswith("#AnxietyRelief #Mindfulness")


def test_sensitive_posts_use_title_and_a_neutral_line():
    post = sensitive_post()
    post.summary = "Graphic description of methods."
    post.image_url = "/img.jpg"
    for kind in SOCIAL:
        body = str(render(kind, post))
        assert "Graphic" not in body and "Non-Suicidal Self Injury" not in body
        assert "The Emotional Pain Behind Self-Harm" in body
        assert "#SelfHarm" not in body and "SelfHarm}" not in body  # no hashtag made from the topic
    assert "988" in render("x", post)["text"]
    assert render("mastodon", post)["spoiler_text"] == "Mental health: suicidal, self-harm, self-injury"


def test_template_override_and_channel_template(tmp_path):
    (tmp_path / "social").mkdir()
    (tmp_path / "social" / "x.txt.j2").write_text("{{ title }} → {{ link }}")
    (tmp_path / "social" / "short.txt.j2").write_text("New: {{ link }}")
    settings = demo_settings(templates_dir=str(tmp_path))
    assert render("x", settings=settings)["text"] == f"{demo_post().title} → {POST_URL}"
    channels = settings.model_dump()["channels"]
    channels["x"]["template"] = "social/short.txt.j2"
    settings = demo_settings(templates_dir=str(tmp_path), channels=channels)
    assert render("x", settings=settings)["text"] == f"New: {POST_URL}"


def test_wrong_kind_or_channel_is_refused():
    with pytest.raises(RenderError, match="not x"):
        render_social("x", demo_post(), SETTINGS, "mastodon")
    with pytest.raises(RenderError, match="no channel"):
        render_social("x", demo_post(), SETTINGS, "nope")


# -- properties: every snippet fits, every link intact ---------------------------------------

pieces = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=10),
    st.sampled_from(["😀", "👨‍👩‍👧‍👦", "🇯🇵", "👍🏽", "1️⃣", "中文標題", "こんにちは", "e\u0301\u0302", "a\u0308",
                     "Donaudampfschifffahrtsgesellschaftskapitän" * 3, "x" * 120, "#tag", "(paren)",
                     "https://other.example/x", "café", "\u200d", "{}|@[]<>*_~\\"]),
)
titles = st.lists(pieces, min_size=1, max_size=40).map(" ".join)
categories = st.lists(st.text(min_size=1, max_size=30), max_size=25)
LIMITS = {"x": (x_length, 280), "mastodon": (mastodon_length, 500), "bluesky": (bluesky_length, 300),
          "threads": (threads_length, 500), "linkedin": (char_length, 3000), "facebook": (char_length, 63206),
          "pinterest": (char_length, 500)}
TEXT_KEY = {"x": "text", "mastodon": "status", "bluesky": "text", "threads": "text", "linkedin": "commentary",
            "facebook": "message", "pinterest": "description"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(SOCIAL), title=titles, summary=titles, cats=categories,
       sensitive=st.booleans(), utm=st.booleans())
def test_every_snippet_fits_and_keeps_its_link(kind, title, summary, cats, sensitive, utm):
    post = demo_post(title=title, summary=summary, categories=(["Suicide"] if sensitive else []) + cats)
    channels = SETTINGS.model_dump()["channels"]
    channels[kind]["max_hashtags"] = 30
    if utm:
        channels[kind]["utm"] = {"source": kind, "campaign": "spring launch"}
    body = render(kind, post, demo_settings(channels=channels))
    link = POST_URL + ("?utm_campaign=spring+launch&utm_source=" + kind if utm else "")
    measure, limit = LIMITS[kind]
    text = body[TEXT_KEY[kind]]
    extra = measure(body.get("spoiler_text", "")) if kind == "mastodon" else 0
    assert measure(text) + extra <= limit
    _assert_link_intact(kind, body, link)


def _assert_link_intact(kind, body, link):
    if kind in {"x", "mastodon", "threads"}:
        assert link in body[TEXT_KEY[kind]].split()
    elif kind == "facebook":
        assert body["link"] == link
    elif kind == "linkedin":
        assert body["content"]["article"]["source"] == link
    elif kind == "pinterest":
        assert body["link"] == link
        assert len(body["title"]) <= 100 and len(body["alt_text"]) <= 500
    else:
        raw = body["text"].encode()
        uris = [(f["features"][0].get("uri"), raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode())
                for f in body["facets"]]
        assert (link, display_link(link)) in uris
        assert body["embed"]["external"]["uri"] == link
        assert grapheme_length(body["embed"]["external"]["title"]) <= 300


# -- the official API descriptions ---------------------------------------------------------

_REQUEST_SCHEMAS = {"/2/tweets": "CreatePostsRequest", "/pins": "PinCreate"}


def _validator(spec_file, path):
    return spec_validator(spec_file, _REQUEST_SCHEMAS[path])  # fails, never skips, without the specs


@pytest.mark.parametrize("post", [demo_post(), sensitive_post(), demo_post(title="中文 " * 200)],
                         ids=["demo", "sensitive", "long-cjk"])
def test_x_body_matches_create_posts_request(post):
    validator = _validator("x-v2-openapi.json", "/2/tweets")
    errors = [e.message for e in validator.iter_errors(render("x", post))]
    assert not errors


@pytest.mark.parametrize("post", [demo_post(), demo_post(title="T" * 500, summary="S " * 600, image_alt="A" * 900)],
                         ids=["demo", "long"])
def test_pinterest_body_matches_pin_create(post):
    validator = _validator("pinterest-v5-openapi.yaml", "/pins")
    body = render("pinterest", post)
    assert not [e.message for e in validator.iter_errors(body)]
    properties = openapi_schema("pinterest-v5-openapi.yaml", "PinCreate")["properties"]
    assert set(body) <= set(properties)  # PinCreate allows extra keys; we send none
    assert len(body["description"]) <= 500  # Pinterest shows 500, though the schema allows 800


def test_invalid_bodies_are_caught_by_the_schemas():
    x = _validator("x-v2-openapi.json", "/2/tweets")
    assert list(x.iter_errors({"text": "hi", "status": "not a field"}))
    pins = _validator("pinterest-v5-openapi.yaml", "/pins")
    assert list(pins.iter_errors({"board_id": "abc", "media_source": {"source_type": "image_url"}}))


def test_lead_falls_back_to_the_first_paragraph_and_drops_wordpress_noise():
    body = render("x", demo_post(summary="", categories=["Uncategorized"]))
    assert "Walking into a first therapy session can feel like a lot." in body["text"]
    assert "#Uncategorized" not in body["text"]
    body = render("x", demo_post(summary="Small steps help [&hellip;]"))
    assert "Small steps help…" in body["text"]


@pytest.mark.parametrize("language, langs", [("en", ["en"]), ("en_US", ["en-US"]), ("pt-BR", ["pt-BR"]),
                                             ("zh-Hant", ["zh-Hant"])])
def test_bluesky_langs_are_bcp47(language, langs):
    """B1: app.bsky.feed.post langs have format "language" (BCP-47); "en_US" is not one."""
    settings = demo_settings(site={**SETTINGS.model_dump()["site"], "language": language})
    assert settings.site.language == langs[0]  # normalized when the file is read
    assert render("bluesky", settings=settings).get("langs") == langs
    assert render("mastodon", settings=settings)["language"] == langs[0].split("-")[0].lower()
    assert bcp47(language) == langs[0]


@pytest.mark.parametrize("language", ["english!", "", "en US", "e"])
def test_a_language_that_is_no_bcp47_tag_stops_the_settings(language):
    """B1: refused when the file is read, not by Bluesky (400 InvalidRecord) or Mastodon after approval."""
    with pytest.raises(SettingsError, match=r"site\.language.*BCP-47"):
        demo_settings(site={**SETTINGS.model_dump()["site"], "language": language})


def test_bluesky_text_keeps_within_3000_bytes():
    """B3: 300 family emoji are 300 graphemes but 7,500 bytes; the record allows 3000 bytes."""
    family = "👨‍👩‍👧‍👦"
    body = render("bluesky", demo_post(title=family * 300, summary=family * 300))
    assert len(body["text"].encode()) <= 3000 and grapheme_length(body["text"]) <= 300


def test_threads_counts_emoji_by_their_bytes():
    """T1: Meta counts an emoji as its UTF-8 bytes; 500 graphemes of leaves would be refused."""
    body = render("threads", demo_post(title="🌿" * 400, summary="calm " * 100))
    assert threads_length(body["text"]) <= 500 and len(body["text"]) < 200


def test_pinterest_link_within_2048():
    """P2: PinCreate.link has maxLength 2048: without UTM tags if that fits, else no link."""
    channels = SETTINGS.model_dump()["channels"]
    channels["pinterest"]["utm"] = {"source": "pinterest", "campaign": "c" * 2000}
    body = render("pinterest", settings=demo_settings(channels=channels))
    assert body["link"] == POST_URL
    long_url = "https://wellness.example/" + "a" * 2100
    assert render("pinterest", demo_post(url=long_url))["link"] is None
