"""The preview desk through Flask's test client: sign-in, CSRF, the queue, post previews, and
every action with its refusals, on SQLite and PostgreSQL where the ledger's guarantees matter
(compare-and-set on a claimed row, concurrent edits)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from flask import Flask
from sqlalchemy import delete, select, update
from test_smtp_support import SmtpServer

from syndicate.audience import subscribers
from syndicate.engine import actions
from syndicate.engine.dispatch import claim_one
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import table_names, transaction
from syndicate.ledger.models import Delivery, Event, Post, RecipientSend, SignInThrottle, StaffUser
from syndicate.render.textlength import rule_for
from syndicate.web import auth, create_app

SECRET = "desk-test-signing-key-7Hq2Wm9Zx4Rb"
PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday; 10:00 in New York
SENSITIVE = "When a Teen Is Hurting"
GROUNDING = "Five Grounding Skills"
CHANNELS = {
    "newsletter": {"kind": "email", "provider": "outbox", "delay": "2h", "to": ["reader@example.org"],
                   "from_address": "news@harborwellness.example"},
    "x": {"kind": "x", "provider": "outbox", "delay": "2h"},
    "linkedin": {"kind": "linkedin", "provider": "outbox", "delay": "2h",
                 "options": {"author_urn": "urn:li:organization:1"}},
    "pinterest": {"kind": "pinterest", "provider": "outbox", "delay": "2h", "options": {"board_id": "5497"}},
    "mastodon": {"kind": "mastodon", "provider": "outbox", "delay": "2h",
                 "options": {"instance": "https://mastodon.example"}},
    "bluesky": {"kind": "bluesky", "provider": "outbox", "delay": "2h"},
}


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SECRET", SECRET)


@dataclass
class Desk:
    settings: object
    factory: object
    app: Flask

    def client(self, signed_in: bool = True):
        client = self.app.test_client()
        if signed_in:
            sign_in(client)
        return client

    def delivery(self, title: str, channel: str) -> Delivery:
        with transaction(self.factory) as s:
            return s.scalar(select(Delivery).join(Post, Delivery.post_id == Post.id)
                            .where(Post.title.startswith(title), Delivery.channel == channel))

    def row(self, delivery_id: int) -> Delivery:
        with transaction(self.factory) as s:
            return s.get(Delivery, delivery_id)

    def events(self, delivery_id: int) -> list[Event]:
        with transaction(self.factory) as s:
            return list(s.scalars(select(Event).where(Event.delivery_id == delivery_id).order_by(Event.id)))


def make_desk(make_settings, demo_feed_path, store_url: str | None = None, channels=None, **sections) -> Desk:
    settings = make_settings(store_url=store_url, channels=channels or CHANNELS,
                             feeds=[{"name": "wellness", "url": str(demo_feed_path), "backfill": 5}],
                             web={"public_url": "https://harborwellness.example/news", **sections.pop("web", {})},
                             **sections)
    factory = ledger(settings)
    with transaction(factory) as s:  # PostgreSQL keeps accounts between tests: start clean
        s.execute(delete(StaffUser))
        s.execute(delete(SignInThrottle))
    run_once(settings, NOW)
    auth.add_user(factory, "ana", PASSWORD)
    return Desk(settings, factory, create_app(settings))


@pytest.fixture
def desk(make_settings, demo_feed_path, store_url) -> Desk:
    """On SQLite and on PostgreSQL."""
    return make_desk(make_settings, demo_feed_path, store_url)


@pytest.fixture
def desk1(make_settings, demo_feed_path) -> Desk:
    """On SQLite only (what does not depend on the database)."""
    return make_desk(make_settings, demo_feed_path)


def token(client, url: str = "/desk/") -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, name: str = "ana", password: str = PASSWORD, **kwargs):
    return client.post("/desk/sign-in", data={"name": name, "password": password,
                                              "csrf_token": token(client, "/desk/sign-in")}, **kwargs)


def act(client, delivery_id: int, action: str, **form):
    return client.post(f"/desk/delivery/{delivery_id}/{action}", data={"csrf_token": token(client), **form},
                       follow_redirects=True)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


# ---------------------------------------------------------------- sign-in, sessions, CSRF


def test_every_desk_page_needs_sign_in_and_unsubscribe_stays_open(desk1):
    client = desk1.client(signed_in=False)
    row = desk1.delivery(GROUNDING, "x")
    for url in ("/desk/", "/desk/?tab=held", f"/desk/post/{row.post_id}", f"/desk/delivery/{row.id}", "/desk/digest"):
        response = client.get(url)
        assert response.status_code == 302 and "/desk/sign-in?next=" in response.headers["Location"], url
    response = client.post(f"/desk/delivery/{row.id}/cancel", data={"csrf_token": token(client, "/desk/sign-in")})
    assert response.status_code == 302 and "/desk/sign-in" in response.headers["Location"]
    assert desk1.row(row.id).state == "planned"
    # The subscription pages: no sign-in, and one-click unsubscribe needs no CSRF token.
    unsubscribe = f"/unsubscribe/{subscribers.unsubscribe_token(desk1.settings, 'dana@example.org')}"
    assert client.get(unsubscribe).status_code == 200
    assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert subscribers.is_suppressed(desk1.factory, "dana@example.org")


def test_sign_in_goes_back_where_it_was_asked_and_never_elsewhere(desk1):
    client = desk1.app.test_client()
    post_id = desk1.delivery(GROUNDING, "x").post_id
    response = client.post(f"/desk/sign-in?next=/desk/post/{post_id}", data={
        "name": "Ana", "password": PASSWORD, "csrf_token": token(client, "/desk/sign-in")})
    assert response.status_code == 302 and response.headers["Location"] == f"/desk/post/{post_id}"
    assert client.get(f"/desk/post/{post_id}").status_code == 200
    for target in ("https://evil.example/", "//evil.example/desk", "/desk\\@evil.example"):
        other = desk1.app.test_client()
        response = other.post(f"/desk/sign-in?next={target}", data={
            "name": "ana", "password": PASSWORD, "csrf_token": token(other, "/desk/sign-in")})
        assert response.headers["Location"] == "/desk/", target


def test_wrong_passwords_are_refused_then_this_address_waits(desk1):
    client = desk1.app.test_client()
    for _ in range(auth.MAX_FAILURES):
        response = sign_in(client, password="not the password")
        assert response.status_code == 401 and "do not match" in text_of(response)
    response = sign_in(client)  # the right password, but this address waits a few minutes now
    assert response.status_code == 401 and "Too many tries" in text_of(response)
    elsewhere = desk1.app.test_client()  # another address is not locked out by these guesses
    assert sign_in(elsewhere, name="ana", environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 302
    with transaction(desk1.factory) as s:
        s.execute(update(SignInThrottle).values(window_start=datetime.now(UTC) - auth.LOCKOUT - timedelta(seconds=1)))
    assert sign_in(client).status_code == 302
    with transaction(desk1.factory) as s:
        refused = s.scalars(select(Event.detail).where(Event.action == "sign-in refused")).all()
        assert len(refused) == auth.MAX_FAILURES
        assert s.scalar(select(Event.detail).where(Event.action == "sign-in throttled")).startswith("5 tries")
        assert s.scalar(select(StaffUser.last_login_at)) is not None


def test_removing_an_account_or_changing_its_password_ends_its_sessions(desk1):
    client = desk1.client()
    assert client.get("/desk/").status_code == 200
    auth.add_user(desk1.factory, "ana", "another long password", replace=True)
    assert client.get("/desk/").status_code == 302
    sign_in(client, password="another long password")
    assert client.get("/desk/").status_code == 200
    assert auth.remove_user(desk1.factory, "ana")
    assert client.get("/desk/").status_code == 302


def test_sign_out_is_a_post_with_a_csrf_token(desk1):
    client = desk1.client()
    assert client.get("/desk/sign-out").status_code == 405
    assert client.post("/desk/sign-out").status_code == 400  # no token
    assert client.get("/desk/").status_code == 200
    response = client.post("/desk/sign-out", data={"csrf_token": token(client)})
    assert response.status_code == 302 and client.get("/desk/").status_code == 302


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(desk1):
    client = desk1.client()
    held = desk1.delivery(SENSITIVE, "pinterest")
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post(f"/desk/delivery/{held.id}/approve", data=data)
        assert response.status_code == 400 and "This form has expired" in text_of(response)
    assert desk1.row(held.id).state == "held"
    assert desk1.app.test_client().post("/desk/sign-in", data={"name": "ana", "password": PASSWORD}).status_code == 400


def test_passwords_are_stored_hashed_and_names_checked(desk1):
    with transaction(desk1.factory) as s:
        stored = s.scalar(select(StaffUser.password_hash).where(StaffUser.name == "ana"))
    assert PASSWORD not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    with pytest.raises(auth.AccountError, match="too short"):
        auth.add_user(desk1.factory, "ben", "short")
    with pytest.raises(auth.AccountError, match="already"):
        auth.add_user(desk1.factory, "ANA", "a long enough password")
    with pytest.raises(auth.AccountError, match="not a usable name"):
        auth.add_user(desk1.factory, "a b", "a long enough password")
    assert "staff_users" in table_names(desk1.factory.kw["bind"])


# ---------------------------------------------------------------- pages


def test_the_queue_by_post_and_by_channel_in_the_site_time_zone(desk1):
    client = desk1.client()
    page = text_of(client.get("/desk/"))
    assert "Upcoming" in page and "7 waiting for approval" not in page  # held: 5 social channels
    assert "5 waiting for approval" in page
    # Due 17:00 UTC = 12:00 in New York (EST) on Tue Nov 24.
    assert "Tue Nov 24, 12:00 PM" in page and "America/New York (EST)" in page
    assert GROUNDING in page and "Scheduled" in page
    held = text_of(client.get("/desk/?tab=held"))
    assert SENSITIVE in held and "Waiting for approval" in held and GROUNDING not in held
    by_channel = text_of(client.get("/desk/?tab=upcoming&by=channel"))
    assert by_channel.count("<h2>") >= len(CHANNELS) - 1
    for tab in ("sent", "failed", "unknown", "other", "bogus"):
        assert client.get(f"/desk/?tab={tab}").status_code == 200


def test_the_post_page_shows_every_channel_from_the_stored_payload(desk1):
    client = desk1.client()
    x = desk1.delivery(GROUNDING, "x")
    response = client.get(f"/desk/post/{x.post_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = text_of(response)
    # The email: sandboxed srcdoc iframes at 600 and 375 px, subject, preheader, text part, size.
    newsletter = desk1.delivery(GROUNDING, "newsletter")
    assert html.count('sandbox="allow-same-origin"') == 2 and 'width="600"' in html and 'width="375"' in html
    assert "allow-scripts" not in html
    assert newsletter.payload["subject"] in page and "Plain-text part" in page and "KB of 100 KB" in page
    assert newsletter.payload["preheader"][:60] in page
    # Each social post with the network's own count against its limit.
    for channel in ("x", "linkedin", "pinterest", "mastodon", "bluesky"):
        row = desk1.delivery(GROUNDING, channel)
        measured = actions.measure_snippet(row.kind, row.payload, CHANNELS[channel].get("options"))
        assert f'data-testid="count-{row.id}">{measured.count} / {measured.limit}<' in html, channel
        assert f'class="card card-{row.kind}"' in html
    assert rule_for("x").measure(x.payload["text"]) == actions.measure_snippet("x", x.payload).count
    assert "#Anxiety" in page and 'class="seg-tag"' in html and 'class="seg-link"' in html
    # What was stored is shown, not a fresh render: change the stored text and see it.
    with transaction(desk1.factory) as s:
        s.execute(update(Delivery).where(Delivery.id == x.id).values(payload={"text": "Stored text only"}))
    assert "Stored text only" in text_of(client.get(f"/desk/post/{x.post_id}"))


def test_desk_pages_load_nothing_from_elsewhere_and_run_no_inline_script(desk1):
    client = desk1.client()
    post_id = desk1.delivery(GROUNDING, "x").post_id
    for url in ("/desk/", f"/desk/post/{post_id}", "/desk/digest", "/desk/sign-in"):
        response = client.get(url)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        html = response.get_data(as_text=True)
        outside = html.split("srcdoc=")[0] if "srcdoc=" in html else html
        assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', outside), url
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url  # no inline script
    assert client.get("/desk/static/desk.js").status_code == 200
    assert client.get("/desk/static/desk.css").status_code == 200


def test_the_sensitive_post_says_why_its_social_posts_wait(desk1):
    client = desk1.client()
    row = desk1.delivery(SENSITIVE, "pinterest")
    page = text_of(client.get(f"/desk/post/{row.post_id}"))
    assert "Handle with care" in page and "self-harm" in page.lower()
    assert "Waiting because:" in page and page.count(">Approve</button>") == 5


def test_the_next_digest_edition_as_it_would_be_sent_now(make_settings, demo_feed_path):
    channels = {**CHANNELS, "weekly": {"kind": "email", "provider": "outbox", "mode": "digest", "to": ["r@example.org"],
                                       "digest": {"every": "week", "day": "tue", "at": "09:00"}}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels)
    page = text_of(desk.client().get("/desk/digest"))
    assert "Next digest editions" in page and "weekly" in page and "Goes out" in page
    # The demo's posts were first seen at NOW, after that morning's edition (skipped: nothing
    # new then); a day later the next edition (Tue Dec 1, 09:00 New York) holds all five.
    from syndicate.web.desk.previews import next_digests

    with transaction(desk.factory) as s:
        (edition,) = next_digests(s, desk.settings, NOW + timedelta(days=1))
    assert edition.channel == "weekly" and edition.at == datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    assert len(edition.titles) == 5 and edition.email is not None and edition.email.size < 100_000
    assert "srcdoc" not in edition.email.html and edition.email.subject


# ---------------------------------------------------------------- actions


def test_approve_a_held_delivery_records_who_and_when(desk):
    client = desk.client()
    row = desk.delivery(SENSITIVE, "pinterest")
    page = text_of(act(client, row.id, "approve"))
    assert "Approved. Pinterest (pinterest) goes out" in page
    assert desk.row(row.id).state == "planned"
    event = desk.events(row.id)[-1]
    assert (event.actor, event.from_state, event.to_state) == ("desk:ana", "held", "planned")
    assert "ana" in page and "approve" in page  # shown in the history on the post page
    again = text_of(act(client, row.id, "approve"))
    assert "Nothing was changed: cannot approve a delivery that is planned (only held)." in again


def test_an_action_on_a_delivery_a_worker_claimed_is_refused(desk):
    client = desk.client()
    row = desk.delivery(GROUNDING, "x")
    claim = claim_one(desk.factory, row.id, datetime.now(UTC), ttl=timedelta(minutes=5), actor="worker:test")
    assert claim is not None
    before = desk.row(row.id)
    for action, form in (("hold", {}), ("cancel", {}), ("send-now", {}), ("approve", {}),
                         ("reschedule", {"when": "2030-01-02T09:00"}), ("edit", {"text": "Changed"})):
        page = text_of(act(client, row.id, action, **form))
        assert "A worker has already picked this delivery up" in page, action
        assert "is claimed" in page, action
    after = desk.row(row.id)
    assert (after.state, after.claim_token, after.payload, after.due_at) == ("claimed", claim.token, before.payload,
                                                                             before.due_at)
    page = text_of(desk.client().get(f"/desk/post/{row.post_id}"))
    assert "A worker is sending this right now" in page


def test_edit_a_tweet_within_the_limit_is_stored_and_recorded(desk):
    client = desk.client()
    row = desk.delivery(GROUNDING, "x")
    new = "Five small ways back to the present 🌿 https://harborwellness.example/2026/11/02/five/ #Calm"
    page = text_of(act(client, row.id, "edit", text=new.replace(" #", "\r\n#")))
    assert "Saved. The new text for X (x) is what will be sent." in page
    stored = desk.row(row.id).payload
    assert stored["text"] == new.replace(" #", "\n#")
    event = desk.events(row.id)[-1]
    assert event.action == "edit" and event.actor == "desk:ana" and row.payload["text"] in event.detail
    assert f"{rule_for('x').measure(stored['text'])} / 280" in page


def test_edit_past_the_limit_is_refused_and_the_text_kept_on_the_page(desk):
    client = desk.client()
    row = desk.delivery(GROUNDING, "x")
    long = "Breathe. " * 40
    response = client.post(f"/desk/delivery/{row.id}/edit", data={"csrf_token": token(client), "text": long})
    # Post/redirect/get: back to the page, where the message and the text as typed wait (once).
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/desk/post/{row.post_id}#d{row.id}")
    page = text_of(client.get(f"/desk/post/{row.post_id}"))
    count = rule_for("x").measure(long.strip())
    assert f"Too long for X: {count} of 280 characters as X counts them ({count - 280} over); nothing was changed." \
        in page
    assert long.strip()[:200] in page  # the draft is still in the textarea
    assert long.strip()[:200] not in text_of(client.get(f"/desk/post/{row.post_id}"))  # a reload: the stored text
    assert desk.row(row.id).payload == row.payload
    assert [e.action for e in desk.events(row.id)] == [e.action for e in desk.events(row.id) if e.action != "edit"]


def test_x_counts_links_as_23_and_emoji_as_2_when_editing(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "x")
    link = "https://harborwellness.example/" + "a" * 300  # 331 characters, counted as 23
    fits = "🌿" * 128 + " " + link  # 256 + 1 + 23 = 280
    assert "Saved." in text_of(act(client, row.id, "edit", text=fits))
    too_long = "🌿" * 129 + " " + link  # 282
    assert "Too long for X: 282 of 280" in text_of(act(client, row.id, "edit", text=too_long))


def test_edit_a_bluesky_post_recomputes_its_facets(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "bluesky")
    shown = row.payload["facets"][0]
    link = shown["features"][0]["uri"]
    text_before = row.payload["text"]
    start, end = shown["index"]["byteStart"], shown["index"]["byteEnd"]
    display = text_before.encode()[start:end].decode()
    new = f"Grounding, gently ✨ {display} #SelfCare"
    assert "Saved." in text_of(act(client, row.id, "edit", text=new))
    payload = desk1.row(row.id).payload
    assert payload["text"] == new
    data = new.encode()
    spans = {data[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(): f["features"][0] for f in payload["facets"]}
    assert spans[display] == {"$type": "app.bsky.richtext.facet#link", "uri": link}
    assert spans["#SelfCare"] == {"$type": "app.bsky.richtext.facet#tag", "tag": "SelfCare"}
    too_long = "x" * 301
    assert "Too long for Bluesky: 301 of 300" in text_of(act(client, row.id, "edit", text=too_long))


def test_edit_a_linkedin_post_in_plain_text_stores_little_text(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "linkedin")
    page = text_of(client.get(f"/desk/post/{row.post_id}"))
    assert "{hashtag|" not in page  # people read and edit plain text
    new = "Grounding (five ways) for *anxious* moments #Anxiety"
    assert "Saved." in text_of(act(client, row.id, "edit", text=new))
    stored = desk1.row(row.id).payload["commentary"]
    assert stored == r"Grounding \(five ways\) for \*anxious\* moments {hashtag|\#|Anxiety}"
    assert actions.from_little_text(stored) == new


def test_mastodon_limit_leaves_room_for_the_content_warning(desk1):
    row = desk1.delivery(SENSITIVE, "mastodon")
    warning = row.payload["spoiler_text"]
    measured = actions.measure_snippet("mastodon", row.payload)
    assert warning and measured.limit == 500 - len(warning)
    client = desk1.client()
    page = text_of(act(client, row.id, "edit", text="a" * (measured.limit + 1)))
    assert f"Too long for Mastodon: {measured.limit + 1} of {measured.limit}" in page


def test_an_edit_against_a_stale_row_is_refused(desk):
    row = desk.delivery(GROUNDING, "threads") or desk.delivery(GROUNDING, "x")
    new, _ = actions.with_snippet(row.kind, row.payload, "First edit")
    actions.edit_payload(desk.factory, row.id, new, "desk:ana", "edit one", expect_updated_at=row.updated_at)
    with pytest.raises(actions.ActionRefused, match="changed while you acted"):
        actions.edit_payload(desk.factory, row.id, new, "desk:ben", "edit two", expect_updated_at=row.updated_at)
    with pytest.raises(actions.ActionRefused, match="unchanged"):
        actions.edit_text(desk.factory, row.id, "First edit", "desk:ana")
    with pytest.raises(actions.ActionRefused, match="empty"):
        actions.edit_text(desk.factory, row.id, "   \r\n ", "desk:ana")


def test_hold_reschedule_and_cancel(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "x")
    assert "Held." in text_of(act(client, row.id, "hold", reason="checking the wording"))
    assert desk1.row(row.id).state == "held" and desk1.row(row.id).hold_reason == "checking the wording"
    # 09:00 on Tue Dec 1 in New York (EST, UTC-5) is 14:00 UTC.
    page = text_of(act(client, row.id, "reschedule", when="2030-12-03T09:00"))
    assert "Rescheduled to Tue Dec 3 2030, 9:00 AM. X (x) is still held" in page
    assert desk1.row(row.id).due_at == datetime(2030, 12, 3, 14, 0, tzinfo=UTC)
    assert desk1.row(row.id).state == "held"  # a new time is not an approval
    # Summer time: 09:00 EDT is 13:00 UTC; a time in the spring-forward gap moves forward.
    act(client, row.id, "reschedule", when="2030-07-02T09:00")
    assert desk1.row(row.id).due_at == datetime(2030, 7, 2, 13, 0, tzinfo=UTC)
    act(client, row.id, "reschedule", when="2030-03-10T02:30")
    assert desk1.row(row.id).due_at == datetime(2030, 3, 10, 7, 30, tzinfo=UTC)  # = 03:30 EDT
    assert "has already passed" in text_of(act(client, row.id, "reschedule", when="2020-01-01T09:00"))
    assert "is not a date and time" in text_of(act(client, row.id, "reschedule", when="soon"))
    assert "Cancelled." in text_of(act(client, row.id, "cancel"))
    assert desk1.row(row.id).state == "cancelled"
    assert "cannot cancel a delivery that is cancelled" in text_of(act(client, row.id, "cancel"))
    assert [e.actor for e in desk1.events(row.id)][-5:] == ["desk:ana"] * 5


def test_send_now_sends_at_once_through_the_provider(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "x")
    page = text_of(act(client, row.id, "send-now"))
    assert "Sent. X (x) went out just now." in page
    assert desk1.row(row.id).state == "sent"
    assert (desk1.settings.outbox_dir / "x" / f"{row.id}.json").is_file()
    assert "cannot send now a delivery that is sent" in text_of(act(client, row.id, "send-now"))
    held = desk1.delivery(SENSITIVE, "pinterest")  # a held one only by "Approve and send now"
    page = text_of(client.get(f"/desk/post/{held.post_id}"))
    assert "Approve and send now" in page
    assert "it is held (sensitive topic" in text_of(act(client, held.id, "send-now"))
    assert desk1.row(held.id).state == "held"
    assert "Sent." in text_of(act(client, held.id, "send-now", approve="1"))
    assert [e.detail for e in desk1.events(held.id) if e.from_state == "held"] == ["approve and send now"]


def test_reschedule_never_releases_a_safe_messaging_hold(desk):
    """Newcomer probe #77 / security F7: Reschedule moved a held self-harm post to planned."""
    client = desk.client()
    row = desk.delivery(SENSITIVE, "mastodon")
    assert row.state == "held" and "sensitive" in row.hold_reason
    page = text_of(act(client, row.id, "reschedule", when="2030-12-03T09:00"))
    assert "still held" in page
    after = desk.row(row.id)
    assert (after.state, after.hold_reason) == ("held", row.hold_reason)
    assert after.due_at == datetime(2030, 12, 3, 14, 0, tzinfo=UTC)
    event = desk.events(row.id)[-1]
    assert (event.from_state, event.to_state, event.actor) == ("held", "held", "desk:ana")
    assert event.detail.startswith("reschedule to 2030-12-03T14:00")
    # A planned delivery rescheduled stays planned.
    planned = desk.delivery(GROUNDING, "mastodon")
    actions.reschedule(desk.factory, planned.id, datetime(2030, 12, 3, 14, 0, tzinfo=UTC), "desk:ana")
    assert desk.row(planned.id).state == "planned"
    # When that time comes, the dispatcher sends the planned one and still not the held one.
    run_once(desk.settings, datetime(2030, 12, 3, 15, 0, tzinfo=UTC))
    assert (desk.row(row.id).state, desk.row(planned.id).state) == ("held", "sent")


