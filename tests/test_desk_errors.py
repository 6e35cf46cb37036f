"""Errors a person can read in the desk: a failure in plain words with the raw text one click
away, a reschedule to the end of the calendar refused with its reason (never a 500), and the
favicon (no 404 in the browser console)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from syndicate.engine.failures import explain
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery
from tests import test_desk
from tests.test_desk import GROUNDING, act, text_of

secret_env = test_desk._secret  # the desk's signing key (an autouse fixture)


@pytest.fixture
def desk1(make_settings, demo_feed_path):
    return test_desk.make_desk(make_settings, demo_feed_path)

MASTODON_401 = "Mastodon 401: The access token is invalid (posting the status)"
MJML = "post.mjml: MJML could not compile the email: unable to parse next template in root template"


def fail(desk, delivery_id: int, error: str, error_class: str, state: str = "failed") -> None:
    with transaction(desk.factory) as s:
        s.execute(update(Delivery).where(Delivery.id == delivery_id)
                  .values(state=state, last_error=error, error_class=error_class))


def test_a_failure_reads_in_plain_words_with_the_raw_text_one_click_away(desk1):
    masto = desk1.delivery(GROUNDING, "mastodon")
    email = desk1.delivery(GROUNDING, "newsletter")
    fail(desk1, masto.id, MASTODON_401, "auth")
    fail(desk1, email.id, MJML, "render")
    page = desk1.client().get(f"/desk/post/{masto.post_id}").get_data(as_text=True)
    flat = re.sub(r"\s+", " ", page)
    assert "The Mastodon token was refused: renew it" in flat
    assert "The email could not be built from this post" in flat
    # The raw texts are there, inside a closed <details> (one click away).
    for raw in (MASTODON_401, MJML):
        details = re.search(r'<details class="raw-error"><summary>Details</summary><code>([^<]*)</code></details>',
                            page[page.index(raw) - 200:])
        assert details and details.group(1) == raw
    queue = text_of(desk1.client().get("/desk/?tab=failed"))
    assert "The Mastodon token was refused" in queue and MASTODON_401 not in queue


def test_plain_words_for_the_common_failures(make_settings):
    settings = make_settings(channels={
        "mastodon": {"kind": "mastodon", "provider": "mastodon",
                     "options": {"instance": "https://m.example", "token_env": "MASTO_TOKEN"}},
        "newsletter": {"kind": "email", "provider": "smtp", "to": ["a@example.org"]},
    })
    unset = "Mastodon channel 'mastodon' (access token): environment variable MASTO_TOKEN is not set"
    assert explain("auth", unset, "mastodon", settings, "failed") == (
        "The Mastodon credentials are missing: the environment variable MASTO_TOKEN is not set where Syndicate "
        "runs (channels.mastodon.options.token_env).")
    assert explain("auth", "SMTP 535 authentication failed", "newsletter", settings).startswith(
        "The mail server sign-in was refused")
    assert "tried again by itself" in explain("retryable", "Mastodon 503", "mastodon", settings, "planned")
    assert "gave up after the last try" in explain("retryable", "Mastodon 503", "mastodon", settings, "failed")
    assert "whether it went out is not known" in explain("unknown", "timed out", "mastodon", settings, "unknown")
    assert "a bug" in explain("unknown", "adapter error: KeyError; see the worker's debug log", "mastodon", settings)
    assert explain("permanent", "Mastodon 422: Validation failed", "mastodon", settings).startswith(
        "Mastodon refused this as it is")
    assert explain(None, None, "mastodon", settings) is None


def test_reschedule_to_the_end_of_the_calendar_is_refused_with_its_reason(desk1):
    client = desk1.client()
    row = desk1.delivery(GROUNDING, "x")
    for when in ("9999-12-31T23:59", "9999-12-30T09:00"):
        response = client.post(f"/desk/delivery/{row.id}/reschedule",
                               data={"csrf_token": _token(client), "when": when})
        assert response.status_code < 500
        page = text_of(act(client, row.id, "reschedule", when=when))
        assert f"Nothing was changed: {when.replace('T', ' ')} is too far in the future." in page
    assert desk1.row(row.id).due_at == row.due_at and desk1.row(row.id).state == row.state


def _token(client) -> str:
    page = client.get("/desk/").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_the_desk_has_a_favicon(desk1):
    client = desk1.client()
    page = client.get("/desk/").get_data(as_text=True)
    link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert link and link.group(1) == "/favicon.ico"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.get_data(as_text=True).startswith("<svg")
