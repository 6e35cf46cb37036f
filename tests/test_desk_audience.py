"""The desk's audience controls: "keep this post out of email" before the send (its email
deliveries not yet sent are cancelled, in the audit trail, editor or above) and the Audience
page's counts (the same function as `syndicate subscribers list`)."""

from __future__ import annotations

from sqlalchemy import select
from test_desk import GROUNDING, NOW, PASSWORD, make_desk, sign_in, text_of, token

from syndicate.audience import preferences
from syndicate.engine.runner import run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Event, Subscriber
from syndicate.web import auth, roles


def _user(desk, name: str, role: str):
    auth.add_user(desk.factory, name, PASSWORD)
    roles.set_role(desk.factory, name, role)
    client = desk.app.test_client()
    sign_in(client, name)
    return client


def test_keeping_a_post_out_of_email_cancels_its_unsent_emails(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path)
    email, social = desk.delivery(GROUNDING, "newsletter"), desk.delivery(GROUNDING, "x")
    assert email.state == "planned" and social.state in ("planned", "held")
    page = f"/desk/post/{email.post_id}"
    # Below editor there is no role; an editor sees the toggle and may use it.
    editor = _user(desk, "eddie", "editor")
    assert "Keep this post out of email" in editor.get(page).get_data(as_text=True)
    done = editor.post(f"{page}/no-email", data={"csrf_token": token(editor, page), "keep": "1"},
                       follow_redirects=True)
    assert "Kept out of email; 1 email cancelled." in text_of(done)
    assert desk.row(email.id).state == "cancelled"
    assert desk.row(social.id).state == social.state  # social posts are not email
    with transaction(desk.factory) as s:
        trail = [(e.actor, e.action, e.detail) for e in s.scalars(select(Event).order_by(Event.id))]
    assert ("desk:eddie", "no-email", f"post {email.post_id}: kept out of email; cancelled 1 email deliveries") in trail
    assert ("desk:eddie", "cancelled", "kept out of email") in trail
    # The engine does not send it, and letting the post back in does not revive the cancelled email.
    run_once(desk.settings, NOW)
    assert desk.row(email.id).state == "cancelled"
    back = editor.post(f"{page}/no-email", data={"csrf_token": token(editor, page), "keep": "0"},
                       follow_redirects=True)
    assert "Email may carry this post again" in text_of(back) and desk.row(email.id).state == "cancelled"


def test_the_toggle_needs_a_signed_in_editor_and_a_csrf_token(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path)
    email = desk.delivery(GROUNDING, "newsletter")
    anonymous = desk.app.test_client()
    assert anonymous.post(f"/desk/post/{email.post_id}/no-email", data={"keep": "1"}).status_code in (302, 400, 401, 403)
    editor = _user(desk, "eddie", "editor")
    assert editor.post(f"/desk/post/{email.post_id}/no-email", data={"keep": "1"}).status_code in (400, 403)
    assert desk.row(email.id).state == "planned"
    assert not roles.may(None, "no-email") and roles.may("editor", "no-email")


def test_the_audience_page_shows_the_cli_counts(make_settings, demo_feed_path):
    channels = {"news": {"kind": "email", "provider": "outbox", "options": {"audience": "subscribers"}},
                "weekly": {"kind": "email", "provider": "outbox", "mode": "digest",
                           "digest": {"every": "week", "day": "tue", "at": "09:00"},
                           "options": {"audience": "subscribers"}}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels,
                     audience={"topics": {"anxiety": {"label": "Anxiety and stress", "categories": ["Anxiety"]}}})
    with transaction(desk.factory) as s:
        s.add_all([Subscriber(email=a, status="active", source="test") for a in ("ana@example.org", "ben@example.org")])
        s.flush()
        ana = s.scalar(select(Subscriber).where(Subscriber.email == "ana@example.org"))
        preferences.save(s, desk.settings, ana, ["week"], ["anxiety"])
    client = desk.app.test_client()
    sign_in(client)
    page = client.get("/desk/audience").get_data(as_text=True)
    with transaction(desk.factory) as s:
        counts = preferences.audience_counts(s, desk.settings)
    assert counts["channels"] == {"news": 1, "weekly": 2}
    text = " ".join(page.split())
    assert "2 active" in text
    assert '<th scope="row">news</th><td>1</td>' in text and '<th scope="row">weekly</th><td>2</td>' in text
    assert '<th scope="row">Anxiety and stress</th><td>1</td>' in text
    assert '<th scope="row">The weekly digest</th><td>1</td>' in text
    assert '<th scope="row">Every list channel (never chose)</th><td>1</td>' in text
