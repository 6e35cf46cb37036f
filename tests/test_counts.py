"""Counts that stop at a cap (ledger/counts.py): exact up to it, "N+" past it, in `status`,
`schedule`, the desk's tabs and its "of N". A small cap is injected so each test stays quick."""

from __future__ import annotations

import re

from sqlalchemy import event
from test_flood import config, desk, flood  # noqa: F401  (fixtures)

from syndicate.cli import main
from syndicate.engine.runner import ledger
from syndicate.ledger import counts
from syndicate.ledger.counts import Count, capped_count, capped_counts
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery
from syndicate.web.desk.previews import queue_page, tab_counts

CHANNELS = {"newsletter": {"kind": "email", "provider": "outbox", "to": ["reader@example.org"]},
            "x": {"kind": "x", "provider": "outbox"},
            "bluesky": {"kind": "bluesky", "provider": "outbox"}}


def test_count_reads_as_a_bound_past_its_cap():
    assert (str(Count(3)), str(Count(12_345)), str(Count(10_000, exact=False))) == ("3", "12,345", "10,000+")
    assert Count(10_000, exact=False).spoken == "more than 10,000" and Count(7).spoken == "7"
    assert str(Count(10, exact=False) + Count(3) + 2) == "15+" and str(sum([Count(1), Count(2)], Count(0))) == "3"
    assert str(Count(10, exact=False) - 4) == "6+" and not Count(0) and Count(1)
    assert not Count(1).plural and Count(1, exact=False).plural and Count(0).plural


def test_capped_counts_exact_up_to_the_cap_and_a_bound_past_it(store_url, make_settings):
    factory = ledger(make_settings(store_url=store_url, channels=CHANNELS))
    flood(factory, 4)  # 12 held
    flood(factory, 1, state="sent", first=10)  # 3 sent
    figures = {"held": [Delivery.state == "held"], "sent": [Delivery.state == "sent"],
               "failed": [Delivery.state == "failed"], "x": [Delivery.state == "held", Delivery.channel == "x"]}
    statements = []
    engine = factory.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with transaction(factory) as s:
            found = capped_counts(s, figures, cap=10)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert found == {"held": Count(10, exact=False), "sent": Count(3), "failed": Count(0), "x": Count(4)}
    assert len([st for st in statements if "count" in st.lower()]) == 1  # one statement for every figure
    with transaction(factory) as s:
        assert capped_count(s, [Delivery.state == "held"], cap=12) == Count(12)  # exactly the cap: exact
        assert capped_count(s, [Delivery.state == "held"], cap=11) == Count(11, exact=False)
        assert capped_count(s, [Delivery.state == "held"]) == Count(12)  # the default cap (10,000)


def _lines(out: str) -> str:
    return re.sub(r"\s+", " ", out)


def test_status_says_plus_past_the_cap_and_never_less_than_it_shows(config, capsys, monkeypatch):  # noqa: F811
    path, factory = config
    flood(factory, 4)  # 12 held
    flood(factory, 1, state="sent", first=10)  # 3 sent
    c = ["--config", str(path)]
    assert main([*c, "status", "--limit", "2"]) == 0  # the real cap: exact
    out = _lines(capsys.readouterr().out)
    assert "13 more not shown" in out and "12 held, 3 sent" in out and "needs a person (12)" in out
    monkeypatch.setattr(counts, "COUNT_CAP", 5)
    assert main([*c, "status", "--limit", "2"]) == 0
    out = _lines(capsys.readouterr().out)
    assert "6+ more not shown" in out and "5+ held, 3 sent" in out and "needs a person (5+)" in out
    # More rows shown than the cap: the cap rises above them, so the counts are not below the table.
    assert main([*c, "status", "--limit", "0"]) == 0
    out = _lines(capsys.readouterr().out)
    assert "12 held, 3 sent" in out and "more not shown" not in out
    assert main([*c, "status", "--limit", "7", "--state", "held"]) == 0
    out = _lines(capsys.readouterr().out)
    assert "1+ more not shown" in out and "8+ held" in out


def test_schedule_more_line_past_the_cap(config, capsys, monkeypatch):  # noqa: F811
    path, factory = config
    flood(factory, 4)  # 12 held
    c = ["--config", str(path)]
    assert main([*c, "schedule", "--limit", "2"]) == 0
    assert "10 more not shown" in capsys.readouterr().out
    monkeypatch.setattr(counts, "COUNT_CAP", 5)
    assert main([*c, "schedule", "--limit", "2"]) == 0
    assert "3+ more not shown" in capsys.readouterr().out
    assert main([*c, "schedule", "--limit", "11"]) == 0  # above the cap: counted past what is shown
    assert "1 more not shown" in capsys.readouterr().out


def test_desk_tabs_and_total_past_the_cap(desk, monkeypatch):  # noqa: F811
    settings, factory, client = desk
    flood(factory, 4)  # 12 held
    flood(factory, 1, state="failed", first=10)  # 3 failed
    monkeypatch.setattr(counts, "COUNT_CAP", 5)
    page = client.get("/desk/?tab=held").get_data(as_text=True)
    capped = '<span aria-hidden="true">5+</span><span class="sr-only"> more than 5</span>'
    # The tab and the badge: "5+" seen, "more than 5" heard; an exact count is as it was.
    assert f'Held<span class="count">{capped}</span></a>' in page
    assert f'title="waiting for approval">{capped}</span>' in page
    assert f">{capped} waiting for approval</a>" in page
    assert 'Failed<span class="count">3</span></a>' in page and ">3 failed</a>" in page
    # The page shows all 12 rows (a page is 100): its total is counted past them, exactly.
    assert "Showing 1–12 of 12 deliveries" in page
    with transaction(factory) as s:
        assert tab_counts(s)["held"] == Count(5, exact=False)
        assert tab_counts(s, cap=20)["held"] == Count(12)
        first = queue_page(s, settings, "held", size=2)
        assert first.total == Count(5, exact=False) and len(first.rows) == 2
        deep = queue_page(s, settings, "held", size=2, after=first.next_after, first=6)
        assert deep.total == Count(8, exact=False)  # counted past the 7 rows up to this page
        assert queue_page(s, settings, "held", size=2, cap=100).total == Count(12)
