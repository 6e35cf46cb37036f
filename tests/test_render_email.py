"""The post email: snapshots, size, privacy, templates, and the MIME message."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from test_render_support import assert_snapshot, demo_post, demo_settings, sensitive_post

from syndicate.render import EmailContent, RenderError, build_message, render_post_email
from syndicate.render.email import MAX_HTML_BYTES


@pytest.fixture(scope="module")
def demo_email() -> EmailContent:
    return render_post_email(demo_post(), demo_settings(), "newsletter")


def test_demo_email_matches_its_snapshot(demo_email):
    assert_snapshot("email_post.html", demo_email.html)
    assert_snapshot("email_post.txt", demo_email.text)


def test_sensitive_email_matches_its_snapshot():
    content = render_post_email(sensitive_post(), demo_settings(), "newsletter")
    assert content.sensitive
    assert_snapshot("email_sensitive.html", content.html)
    assert_snapshot("email_sensitive.txt", content.text)


def test_subject_and_preheader(demo_email):
    assert demo_email.subject == "Five Ways to Feel Calmer Before Your First Therapy Session"
    assert demo_email.preheader == "Small, practical steps that make a first appointment feel less daunting."
    assert demo_email.preheader in demo_email.html
    assert not demo_email.sensitive


def test_every_email_carries_the_required_parts(demo_email):
    html, text = demo_email.html, demo_email.text
    for part in (html, text):
        assert "100 Main Street" in part and "Springfield, IL 62701" in part
        assert "https://wellness.example/unsubscribe?u={token}" in part
        assert "This inbox is not monitored for emergencies" in part
        assert "988" in part  # the crisis line, in every email
        assert "Contact us to book a session" in part and "https://wellness.example/contact/" in part
        assert "https://www.youtube.com/watch?v=dQw4w9WgXcQ" in part  # the video, as a link
    assert 'alt="A calm lake at dawn"' in html
    assert 'alt="Five Ways to Feel Calmer Before Your First Therapy Session"' in html  # fallback alt
    assert "Dana Rivera, LCSW" in html and "March 4, 2024" in html  # local date (America/Chicago)
    assert "- What will we work on?" in text
    assert "FAQ (https://wellness.example/faq/)" in text


def test_crisis_block_leads_a_sensitive_email():
    content = render_post_email(sensitive_post(), demo_settings(), "newsletter")
    crisis = "If you are in crisis, call or text 988"
    assert content.html.index(crisis) < content.html.index("Non-Suicidal Self Injury")
    assert content.text.index(crisis) < content.text.index("Non-Suicidal Self Injury")


def test_safety_off_drops_crisis_line_but_keeps_inbox_note():
    settings = demo_settings(safety={"enabled": False})
    content = render_post_email(sensitive_post(), settings, "newsletter")
    assert not content.sensitive
    assert "988 (Suicide" not in content.html
    assert "This inbox is not monitored" in content.html


def test_no_tracking_no_third_party_assets(demo_email):
    html = demo_email.html
    assert "fonts.googleapis" not in html and "@import" not in html and "<link" not in html
    assert "stats.wellness.example" not in html  # the 1x1 pixel was dropped
    assert "utm_" not in html  # no UTM unless configured
    assert "<script" not in html.lower()
    loaded = re.findall(r'\bsrc="([^"]+)"', html) + re.findall(r"url\(([^)]+)\)", html)
    assert loaded and {urlsplit(u).netloc for u in loaded} == {"wellness.example"}
    links = re.findall(r'\bhref="([^"]+)"', html)
    assert all(u.startswith(("https://", "mailto:")) for u in links), links


def test_utm_tags_only_on_own_links_when_configured():
    channels = demo_settings().model_dump()["channels"]
    channels["newsletter"]["utm"] = {"source": "newsletter", "medium": "email"}
    settings = demo_settings(channels=channels)
    content = render_post_email(demo_post(), settings, "newsletter")
    assert ("https://wellness.example/2024/03/before-your-first-session/?utm_medium=email&amp;"
            "utm_source=newsletter") in content.html
    assert "https://wellness.example/faq/?utm_medium=email&amp;utm_source=newsletter" in content.html
    assert "youtube.com/watch?v=dQw4w9WgXcQ&amp;utm" not in content.html


def test_html_escapes_feed_text():
    post = demo_post(title='Fear & <b>"Panic"</b>', author="<script>x</script>", summary="a < b")
    content = render_post_email(post, demo_settings(), "newsletter")
    assert "Fear &amp; &lt;b&gt;" in content.html
    assert "<script>x" not in content.html
    assert content.subject == 'Fear & <b>"Panic"</b>'


def test_subject_is_one_line():
    content = render_post_email(demo_post(title="Line one\r\nBcc: victim@example.com"), demo_settings(),
                                "newsletter")
    assert content.subject == "Line one Bcc: victim@example.com"


def test_an_untitled_post_has_a_subject_and_a_runaway_title_is_capped():
    """Newcomer probe, defect 8: an empty Subject for an untitled post, and a 5,000-character one."""
    from syndicate.render.email import SUBJECT_MAX, render_digest_email

    settings = demo_settings()
    untitled = render_post_email(demo_post(title=""), settings, "newsletter")
    assert untitled.subject == "Small, practical steps that make a first appointment feel less daunting."
    bare = render_post_email(demo_post(title="", summary="", content_html=""), settings, "newsletter")
    assert bare.subject == "A new article from Wellness Blog"
    # A sensitive post's own words never become the subject: the neutral line social posts use.
    quiet = render_post_email(replace(sensitive_post(), title=""), settings, "newsletter")
    assert quiet.subject == "A new article from Wellness Blog"
    huge = render_post_email(demo_post(title="Calm " * 1000), settings, "newsletter")
    assert len(huge.subject) <= SUBJECT_MAX == 150 and huge.subject.endswith("Calm…")
    digest = render_digest_email([demo_post(title="Calm " * 1000)], settings, "newsletter",
                                 edition_at=datetime(2026, 11, 24, 15, tzinfo=UTC))
    assert len(digest.subject) <= SUBJECT_MAX and digest.subject.endswith("…")
    message = message_from_bytes(bytes(_message(huge)), policy=policy.default)
    assert " ".join(message["Subject"].split()) == huge.subject  # (folded on the wire)


def test_huge_post_is_cut_to_an_excerpt_under_100_kb():
    paragraphs = "".join(f"<p>Paragraph {i}: " + "Gentle, steady breathing helps. " * 30 + "</p>"
                         for i in range(800))
    content = render_post_email(demo_post(content_html=paragraphs), demo_settings(), "newsletter")
    assert len(content.html.encode()) < MAX_HTML_BYTES
    assert "Read the full post" in content.html and "Read the full post" in content.text
    assert "Paragraph 0:" in content.html and "Paragraph 799:" not in content.html
    assert "Unsubscribe" in content.html and "100 Main Street" in content.html  # footer not clipped
    assert content.html.count("<p>Paragraph") == content.html.count("helps. </p>")  # whole paragraphs


def test_huge_single_paragraph_is_cut_at_a_word():
    content = render_post_email(demo_post(content_html="<p>" + "word " * 60000 + "</p>"), demo_settings(),
                                "newsletter")
    assert len(content.html.encode()) < MAX_HTML_BYTES
    assert "word…" in content.html


def test_short_post_is_not_cut(demo_email):
    assert "Read the full post" not in demo_email.html
    assert "View this post on our website" in demo_email.html


def test_templates_dir_overrides_one_partial(tmp_path):
    (tmp_path / "email" / "partials").mkdir(parents=True)
    (tmp_path / "email" / "partials" / "footer.mjml").write_text(
        '<mj-section><mj-column><mj-text>Custom footer for {{ site.name }}. '
        '<a href="{{ unsubscribe_url }}">Leave</a></mj-text></mj-column></mj-section>')
    (tmp_path / "email" / "subject.txt.j2").write_text("New post: {{ post.title }}")
    settings = demo_settings(templates_dir=str(tmp_path))
    content = render_post_email(demo_post(), settings, "newsletter")
    assert "Custom footer for Wellness Blog." in content.html
    assert "Read the full post" in content.html or "View this post" in content.html  # the rest is shipped
    assert content.subject.startswith("New post: Five Ways")


def test_channel_template_names_another_email(tmp_path):
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "brief.mjml").write_text(
        "<mjml><mj-body><mj-section><mj-column><mj-text>{{ post.title }}</mj-text></mj-column></mj-section>"
        "</mj-body></mjml>")
    channels = demo_settings().model_dump()["channels"]
    channels["newsletter"]["template"] = "email/brief.mjml"
    settings = demo_settings(templates_dir=str(tmp_path), channels=channels)
    content = render_post_email(demo_post(), settings, "newsletter")
    assert "Five Ways to Feel Calmer" in content.html and "Dana Rivera" not in content.html
    assert "Unsubscribe: " in content.text  # no brief.txt.j2: the shipped text template is used


def test_broken_override_is_a_render_error(tmp_path):
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "post.mjml").write_text("<mjml><mj-body><mj-text>{{ nope }}</mj-text></mj-body></mjml>")
    with pytest.raises(RenderError, match="nope"):
        render_post_email(demo_post(), demo_settings(templates_dir=str(tmp_path)), "newsletter")


def test_unknown_or_non_email_channel_is_refused():
    with pytest.raises(RenderError, match="no channel"):
        render_post_email(demo_post(), demo_settings(), "missing")
    with pytest.raises(RenderError, match="not email"):
        render_post_email(demo_post(), demo_settings(), "x")


def test_unsafe_brand_colour_is_replaced():
    site = demo_settings().model_dump()["site"]
    site["brand"]["primary_color"] = 'red;background:url(https://evil.example/x)'
    content = render_post_email(demo_post(), demo_settings(site=site), "newsletter")
    assert "evil.example" not in content.html


# -- the MIME message ---------------------------------------------------------------------

def _message(content, **kwargs):
    args = {"from_addr": '"Wellness Blog" <news@wellness.example>', "to_addr": "reader@example.org",
            "reply_to": "hello@wellness.example", "unsubscribe_https": "https://wellness.example/u/abc",
            "unsubscribe_mailto": "unsubscribe+abc@wellness.example", "message_id_domain": "wellness.example"}
    return build_message(content, **(args | kwargs))


def test_message_is_multipart_alternative_text_then_html(demo_email):
    msg = message_from_bytes(bytes(_message(demo_email)), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == demo_email.text
    assert parts[1].get_content().rstrip("\n") == demo_email.html
    assert all(p.get_content_charset() == "utf-8" for p in parts)


def test_message_headers(demo_email):
    msg = message_from_bytes(bytes(_message(demo_email)), policy=policy.default)
    assert msg["Subject"] == demo_email.subject
    assert (msg["From"].addresses[0].display_name, msg["From"].addresses[0].addr_spec) == (
        "Wellness Blog", "news@wellness.example")
    assert msg["To"] == "reader@example.org" and msg["Reply-To"] == "hello@wellness.example"
    assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert re.fullmatch(r"<[^@\s]+@wellness\.example>", msg["Message-ID"])
    assert msg["MIME-Version"] == "1.0"


def test_rfc8058_one_click_unsubscribe(demo_email):
    msg = _message(demo_email)
    assert msg["List-Unsubscribe"] == ("<https://wellness.example/u/abc>, "
                                       "<mailto:unsubscribe+abc@wellness.example>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_mailto_only_has_no_one_click_header(demo_email):
    msg = _message(demo_email, unsubscribe_https=None, unsubscribe_mailto="mailto:u@wellness.example")
    assert msg["List-Unsubscribe"] == "<mailto:u@wellness.example>"
    assert msg["List-Unsubscribe-Post"] is None


def test_one_click_needs_https(demo_email):
    msg = _message(demo_email, unsubscribe_https="http://wellness.example/u/abc", unsubscribe_mailto=None)
    assert msg["List-Unsubscribe"] == "<http://wellness.example/u/abc>"  # RFC 2369 still allows it
    assert msg["List-Unsubscribe-Post"] is None
    with pytest.raises(ValueError, match="http"):
        _message(demo_email, unsubscribe_https="javascript:alert(1)")


def test_given_message_id_and_date_are_used(demo_email):
    when = datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    msg = _message(demo_email, message_id="<delivery-42@wellness.example>", date=when)
    assert msg["Message-ID"] == "<delivery-42@wellness.example>"
    assert parsedate_to_datetime(msg["Date"]) == when


def test_header_injection_is_refused(demo_email):
    with pytest.raises(ValueError):
        _message(demo_email, to_addr="reader@example.org\r\nBcc: everyone@example.org")


def test_author_bio_appears_under_the_post_when_configured():
    from syndicate import settings as settings_mod

    base = demo_settings()
    data = base.model_dump(exclude={"base_dir"})
    data["site"]["authors"] = {"dana rivera, lcsw": {
        "bio": "Dana helps adults and teens with anxiety and grief.",
        "photo_url": "https://wellness.example/team/dana.jpg", "url": "https://wellness.example/team/dana/"}}
    settings = settings_mod.from_dict(data)
    content = render_post_email(demo_post(), settings, "newsletter")
    assert "About dana rivera, lcsw" in content.html and "anxiety and grief" in content.html
    assert 'src="https://wellness.example/team/dana.jpg"' in content.html
    assert "About dana rivera, lcsw: Dana helps adults" in content.text
    # Someone else's post: no bio block.
    other = render_post_email(demo_post(author="Sam Lee"), settings, "newsletter")
    assert "Dana helps" not in other.html and "Dana helps" not in other.text
