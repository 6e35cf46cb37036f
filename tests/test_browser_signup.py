"""Issue 17 in real headless Chromium against a real `syndicate serve`: a reader fills the
hosted form, the confirmation email lands in the outbox, the reader opens its link, confirms
(POST), chooses the weekly digest and one topic; the next runs send that reader the digest
only, with only that topic's posts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.utils import format_datetime

from test_browser_desk import browser, ds  # noqa: F401  (fixtures)
from test_smtp_support import wait_for

POSTS = [("Calm breathing for exam season", "Anxiety"), ("Helping kids name big feelings", "Parenting"),
         ("When teens stop talking", "Parenting")]


def _feed() -> str:
    items = "".join(
        f"<item><title>{title}</title><link>https://harborwellness.example/p{i}/</link>"
        f"<guid>https://harborwellness.example/p{i}/</guid><category>{category}</category>"
        f"<pubDate>{format_datetime(datetime(2026, 11, 18, 12, i, tzinfo=UTC))}</pubDate>"
        f"<description>About {title.lower()}.</description></item>"
        for i, (title, category) in enumerate(POSTS))
    return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wellness</title>'
            f"<link>https://harborwellness.example/</link><description>d</description>{items}</channel></rss>")


def _config(folder, url: str) -> str:
    return f'''
[site]
name = "Harbor Wellness Counseling"
url = "https://harborwellness.example"
timezone = "America/New_York"
address = "120 Water Street, Portland, ME 04101"
[store]
url = "sqlite:///{folder / 'ledger.db'}"
[outbox]
dir = "{folder / 'outbox'}"
[web]
public_url = "{url}"
[audience]
limits = "memory"
topics = {{ anxiety = {{ label = "Anxiety and stress", categories = ["Anxiety"] }}, kids = {{ label = "Children and teens", categories = ["Parenting"] }} }}
[audience.signup]
min_fill_seconds = 1
[[feeds]]
name = "wellness"
url = "{folder / 'feed.xml'}"
backfill = 5
[channels.newsletter]
kind = "email"
options = {{ audience = "subscribers" }}
[channels.weekly]
kind = "email"
mode = "digest"
digest = {{ every = "week", day = "tue", at = "09:00" }}
options = {{ audience = "subscribers" }}
'''


def test_a_reader_signs_up_confirms_and_chooses_the_weekly_digest_of_one_topic(browser, tmp_path):  # noqa: F811
    (tmp_path / "feed.xml").write_text(_feed())
    config = tmp_path / "settings.toml"
    config.write_text("")
    desk = ds.Desk(config)
    config.write_text(_config(tmp_path, desk.url))
    outbox = tmp_path / "outbox"
    with desk:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{desk.url}/subscribe")
        assert page.locator("html").get_attribute("lang") == "en"
        page.get_by_label("Your email address").fill("reader@example.org")
        page.wait_for_timeout(1200)  # a person takes longer than min_fill_seconds
        page.get_by_role("button", name="Subscribe").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

        notices = outbox / "newsletter" / "notices"
        wait_for(lambda: list(notices.glob("confirm-*.eml")), 10, "the confirmation email")
        message = message_from_bytes(next(notices.glob("confirm-*.eml")).read_bytes(), policy=policy.default)
        assert message["To"] == "reader@example.org"
        link = re.search(r"(http://\S+/confirm/\S+)", message.get_body(("plain",)).get_content()).group(1)

        page.goto(link)  # opening the link (a GET) changes nothing
        assert page.get_by_role("heading", level=1).inner_text() == "Confirm your subscription"
        page.get_by_role("button", name="Yes, subscribe me").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "You are subscribed"
        page.get_by_role("link", name=re.compile("Choose what you receive")).click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Your email preferences"
        page.get_by_label("Every post, as it is published").uncheck()
        page.get_by_label("The weekly digest").check()
        page.get_by_label("Children and teens").check()
        page.get_by_role("button", name="Save my choices").click()
        page.wait_for_load_state()
        assert "Saved" in page.get_by_role("status").inner_text()
        assert page.get_by_label("The weekly digest").is_checked()
        assert not page.get_by_label("Every post, as it is published").is_checked()
        context.close()

        # Wednesday: the posts are new (per-post emails go out); next Tuesday: the digest.
        for at in ("2026-11-18T10:00:00-05:00", "2026-11-24T09:05:00-05:00"):
            ran = desk.cli("run", "--at", at)
            assert ran.returncode == 0, ran.stderr
    mine = sorted(outbox.glob("*/*/reader@example.org.eml"))
    assert [p.parent.parent.name for p in mine] == ["weekly"]  # the digest only
    digest = message_from_bytes(mine[0].read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
    assert "Helping kids name big feelings" in digest and "When teens stop talking" in digest
    assert "Calm breathing" not in digest  # not a topic the reader follows
    assert f"{desk.url}/archive/weekly-2026-W48" in digest  # "view in browser"
