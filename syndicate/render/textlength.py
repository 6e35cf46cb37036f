"""How long a text is, by each network's own rules, and how to cut it to fit.

Where a network's rule is fuzzy (which strings X takes for a link, which emoji it knows),
the measures here err on the long side: a text we call short enough must never be refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import regex

Measure = Callable[[str], int]

ELLIPSIS = "…"
URL_WEIGHT = 23  # X (t.co) and Mastodon count every link as 23 characters

# twitter-text v3 configuration: code points in these ranges weigh 1, all others 2.
_X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))

# A link as the networks detect it: balanced parentheses stay inside, trailing punctuation
# ("see https://a.example/x.") stays outside.
_URL = regex.compile(r"https?://(?:\([^\s()<>]*\)|[^\s()<>\"'`])+(?<![.,;:!?'\"»”’…])", regex.I)
# A link the networks shorten to 23: an ASCII host with a real-looking top-level domain.
_SHORTENED_URL = regex.compile(r"https?://(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?::\d+)?(?:[/?#]\S*)?", regex.I)
# X also links bare domains ("example.com"); text that looks like one counts as at least 23.
_X_DOMAIN = regex.compile(r"(?<![\w@.#/:-])(?:[\p{L}\p{N}-]+\.)+[A-Za-z]{2,}(?:/\S*)?(?![\w@])")
_HASHTAG = regex.compile(r"(?<![\w&#＃])[#＃][\p{L}\p{M}\p{N}_]*[\p{L}\p{M}_][\p{L}\p{M}\p{N}_]*")

# One emoji as UTS #51 describes a well-formed sequence: a flag, a keycap, or pictographs with
# presentation selector, skin tone and tag sequence, joined by ZWJ. X counts each as 2.
_EMOJI_ELEMENT = r"\p{Extended_Pictographic}(?:\uFE0F|\p{Emoji_Modifier})?(?:[\U000E0020-\U000E007E]+\U000E007F)?"
_EMOJI = regex.compile(
    rf"\p{{Regional_Indicator}}{{2}}|[0-9#*]\uFE0F?\u20E3|{_EMOJI_ELEMENT}(?:\u200D{_EMOJI_ELEMENT})*"
)
_GRAPHEME = regex.compile(r"\X")
_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
# Scripts written without spaces: every grapheme boundary is a word boundary there.
_UNSPACED = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]"
_TOKEN = regex.compile(rf"\s+|(?={_UNSPACED})\X|(?:(?!{_UNSPACED})\S)+")


def x_length(text: str) -> int:
    """X's weighted length (twitter-text v3): links 23, emoji 2, CJK and most symbols 2."""
    text = unicodedata.normalize("NFC", text)
    links = _spans(_URL, text)
    links += [span for span in _spans(_X_DOMAIN, text) if not _overlaps(span, links)]
    total, pos = 0, 0
    for start, end in sorted(links):
        total += _x_plain_weight(text[pos:start]) + _link_weight(text[start:end], _x_plain_weight)
        pos = end
    return total + _x_plain_weight(text[pos:])


def mastodon_length(text: str) -> int:
    """Mastodon's count: graphemes, with every http(s) link counted as 23."""
    total, pos = 0, 0
    for start, end in _spans(_URL, text):
        total += grapheme_length(text[pos:start]) + _link_weight(text[start:end], grapheme_length)
        pos = end
    return total + grapheme_length(text[pos:])


def grapheme_length(text: str) -> int:
    """User-perceived characters (extended grapheme clusters): Bluesky's count (with a byte cap)."""
    return len(_GRAPHEME.findall(text))


def threads_length(text: str) -> int:
    """Threads' count: a grapheme is 1, but one holding an emoji counts its UTF-8 bytes. Meta:
    "Text posts are limited to 500 characters. Emojis are counted as the number of UTF-8 bytes"
    (developers.facebook.com/docs/threads/posts; the same in /reference/publishing)."""
    return sum(len(g.encode()) if _PICTOGRAPHIC.search(g) else 1 for g in _GRAPHEME.findall(text))


