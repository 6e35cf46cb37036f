"""Every feed of the shared real-world corpus (../shared/feeds) is parsed or cleanly rejected.

"Cleanly" means a FeedError whose text is one line; any other exception is a bug. The corpus
is read-only and lives next to the repository (``$SYNDICATE_SHARED`` overrides the place); the
tests skip, saying so, when it is absent.
"""

from __future__ import annotations

import os
import re
from datetime import UTC
from pathlib import Path

import pytest

from syndicate.feeds import FeedError, parse

# The corpus files that are not feeds at all or too broken to hold a single item.
REJECTED = {
    "37": "malformed XML and no items could be read: no element found (line 19)",
    "49": "not a feed (an HTML page)",
    "58": "malformed XML and no items could be read: XML or text declaration not at start of entity (line 6)",
    "60": "malformed XML and no items could be read: unbound prefix (line 9)",
    "70": "malformed XML and no items could be read: undefined entity (line 8)",
}
# Feeds whose links are all relative with no absolute site URL inside: read from a file they
# cannot be resolved (fetched over HTTP they resolve against the feed's URL, tested below).
NO_ABSOLUTE_BASE = {"29", "51"}
_ABSOLUTE = re.compile(r"^https?://[^/\s]+", re.I)


def shared_dir() -> Path | None:
    """The shared folder next to the repository root (or ``$SYNDICATE_SHARED``)."""
    candidates = [os.environ.get("SYNDICATE_SHARED"), Path(__file__).resolve().parents[2] / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "feeds").is_dir():
            return Path(candidate)
    return None


def corpus_files() -> list[Path]:
    shared = shared_dir()
    if shared is None:
        return []
    return sorted(p for p in (shared / "feeds").iterdir() if p.suffix in (".xml", ".json"))


def corpus_file(number: str) -> Path:
    """One corpus file by its two-digit number; skips the calling test when the corpus is absent."""
    for path in corpus_files():
        if path.name.startswith(f"{number}_"):
            return path
    pytest.skip(f"corpus file {number}_* not found: set SYNDICATE_SHARED to the folder holding feeds/")


def _params() -> list:
    files = corpus_files()
    if not files:
        reason = "../shared/feeds not found next to the repository; set SYNDICATE_SHARED to use the corpus"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.name[:2]) for path in files]


CORPUS = _params()


def test_the_corpus_is_complete():
    files = corpus_files()
    if not files:
        pytest.skip("../shared/feeds not found next to the repository; set SYNDICATE_SHARED")
    assert len(files) == 71


@pytest.mark.parametrize("path", CORPUS)
def test_parses_or_is_rejected_with_one_line(path: Path):
    number = path.name[:2]
    try:
        feed = parse(path.read_bytes(), url=str(path))
    except FeedError as err:
        assert number in REJECTED, f"{path.name} was rejected: {err}"
        assert str(err) == f"{path}: {REJECTED[number]}"
        return
    assert number not in REJECTED, f"{path.name} should be rejected, parsed {len(feed.posts)} posts"
    _check_feed(feed, number)


@pytest.mark.parametrize("path", CORPUS)
def test_fetched_over_http_every_link_is_absolute(path: Path):
    # As if served from the web: now even the feeds with only relative links resolve fully.
    url = "https://feeds.example.org/" + path.name
    try:
        feed = parse(path.read_bytes(), url=url)
    except FeedError:
        assert path.name[:2] in REJECTED
        return
    for post in feed.posts:
        assert _ABSOLUTE.match(post.url), (path.name, post.url)
        if post.image_url:
            assert _ABSOLUTE.match(post.image_url), (path.name, post.image_url)


@pytest.mark.parametrize("path", CORPUS)
def test_truncated_copy_never_crashes(path: Path):
    # A download cut short (or a server dying mid-response) must still give a result or a
    # FeedError, never a stray exception from deep inside a parser.
    body = path.read_bytes()
    try:
        parse(body[: len(body) // 2], url=str(path))
    except FeedError as err:
        assert "\n" not in str(err)


def _check_feed(feed, number: str) -> None:
    assert feed.format and "\n" not in feed.title
    assert all("\n" not in warning for warning in feed.warnings)
    identities = [post.identity for post in feed.posts]
    assert len(identities) == len(set(identities)), "duplicate identities kept"
    for post in feed.posts:
        _check_post(post, number, feed.warnings)


def _check_post(post, number: str, warnings: list[str]) -> None:
    if number in NO_ABSOLUTE_BASE:
        assert any("relative link" in w for w in warnings)
    else:
        assert _ABSOLUTE.match(post.url), post.url
    assert post.identity.split(":", 1)[0] in ("guid", "link", "hash")
    assert post.fingerprint.startswith(post.fingerprint.split(" ", 1)[0]) and " " in post.fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", post.content_hash)
    assert post.title or post.content_html or post.url
    assert post.title == post.title.strip() and "\n" not in post.title
    assert len(post.summary) <= 300 and "<p>" not in post.summary
    assert all(c == c.strip() and c for c in post.categories)
    assert len({c.casefold() for c in post.categories}) == len(post.categories)
    if post.image_url:
        assert _ABSOLUTE.match(post.image_url), post.image_url
    for moment in (post.published, post.updated):
        assert moment is None or moment.tzinfo == UTC
