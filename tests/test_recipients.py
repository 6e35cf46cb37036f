"""The per-recipient records of an email delivery (syndicate/email/recipients.py), on SQLite and
PostgreSQL: claims in one transaction, compare-and-set records, workers racing on one
delivery, and the unsubscribe links and headers every direct send gets per recipient."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

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
    """Sent: done earlier; unknown: unresolved; suppressed: skipped; deferred, new, and `sending`
    left by a send that is gone (its content never went out): to mail. A gone send's `issued`
    (its content may have left) becomes unknown."""
    people = ["ana@example.org", "ben@example.org", "cleo@example.org", "dev@example.org", "eli@example.org",
              "fay@example.org", "gus@example.org"]
    d = _delivery(factory)
    subscribers.suppress(factory, "eli@example.org", "test")
    recipients.claim(factory, d, people[:4] + people[5:6], owner="dead-send")
    with transaction(factory) as s:
        assert recipients.issue(s, d, [people[5]], "dead-send") == [people[5]]
    recipients.record(factory, d, {people[0]: Outcome("sent"), people[1]: Outcome("unknown"),
                                   people[3]: Outcome("deferred")}, owner="dead-send")
    job = Job(delivery_id=d, key="k", channel="news", kind="email",
              payload={"audience": "to", "to": [p.upper() for p in people] + ["not an address", people[0]]})
    report = BatchReport()
    assert recipients.pending_recipients(factory, job, report, owner="new-send") == [
        "cleo@example.org", "dev@example.org", "gus@example.org"]
    assert (report.already, report.suppressed) == (1, 1)
    assert report.unresolved == ["ben@example.org", "fay@example.org"]
    assert report.summary() == "0 sent, 1 done earlier, 1 suppressed, 2 unresolved"
    rows = _rows(factory, d)
    assert rows["fay@example.org"].state == "unknown" and "may have it" in rows["fay@example.org"].error
    assert rows["cleo@example.org"].state == "sending"  # left as it is until claimed again


def test_a_claim_takes_over_a_gone_sends_unissued_recipients_and_fences_it_out(factory):
    """A send that stalled past its lease (it is still alive) held two recipients `sending`; the
    resumed send claims them. The stale send can then neither issue them nor record them."""
    d = _delivery(factory)
    people = ["ana@example.org", "ben@example.org"]
    assert recipients.claim(factory, d, people, owner="stale") == people
    assert recipients.claim(factory, d, people, owner="stale") == []  # its own: already held
    assert recipients.claim(factory, d, people, owner="resumed") == people
    with transaction(factory) as s:
        assert recipients.issue(s, d, people, "stale") == []  # taken over: it must not send
    recipients.record(factory, d, {p: Outcome("sent") for p in people}, owner="stale")
    assert {p: (r.state, r.owner, r.attempts) for p, r in _rows(factory, d).items()} == dict.fromkeys(
        people, ("sending", "resumed", 2))
    with transaction(factory) as s:
        assert recipients.issue(s, d, people[:1], "resumed") == people[:1]
    assert recipients.claim(factory, d, people, owner="third") == people[1:]  # issued is never taken
    recipients.record(factory, d, {people[0]: Outcome("sent", message_id="<a>")}, owner="resumed")
    assert _rows(factory, d)[people[0]].state == "sent"


def test_a_person_settles_unknown_recipients_only(factory):
    d = _delivery(factory)
    people = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    recipients.claim(factory, d, people, owner="o")
    recipients.record(factory, d, {people[0]: Outcome("sent"), people[1]: Outcome("unknown"),
                                   people[2]: Outcome("unknown")}, owner="o")
    with transaction(factory) as s:
        with pytest.raises(recipients.NotSettled, match=r"ana@example.org \(sent\), zed@example.org \(not a"):
            recipients.settle(s, d, [people[0], "zed@example.org"], "sent", "cli:me")
    with transaction(factory) as s:
        assert recipients.settle(s, d, [people[1]], "retry", "cli:me") == [people[1]]
        assert recipients.settle(s, d, None, "cancel", "cli:me") == [people[2]]
    rows = _rows(factory, d)
    assert {p: r.state for p, r in rows.items()} == {people[0]: "sent", people[1]: "deferred",
                                                     people[2]: "cancelled"}
    assert rows[people[1]].error == "settled by cli:me: retry"
    assert recipients.claim(factory, d, people, owner="next") == [people[1]]  # only the retried one


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


@pytest.mark.parametrize("stage, expected", [("claimed", "deferred"), ("issued", "unknown"),
                                             ("answered", "sent")])
def test_the_book_settles_the_recipients_in_hand_by_how_far_they_got(factory, stage, expected):
    """An interruption (Celery's soft time limit) anywhere: claimed but not issued -> deferred
    (claimable again), issued but not answered -> unknown, answered but not written -> written."""
    d = _delivery(factory)
    with transaction(factory) as s:
        s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="tok"))
    people = ["ana@example.org", "ben@example.org"]
    job = Job(delivery_id=d, key="k", channel="news", kind="email", payload={}, token="tok")
    report = BatchReport()
    book = recipients.RecipientBook(factory, job, timedelta(minutes=5), report)
    assert book.claim(people) == people
    if stage in ("issued", "answered"):
        book.issue(people)
        assert {r.state for r in _rows(factory, d).values()} == {"issued"}
    if stage == "answered":
        book.answer({p: Outcome("sent", message_id=f"<{p}>") for p in people})
        assert {r.state for r in _rows(factory, d).values()} == {"issued"}  # noted, not yet written
    book.settle("stopped by the task's soft time limit")
    assert book.claimed == [] and book.issued == [] and book.noted == {}
    rows = _rows(factory, d)
    assert {p: r.state for p, r in rows.items()} == dict.fromkeys(people, expected)
    assert report.settled() == (0 if expected == "deferred" else 2)
    if expected == "deferred":
        assert "before anything was sent" in rows[people[0]].error
        assert recipients.claim(factory, d, people, owner="later") == people  # claimable again
    if expected == "unknown":
        assert report.unresolved == people and "after the message went out" in rows[people[0]].error


def test_the_book_writes_answers_with_the_next_issue_and_stops_when_the_claim_is_lost(factory):
    from syndicate.providers.base import ClaimLost

    d = _delivery(factory)
    with transaction(factory) as s:
        s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="tok"))
    people = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    job = Job(delivery_id=d, key="k", channel="news", kind="email", payload={}, token="tok")
    with recipients.RecipientBook(factory, job, timedelta(minutes=5), BatchReport()) as book:
        book.claim(people)
        book.issue(people[:1])
        book.answer({people[0]: Outcome("sent")})
        assert _rows(factory, d)[people[0]].state == "issued"
        book.issue(people[1:2])  # one commit: ana's answer and ben's issue
        assert {p: r.state for p, r in _rows(factory, d).items()} == {
            people[0]: "sent", people[1]: "issued", people[2]: "sending"}
        book.answer({people[1]: Outcome("sent")})
        with transaction(factory) as s:  # the reaper took the delivery back; another send claimed it
            s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="theirs"))
        with pytest.raises(ClaimLost):
            book.issue(people[2:])  # nothing is issued, nothing written in that transaction
        assert _rows(factory, d)[people[2]].state == "sending"
    # On the way out: the answer is written, cleo (never issued) goes back to deferred.
    assert {p: r.state for p, r in _rows(factory, d).items()} == {
        people[0]: "sent", people[1]: "sent", people[2]: "deferred"}


def _book_with_claim(factory, people):
    d = _delivery(factory)
    with transaction(factory) as s:
        s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="tok"))
    job = Job(delivery_id=d, key="k", channel="news", kind="email", payload={}, token="tok")
    report = BatchReport()
    return d, report, recipients.RecipientBook(factory, job, timedelta(minutes=5), report)


@pytest.mark.parametrize("soon", [False, True], ids=["issue_one", "issue_soon"])
def test_one_recipient_is_issued_with_the_answers_before_it_and_not_when_the_claim_is_lost(factory, soon):
    """issue_one (one statement on PostgreSQL), and issue_soon (the same statement on the book's
    ledger thread, waited for by issue_one): the answers noted and the issue in one commit, the
    lease proved in it; a lost claim issues nobody."""
    from syndicate.providers.base import ClaimLost

    people = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    d, _, book = _book_with_claim(factory, people)
    with book:
        book.claim(people)
        if soon:
            book.issue_soon(people[0])
        book.issue_one(people[0])
        assert _rows(factory, d)[people[0]].state == "issued" and book.issued == people[:1]
        book.answer({people[0]: Outcome("sent", message_id="<ana>", code=250)})
        if soon:
            book.issue_soon(people[1])
        book.issue_one(people[1])
        rows = _rows(factory, d)
        assert {p: r.state for p, r in rows.items()} == {
            people[0]: "sent", people[1]: "issued", people[2]: "sending"}
        assert (rows[people[0]].message_id, rows[people[0]].code) == ("<ana>", 250)
        book.answer({people[1]: Outcome("sent")})
        with transaction(factory) as s:  # the reaper took the delivery back; another send claimed it
            s.execute(update(Delivery).where(Delivery.id == d).values(claim_token="theirs"))
        if soon:
            book.issue_soon(people[2])
        with pytest.raises(ClaimLost):
            book.issue_one(people[2])
        assert _rows(factory, d)[people[2]].state == "sending"
        assert people[2] not in book.issued and people[2] not in book.ahead
    assert {p: r.state for p, r in _rows(factory, d).items()} == {
        people[0]: "sent", people[1]: "sent", people[2]: "deferred"}


def test_a_recipient_issued_ahead_is_answered_after_its_issue_or_deferred_if_its_content_never_left(factory):
    """issue_soon issues the next recipient while the last one's answer is awaited. Refused
    (RCPT 5xx) meanwhile: failed, written after its issue. Never sent (the send stopped first):
    deferred, not unknown. (Off PostgreSQL issue_soon does nothing: the same end states.)"""
    people = ["ana@example.org", "ben@example.org", "cleo@example.org"]
    d, report, book = _book_with_claim(factory, people)
    with book:
        book.claim(people)
        book.issue_one(people[0])  # ana's content leaves
        book.issue_soon(people[1])  # ben issued while ana's answer is awaited
        book.answer({people[0]: Outcome("sent")})
        book.answer({people[1]: Outcome("failed", code=550, error="550 5.1.1 no such user")})
        book.issue_soon(people[2])  # cleo issued ahead; then the send stops (its time budget)
    rows = _rows(factory, d)
    assert {p: r.state for p, r in rows.items()} == {
        people[0]: "sent", people[1]: "failed", people[2]: "deferred"}
    assert rows[people[1]].code == 550 and "before anything was sent" in rows[people[2]].error
    assert (report.sent, report.failed, report.unresolved) == (1, 1, [])


def test_the_soft_time_limit_with_a_recipient_issued_ahead_defers_it(factory):
    people = ["ana@example.org", "ben@example.org"]
    d, report, book = _book_with_claim(factory, people)
    book.claim(people)
    book.issue_one(people[0])
    book.issue_soon(people[1])
    book.settle("stopped by the task's soft time limit")
    assert {p: r.state for p, r in _rows(factory, d).items()} == {people[0]: "unknown", people[1]: "deferred"}
    assert report.unresolved == people[:1]
    book.__exit__(None, None, None)


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