def test_settle_an_unknown_delivery(desk):
    client = desk.client()
    rows = [desk.delivery(GROUNDING, ch) for ch in ("x", "linkedin", "bluesky")]
    with transaction(desk.factory) as s:
        s.execute(update(Delivery).where(Delivery.id.in_([r.id for r in rows]))
                  .values(state="unknown", last_error="timeout after the request was sent"))
    page = text_of(client.get(f"/desk/post/{rows[0].post_id}"))
    assert "It did go out" in page and "Send it again" in page and "timeout after the request was sent" in page
    for row, outcome, state in zip(rows, ("sent", "retry", "cancel"), ("sent", "planned", "cancelled"), strict=True):
        assert "Settled." in text_of(act(client, row.id, "resolve", outcome=outcome))
        assert desk.row(row.id).state == state
        assert desk.events(row.id)[-1].actor == "desk:ana"
    assert "choose sent, retry or cancel" in text_of(act(client, rows[1].id, "resolve", outcome="maybe"))


def test_settle_the_unknown_recipients_of_an_email_delivery_one_by_one_and_all_at_once(desk):
    """An email send left three recipients of unknown outcome: the delivery page names them, a
    person settles one (has it), then the rest at once (mail again): the delivery goes back to
    planned and only those two are claimable."""
    client = desk.client()
    row = desk.delivery(GROUNDING, "newsletter")
    people = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org"]
    with transaction(desk.factory) as s:
        s.execute(update(Delivery).where(Delivery.id == row.id)
                  .values(state="unknown", last_error="3 recipients may or may not have the message"))
        for address, state in zip(people, ("sent", "unknown", "unknown", "unknown"), strict=True):
            s.add(RecipientSend(delivery_id=row.id, recipient=address, state=state, attempts=1))
    page = text_of(client.get(f"/desk/post/{row.post_id}"))
    assert "3 recipients may or may not have this email" in page
    assert all(p in page for p in people[1:]) and "Mail them all again" in page
    done = text_of(act(client, row.id, "resolve", outcome="sent", recipient=people[1]))
    assert "Settled: ben@example.org marked as having it" in done and desk.row(row.id).state == "unknown"
    assert "ben@example.org" not in text_of(client.get(f"/desk/post/{row.post_id}")).split("may or may not")[1]
    done = text_of(act(client, row.id, "resolve", outcome="retry", all_unknown="1"))
    assert "Settled: 2 recipients will be mailed again" in done and desk.row(row.id).state == "planned"
    with transaction(desk.factory) as s:
        states = dict(s.execute(select(RecipientSend.recipient, RecipientSend.state)
                                .where(RecipientSend.delivery_id == row.id)).all())
    assert states == {people[0]: "sent", people[1]: "sent", people[2]: "deferred", people[3]: "deferred"}
    assert [e.detail for e in desk.events(row.id) if e.action.startswith("recipient")] == [
        "ben@example.org: unknown -> sent", "cleo@example.org: unknown -> deferred",
        "dev@example.org: unknown -> deferred"]
    refused = text_of(act(client, row.id, "resolve", outcome="sent", recipient=people[0]))
    assert "only recipients of unknown outcome can be settled: ana@example.org (sent)" in refused


