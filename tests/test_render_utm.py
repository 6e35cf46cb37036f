"""Per-post UTM values (channels.NAME.utm_per_post): utm_campaign from the post's slug or the
digest edition, utm_content the channel, on top of the channel's static utm; off unless set."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from syndicate.model import PostData
from syndicate.render.email import render_post_email
from syndicate.render.links import channel_utm, post_slug
from syndicate.render.payloads import digest_payload
from syndicate.render.social import render_social

URL = "https://harborwellness.example/2026/01/coping-with-grief/"


def a_post(url: str = URL) -> PostData:
    return PostData(identity=url, fingerprint=url, url=url, title="Coping with grief",
                    summary="Five small steps for hard days.",
                    content_html='<p>See <a href="https://harborwellness.example/contact">contact us</a> or '
                                 '<a href="https://988lifeline.org/">988</a>.</p>',
                    published=datetime(2026, 1, 5, tzinfo=UTC))


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def settings_with(make_settings, **channel):
    return make_settings(channels={
        "x_main": {"kind": "x", "provider": "outbox", **channel},
        "newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"], **channel},
        "weekly": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"], "mode": "digest",
                   "digest": {"every": "week", "day": "tue"}, **channel},
    })


def test_slug_is_the_last_path_segment():
    assert post_slug(URL) == "coping-with-grief"
    assert post_slug("https://example.org/blog/2026/hello-world.html") == "hello-world"
    assert post_slug("https://example.org/?p=12") == "post"
    assert post_slug("https://example.org/blog/caf%C3%A9-talk/") == "café-talk"


def test_off_unless_set(make_settings):
    settings = settings_with(make_settings)
    text = render_social("x", a_post(), settings, "x_main")["text"]
    assert URL in text and "utm_" not in text


def test_social_link_carries_the_slug_and_the_channel(make_settings):
    settings = settings_with(make_settings, utm={"source": "x", "medium": "social"}, utm_per_post=True)
    text = render_social("x", a_post(), settings, "x_main")["text"]
    link = next(word for word in text.split() if word.startswith("https://"))
    assert query_of(link) == {"utm_source": "x", "utm_medium": "social", "utm_campaign": "coping-with-grief",
                              "utm_content": "x_main"}


def test_per_post_values_win_over_static_ones(make_settings):
    settings = settings_with(make_settings, utm={"campaign": "spring"}, utm_per_post=True)
    assert channel_utm(settings.channels["x_main"].utm, True, "slug", "x_main") == {
        "utm_campaign": "slug", "utm_content": "x_main"}
    text = render_social("x", a_post(), settings, "x_main")["text"]
    assert "utm_campaign=coping-with-grief" in text and "spring" not in text


def test_email_links_to_the_site_carry_the_values_others_do_not(make_settings):
    settings = settings_with(make_settings, utm_per_post=True)
    content = render_post_email(a_post(), settings, "newsletter")
    assert "harborwellness.example/contact?utm_campaign=coping-with-grief&amp;utm_content=newsletter" in content.html
    assert "coping-with-grief/?utm_campaign=coping-with-grief&amp;utm_content=newsletter" in content.html
    assert "988lifeline.org/?utm" not in content.html and "988lifeline.org/\"" in content.html


def test_digest_links_carry_the_edition(make_settings):
    settings = settings_with(make_settings, utm={"source": "newsletter"}, utm_per_post=True)
    edition = {"key": "2026-W02", "since": None, "until": "2026-01-13T14:00:00+00:00",
               "at": "2026-01-13T14:00:00+00:00", "post_ids": [1]}
    payload = digest_payload([a_post()], settings, "weekly", edition)
    assert ("coping-with-grief/?utm_campaign=2026-W02&amp;utm_content=weekly&amp;utm_source=newsletter"
            in payload["html"])
    assert "utm_campaign=2026-W02" in payload["text"]
