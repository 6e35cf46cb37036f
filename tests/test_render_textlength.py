"""Text length by each network's rules, and cutting to fit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndicate.render.textlength import (
    ELLIPSIS,
    bluesky_length,
    char_length,
    find_hashtags,
    find_links,
    grapheme_length,
    mastodon_length,
    rule_for,
    threads_length,
    truncate_to,
    x_length,
)


@pytest.mark.parametrize("text, weight", [
    ("", 0),
    ("Hello", 5),
    ("a" * 280, 280),
    ("中" * 140, 280),  # CJK weighs 2
    ("こんにちは", 10),
    ("한국어", 6),
    ("café", 4),
    ("cafe\u0301", 4),  # NFC first: e + combining acute is one light code point
    ("😀", 2),
    ("👍🏽", 2),  # with skin tone
    ("👨‍👩‍👧‍👦", 2),  # ZWJ family
    ("🇯🇵", 2),  # flag
    ("1️⃣", 2),  # keycap
    ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", 2),  # tag sequence (Scotland)
    ("\u2013\u2014", 2),  # dashes 8211, 8212: in a light range
    ("…", 2),  # U+2026 is outside every light range
    ("https://example.com", 23),
    ("https://example.com/a/very/long/path/that/goes/on/and/on?with=query&and=more#frag", 23),
    ("see https://example.com.", 4 + 23 + 1),  # trailing period is text
    ("(https://en.wikipedia.org/wiki/Foo_(bar))", 1 + 23 + 1),
    ("visit example.com", 6 + 23),  # bare domain: X links it
])
def test_x_weighted_length(text, weight):
    assert x_length(text) == weight


def test_mastodon_counts_links_as_23_and_graphemes():
    assert mastodon_length("https://example.com/" + "x" * 100) == 23
    assert mastodon_length("👨‍👩‍👧‍👦 中文 e\u0301") == 6
    assert mastodon_length("example.com") == 11  # Mastodon needs the scheme


def test_grapheme_and_char_lengths():
    assert grapheme_length("👨‍👩‍👧‍👦e\u0301🇯🇵") == 3
    assert char_length("👨‍👩‍👧‍👦") == 7


def test_rules():
    assert rule_for("x").limit == 280
    assert rule_for("bluesky").limit == 300 and rule_for("threads").limit == 500
    assert rule_for("linkedin").limit == 3000
    assert rule_for("mastodon").limit == 500
    assert rule_for("mastodon", {"max_characters": 1000}).limit == 1000
    with pytest.raises(ValueError):
        rule_for("myspace")


def test_truncate_cuts_at_a_word_with_an_ellipsis():
    assert truncate_to("The quick brown fox jumps", 16, len) == "The quick brown…"
    assert truncate_to("The quick, brown fox", 12, len) == "The quick…"  # no dangling comma
    assert truncate_to("short", 10, len) == "short"


def test_truncate_never_cuts_a_link_or_hashtag():
    text = "Read https://example.com/a/long/path now #MentalHealthAwareness"
    assert truncate_to(text, 30, len) == "Read…"
    assert truncate_to(text, 34, x_length) == "Read https://example.com/a/long/path now…"
    assert truncate_to(text, 31, x_length) == "Read https://example.com/a/long/path …"  # "…" apart
    assert truncate_to(text, 60, len) == "Read https://example.com/a/long/path now…"


def test_truncate_cuts_unspaced_scripts_between_characters():
    assert truncate_to("日本語のタイトルがとても長い場合", 10, x_length) == "日本語の…"
    assert truncate_to("Supercalifragilisticexpialidocious", 10, len) == "Supercali…"


def test_truncate_with_no_room():
    assert truncate_to("anything", 0, len) == ""
    assert truncate_to("anything", 1, len) == ""  # a lone "…" says nothing


def test_finders():
    text = "#One see https://a.example/x#frag and #two, not&#39;s"
    assert [text[s:e] for s, e in find_links(text)] == ["https://a.example/x#frag"]
    assert [text[s:e] for s, e in find_hashtags(text)] == ["#One", "#two"]


words = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12),
    st.sampled_from(["https://example.com/path?q=1", "#Hashtag", "😀", "👨‍👩‍👧", "中文字", "e\u0301",
                     "a" * 60, "🇺🇸", "example.org"]),
)
texts = st.lists(words, max_size=40).map(" ".join)
measures = st.sampled_from([x_length, mastodon_length, grapheme_length, char_length])


@settings(max_examples=200, deadline=None)
@given(texts, st.integers(min_value=0, max_value=300), measures)
def test_truncate_always_fits_and_keeps_links_whole(text, limit, measure):
    cut = truncate_to(text, limit, measure)
    assert measure(cut) <= limit
    if cut != text:
        assert cut == "" or cut.endswith(ELLIPSIS)
        # Every link in the result is a whole link of the original.
        originals = {text[s:e] for s, e in find_links(text)}
        assert {cut[s:e] for s, e in find_links(cut.removesuffix(ELLIPSIS))} <= originals


@pytest.mark.parametrize("text, expected", [
    ("hello", 5),
    ("🌿", 4),  # U+1F33F: four UTF-8 bytes
    ("👨‍👩‍👧‍👦", 25),  # one grapheme, 25 bytes (four people and three ZWJ)
    ("🇺🇸", 8),  # a flag: two regional indicators
    ("ünï 中文", 6),  # letters and CJK are one each, whatever their bytes
    ("❤️ ok", 9),  # U+2764 U+FE0F: six bytes, then " ok"
])
def test_threads_length_counts_emoji_by_utf8_bytes(text, expected):
    assert threads_length(text) == expected


def test_bluesky_length_is_the_stricter_of_graphemes_and_bytes():
    assert bluesky_length("a" * 300) == 300
    assert bluesky_length("中" * 300) == 300  # 900 bytes: graphemes decide
    family = "👨‍👩‍👧‍👦" * 150  # 150 graphemes, 3750 bytes
    assert bluesky_length(family) == 375 > 300
    assert rule_for("bluesky").measure is bluesky_length and rule_for("threads").measure is threads_length
