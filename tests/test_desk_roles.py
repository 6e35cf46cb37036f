"""Desk roles, subject and preheader editing, the calendar and the send-time diff, through
Flask's test client (the browser tests drive the same in Chromium)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from test_desk import GROUNDING, NOW, PASSWORD, SENSITIVE, act, make_desk, sign_in, text_of, token

from syndicate.cli import main
from syndicate.engine.digest import save_edition_overrides
from syndicate.engine.fresh import REFRESHED
from syndicate.engine.runner import run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Event, StaffUser
from syndicate.render.email import PREHEADER_LENGTH, SUBJECT_MAX
from syndicate.web import auth, roles


def _user(desk, name: str, role: str):
    auth.add_user(desk.factory, name, PASSWORD)
    roles.set_role(desk.factory, name, role)
    client = desk.app.test_client()
    sign_in(client, name)
    return client


def test_an_editor_is_refused_approval_with_403_and_sees_no_button(make_settings, demo_feed_path, caplog):
    desk = make_desk(make_settings, demo_feed_path)
    held = desk.delivery(SENSITIVE, "x")
    assert held.state == "held"
    editor = _user(desk, "eddie", "editor")
    page = editor.get(f"/desk/post/{held.post_id}").get_data(as_text=True)
    assert f'data-testid="approve-{held.id}"' not in page and "An approver releases it." in page
    assert 'name="text"' in page  # an editor edits
    with caplog.at_level(logging.WARNING, logger="syndicate.web.roles"):
        for action in ("approve", "send-now", "cancel"):
            response = editor.post(f"/desk/delivery/{held.id}/{action}", data={"csrf_token": token(editor)})
            assert response.status_code == 403, action
            assert "needs the approver role" in text_of(response)
    assert desk.row(held.id).state == "held"
    assert sum("eddie (editor) may not approve" in r.getMessage() for r in caplog.records) == 1
    # Bulk approval is refused the same way.
    response = editor.post("/desk/bulk", data={"csrf_token": token(editor), "tab": "held", "action": "approve",
                                               "id": str(held.id)})
    assert response.status_code == 403 and desk.row(held.id).state == "held"
    # What an editor may do, it does.
    assert act(editor, held.id, "reschedule", when="2026-12-01T09:00").status_code == 200
    approver = _user(desk, "april", "approver")
    assert f'data-testid="approve-{held.id}"' in approver.get(f"/desk/post/{held.post_id}").get_data(as_text=True)
    assert "Approved." in text_of(act(approver, held.id, "approve"))
    assert desk.row(held.id).state == "planned"


def test_two_person_rule_for_a_sensitive_post(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path, safety={"two_person_rule": True})
    held = desk.delivery(SENSITIVE, "mastodon")
    april, bea = _user(desk, "april", "approver"), _user(desk, "bea", "approver")
    act(april, held.id, "edit", text="A gentle note on a hard subject. https://harborwellness.example/teen")
    page = text_of(act(april, held.id, "approve"))
    assert "someone else must approve it (two-person rule)" in page and desk.row(held.id).state == "held"
    assert "Approved." in text_of(act(bea, held.id, "approve"))
    # A post that is not sensitive: the editor may approve their own edit.
    other = desk.delivery(GROUNDING, "mastodon")
    act(april, other.id, "hold")
    act(april, other.id, "edit", text="Grounding, in our words. https://harborwellness.example/g")
    assert "Approved." in text_of(act(april, other.id, "approve"))


def test_users_add_role_first_admin_then_editor(make_settings, demo_feed_path, tmp_path, monkeypatch, capsys):
    desk = make_desk(make_settings, demo_feed_path)
    with transaction(desk.factory) as s:
        s.execute(update(StaffUser).values(role="admin"))
        assert s.scalar(select(StaffUser.role).where(StaffUser.name == "ana")) == "admin"
    config = tmp_path / "settings.toml"
    config.write_text(f'[site]\nname = "H"\nurl = "https://h.example"\n[store]\nurl = "{desk.settings.store_url}"\n')
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["--config", str(config), "users", "add", "dana", "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(PASSWORD + "\n"))
    assert main(["--config", str(config), "users", "add", "pat", "--password-stdin", "--role", "approver"]) == 0
    assert roles.roles_by_name(desk.factory) == {"ana": "admin", "dana": "editor", "pat": "approver"}
    assert main(["--config", str(config), "users", "role", "dana", "admin"]) == 0
    assert roles.roles_by_name(desk.factory)["dana"] == "admin"
    assert "dana (editor) can now sign in" in capsys.readouterr().out


def test_edit_an_email_subject_and_preheader_rerenders_it(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path)
    client = desk.client()
    row = desk.delivery(GROUNDING, "newsletter")
    page = client.get(f"/desk/post/{row.post_id}").get_data(as_text=True)
    assert f'data-testid="subject-{row.id}"' in page and f'data-count="{SUBJECT_MAX}"' in page
    done = act(client, row.id, "edit-email", subject="Five ways to feel grounded today",
               preheader="Small skills for a big day.")
    assert "goes out with the new subject and preheader" in text_of(done)
    stored = desk.row(row.id).payload
    assert stored["subject"] == "Five ways to feel grounded today" and stored["_edited"] == ["preheader", "subject"]
    assert "Small skills for a big day." in stored["html"]  # the preheader is inside the HTML: rendered again
    assert desk.events(row.id)[-1].action == "edit"
    # Too long: refused, redirected back, and the typed text shown again.
    long = "x" * (SUBJECT_MAX + 5)
    response = client.post(f"/desk/delivery/{row.id}/edit-email",
                           data={"csrf_token": token(client), "subject": long, "preheader": "p" * PREHEADER_LENGTH})
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert f"The subject is too long: {SUBJECT_MAX + 5} of {SUBJECT_MAX} characters (5 over)" in page
    assert f'value="{long}"' in page
    assert desk.row(row.id).payload["subject"] == "Five ways to feel grounded today"


def test_digest_subjects_before_and_after_the_edition_is_planned(make_settings, demo_feed_path):
    channels = {"weekly": {"kind": "email", "provider": "outbox", "mode": "digest", "hold": True,
                           "to": ["r@example.org"], "digest": {"every": "week", "day": "tue", "at": "09:00"}}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels)
    client = desk.client()
    # The next edition (as the desk sees it now) keeps a person's subject.
    page = client.get("/desk/digest").get_data(as_text=True)
    if 'data-testid="subject-digest:weekly"' in page:  # an edition with posts to preview
        response = client.post("/desk/digest/weekly/edit", data={"csrf_token": token(client, "/desk/digest"),
                                                                  "subject": "This week at Harbor", "preheader": ""})
        assert response.status_code == 302
        assert "This week at Harbor" in client.get("/desk/digest").get_data(as_text=True)
    # An override saved for edition 2026-W49 is used when that edition is planned.
    save_edition_overrides(desk.factory, "weekly", "2026-W49", {"subject": "Five posts for a calm week",
                                                                 "preheader": "Grounding, sleep, and more."}, "desk:ana")
    run_once(desk.settings, NOW + timedelta(days=7))
    with transaction(desk.factory) as s:
        edition = s.scalar(select(Delivery).where(Delivery.channel == "weekly", Delivery.state == "held"))
    assert edition.payload["subject"] == "Five posts for a calm week"
    assert "Grounding, sleep, and more." in edition.payload["html"]
    # The planned edition is edited from its own page, rendered again from its posts.
    assert "new subject" in text_of(act(client, edition.id, "edit-email", subject="Our week, in five posts",
                                        preheader="Read when you have a quiet minute."))
    stored = desk.row(edition.id).payload
    assert stored["subject"] == "Our week, in five posts" and stored["edition"] == edition.payload["edition"]
    assert "Read when you have a quiet minute." in stored["html"]


def test_calendar_week_and_month_in_local_days(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path)
    client = desk.client()
    row = desk.delivery(GROUNDING, "x")
    # 03:30 UTC on Sunday Nov 1 2026 is 23:30 EDT on Saturday Oct 31 in New York (the clocks fall back at 06:00 UTC).
    with transaction(desk.factory) as s:
        s.execute(update(Delivery).where(Delivery.id == row.id).values(due_at=datetime(2026, 11, 1, 3, 30, tzinfo=UTC)))
    page = client.get("/desk/calendar?start=2026-10-29").get_data(as_text=True)
    cell = page.split('data-testid="cal-x-2026-10-31"')[1].split("</td>")[0]
    assert f'data-testid="cal-entry-{row.id}"' in cell and "11:30 PM" in cell
    month = client.get("/desk/calendar?view=month&start=2026-10-05").get_data(as_text=True)
    assert f'data-testid="cal-entry-{row.id}"' in month.split('data-testid="cal-day-2026-10-31"')[1].split("</td>")[0]


def test_calendar_shades_quiet_hours_and_the_send_window(make_settings, demo_feed_path):
    channels = {"x": {"kind": "x", "provider": "outbox", "quiet_hours": {"start": "22:00", "end": "07:00"},
                      "send_window": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00", "end": "20:00"}}}
    desk = make_desk(make_settings, demo_feed_path, channels=channels)
    page = desk.client().get("/desk/calendar?start=2026-11-23").get_data(as_text=True)
    monday = page.split('data-testid="cal-x-2026-11-23"')[1].split("</td>")[0]
    hours = [part.split('"')[0] for part in monday.split('class="h h-')[1:]]
    assert hours[:6] == ["closed"] * 6 and hours[6] == "quiet" and hours[7:20] == ["open"] * 13
    assert hours[20:] == ["closed"] * 4
    saturday = page.split('data-testid="cal-x-2026-11-28"')[1].split("</td>")[0]
    assert saturday.count("h h-closed") == 24


def test_the_desk_shows_the_diff_after_the_feeds_copy_changed(make_settings, demo_feed_path):
    desk = make_desk(make_settings, demo_feed_path)
    row = desk.delivery(GROUNDING, "x")
    new_text = row.payload["text"].replace("Five", "Six", 1)
    with transaction(desk.factory) as s:
        s.add(Event(delivery_id=row.id, actor="worker:w1", action=REFRESHED, at=datetime.now(UTC) - timedelta(1),
                    detail=json.dumps({"from": "a", "to": "b", "kept": [],
                                                     "before": {"text": row.payload["text"]},
                                                     "after": {"text": new_text}})))
    page = desk.client().get(f"/desk/post/{row.post_id}").get_data(as_text=True)
    diff = page.split(f'data-testid="diff-{row.id}"')[1].split("</section>")[0]
    assert "<del>Five</del>" in diff and "<ins>Six</ins>" in diff
