"""Issue 20 at the desk, in real headless Chromium against a real `syndicate serve` (the demo
of scripts/desk_screenshots.py, with a real SMTP server): editing an email's subject with its
live counter, then approving and sending it; an editor refused approval; the calendar's local
days across the fall-back DST change; the diff after the blog's copy changed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from sqlalchemy import select, update
from test_browser_desk import browser, ds, page, served  # noqa: F401  (fixtures)
from test_smtp_support import wait_for

from syndicate.engine import actions
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, Post
from syndicate.render.email import SUBJECT_MAX
from syndicate.web import auth, roles

EDITOR, EDITOR_PASSWORD = "eddie", "an editor's long password"


def test_edit_a_subject_with_its_live_counter_approve_and_send(page, served):  # noqa: F811
    email = served.delivery("Helping Kids", "newsletter")
    actions.hold(served.factory, email.id, "cli:test", reason="for the subject test")
    ds.sign_in(page, served.url)
    page.goto(f"{served.url}/desk/post/{email.post_id}#d{email.id}")
    subject = page.get_by_test_id(f"subject-{email.id}")
    counter = page.locator(f"[data-counter-for='subject-{email.id}']")
    new = "Helping kids name big feelings, one word at a time"
    subject.fill(new)
    assert counter.inner_text().startswith(f"{len(new)} / {SUBJECT_MAX} characters")  # live, before any save
    assert page.locator(f"[data-inbox-line='{email.id}'] .inbox-subject").inner_text() == new
    subject.fill("x" * (SUBJECT_MAX + 3))
    assert "3 over: it will be refused" in counter.inner_text()
    assert "over" in counter.get_attribute("class")
    subject.fill(new)
    page.get_by_role("button", name="Save subject and preheader").click()
    page.wait_for_load_state()
    assert "goes out with the new subject and preheader" in page.locator(".flash-success").inner_text()
    assert served.row(email.id).payload["subject"] == new
    assert page.locator(f"#d{email.id} .email-meta .subject").inner_text() == new  # the preview, rendered again
    page.locator(f"#d{email.id}").get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_load_state()
    assert served.row(email.id).state == "planned"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#d{email.id}").get_by_role("button", name="Send now").click()
    page.wait_for_load_state()
    wait_for(lambda: served.smtp.handler.counts().get("reader@example.org") == 1, 15, "the newsletter")
    message = served.smtp.handler.to("reader@example.org")[0].message
    assert message["Subject"] == new
    assert served.row(email.id).state == "sent"
    assert page.csp_errors == []


def test_an_editor_is_refused_approval(page, served):  # noqa: F811
    auth.add_user(served.factory, EDITOR, EDITOR_PASSWORD)
    roles.set_role(served.factory, EDITOR, "editor")
    pin = served.delivery(ds.SENSITIVE_TITLE, "x")
    assert served.row(pin.id).state == "held"
    ds.sign_in(page, served.url, EDITOR, EDITOR_PASSWORD)
    page.goto(f"{served.url}/desk/post/{pin.post_id}#d{pin.id}")
    section = page.locator(f"#d{pin.id}")
    assert section.get_by_role("button", name="Approve").count() == 0
    assert section.get_by_role("button", name="Send now").count() == 0
    assert "An approver releases it." in section.inner_text()
    assert section.get_by_role("button", name="Save text").count() == 1  # an editor edits
    # The server refuses it anyway: a hand-made POST with the session's own CSRF token.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = page.request.post(f"{served.url}/desk/delivery/{pin.id}/approve", form={"csrf_token": csrf},
                                 max_redirects=0)
    assert response.status == 403
    assert "needs the approver role" in response.text()
    assert served.row(pin.id).state == "held"


def test_the_calendar_week_puts_deliveries_on_their_local_days_across_dst(page, served):  # noqa: F811
    # America/New_York falls back on Sunday Nov 1 2026 at 06:00 UTC. 23:30 local on Saturday is
    # 03:30 UTC on Sunday (EDT, -4); 23:30 local on Sunday is 04:30 UTC on Monday (EST, -5).
    saturday = served.delivery("Helping Kids", "mastodon")
    sunday = served.delivery("Helping Kids", "bluesky")
    with transaction(served.factory) as s:
        s.execute(update(Delivery).where(Delivery.id == saturday.id)
                  .values(due_at=datetime(2026, 11, 1, 3, 30, tzinfo=UTC)))
        s.execute(update(Delivery).where(Delivery.id == sunday.id)
                  .values(due_at=datetime(2026, 11, 2, 4, 30, tzinfo=UTC)))
    ds.sign_in(page, served.url)
    page.get_by_role("link", name="Calendar").click()
    page.wait_for_url("**/desk/calendar")
    page.goto(f"{served.url}/desk/calendar?start=2026-10-28")
    assert page.get_by_role("heading", level=1).inner_text() == "Week of Mon Oct 26, 2026"
    sat_cell = page.get_by_test_id("cal-mastodon-2026-10-31")
    assert sat_cell.get_by_test_id(f"cal-entry-{saturday.id}").inner_text().startswith("11:30 PM")
    sun_cell = page.get_by_test_id("cal-bluesky-2026-11-01")
    assert sun_cell.get_by_test_id(f"cal-entry-{sunday.id}").inner_text().startswith("11:30 PM")
    assert page.get_by_test_id("cal-mastodon-2026-11-01").get_by_test_id(f"cal-entry-{saturday.id}").count() == 0
    entry = sat_cell.get_by_test_id(f"cal-entry-{saturday.id}")
    assert "state-planned" in entry.get_attribute("class")
    colour = entry.evaluate("e => getComputedStyle(e).borderLeftColor")
    assert colour == "rgb(47, 111, 106)"  # the planned colour
    entry.click()
    page.wait_for_url(re.compile(rf".*/desk/post/{saturday.post_id}(#d{saturday.id})?$"))
    # The month view holds both too.
    page.goto(f"{served.url}/desk/calendar?view=month&start=2026-11-01")
    assert page.get_by_test_id("cal-day-2026-11-01").get_by_test_id(f"cal-entry-{sunday.id}").count() == 1
    assert page.csp_errors == []


def test_the_diff_is_shown_after_the_blogs_copy_changed(page, served):  # noqa: F811
    tweet = served.delivery("Trauma and the Body", "x")  # planned (the oldest post went out at seed)
    with transaction(served.factory) as s:  # what a poll does when the blog edits a post
        post = s.get(Post, tweet.post_id)
        data = dict(post.data)
        data["title"] = "Edited: " + data["title"]
        s.execute(update(Post).where(Post.id == post.id).values(data=data, title=data["title"],
                                                                 content_hash="edited-on-the-blog"))
    ds.sign_in(page, served.url)
    page.goto(f"{served.url}/desk/post/{tweet.post_id}#d{tweet.id}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"#d{tweet.id}").get_by_role("button", name="Send now").click()
    page.wait_for_load_state()
    assert served.row(tweet.id).state == "sent"
    diff = page.get_by_test_id(f"diff-{tweet.id}")
    assert "The blog's copy changed" in diff.inner_text()
    assert diff.locator("ins").first.inner_text().startswith("Edited:")
    with transaction(served.factory) as s:
        event = s.scalar(select(Event).where(Event.delivery_id == tweet.id, Event.action == "content refreshed"))
    assert "Edited:" in json.loads(event.detail)["after"]["text"]
    assert page.csp_errors == []
