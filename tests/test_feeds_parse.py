"""parse(): identity, fingerprints, URLs, images, dates, encodings and JSON Feed, on small
hand-made documents and on files of the shared real-world corpus."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_feeds_corpus import corpus_file

from syndicate.feeds import FeedError, normalize_url, parse, split_fingerprint

DEMO = Path(__file__).resolve().parents[1] / "syndicate" / "demo" / "wellness-feed.xml"
MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


def rss(items: str, *, channel_link: str = "https://blog.example.org/", extra_ns: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {extra_ns}'
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>Example</title><link>{channel_link}</link>{items}</channel></rss>"
    ).encode()


def corpus(number: str, url: str | None = None):
    path = corpus_file(number)
    return parse(path.read_bytes(), url=url or str(path))


# --- Identity -------------------------------------------------------------------------------


def test_identity_is_the_guid_when_there_is_one():
    feed = parse(rss('<item><guid isPermaLink="false">https://blog.example.org/?p=7</guid>'
                     "<link>https://blog.example.org/a/</link><title>A</title></item>"),
                 url="https://blog.example.org/feed/")
    assert feed.posts[0].identity == "guid:https://blog.example.org/?p=7"


def test_identity_falls_back_to_the_absolute_link():
    feed = parse(rss("<item><link>/2026/11/a/</link><title>A</title></item>"), url="https://blog.example.org/feed/")
    assert feed.posts[0].identity == "link:https://blog.example.org/2026/11/a/"


def test_a_guid_that_is_not_a_web_address_is_not_a_link():
    feed = parse(rss("<item><title>A</title><guid>post-123</guid></item>"
                     "<item><title>B</title><guid>https://blog.example.org/b/</guid></item>"),
                 url="https://blog.example.org/feed/")
    assert [(p.identity, p.url) for p in feed.posts] == [
        ("guid:post-123", "https://blog.example.org/"),
        ("guid:https://blog.example.org/b/", "https://blog.example.org/b/"),
    ]


def test_identity_falls_back_to_a_content_hash():
    feed = parse(rss("<item><title>A note</title><description>Just text.</description></item>"),
                 url="https://blog.example.org/feed/")
    post = feed.posts[0]
    assert post.identity == "hash:" + post.content_hash
    assert post.url == "https://blog.example.org/"  # no link of its own: the site's home page
    assert any("without a link" in w for w in feed.warnings)


def test_hash_identity_is_stable_and_content_sensitive():
    def identity(text: str) -> str:
        return parse(rss(f"<item><title>A note</title><description>{text}</description></item>"),
                     url="https://blog.example.org/feed/").posts[0].identity

    assert identity("<p>Just   text.</p>") == identity("Just text.")  # markup and spacing do not count
    assert identity("Just text.") != identity("Other text.")


def test_corpus_feeds_without_guid_use_links():
    feed = corpus("63")  # RSS 0.9, no guids, no dates
    assert len(feed.posts) == 60
    assert all(post.identity.startswith("link:https://") for post in feed.posts)
    assert all(post.published is None for post in feed.posts)


def test_duplicate_identities_keep_the_first():
    feed = parse(rss("<item><guid>x</guid><link>https://b.example/1</link><title>First</title></item>"
                     "<item><guid>x</guid><link>http://www.b.example/1/</link><title>Again</title></item>"),
                 url="https://b.example/feed")
    assert [p.title for p in feed.posts] == ["First"]  # the same page (normalized link): one post
    assert [p.identity for p in feed.posts] == ["guid:x"]
    assert any("repeating an earlier item" in w for w in feed.warnings)
    assert len(corpus("12").posts) == 48  # Scripting News repeats two guids among 50 items


def test_a_guid_shared_by_different_pages_makes_separate_posts_in_any_order():
    """Newcomer probe, defect 3: a repeated guid with another link silently dropped the second post."""
    first = "<item><guid>dup</guid><link>https://b.example/1</link><title>First</title></item>"
    second = "<item><guid>dup</guid><link>https://b.example/2</link><title>Second</title></item>"
    feed = parse(rss(first + second), url="https://b.example/feed")
    assert [p.title for p in feed.posts] == ["First", "Second"]
    assert [p.identity for p in feed.posts] == ["guid:dup link:https://b.example/1", "guid:dup link:https://b.example/2"]
    assert feed.warnings == ["2 items sharing an id with an item of another link kept as separate posts "
                             "(identified by id and link)"]
    swapped = parse(rss(second + first), url="https://b.example/feed")
    assert {p.title: p.identity for p in swapped.posts} == {p.title: p.identity for p in feed.posts}


def test_empty_items_are_dropped_with_a_warning():
    feed = parse(rss("<item><title>Kept</title><link>https://b.example/k</link></item><item></item>"),
                 url="https://b.example/feed")
    assert [p.title for p in feed.posts] == ["Kept"]
    assert "1 item with no link, title or content dropped" in feed.warnings


# --- Fingerprints ---------------------------------------------------------------------------


def test_fingerprint_survives_https_www_port_and_tracking_parameters():
    def fingerprint(link: str, title: str = "Hello, World!") -> str:
        return parse(rss(f"<item><link>{link}</link><title>{title}</title></item>"),
                     url="https://b.example/feed").posts[0].fingerprint

    base = fingerprint("http://www.Example.org/2026/hello/")
    assert base == fingerprint("https://example.org/2026/hello")
    assert base == fingerprint("https://example.org:443/2026/hello/?utm_source=rss&amp;utm_medium=feed")
    assert base == fingerprint("http://example.org:80/2026/hello/", title="hello  world")
    assert base != fingerprint("https://example.org/2026/hello-again/")
    assert split_fingerprint(base) == ("example.org/2026/hello", "hello world")


def test_permalink_change_keeps_the_title_half():
    old = parse(rss("<item><link>https://b.example/?p=5</link><title>Sleep &amp; Mood</title></item>"),
                url="https://b.example/feed").posts[0]
    new = parse(rss("<item><link>https://b.example/2026/sleep-mood/</link><title>Sleep and Mood</title></item>"),
                url="https://b.example/feed").posts[0]
    assert split_fingerprint(old.fingerprint)[1] != split_fingerprint(new.fingerprint)[1]  # "&" is not "and"
    renamed = parse(rss("<item><link>https://b.example/2026/sleep-mood/</link><title>Sleep &amp; Mood</title></item>"),
                    url="https://b.example/feed").posts[0]
    assert split_fingerprint(old.fingerprint)[1] == split_fingerprint(renamed.fingerprint)[1]
    assert old.identity != renamed.identity


def test_normalize_url_keeps_meaningful_parts():
    assert normalize_url("https://scripting.com/2017/06/26.html#a080605") == "scripting.com/2017/06/26.html#a080605"
    assert normalize_url("https://b.example/p?b=2&a=1&fbclid=X") == "b.example/p?a=1&b=2"
    assert normalize_url("https://b.example:8443/p/") == "b.example:8443/p"


def test_same_site_in_rss_and_json_feed_gives_the_same_posts():
    rss_posts, json_posts = corpus("03").posts, corpus("27").posts  # leancrew: RSS 2.0 and JSON Feed
    assert [p.fingerprint for p in rss_posts] == [p.fingerprint for p in json_posts]
    assert [p.content_hash for p in rss_posts] == [p.content_hash for p in json_posts]


# --- JSON Feed ------------------------------------------------------------------------------


def test_json_feed_1_0():
    feed = corpus("24")
    assert (feed.format, feed.title, feed.link, len(feed.posts)) == ("json10", "inessential.com", "http://inessential.com/", 20)
    post = feed.posts[0]
    assert post.identity == "guid:http://inessential.com/2017/06/02/james_dempsey_and_the_breakpoints_benefi"
    assert post.author == "Brent Simmons"  # the feed-level 1.0 "author" object
    assert post.published == datetime(2017, 6, 3, 5, 5, 47, tzinfo=UTC)


def test_json_feed_1_1():
    feed = corpus("23")
    post = feed.posts[0]
    assert (feed.format, post.title, post.author, post.categories) == ("json11", "Lecker, lecker", "Frank Boës", ["Lustiges"])
    assert post.image_url == "https://cdn.3960.org/favicon-192x192.png"
    assert post.updated == datetime(2020, 2, 21, 17, 8, 6, tzinfo=UTC)
    luke = corpus("41").posts[0]
    assert luke.image_url.startswith("https://lukedorny.com/media/pages/updates/new-font/")
    assert luke.summary == "A Journey with links"


def test_json_feed_tolerates_real_world_quirks():
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Notes",
        "home_page_url": "https://notes.example/",
        "authors": [{"name": "Sam Lee, LMHC"}],
        "items": [
            {"id": 101, "url": "/2026/11/one/", "content_text": "Line one\n\nLine <two>",
             "date_published": "2026-11-03T09:00:00-05:00", "tags": [" Anxiety ", "anxiety", "", None],
             "banner_image": "/img/banner.jpg"},
            {"id": "two", "url": None, "external_url": "https://elsewhere.example/x", "title": "Link",
             "content_html": '<p><img src="pic.png" alt="A pier"></p>', "date_modified": "not a date"},
            "not an object",
        ],
    }
    feed = parse(json.dumps(doc).encode(), url="https://notes.example/feed.json", content_type="application/feed+json")
    one, two = feed.posts
    assert one.identity == "guid:101" and one.url == "https://notes.example/2026/11/one/"
    assert one.content_html == "<p>Line one</p><p>Line &lt;two&gt;</p>"
    assert one.author == "Sam Lee, LMHC" and one.categories == ["Anxiety"]
    assert one.image_url == "https://notes.example/img/banner.jpg"
    assert one.published == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    assert two.url == "https://elsewhere.example/x"
    assert (two.image_url, two.image_alt) == ("https://elsewhere.example/pic.png", "A pier")
    assert two.updated is None
    assert "1 JSON Feed item that is not an object ignored" in feed.warnings


def test_json_feed_dates_without_zone_are_utc():
    post = corpus("26").posts[0]
    assert post.published == datetime(2018, 1, 6, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("body", "message"), [
    (b'{"error": "rate limited"}', "not a feed (JSON, but not a JSON Feed)"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "items": [', "not a feed (broken JSON: Expecting value at line 1)"),
    (b"[1, 2, 3]", "not a feed (JSON, but not a JSON Feed)"),
])
def test_json_that_is_not_a_feed(body: bytes, message: str):
    with pytest.raises(FeedError) as info:
        parse(body, url="https://x.example/feed.json")
    assert str(info.value) == f"https://x.example/feed.json: {message}"


# --- Relative URLs --------------------------------------------------------------------------


def _relative_refs(html: str) -> list[str]:
    """href/src attribute values in real tags that are still relative."""
    values = re.findall(r"<[a-zA-Z][^>]*?\s(?:href|src)=[\"']([^\"']*)[\"']", html)
    return [v for v in values if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", v)]


def test_jekyll_relative_links_resolve_against_the_feed_url():
    feed = corpus("29", url="https://sir-teo.github.io/feed.xml")
    assert feed.link == "https://sir-teo.github.io/"
    assert feed.posts[0].url == "https://sir-teo.github.io/intro/2025/03/03/welcome-to-jekyll.html"
    qemu = corpus("51", url="https://www.qemu.org/feed.xml")
    assert qemu.posts[0].url == "https://www.qemu.org/2025/08/26/qemu-10-1-0/"
    assert all(not _relative_refs(p.content_html) for p in qemu.posts)


def test_relative_feed_read_from_a_file_warns_instead_of_guessing():
    feed = corpus("51")
    assert feed.posts[0].url == "/2025/08/26/qemu-10-1-0/"
    assert any("relative link" in w for w in feed.warnings)


def test_relative_enclosure_becomes_the_absolute_image():
    post = corpus("36").posts[0]
    assert post.image_url == "https://kryogenix.org/images/me/hackergotchi-simpler.png"


def test_xml_base_per_item_and_per_feed():
    hugo = corpus("38")
    assert [p.url for p in hugo.posts] == [
        "https://insanity.industries/post/pareto-optimal-compression/",
        "https://insanity.industries/post/pacman-tracking-leftover-packages/",
    ]
    pappacoda = corpus("53")
    assert all(not _relative_refs(p.content_html) for p in pappacoda.posts)
    windows = pappacoda.posts[2]
    assert windows.image_url == "https://andrea.pappacoda.it/blog/c_su_windows/c_su_windows_visual_studio_componenti.png"
    assert pappacoda.posts[1].url == "https://andrea.pappacoda.it/blog/tesi.pdf"  # its only link is a PDF


def test_relative_urls_in_content_resolve_against_the_post():
    content = ('<p><a href="../other/">other</a> <a href="#notes">notes</a> <a href="mailto:hi@b.example">mail</a>'
               ' <img src="pic.jpg" srcset="pic-2x.jpg 2x, /full.jpg 3x" alt="x"> <a href="//cdn.example/f.pdf">f</a>'
               " <!-- wp:paragraph --> <code>href=\"/not-a-tag\"</code></p>")
    item = (f"<item><link>https://b.example/blog/2026/post/</link><title>T</title>"
            f"<content:encoded><![CDATA[{content}]]></content:encoded></item>")
    html = parse(rss(item), url="https://b.example/feed").posts[0].content_html
    assert 'href="https://b.example/blog/2026/other/"' in html
    assert 'href="https://b.example/blog/2026/post/#notes"' in html
    assert 'href="mailto:hi@b.example"' in html
    assert 'src="https://b.example/blog/2026/post/pic.jpg"' in html
    assert 'srcset="https://b.example/blog/2026/post/pic-2x.jpg 2x, https://b.example/full.jpg 3x"' in html
    assert 'href="https://cdn.example/f.pdf"' in html
    assert '<!-- wp:paragraph --> <code>href="/not-a-tag"</code>' in html  # text and comments untouched


def test_feedburner_links_point_at_the_post_not_the_redirector():
    post = corpus("67").posts[0]
    assert post.url == "http://googleadsdeveloper.blogspot.com/2016/06/adwords-and-dfp-java-client-library.html"


def test_placeholder_localhost_links_are_kept_as_given():
    assert corpus("57").posts[0].url == "http://localhost:1313/posts/first-post/"


# --- Images ---------------------------------------------------------------------------------


def _image_of(tags: str, content: str = "") -> tuple[str | None, str]:
    item = (f"<item><link>https://b.example/p/</link><title>T</title>{tags}"
            f"<content:encoded><![CDATA[{content}]]></content:encoded></item>")
    post = parse(rss(item, extra_ns=MEDIA), url="https://b.example/feed").posts[0]
    return post.image_url, post.image_alt


def test_image_selection_order():
    media = '<media:content url="https://b.example/media.jpg" medium="image"/>'
    video = '<media:content url="https://b.example/clip.mp4" medium="video"/>'
    thumb = '<media:thumbnail url="https://b.example/thumb.jpg"/>'
    enclosure = '<enclosure url="/enclosure.png" type="image/png" length="0"/>'
    audio = '<enclosure url="https://b.example/show.mp3" type="audio/mpeg" length="1"/>'
    content = ('<p><img src="https://b.example/pixel.gif" width="1" height="1">'
               '<img src="inline.jpg" alt="A calm harbor"></p>')
    assert _image_of(video + media + thumb + enclosure, content)[0] == "https://b.example/media.jpg"
    assert _image_of(video + thumb + enclosure, content)[0] == "https://b.example/thumb.jpg"
    assert _image_of(audio + enclosure, content)[0] == "https://b.example/enclosure.png"
    assert _image_of(audio, content) == ("https://b.example/p/inline.jpg", "A calm harbor")
    assert _image_of("", "<p>No pictures.</p>") == (None, "")


def test_featured_image_borrows_alt_text_from_the_same_picture_in_the_post():
    media = '<media:content url="https://b.example/up/pier-1200x800.jpg" medium="image"/>'
    content = '<img src="https://b.example/up/pier-1024x683.jpg" alt="An empty pier at dawn">'
    assert _image_of(media, content) == ("https://b.example/up/pier-1200x800.jpg", "An empty pier at dawn")


def test_corpus_images():
    assert corpus("66").posts[0].image_url.startswith("https://images.unsplash.com/photo-1466111015920")
    assert corpus("39").posts[0].image_url == "http://tctechcrunch2011.files.wordpress.com/2011/11/angies-list.jpeg?w=150"
    assert corpus("16").posts[0].image_url.endswith("best-smart-locks-100730768-medium.jpg")  # image enclosure
    assert corpus("34").posts[0].image_url.startswith("https://cdn.substack.com/image/fetch/")  # padded <url>


# --- Dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "expected"), [
    ("09", datetime(2017, 4, 7, 1, 50, 50, tzinfo=UTC)),  # +10:30
    ("08", datetime(2007, 12, 15, 7, 15, tzinfo=UTC)),  # milliseconds, -08:00
    ("52", datetime(2025, 11, 5, 18, 52, 10, tzinfo=UTC)),  # "EST" after a double space
    ("69", datetime(2015, 11, 7, 17, 0, tzinfo=UTC)),  # no weekday, EST
    ("14", datetime(2020, 1, 10, 14, 33, tzinfo=UTC)),  # "2020/1/10 14:33:00"
    ("47", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC)),  # "Seg, 24 Set 2018 19:42:40 -0300"
    ("19", datetime(2019, 8, 27, tzinfo=UTC)),  # dc:date, date only
])
def test_dates_become_utc(number: str, expected: datetime):
    post = corpus(number).posts[0]
    assert post.published == expected
    assert post.published.tzinfo is UTC


def test_unreadable_dates_are_none():
    feed = parse(rss("<item><link>https://b.example/1</link><title>T</title><pubDate>someday soon</pubDate></item>"),
                 url="https://b.example/feed")
    assert feed.posts[0].published is None and feed.posts[0].updated is None


def test_rss_items_have_no_update_date_unless_the_feed_gives_one():
    post = corpus("01").posts[0]
    assert post.published == datetime(2015, 9, 25, 14, 26, 40, tzinfo=UTC) and post.updated is None


# --- Encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "text"), [
    ("14", "建国35周年纪念，华表，和平鸽"),  # gb2312
    ("43", "Red Dead Redemption 2: Hinweise auf PC-Umsetzung in App von Rockstar Games"),  # ISO-8859-1
    ("44", "Цитата #17703"),  # windows-1251
    ("45", "Migrants : l'urgence thérapeutique"),  # undeclared Latin-1
    ("47", "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno"),  # undeclared Latin-1
])
def test_non_utf8_feeds_decode(number: str, text: str):
    titles = [post.title for post in corpus(number).posts]
    assert text in titles, titles[:5]


def test_undeclared_encoding_is_a_warning_not_an_error():
    feed = corpus("45")
    assert feed.warnings[0] == "read leniently: document declared as utf-8, but parsed as windows-1252"


def test_http_charset_is_used_only_when_the_document_declares_none():
    latin1 = '<rss version="2.0"><channel><title>Caf\xe9</title><item><title>Th\xe9</title><link>https://b.example/t</link></item></channel></rss>'
    feed = parse(latin1.encode("latin-1"), url="https://b.example/feed", content_type="text/xml; charset=ISO-8859-1")
    assert (feed.title, feed.posts[0].title, feed.warnings) == ("Café", "Thé", [])
    # A wrong server charset does not override the document's own declaration.
    declared = rss("<item><title>Thé</title><link>https://b.example/t</link></item>")
    feed = parse(declared, url="https://b.example/feed", content_type="text/html; charset=ISO-8859-1")
    assert (feed.posts[0].title, feed.warnings) == ("Thé", [])


# --- Not a feed, broken feeds -----------------------------------------------------------------


def test_html_page_is_not_a_feed():
    path = corpus_file("49")
    with pytest.raises(FeedError) as info:
        parse(path.read_bytes(), url=str(path))
    assert str(info.value) == f"{path}: not a feed (an HTML page)"
    assert info.value.kind == "not_a_feed"


@pytest.mark.parametrize(("body", "message"), [
    (b"", "empty document (no feed content)"),
    (b"  \r\n ", "empty document (no feed content)"),
    (b"<!DOCTYPE html><html><head><title>Login</title></head><body>Sign in</body></html>", "not a feed (an HTML page)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a feed (binary data)"),
    (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>',
     "not a feed (XML, but <urlset> is not RSS or Atom)"),
    (b"Service temporarily unavailable", "not a feed (no RSS, Atom or JSON Feed found)"),
])
def test_not_a_feed(body: bytes, message: str):
    with pytest.raises(FeedError) as info:
        parse(body, url="https://b.example/feed")
    assert str(info.value) == f"https://b.example/feed: {message}"


def test_broken_feed_with_items_is_accepted_with_a_warning():
    feed = corpus("39")  # blank line before <?xml
    assert len(feed.posts) == 20
    assert feed.warnings == ["read leniently: XML or text declaration not at start of entity (line 3)"]


def test_empty_but_valid_feed_has_no_posts():
    feed = corpus("59")
    assert feed.posts == [] and feed.warnings == []


# --- Text fields ----------------------------------------------------------------------------


def test_summary_is_short_plain_text():
    long_text = " ".join(["Breathing slowly &amp; steadily helps."] * 30)
    item = (f"<item><link>https://b.example/s</link><title>T</title>"
            f"<description><![CDATA[<p>{long_text}</p><script>var x = 1;</script>]]></description></item>")
    summary = parse(rss(item), url="https://b.example/feed").posts[0].summary
    assert len(summary) <= 300 and summary.endswith("…")
    assert summary.startswith("Breathing slowly & steadily helps. Breathing")
    assert "<" not in summary and "var x" not in summary and "  " not in summary
    assert not summary[:-1].endswith(" ")


def test_double_escaped_entities_do_not_show_in_summaries():
    for number in ("65", "67"):
        assert all("&nbsp;" not in post.summary for post in corpus(number).posts)


def test_summary_falls_back_to_content_and_drops_wordpress_footer():
    item = ("<item><link>https://b.example/s</link><title>T</title>"
            "<description><![CDATA[A short excerpt. [&#8230;]</p><p>The post <a href='https://b.example/s'>T</a> "
            "appeared first on <a href='https://b.example'>Example</a>.</p>]]></description></item>")
    assert parse(rss(item), url="https://b.example/feed").posts[0].summary == "A short excerpt."
    atom = corpus("30").posts[0]  # an empty <summary>: the content speaks instead
    assert atom.summary and len(atom.summary) <= 300


def test_author_inherits_from_the_feed():
    assert {p.author for p in corpus("54").posts} == {"Florens Verschelde"}
    assert corpus("38").posts[0].author == "Jonas Große Sundrup"  # "email (Name)" with a non-ASCII name


def test_categories_are_stripped_and_deduplicated():
    item = ("<item><link>https://b.example/c</link><title>T</title><category> Anxiety </category>"
            "<category>anxiety</category><category></category><category>Teens</category></item>")
    assert parse(rss(item), url="https://b.example/feed").posts[0].categories == ["Anxiety", "Teens"]


def test_html_titles_become_text():
    post = corpus("04").posts[0]  # <title type="html">Link: <![CDATA[...]]>
    assert post.title == "Link: Pillow Fight Leaves 24 Concussed"


def test_content_hash_ignores_markup_but_not_words():
    def content_hash(title: str, body: str) -> str:
        item = f"<item><link>https://b.example/h</link><title>{title}</title><description><![CDATA[{body}]]></description></item>"
        return parse(rss(item), url="https://b.example/feed").posts[0].content_hash

    same = content_hash("Hello", "<p>Be kind.</p>")
    assert same == content_hash("Hello", '<div class="entry"><p>Be  kind.</p></div>')
    assert same != content_hash("Hello", "<p>Be very kind.</p>")
    assert same != content_hash("Hello again", "<p>Be kind.</p>")
    assert same == hashlib.sha256(b"hello\nBe kind.").hexdigest()


# --- The demo feed --------------------------------------------------------------------------


def test_demo_wellness_feed():
    feed = parse(DEMO.read_bytes(), url=str(DEMO))
    assert (feed.title, feed.link, feed.format, feed.warnings) == (
        "Harbor Wellness Counseling", "https://harborwellness.example", "rss20", [])
    assert len(feed.posts) == 5
    for post in feed.posts:
        assert re.fullmatch(r"guid:https://harborwellness\.example/\?p=\d+", post.identity)
        assert post.url.startswith("https://harborwellness.example/2026/11/")
        assert post.image_url.startswith("https://harborwellness.example/wp-content/uploads/2026/11/")
        assert re.search(r", (LPC|LCSW|LMFT|PhD)$", post.author)
        assert post.published.year == 2026 and post.published.month == 11
        assert "<h2" in post.content_html and "<!-- wp:paragraph -->" in post.content_html
        assert not _relative_refs(post.content_html)
    sensitive = [p for p in feed.posts if "Self-Harm" in p.categories]
    assert len(sensitive) == 1 and "Teens" in sensitive[0].categories
    assert "988" in sensitive[0].content_html
    assert sum("youtube.com/embed/" in p.content_html for p in feed.posts) == 1
    assert sum('href="https://harborwellness.example/contact/"' in p.content_html for p in feed.posts) == 2
    assert b'href="/contact/"' in DEMO.read_bytes()  # the one relative link, resolved above
    grounding = feed.posts[-1]
    assert grounding.image_alt == "Two hands holding a warm mug of tea by a window"
