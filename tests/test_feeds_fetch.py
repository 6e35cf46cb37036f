"""fetch() against a real local HTTP server: conditional GET, caps, timeouts, redirects, errors."""

from __future__ import annotations

import gzip
import pickle
import socket
import time
from datetime import UTC, datetime

import pytest
import requests
from feedserver import fixture

from syndicate.feeds import FeedError, FetchResult, fetch

feed_server = fixture()

FEED = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title></channel></rss>'
LAST_MODIFIED = "Wed, 04 Nov 2026 10:00:00 GMT"


def assert_one_line(err: FeedError, *fragments: str) -> None:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text and len(text) < 300, text
    for fragment in fragments:
        assert fragment in text, text


# --- Conditional GET ------------------------------------------------------------------------


def test_etag_round_trip_gives_304_without_body(feed_server):
    feed_server.route("/feed", FEED, etag='"v1"')
    first = fetch(feed_server.url("/feed"))
    assert (first.status, first.body, first.etag) == (200, FEED, '"v1"')

    second = fetch(feed_server.url("/feed"), etag=first.etag)
    assert (second.status, second.body, second.etag) == (304, None, '"v1"')
    assert feed_server.requests[-1]["if-none-match"] == '"v1"'


def test_changed_etag_gives_the_new_body(feed_server):
    feed_server.route("/feed", FEED + b" ", etag='"v2"')
    result = fetch(feed_server.url("/feed"), etag='"v1"')
    assert (result.status, result.etag) == (200, '"v2"')
    assert result.body == FEED + b" "


def test_last_modified_round_trip_gives_304(feed_server):
    feed_server.route("/feed", FEED, last_modified=LAST_MODIFIED)
    first = fetch(feed_server.url("/feed"))
    assert first.last_modified == LAST_MODIFIED and first.etag is None

    second = fetch(feed_server.url("/feed"), last_modified=first.last_modified)
    assert (second.status, second.body, second.last_modified) == (304, None, LAST_MODIFIED)
    assert feed_server.requests[-1]["if-modified-since"] == LAST_MODIFIED


def test_last_modified_accepts_an_aware_datetime(feed_server):
    feed_server.route("/feed", FEED, last_modified=LAST_MODIFIED)
    result = fetch(feed_server.url("/feed"), last_modified=datetime(2026, 11, 5, tzinfo=UTC))
    assert result.status == 304
    assert feed_server.requests[-1]["if-modified-since"] == "Thu, 05 Nov 2026 00:00:00 GMT"


def test_unconditional_fetch_sends_no_validators_and_our_user_agent(feed_server):
    feed_server.route("/feed", FEED, etag='"v1"')
    fetch(feed_server.url("/feed"), user_agent="Syndicate/test")
    sent = feed_server.requests[-1]
    assert "if-none-match" not in sent and "if-modified-since" not in sent
    assert sent["user-agent"] == "Syndicate/test"
    assert "application/rss+xml" in sent["accept"]


def test_a_shared_session_is_used(feed_server):
    feed_server.route("/feed", FEED)
    with requests.Session() as session:
        session.headers["X-Probe"] = "yes"
        fetch(feed_server.url("/feed"), session=session)
    assert feed_server.requests[-1]["x-probe"] == "yes"


# --- Size cap -------------------------------------------------------------------------------


def test_body_over_the_cap_is_refused_by_content_length(feed_server):
    feed_server.route("/big", b"x" * 5000)
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/big"), max_bytes=4096)
    assert_one_line(info.value, feed_server.url("/big"), "larger than 4 KiB cap")
    assert info.value.kind == "too_large"


def test_body_over_the_cap_without_content_length_is_cut_off(feed_server):
    feed_server.route("/big", b"x" * 300_000, send_length=False)
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/big"), max_bytes=100_000)
    assert_one_line(info.value, "larger than 97.7 KiB cap")


