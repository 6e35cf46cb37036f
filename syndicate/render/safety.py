"""Safe messaging: which posts touch a sensitive topic (suicide, self-harm, ...).

A sensitive post gets a prominent crisis block in its email, neutral social snippets, and
(by the scheduler's choice, ``Safety.hold_social``) waits for a human before any social channel.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from html import unescape

import nh3

from syndicate.model import PostData
from syndicate.settings import Safety

# A topic written "self-harm" must also catch "self harm", "self–harm" or "self-\nharm" in the
# feed text: for safety a false positive (a human looks at the post) is far cheaper than a miss.
_JOINER = r"[\s\-\u2010\u2011\u2012\u2013\u2014]+"


def is_sensitive(post: PostData, safety: Safety) -> bool:
    """True when a configured sensitive topic appears, as a whole word, in the post."""
    return bool(matched_topics(post, safety))


def matched_topics(post: PostData, safety: Safety) -> list[str]:
    """The configured topics the post mentions (in configuration order); empty when disabled."""
    if not safety.enabled or not safety.sensitive_topics:
        return []
    haystack = _searchable_text(post)
    found: dict[str, str] = {}
    for topic, pattern in _patterns(tuple(safety.sensitive_topics)):
        # "self-harm" and "self harm" match the same words: name them once.
        if pattern.pattern not in found and pattern.search(haystack):
            found[pattern.pattern] = topic
    return list(found.values())


def mentions_topic(text: str, safety: Safety) -> bool:
    """True when ``text`` (plain text, e.g. one category) names a sensitive topic."""
    if not safety.enabled:
        return False
    normalized = _normalize(text)
    return any(p.search(normalized) for _, p in _patterns(tuple(safety.sensitive_topics)))


def _searchable_text(post: PostData) -> str:
    # The separator is neither a word character nor a joiner, so a topic never matches
    # across two fields (categories "self" and "harm" are not "self harm").
    parts: Iterable[str] = (*post.categories, post.title, post.summary, _html_text(post.content_html))
    return _normalize(" | ".join(parts))


def _html_text(html: str) -> str:
    # Stripping every tag keeps only the text a reader sees; script/style bodies are dropped
    # by nh3, so a topic hidden in a script does not count. Tags become spaces so that
    # "<b>self</b>-harm" and "suicide</p><p>prevention" stay matchable and separate.
    spaced = re.sub(r"<", " <", html)
    return unescape(nh3.clean(spaced, tags=set()))


def _normalize(text: str) -> str:
    # NFKC folds look-alikes (full-width letters, ligatures) onto plain letters.
    return unicodedata.normalize("NFKC", text).casefold()


@functools.lru_cache(maxsize=32)
def _patterns(topics: tuple[str, ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    compiled = []
    for topic in topics:
        words = re.split(_JOINER, _normalize(topic).strip())
        words = [w for w in words if w]
        if not words:
            continue
        body = _JOINER.join(re.escape(w) for w in words)
        # Whole words (no letter or digit may touch the topic), plurals included: a post
        # about "suicides" must not slip through a list that says "suicide".
        compiled.append((topic, re.compile(rf"(?<!\w){body}(?:e?s)?(?!\w)")))
    return tuple(compiled)
