"""The per-recipient records of an email delivery (syndicate/email/recipients.py), on SQLite and
PostgreSQL: claims in one transaction, compare-and-set records, workers racing on one
delivery, and the unsubscribe links and headers every direct send gets per recipient."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from sqlalchemy import select, text, update

from syndicate.audience import subscribers
from syndicate.email import recipients
from syndicate.email.message import personalize, unsubscribe_links
from syndicate.email.recipients import BatchReport, Outcome
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import Delivery, RecipientSend, utcnow
from syndicate.providers.base import Job
from syndicate.render.email import unsubscribe_headers

PEOPLE = [f"p{i:03d}@example.org" for i in range(120)]


@pytest.fixture
def factory(store_url):
    factory = open_ledger(store_url)
    if store_url.startswith("postgresql"):
        with factory() as s, s.begin():
            s.execute(text("TRUNCATE subscribers, suppressions, recipient_sends RESTART IDENTITY CASCADE"))
    return factory


def _delivery(factory, payload=None) -> int:
    with transaction(factory) as s:
        d = Delivery(key=uuid.uuid4().hex, subject=f"post:{uuid.uuid4().hex}", channel="news", kind="email",
                     provider="smtp", state="sending", due_at=utcnow(), payload=payload or {})
        s.add(d)
        s.flush()
        return d.id


def _rows(factory, delivery_id) -> dict[str, RecipientSend]:
    return {r.recipient: r for r in recipients.recipient_report(factory, delivery_id)}


def test_claim_takes_new_and_deferred_only_in_the_order_given(factory):
    d = _delivery(factory)
    assert recipients.claim(factory, d, ["c@x.org", "a@x.org", "b@x.org"]) == ["c@x.org", "a@x.org", "b@x.org"]
    assert recipients.claim(factory, d, ["a@x.org", "b@x.org"]) == []  # sending: held
    recipients.record(factory, d, {"a@x.org": Outcome("deferred", code=451, error="451 later"),
                                   "b@x.org": Outcome("sent", message_id="<m1>", code=250),
                                   "c@x.org": Outcome("unknown", error="lost")})
    assert recipients.claim(factory, d, ["d@x.org", "c@x.org", "b@x.org", "a@x.org"]) == ["d@x.org", "a@x.org"]
    rows = _rows(factory, d)
    assert {k: (r.state, r.attempts) for k, r in rows.items()} == {
        "a@x.org": ("sending", 2), "b@x.org": ("sent", 1), "c@x.org": ("unknown", 1), "d@x.org": ("sending", 1)}
    assert (rows["b@x.org"].message_id, rows["b@x.org"].code) == ("<m1>", 250)
    assert recipients.claim(factory, d, []) == []


def test_record_changes_only_recipients_still_sending(factory):
    d = _delivery(factory)
    recipients.claim(factory, d, ["a@x.org", "b@x.org"])
    recipients.record(factory, d, {"a@x.org": Outcome("sent", message_id="<a>")})
    # A second record of a (or of someone never claimed) changes nothing.
    recipients.record(factory, d, {"a@x.org": Outcome("failed", error="late"), "z@x.org": Outcome("sent")})
    rows = _rows(factory, d)
    assert (rows["a@x.org"].state, rows["a@x.org"].message_id, rows["a@x.org"].error) == ("sent", "<a>", None)
    assert rows["b@x.org"].state == "sending" and "z@x.org" not in rows
    with pytest.raises(ValueError):
        recipients.record(factory, d, {"b@x.org": Outcome("sending")})


def test_a_thousand_recipients_claimed_and_recorded_in_batches(factory):
    d = _delivery(factory)
    people = [f"u{i}@example.org" for i in range(1100)]  # over one INSERT statement's rows
    assert recipients.claim(factory, d, people) == people
    recipients.record(factory, d, {a: Outcome("sent", message_id=f"<{a}>") for a in people})
    rows = _rows(factory, d)
    assert len(rows) == 1100 and {r.state for r in rows.values()} == {"sent"}
    assert rows["u7@example.org"].message_id == "<u7@example.org>"


@pytest.mark.parametrize("start", ["new", "deferred"])
def test_workers_racing_on_one_delivery_claim_each_recipient_once(factory, start):
    d = _delivery(factory)
    if start == "deferred":
        recipients.claim(factory, d, PEOPLE)
        recipients.record(factory, d, {a: Outcome("deferred") for a in PEOPLE})
    claimed: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(seed: int) -> None:
        order = PEOPLE[:]
        random.Random(seed).shuffle(order)
        mine: list[str] = []
        try:
            barrier.wait()
            for i in range(0, len(order), 15):
                mine += recipients.claim(factory, d, order[i:i + 15])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        claimed.append(mine)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    everyone = [a for mine in claimed for a in mine]
    assert sorted(everyone) == sorted(PEOPLE)  # each claimed, and by one worker only
    assert {r.state for r in _rows(factory, d).values()} == {"sending"}


def test_pending_recipients_sorts_everyone_into_the_report(factory):
    people = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org", "eli@example.org"]
    d = _delivery(factory)
    subscribers.suppress(factory, "eli@example.org", "test")
    recipients.claim(factory, d, people[:4])
    recipients.record(factory, d, {people[0]: Outcome("sent"), people[1]: Outcome("unknown"),
                                   people[3]: Outcome("deferred")})
    job = Job(delivery_id=d, key="k", channel="news", kind="email",
              payload={"audience": "to", "to": [p.upper() for p in people] + ["not an address", people[0]]})
    report = BatchReport()
    assert recipients.pending_recipients(factory, job, report) == ["dev@example.org"]
    assert (report.already, report.suppressed, report.unresolved) == (1, 1, ["ben@example.org", "cleo@example.org"])
    assert report.summary() == "0 sent, 1 done earlier, 1 suppressed, 2 unresolved"


def test_lease_keeper_extends_the_send_lease(factory):
    from datetime import timedelta

    d = _delivery(factory)
    keeper = recipients.LeaseKeeper(factory, d, timedelta(minutes=5))
    keeper.keep()  # too soon: nothing written
    with transaction(factory) as s:
        assert s.scalar(select(Delivery.lease_until).where(Delivery.id == d)) is None
    keeper.last -= recipients.LEASE_EVERY
    keeper.keep()
    with transaction(factory) as s:
        assert s.scalar(select(Delivery.lease_until).where(Delivery.id == d)) > utcnow() + timedelta(minutes=4)
        s.execute(update(Delivery).where(Delivery.id == d).values(state="sent", lease_until=None))
    keeper.last -= recipients.LEASE_EVERY
    keeper.keep()  # not sending any more: left alone
    with transaction(factory) as s:
        assert s.scalar(select(Delivery.lease_until).where(Delivery.id == d)) is None


def test_lease_keeper_is_fenced_by_the_claim_token(factory):
    """keep() extends the lease only while the delivery is `sending` under this send's token; once
    it is not (re-planned and claimed by another worker, or cancelled) it raises ClaimLost."""
    from datetime import timedelta

    from syndicate.providers.base import ClaimLost, Incomplete

    d = _delivery(factory)
    with transaction(factory) as s:
        s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="mine"))
    keeper = recipients.LeaseKeeper(factory, d, timedelta(minutes=5), token="mine")
    keeper.last -= recipients.LEASE_EVERY
    keeper.keep()
    with transaction(factory) as s:
        assert s.scalar(select(Delivery.lease_until).where(Delivery.id == d)) > utcnow() + timedelta(minutes=4)
        # The reaper planned it again and another worker claimed it: `sending`, another token.
        s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="theirs", lease_until=None))
    keeper.last -= recipients.LEASE_EVERY
    with pytest.raises(ClaimLost, match="lost the claim") as lost:
        keeper.keep()
    assert isinstance(lost.value, Incomplete)
    with transaction(factory) as s:  # their lease is left alone
        assert s.scalar(select(Delivery.lease_until).where(Delivery.id == d)) is None
        s.execute(update(Delivery).where(Delivery.id == d).values(state="cancelled", claim_token=None))
    keeper.last -= recipients.LEASE_EVERY
    with pytest.raises(ClaimLost):
        keeper.keep()
    keeper.keep()  # too soon after the last write: no query, nothing raised


@pytest.mark.parametrize("stage, expected", [("claiming", None), ("claimed", "deferred"), ("issued", "unknown"),
                                             ("answered", "sent")])
def test_in_flight_settles_the_recipients_in_hand_by_how_far_they_got(factory, stage, expected):
    d = _delivery(factory)
    people = ["ana@example.org", "ben@example.org"]
    hand = recipients.InFlight()
    hand.claiming(people)
    if stage != "claiming":
        assert recipients.claim(factory, d, people) == people
        hand.claimed(people)
    if stage == "issued":
        hand.issued()
    if stage == "answered":
        hand.issued()
        hand.answered({p: Outcome("sent", message_id=f"<{p}>") for p in people})
    report = BatchReport()
    hand.settle(factory, d, report, "stopped by the task's soft time limit")
    assert hand.stage == "idle" and hand.addresses == []
    rows = _rows(factory, d)
    if expected is None:  # the claim may not have committed: nothing is touched
        assert rows == {}
        return
    assert {p: r.state for p, r in rows.items()} == dict.fromkeys(people, expected)
    assert report.settled() == (0 if expected == "deferred" else 2)
    if expected == "deferred":
        assert report.deferred == 2 and "before anything was sent" in rows[people[0]].error
        assert recipients.claim(factory, d, people) == people  # claimable again
    if expected == "unknown":
        assert report.unresolved == people and "after the message went out" in rows[people[0]].error


def test_stopped_early_is_incomplete_only_after_progress():
    from syndicate.providers.base import Incomplete, Retryable

    report = BatchReport(sent=3, already=2)
    error = recipients.stopped_early("SMTP h", "time budget of 1s used", report, 10, settled_before=0)
    assert isinstance(error, Incomplete)
    assert str(error) == "SMTP h: time budget of 1s used: sent 3 of 10; continuing (3 sent, 2 done earlier)"
    stuck = BatchReport(deferred=1)
    assert type(recipients.stopped_early("SMTP h", "x", stuck, 10, settled_before=0)) is Retryable


@pytest.mark.parametrize("web, mailto", [
    ("https://w.example/unsubscribe/{token}", None),
    ("https://w.example/unsubscribe/{token}", "mailto:u+{token}@w.example"),
    ("http://demo.local/u/{token}", "unsubscribe@w.example"),
    ("https://w.example/static", "mailto:u@w.example?subject=stop"),
    (None, None),
])
def test_unsubscribe_headers_are_the_ones_personalize_puts_in_the_message(web, mailto):
    payload = {"subject": "s", "preheader": "p", "html": f'<a href="{web}">u</a>', "text": f"{web}",
               "from": '"Harbor" <news@harbor.example>', "unsubscribe_https": web, "unsubscribe_mailto": mailto}
    token = "eyJhIjoxfQ.sig-_x"
    message = personalize(payload, "ana@example.org", token)
    headers = unsubscribe_headers(*unsubscribe_links(payload, token))
    assert headers == {k: str(message[k]) for k in ("List-Unsubscribe", "List-Unsubscribe-Post") if message[k]}
    assert "{token}" not in str(headers)
    web_link, mail_link = unsubscribe_links(payload, token)
    assert mail_link.startswith("mailto:")  # the From address when no mailbox is named
    if web and "{token}" in web:
        assert web_link == web.replace("{token}", token) and web_link in message.get_body(("plain",)).get_content()
    assert ("List-Unsubscribe-Post" in headers) == bool(web and web.startswith("https:"))
