"""Third-party images never reach subscribers' inboxes as is (security probe F5): lint-email's
privacy rules run when an email is planned; a failing message is held with the findings, or,
with the channel's ``third_party_images = "drop"``, the foreign images are removed."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from syndicate.email.lint import lint_message, site_hosts
from syndicate.engine.runner import ledger, run_once
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Blog</title>
<link>https://harborwellness.example/</link><description>d</description>
<item><title>Calm mornings</title><link>https://harborwellness.example/calm/</link>
<guid>calm</guid><pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate>
<media:content url="https://cdn.tracker.example/featured.jpg?uid=42" medium="image"/>
<description><![CDATA[<p>Breathe.</p>
<p><img src="https://stats.tracker.example/pixel.gif?campaign=7" alt="chart" width="400"></p>
<p><img src="https://harborwellness.example/uploads/own.jpg" alt="our office" width="400"></p>]]></description>
</item></channel></rss>"""


def _settings(make_settings, tmp_path, **options):
    (tmp_path / "feed.xml").write_text(FEED)
    return make_settings(feeds=[{"name": "blog", "url": str(tmp_path / "feed.xml"), "backfill": 5}],
                         channels={"newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"],
                                                  "from_address": "news@harborwellness.example",
                                                  "options": options}})


def _delivery(settings) -> Delivery:
    with transaction(ledger(settings)) as s:
        return s.scalars(select(Delivery).where(Delivery.channel == "newsletter")).one()


def test_an_email_with_third_party_images_is_held_with_the_reason(make_settings, tmp_path):
    settings = _settings(make_settings, tmp_path)
    run_once(settings, NOW)
    row = _delivery(settings)
    assert row.state == "held", row.state
    assert row.hold_reason.startswith("privacy:") and "tracker.example" in row.hold_reason
    assert not list((tmp_path / "outbox").rglob("*.eml"))  # nothing was sent


def test_with_drop_the_foreign_images_go_and_the_email_is_sent_clean(make_settings, tmp_path):
    settings = _settings(make_settings, tmp_path, third_party_images="drop")
    run_once(settings, NOW)
    row = _delivery(settings)
    assert row.state == "sent", (row.state, row.hold_reason)
    sent = list((tmp_path / "outbox").rglob("*.eml"))
    assert sent
    message = message_from_bytes(sent[0].read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    assert "tracker.example" not in html and "harborwellness.example/uploads/own.jpg" in html
    assert not [f for f in lint_message(message, site_hosts(settings)) if f.rule == "third-party"]


def test_a_channel_can_allow_its_image_host(make_settings, tmp_path):
    settings = _settings(make_settings, tmp_path, image_hosts=["tracker.example"])
    run_once(settings, NOW)
    assert _delivery(settings).state == "sent"


@pytest.mark.parametrize("value", ["keep", 1])
def test_an_unknown_policy_is_a_settings_error(make_settings, tmp_path, value):
    from syndicate.settings import SettingsError

    with pytest.raises(SettingsError, match="third_party_images"):
        _settings(make_settings, tmp_path, third_party_images=value)