def test_cap_applies_after_decompression(feed_server):
    bomb = b"<rss>" + b" " * 2_000_000
    feed_server.route("/bomb", bomb, gzip=True)
    assert len(gzip.compress(bomb)) < 10_000
    with pytest.raises(FeedError, match="larger than 1 MiB cap"):
        fetch(feed_server.url("/bomb"), max_bytes=1024 * 1024)


def test_gzip_body_is_decoded(feed_server):
    feed_server.route("/feed", FEED, gzip=True)
    assert fetch(feed_server.url("/feed")).body == FEED


def test_body_at_the_cap_is_accepted(feed_server):
    feed_server.route("/exact", b"y" * 4096, send_length=False)
    assert len(fetch(feed_server.url("/exact"), max_bytes=4096).body) == 4096


# --- Timeouts -------------------------------------------------------------------------------


def test_slow_server_times_out(feed_server):
    feed_server.route("/slow", FEED, delay=5)
    started = time.monotonic()
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/slow"), timeout=0.3)
    assert time.monotonic() - started < 2
    assert_one_line(info.value, "timed out after 0.3s")
    assert info.value.kind == "timeout"


def test_dripping_server_is_stopped_by_the_overall_budget(feed_server):
    # Every chunk arrives well within the read timeout; only the total budget stops it.
    feed_server.route("/drip", b"z" * 40_000, drip=0.1)
    started = time.monotonic()
    with pytest.raises(FeedError, match="timed out after 0.5s"):
        fetch(feed_server.url("/drip"), timeout=0.5)
    assert time.monotonic() - started < 2


# --- Redirects ------------------------------------------------------------------------------


def test_redirect_chain_is_followed_and_recorded(feed_server):
    feed_server.redirect("/a", "/b", status=301)
    feed_server.redirect("/b", feed_server.url("/c"), status=302)
    feed_server.route("/c", FEED, etag='"c"')
    result = fetch(feed_server.url("/a"))
    assert result.status == 200 and result.body == FEED
    assert result.redirects == [feed_server.url("/b"), feed_server.url("/c")]
    assert result.final_url == feed_server.url("/c")
    assert result.moved_permanently is False  # one hop was temporary
    assert feed_server.hits == {"/a": 1, "/b": 1, "/c": 1}


def test_permanent_redirects_are_flagged(feed_server):
    feed_server.redirect("/old", "/new", status=301)
    feed_server.redirect("/new", "/feed", status=308)
    feed_server.route("/feed", FEED)
    result = fetch(feed_server.url("/old"))
    assert result.moved_permanently is True and result.final_url == feed_server.url("/feed")


def test_no_redirect_means_empty_record(feed_server):
    feed_server.route("/feed", FEED)
    result = fetch(feed_server.url("/feed"))
    assert result.redirects == [] and result.final_url == feed_server.url("/feed")
    assert result.content_type == "application/rss+xml; charset=utf-8"


def test_conditional_headers_survive_a_redirect(feed_server):
    feed_server.redirect("/old", "/feed", status=301)
    feed_server.route("/feed", FEED, etag='"v1"')
    result = fetch(feed_server.url("/old"), etag='"v1"')
    assert result.status == 304 and result.redirects == [feed_server.url("/feed")]


def test_redirect_loop_is_an_error(feed_server):
    feed_server.redirect("/loop", "/loop")
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/loop"))
    assert_one_line(info.value, "too many redirects")
    assert feed_server.hits["/loop"] == 11


def test_redirect_to_another_scheme_is_refused(feed_server):
    feed_server.redirect("/ftp", "ftp://example.org/feed")
    with pytest.raises(FeedError, match="redirected to a non-HTTP address"):
        fetch(feed_server.url("/ftp"))


# --- Errors ---------------------------------------------------------------------------------


def test_404_is_one_line(feed_server):
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/missing"))
    assert str(info.value) == f"{feed_server.url('/missing')}: HTTP 404 Not Found"
    assert (info.value.kind, info.value.status) == ("http", 404)