def bluesky_length(text: str) -> int:
    """Bluesky's two limits as one number against 300: ``app.bsky.feed.post`` text has
    ``maxGraphemes: 300`` and ``maxLength: 3000`` (UTF-8 bytes), so 10 bytes weigh one grapheme."""
    return max(grapheme_length(text), -(-len(text.encode()) // 10))


def char_length(text: str) -> int:
    """Plain code points: LinkedIn's and Facebook's count, and JSON Schema's maxLength."""
    return len(text)


@dataclass(frozen=True)
class Rule:
    measure: Measure
    limit: int


def rule_for(kind: str, options: dict[str, Any] | None = None) -> Rule:
    """The length rule of a network's main text; Mastodon instances may raise their limit."""
    options = options or {}
    rules = {
        "x": Rule(x_length, 280),
        "mastodon": Rule(mastodon_length, int(options.get("max_characters", 500))),
        "bluesky": Rule(bluesky_length, 300),
        "threads": Rule(threads_length, 500),
        "linkedin": Rule(char_length, 3000),
        "facebook": Rule(char_length, 63206),
        "pinterest": Rule(char_length, 500),
    }
    try:
        return rules[kind]
    except KeyError:
        raise ValueError(f"no length rule for network {kind!r}") from None


def truncate_to(text: str, limit: int, measure: Measure) -> str:
    """The longest prefix of ``text`` ending at a word boundary, plus "…", within ``limit``.

    A link or hashtag is never cut: it stays whole or goes. A first word longer than the
    whole limit is cut between graphemes rather than leaving nothing.
    """
    if measure(text) <= limit:
        return text
    if limit <= 0 or measure(ELLIPSIS) > limit:
        return ""
    atoms = _atoms(text)
    cuts = [i + 1 for i, (kind, _) in enumerate(atoms) if kind != "space"]
    best = _last_fitting(cuts, lambda n: _with_ellipsis(atoms[:n]), limit, measure)
    if best is not None and _with_ellipsis(atoms[:best]) != ELLIPSIS:
        return _with_ellipsis(atoms[:best])
    return _cut_first_word(atoms, limit, measure)


def find_links(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the http(s) links in ``text``."""
    return _spans(_URL, text)


def find_hashtags(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the hashtags in ``text`` (outside links)."""
    links = find_links(text)
    return [span for span in _spans(_HASHTAG, text) if not _overlaps(span, links)]


def _atoms(text: str) -> list[tuple[str, str]]:
    """Split into links and hashtags (never split), spaces, and words."""
    atoms: list[tuple[str, str]] = []
    pos = 0
    for start, end in sorted(find_links(text) + find_hashtags(text)):
        atoms += _words_and_spaces(text[pos:start])
        atoms.append(("whole", text[start:end]))
        pos = end
    return atoms + _words_and_spaces(text[pos:])


def _words_and_spaces(chunk: str) -> list[tuple[str, str]]:
    return [("space" if m.group().isspace() else "word", m.group()) for m in _TOKEN.finditer(chunk)]


def _with_ellipsis(atoms: list[tuple[str, str]]) -> str:
    # A dangling separator before the ellipsis reads badly: "word, …" becomes "word…".
    head = regex.sub(r"[\s,;:\-–—(\[{/]+$", "", "".join(value for _, value in atoms))
    # "…" glued to a link would look like part of it (and some networks would take it so).
    return head + (" " if find_links(head) and find_links(head)[-1][1] == len(head) else "") + ELLIPSIS


def _last_fitting(cuts: list[int], build: Callable[[int], str], limit: int, measure: Measure) -> int | None:
    """Binary search for the largest cut whose text fits; every answer is measured to fit."""
    lo, hi, best = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if measure(build(cuts[mid])) <= limit:
            best, lo = cuts[mid], mid + 1
        else:
            hi = mid - 1
    return best


def _cut_first_word(atoms: list[tuple[str, str]], limit: int, measure: Measure) -> str:
    first = next(((kind, value) for kind, value in atoms if kind != "space"), ("space", ""))
    if first[0] != "word":
        return ""  # a link or hashtag that alone is too long is dropped, never cut
    graphemes = _GRAPHEME.findall(first[1])
    best = _last_fitting(list(range(1, len(graphemes) + 1)), lambda n: "".join(graphemes[:n]) + ELLIPSIS,
                         limit, measure)
    return "".join(graphemes[:best]) + ELLIPSIS if best else ""


def _link_weight(link: str, plain: Measure) -> int:
    # A link the network would not recognise is counted as text, but never below 23.
    return URL_WEIGHT if _SHORTENED_URL.fullmatch(link) else max(URL_WEIGHT, plain(link))


def _x_plain_weight(text: str) -> int:
    total, pos = 0, 0
    for match in _EMOJI.finditer(text):
        total += _x_chars_weight(text[pos:match.start()]) + 2
        pos = match.end()
    return total + _x_chars_weight(text[pos:])


def _x_chars_weight(text: str) -> int:
    return sum(1 if any(lo <= ord(c) <= hi for lo, hi in _X_LIGHT_RANGES) else 2 for c in text)


def _spans(pattern: regex.Pattern, text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def _overlaps(span: tuple[int, int], others: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)