def test_unknown_actions_and_deliveries_are_404(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "x")
    assert client.post(f"/desk/delivery/{row.id}/explode", data={"csrf_token": token(client)}).status_code == 404
    assert client.post("/desk/delivery/99999/approve", data={"csrf_token": token(client)}).status_code == 404
    assert client.get("/desk/post/99999").status_code == 404


# ---------------------------------------------------------------- test emails


def test_send_a_test_email_through_the_channels_smtp_server(make_settings, demo_feed_path, store_url):
    with SmtpServer() as server:
        channels = {**CHANNELS, "newsletter": {
            "kind": "email", "provider": "smtp", "delay": "2h", "to": ["reader@example.org"],
            "from_address": "news@harborwellness.example",
            "options": {"host": "127.0.0.1", "port": server.port, "security": "none", "timeout": 10}}}
        desk = make_desk(make_settings, demo_feed_path, store_url, channels=channels)
        client = desk.client()
        row = desk.delivery(GROUNDING, "newsletter")
        page = text_of(act(client, row.id, "test-email", address="Staff.Member@Example.org"))
        assert "Test email sent to Staff.Member@Example.org (via SMTP 127.0.0.1:" in page
        assert server.handler.counts() == {"staff.member@example.org": 1}
        message = message_from_bytes(server.handler.received[0].data, policy=policy.default)
        assert message["Subject"] == f"[Test] {row.payload['subject']}"
        assert message["List-Unsubscribe"] and message.get_body(("html",)) is not None
    after = desk.row(row.id)
    assert after.state == "planned" and after.attempts == 0  # not the delivery being sent
    with transaction(desk.factory) as s:
        assert s.scalars(select(RecipientSend).where(RecipientSend.delivery_id == row.id)).all() == []
    event = desk.events(row.id)[-1]
    assert (event.action, event.actor) == ("test email", "desk:ana") and "staff.member@example.org" in event.detail