def test_500_is_one_line(feed_server):
    feed_server.route("/boom", b"<html>stack trace\nline 2</html>", status=500, content_type="text/html")
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/boom"))
    assert str(info.value) == f"{feed_server.url('/boom')}: HTTP 500 Internal Server Error"


def test_error_after_redirect_names_both_addresses(feed_server):
    feed_server.redirect("/moved", "/gone", status=301)
    feed_server.route("/gone", b"", status=410)
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/moved"))
    assert_one_line(info.value, feed_server.url("/moved"), "HTTP 410 Gone",
                    f"after redirect to {feed_server.url('/gone')}")


def test_connection_refused_is_one_line():
    with socket.socket() as sock:  # a port that was free a moment ago, with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FeedError) as info:
        fetch(f"http://127.0.0.1:{port}/feed", timeout=5)
    assert str(info.value) == f"http://127.0.0.1:{port}/feed: connection refused"
    assert info.value.kind == "connection"


def test_unknown_host_is_one_line():
    # .invalid never resolves (RFC 6761), so the resolver answers at once without the network.
    with pytest.raises(FeedError) as info:
        fetch("http://no-such-feed-host.invalid/feed", timeout=5)
    assert str(info.value) == "http://no-such-feed-host.invalid/feed: host not found (no-such-feed-host.invalid)"


def test_tls_to_a_plain_http_server_is_a_tls_error(feed_server):
    feed_server.route("/feed", FEED)
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/feed").replace("http://", "https://"), timeout=5)
    assert_one_line(info.value, "TLS error: handshake failed")


def test_body_cut_short_is_a_broken_connection(feed_server):
    feed_server.route("/short", FEED, declared_length=len(FEED) + 500)
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/short"), timeout=5)
    assert_one_line(info.value, "connection broken while reading the response")


def test_corrupt_gzip_is_reported(feed_server):
    feed_server.route("/bad-gzip", b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
    with pytest.raises(FeedError) as info:
        fetch(feed_server.url("/bad-gzip"))
    assert_one_line(info.value, "response body could not be decompressed")


def test_credentials_never_appear_in_errors(feed_server):
    url = feed_server.url("/private?token=s3cr3t&page=2").replace("http://", "http://alice:hunter2@")
    with pytest.raises(FeedError) as info:
        fetch(url)
    text = str(info.value)
    assert "s3cr3t" not in text and "hunter2" not in text and "alice" not in text
    assert "token=***" in text and "page=2" in text


def test_unsupported_scheme():
    with pytest.raises(FeedError, match=r"^ftp://example.org/feed: unsupported URL scheme 'ftp'"):
        fetch("ftp://example.org/feed")


def test_feed_error_survives_pickling():
    err = FeedError("https://x.example/feed", "HTTP 503 Service Unavailable", kind="http", status=503)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.kind, copy.status) == (str(err), "http", 503)


# --- Local files ----------------------------------------------------------------------------


def test_file_path_is_read(tmp_path):
    path = tmp_path / "feed.xml"
    path.write_bytes(FEED)
    result = fetch(str(path))
    assert result == FetchResult(status=200, body=FEED, final_url=str(path))


def test_file_url_is_read(tmp_path):
    path = tmp_path / "my feed.xml"
    path.write_bytes(FEED)
    assert fetch(path.as_uri()).body == FEED


def test_file_cap(tmp_path):
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 5000)
    with pytest.raises(FeedError) as info:
        fetch(str(path), max_bytes=4096)
    assert str(info.value) == f"{path}: larger than 4 KiB cap"


def test_missing_file(tmp_path):
    with pytest.raises(FeedError) as info:
        fetch(str(tmp_path / "nope.xml"))
    assert str(info.value) == f"{tmp_path / 'nope.xml'}: file not found"


def test_directory_is_not_a_feed(tmp_path):
    with pytest.raises(FeedError, match="is a directory"):
        fetch(str(tmp_path))
