"""What the CLI prints: run summaries and the delivery status table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import defer

from syndicate.audience import suppression
from syndicate.engine.failures import explain
from syndicate.engine.runner import RunSummary
from syndicate.ledger.counts import Count, cap_above, capped_counts
from syndicate.ledger.db import open_ledger, transaction
from syndicate.ledger.models import STATES, Delivery, Post, RecipientSend
from syndicate.settings import Settings

STATE_STYLE = {"sent": "green", "failed": "red", "unknown": "bold red", "held": "yellow", "planned": "cyan",
               "claimed": "blue", "sending": "blue", "skipped": "dim", "cancelled": "dim"}


def print_run_summary(out: Console, settings: Settings, summary: RunSummary) -> None:
    if summary.paused:
        out.print(f"[bold yellow]{escape(summary.paused.line())}[/]")
    for poll in summary.polls:
        if poll.status == "error":
            out.print(f"[red]feed {poll.feed}: {poll.error}[/]")
        else:
            parts = [f"{poll.new} new"] + [f"{n} {what}" for n, what in (
                (poll.held, "held (flood)"), (poll.recorded, "recorded without sending"),
                (poll.edited, "edited")) if n]
            if poll.warnings:  # what the reader did about a broken feed is never silent; the poll
                # logs each warning at INFO, so `-v` (and a worker's log) says what they are
                parts.append(f"[yellow]{_n(len(poll.warnings), 'warning')} (-v says what)[/]")
            out.print(f"feed {poll.feed}: {poll.status}, " + ", ".join(parts))
    plan = summary.plan
    if plan.planned or plan.held or plan.skipped or plan.failed:
        out.print(f"planned {plan.planned} deliveries, held {plan.held} for approval, "
                  f"skipped {plan.skipped}, failed to render {plan.failed}")
    if summary.reaped.reclaimed or summary.reaped.unknown:
        out.print(f"reaper: {summary.reaped.reclaimed} expired claims planned again, "
                  f"{summary.reaped.unknown} interrupted sends marked unknown")
    counts = Counter(o.state for o in summary.outcomes)
    out.print(f"delivered: {counts.get('sent', 0)} sent" + "".join(
        f", {n} {state}" for state, n in sorted(counts.items()) if state != "sent"))
    if counts.get("sent") and any(ch.provider == "outbox" for ch in settings.enabled_channels().values()):
        out.print(f"outbox: {settings.outbox_dir}")
    for o in summary.outcomes:
        if o.state not in ("sent", "skipped", "paused"):
            out.print(f"[red]delivery {o.delivery_id}: {o.state}: {o.detail}[/]")
    waiting = sorted({o.delivery_id for o in summary.outcomes if o.state in ("unknown", "failed")})
    if waiting:
        out.print(f"[yellow]needs a person: {len(waiting)} deliveries ({', '.join(map(str, waiting[:10]))}); "
                  "see `syndicate status`[/]")


def unsubscribe_warning(settings: Settings) -> str | None:
    """A warning when mail goes out whose unsubscribe links lead where `syndicate serve` is not.

    Unset, web.public_url falls back to site.url, the blog itself: a WordPress or Ghost site
    answers 404 at /unsubscribe/..., and a reader who cannot unsubscribe marks the mail as spam
    (CAN-SPAM; Gmail and Yahoo require RFC 8058 one-click unsubscribe from bulk senders).
    """
    from syndicate import providers

    if settings.web.public_url:
        return None
    names = []
    for name, channel in settings.enabled_channels().items():
        try:
            ours = providers.get(channel.provider).our_unsubscribe_link
        except providers.UnknownProvider:
            continue
        if channel.kind == "email" and ours and not channel.unsubscribe_url:
            names.append(name)
    if not names:
        return None
    return (f"unsubscribe links of {', '.join(names)} point at {settings.site.url}/unsubscribe/…, the blog, "
            "where `syndicate serve` does not answer (web.public_url is not set, so site.url is used): set "
            "web.public_url to the https address where `syndicate serve` is reached (README: Unsubscribe links)")


@dataclass
class StatusFilter:
    """Which deliveries `syndicate status` shows: in these STATES, on CHANNEL, changed since SINCE."""

    states: tuple[str, ...] = ()
    channel: str | None = None
    since: datetime | None = None

    def where(self) -> list:
        where = []
        if self.states:
            where.append(Delivery.state.in_(self.states))
        if self.channel:
            where.append(Delivery.channel == self.channel)
        if self.since is not None:
            where.append(Delivery.updated_at >= self.since)
        return where


def status_rows(settings: Settings, limit: int | None = None, only: StatusFilter | None = None) -> list[dict]:
    """The deliveries ONLY names (default every one), by due time; the first LIMIT of them."""
    where = (only or StatusFilter()).where()
    with transaction(open_ledger(settings.store_url)) as s:
        # Not the payload: an email's is its whole rendered HTML (up to 100 KB), and no column shows it.
        query = (select(Delivery, Post.title).outerjoin(Post, Delivery.post_id == Post.id).where(*where)
                 .options(defer(Delivery.payload)).order_by(Delivery.due_at, Delivery.id))
        rows = s.execute(query.limit(limit) if limit else query).all()
        counted = [RecipientSend.state == "unknown"]
        page = [d.id for d, _ in rows] if limit else None
        if page is not None:  # a page: only its deliveries' recipients (the whole table may hold millions)
            counted.append(RecipientSend.delivery_id.in_(page))
        unknown = dict(s.execute(select(RecipientSend.delivery_id, func.count()).where(*counted)
                                 .group_by(RecipientSend.delivery_id)).all())
        rates = suppression.delivery_rates(s, page)  # the same: a page's rates, not every newsletter's
        return [{**_row(d, title, settings), "recipients_unknown": unknown.get(d.id, 0),
                 **({"deliverability": rates[d.id]} if d.id in rates else {})} for d, title in rows]


def pause_state(settings: Settings):
    """The pause in force (engine/pause.py), or None."""
    from syndicate.engine.pause import paused

    with transaction(open_ledger(settings.store_url)) as s:
        return paused(s)


def print_pause(out: Console, settings: Settings) -> None:
    state = pause_state(settings)
    if state:
        out.print(f"[bold yellow]{escape(state.line())}[/]")


def status_counts(settings: Settings, only: StatusFilter | None = None, cap: int | None = None,
                  shown: int = 0) -> dict[str, Count]:
    """How many deliveries ONLY names, by state (every one, not only those printed), each counted
    up to CAP (ledger/counts.py: "10,000+" past it, so the line costs the same at a million);
    the states with none are left out. The cap is kept above SHOWN, the rows printed, so that
    "N more" is never a bound below what the table already shows."""
    cap = cap_above(shown, cap)
    only = only or StatusFilter()
    others = StatusFilter(channel=only.channel, since=only.since).where()
    figures = {state: [Delivery.state == state, *others] for state in (only.states or STATES)}
    with transaction(open_ledger(settings.store_url)) as s:
        return {state: n for state, n in capped_counts(s, figures, cap).items() if n}


def _row(d: Delivery, title: str | None, settings: Settings) -> dict:
    local = d.due_at.astimezone(settings.site.tz)
    return {"id": d.id, "post_id": d.post_id, "channel": d.channel, "kind": d.kind, "provider": d.provider, "state": d.state,
            "subject": d.subject, "post_title": title, "post_url": d.post_url,
            "due_at": d.due_at.isoformat(), "due_local": local.isoformat(), "attempts": d.attempts,
            "provider_ref": d.provider_ref, "provider_url": d.provider_url, "hold_reason": d.hold_reason,
            "last_error": d.last_error, "error_class": d.error_class,
            "problem": explain(d.error_class, d.last_error, d.channel, settings, d.state),
            "sent_at": d.sent_at.isoformat() if d.sent_at else None}


def print_status(out: Console, settings: Settings, rows: list[dict], counts: Mapping[str, Count | int] | None = None,
                 filtered: bool = False, verbose: bool = False) -> None:
    """The table of ROWS, a failure in plain words in it (VERBOSE: then each raw error text);
    COUNTS (by state) are of every delivery matched, shown or not ("10,000+" past their cap)."""
    if not rows:
        out.print("no delivery matches" if filtered else "no deliveries yet: run `syndicate run --once`")
        return
    table = Table(title=f"Deliveries (times in {settings.site.timezone})")
    table.add_column("id", justify="right")
    table.add_column("post", justify="right")
    table.add_column("channel")
    table.add_column("title", max_width=38, no_wrap=True, overflow="ellipsis")
    table.add_column("state")
    table.add_column("due", no_wrap=True)
    table.add_column("tries", justify="right")
    table.add_column("reference / note", overflow="fold")
    for r in rows:
        style = STATE_STYLE.get(r["state"], "")
        note = r["problem"] or r["hold_reason"] or _short_ref(r["provider_ref"])
        table.add_row(str(r["id"]), str(r["post_id"] or "-"), r["channel"],
                      escape(r["post_title"] or r["post_url"] or r["subject"]), f"[{style}]{r['state']}[/]",
                      r["due_local"][:16].replace("T", " "), str(r["attempts"]), escape(note))
    out.print(table)
    if verbose:  # the raw error texts, whole, one line each
        for r in rows:
            if r["last_error"]:
                out.print(f"delivery {r['id']}: {r['error_class'] or 'error'}: {r['last_error']}", markup=False)
    counts = {state: n if isinstance(n, Count) else Count(n) for state, n in
              (counts if counts is not None else Counter(r["state"] for r in rows)).items()}
    more = sum(counts.values(), Count(0)) - len(rows)
    if more:  # "10,000+ more" when a state's count stopped at its cap: at least that many
        out.print(f"[yellow]{more} more[/] not shown: narrow with --state, --channel or --since, or raise --limit "
                  "(0 shows all)")
    out.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    attention = sum((counts.get(state, Count(0)) for state in ("held", "unknown", "failed")), Count(0))
    if attention:
        out.print(f"[yellow]needs a person ({attention}):[/] `syndicate approve ID` releases a held delivery; "
                  "`syndicate resolve ID --sent|--retry|--cancel` settles an unknown or failed one")
    print_deliverability(out, rows)
    recipients = [(r["id"], r["recipients_unknown"]) for r in rows if r.get("recipients_unknown")]
    if recipients:
        out.print(f"[yellow]{sum(n for _, n in recipients)} email recipients of unknown outcome[/] in deliveries "
                  + ", ".join(f"{i} ({n})" for i, n in recipients[:10])
                  + ": `syndicate recipients ID` lists them, `syndicate resolve ID --recipient EMAIL "
                  "--sent|--retry|--cancel` settles each")


def print_deliverability(out: Console, rows: list[dict]) -> None:
    """Sent, bounced and complained per edition and per channel, with a warning where a rate is
    near or over what the services allow (SES: 5 % bounces, 0.1 % complaints; Gmail: 0.3 %)."""
    per = {r["id"]: r["deliverability"] for r in rows if r.get("deliverability")}
    if not per:
        return
    table = Table(title="Deliverability (distinct addresses)")
    for name in ("id", "channel", "edition", "sent", "bounced", "complained", "bounce %", "complaint %"):
        table.add_column(name, justify="right" if name not in ("channel", "edition") else "left",
                         max_width=38 if name == "edition" else None, no_wrap=True, overflow="ellipsis")
    warnings = []
    for r in rows:
        if (d := r.get("deliverability")) is None:
            continue
        table.add_row(str(r["id"]), r["channel"], r["post_title"] or r["subject"], str(d["sent"]), str(d["bounced"]),
                      str(d["complained"]), _percent(d["bounce_rate"]), _percent(d["complaint_rate"]))
        warnings += [f"delivery {r['id']} ({r['channel']}): {w}" for w in d["warnings"]]
    channels = suppression.channel_rates(per, {r["id"]: r["channel"] for r in rows})
    for channel, d in channels.items():
        table.add_row("", f"[bold]{channel}[/]", "all editions", str(d["sent"]), str(d["bounced"]),
                      str(d["complained"]), _percent(d["bounce_rate"]), _percent(d["complaint_rate"]))
        warnings += [f"channel {channel}: {w}" for w in d["warnings"]]
    out.print(table)
    for line in warnings:
        out.print(f"[yellow]WARNING {line}[/]")


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2%}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _short_ref(ref: str | None) -> str:
    # Outbox references are file paths: the channel folder and file name say enough.
    if ref and "/" in ref:
        return "/".join(ref.rsplit("/", 2)[-2:])
    return ref or ""