def test_test_email_refusals_and_the_outbox_fallback(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "newsletter")
    assert "is not an email address" in text_of(act(client, row.id, "test-email", address="not an address"))
    subscribers.suppress(desk1.factory, "gone@example.org", reason="unsubscribed")
    assert "has unsubscribed" in text_of(act(client, row.id, "test-email", address="gone@example.org"))
    x = desk1.delivery(GROUNDING, "x")
    assert "is not an email" in text_of(act(client, x.id, "test-email", address="me@example.org"))
    page = text_of(act(client, row.id, "test-email", address="me@example.org"))
    assert "written to the outbox (newsletter/tests/" in page
    written = list((desk1.settings.outbox_dir / "newsletter" / "tests").glob(f"{row.id}-*.eml"))
    assert len(written) == 1 and b"[Test]" in written[0].read_bytes()


def test_test_smtp_option_for_channels_without_their_own_mail_server(make_settings, demo_feed_path):
    with SmtpServer() as server:
        channels = {**CHANNELS, "newsletter": {**CHANNELS["newsletter"], "options": {
            "test_smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"}}}}
        desk = make_desk(make_settings, demo_feed_path, channels=channels)
        row = desk.delivery(GROUNDING, "newsletter")
        assert "via SMTP 127.0.0.1" in text_of(act(desk.client(), row.id, "test-email", address="qa@example.org"))
        assert server.handler.counts() == {"qa@example.org": 1}


def test_a_held_digest_edition_is_previewed_approved_and_sent_from_its_own_page(make_settings, demo_feed_path):
    channels = {**CHANNELS, "weekly": {"kind": "email", "provider": "outbox", "mode": "digest", "hold": True,
                                       "to": ["r@example.org"], "digest": {"every": "week", "day": "tue", "at": "09:00"}}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels)
    run_once(desk.settings, NOW + timedelta(days=7))  # the next Tuesday's edition holds the five posts
    with transaction(desk.factory) as s:
        edition = s.scalar(select(Delivery).where(Delivery.channel == "weekly", Delivery.state == "held"))
    client = desk.client()
    assert "Digest edition 2026-W49" in text_of(client.get("/desk/?tab=held"))
    page = text_of(client.get(f"/desk/delivery/{edition.id}"))
    assert edition.payload["subject"] in page and "srcdoc=" in page and ">Approve</button>" in page
    assert "Approved." in text_of(act(client, edition.id, "approve"))
    assert "written to the outbox" in text_of(act(client, edition.id, "test-email", address="me@example.org"))
    assert "Sent. Email (weekly) went out just now." in text_of(act(client, edition.id, "send-now"))
    assert desk.row(edition.id).state == "sent"
    post_row = desk.delivery(GROUNDING, "x")  # a post's delivery page is the post page
    assert client.get(f"/desk/delivery/{post_row.id}").headers["Location"] == f"/desk/post/{post_row.post_id}#d{post_row.id}"


def test_a_stored_provider_link_is_shown_only_when_it_is_a_web_link(desk1):
    """Security probe row 47: a link stored before adapters checked it (or written by hand)
    must not become a `javascript:` href on the desk."""
    row = desk1.delivery(GROUNDING, "x")
    for url, shown in (("https://x.example/status/1", True), ("javascript:alert(1)", False)):
        with transaction(desk1.factory) as s:
            s.execute(update(Delivery).where(Delivery.id == row.id).values(state="sent", provider_url=url))
        html = desk1.client().get(f"/desk/post/{row.post_id}").get_data(as_text=True)
        assert (f'href="{url}"' in html) is shown
        assert "javascript:" not in html


def test_an_image_channel_is_previewed_with_its_picture_not_the_link_card(make_settings, demo_feed_path):
    """A channel with `media = "image"` posts the picture in place of the card: the desk shows
    what the network will show, with the alt text, and says the card is the fallback."""
    channels = {"x": {"kind": "x", "provider": "outbox", "delay": "2h", "options": {"media": "image"}},
                "bluesky": {"kind": "bluesky", "provider": "outbox", "delay": "2h"}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels)
    with transaction(desk.factory) as s:
        rows = list(s.scalars(select(Delivery).where(Delivery.channel == "x")))
    with_image = [r for r in rows if (r.payload or {}).get("_image_url")]
    assert with_image, "the demo feed has posts with a featured image"
    row = with_image[0]
    html = desk.client().get(f"/desk/post/{row.post_id}").get_data(as_text=True)
    x_part = html[html.index('aria-label="X preview"'):]
    x_part = x_part[:x_part.index("</article>")]
    assert f'src="{row.payload["_image_url"]}"' in x_part and 'class="media"' in x_part
    assert 'class="linkcard"' not in x_part  # the picture, not the card
    assert "in place of the link card" in html
    bluesky_part = html[html.index('aria-label="Bluesky preview"'):]
    assert 'class="linkcard"' in bluesky_part[:bluesky_part.index("</article>")]  # a card channel keeps its card
