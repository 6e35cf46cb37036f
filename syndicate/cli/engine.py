"""The engine's commands: run it, see what it holds and what comes next, act on deliveries."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from syndicate import locations
from syndicate.cli.common import UsageError, actor, err, load_settings, out, parse_time
from syndicate.model import STATES

STATUS_LIMIT = 200  # rows `status` prints by default: a flood must not print 30,000 lines


def cmd_run(args) -> int:
    from syndicate.cli.report import print_run_summary, unsubscribe_warning
    from syndicate.engine.runner import run_forever, run_once

    config = locations.config_path(args.config)
    raw = _read_or_none(config)  # the bytes validated below, for the quiet run's fingerprint
    settings = load_settings(args, signing=True)
    now = parse_time(args.at)
    say_first = []
    if warning := unsubscribe_warning(settings):
        say_first.append(("yellow", "warning:", warning))
    for style, lead, text in say_first:
        out.print(f"[{style}]{lead}[/] {text}")
    if args.once or now is not None:
        from syndicate.engine import quiet

        started = datetime.now(UTC)  # as run_once's own now, for what is due next
        answered = quiet.take_answered() if now is None else None  # what a quiet run got: not asked twice
        with out.status("working…") as status:
            summary = run_once(settings, now, progress=lambda msg: status.update(msg), answered=answered)
        if now is None:
            _remember_quiet(settings, config, raw, started, say_first)
        print_run_summary(out, settings, summary)
        return run_exit_code(summary)
    out.print(f"polling feeds every {settings.run.interval}, sending what is due every {settings.run.tick}; "
              "Ctrl-C to stop")
    try:
        run_forever(settings, on_summary=lambda s: print_run_summary(out, settings, s))
    except KeyboardInterrupt:
        out.print("stopped")
    return 0


def _read_or_none(path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None  # load_settings says what is wrong


def _remember_quiet(settings, config, raw: bytes | None, now, say_first) -> None:
    """What the next `run --once` needs to be quiet (engine/quiet.py; SQLite ledgers only), if the
    settings file still holds the bytes this pass was validated from."""
    from syndicate.engine import quiet
    from syndicate.engine.runner import ledger, remember_quiet

    if quiet.sqlite_path(settings.store_url) is None or raw is None or _read_or_none(config) != raw:
        return
    try:
        remember_quiet(ledger(settings), settings, config, raw, now, say_first)
    except Exception as exc:  # noqa: BLE001 - the pass is done; without the record the next one is full
        import logging

        logging.getLogger(__name__).warning("could not record the quiet run's state: %s: %s",
                                            type(exc).__name__, exc)


# `run --once` exit codes, for a cron job; with several at once, the first that applies.
EXIT_FAILED = 1  # a delivery failed for good (the provider refused it, or it could not be rendered)
EXIT_NEEDS_PERSON = 4  # a send's outcome is unknown: a person must check the provider and settle it
EXIT_FEED = 3  # a feed could not be fetched or read
EXIT_RETRYING = 5  # a send failed for now and is planned again (a retry, a rate limit)
RUN_EXIT_HELP = ("exit codes: 0 all that was due went out (or nothing was due); 1 a delivery failed for good; "
                 "2 bad settings or arguments; 3 a feed could not be read; 4 a send's outcome is unknown and "
                 "needs a person; 5 a send failed for now and will be retried; 130 interrupted. "
                 "When several apply: 1, then 4, 3, 5.")


def run_exit_code(summary) -> int:
    states = {o.state for o in summary.outcomes if o.error_class != "incomplete"}
    retrying = any(o.state == "planned" and o.error_class for o in summary.outcomes
                   if o.error_class != "incomplete")
    for code, happened in ((EXIT_FAILED, "failed" in states or summary.plan.failed),
                           (EXIT_NEEDS_PERSON, "unknown" in states),
                           (EXIT_FEED, any(p.status == "error" for p in summary.polls)),
                           (EXIT_RETRYING, retrying)):
        if happened:
            return code
    return 0


def cmd_status(args) -> int:
    from syndicate.cli.report import StatusFilter, print_pause, print_status, status_counts, status_rows

    settings = load_settings(args)
    only = StatusFilter(tuple(args.state or ()), args.channel,
                        _local_time(args.since, settings, "--since") if args.since else None)
    limit = args.limit if args.limit is not None else (None if args.json else STATUS_LIMIT)
    rows = status_rows(settings, limit or None, only)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        print_pause(err, settings)  # the JSON stays a list of deliveries; the pause goes to stderr
    else:
        print_pause(out, settings)
        print_status(out, settings, rows, status_counts(settings, only, shown=len(rows)), filtered=bool(only.where()),
                     verbose=args.verbose)
    return 0


def cmd_schedule(args) -> int:
    from syndicate.engine.upcoming import pending_count, upcoming

    settings = load_settings(args)
    limit = args.limit if args.limit is not None else (None if args.json else STATUS_LIMIT)
    rows = upcoming(settings, parse_time(args.at), limit or None)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out.print("nothing scheduled")
        return 0
    from rich.table import Table

    table = Table(title=f"What goes out next (local time: {settings.site.timezone})")
    for col in ("when (local)", "when (UTC)", "channel", "what", "state"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["local"][:16].replace("T", " "), r["utc"][:16].replace("T", " "), r["channel"],
                      r["what"], r["state"] + (f" ({r['note']})" if r.get("note") else ""))
    out.print(table)
    shown = sum(1 for r in rows if r["delivery_id"] is not None)
    if limit and shown == limit and (more := pending_count(settings, shown=shown) - shown):
        out.print(f"[yellow]{more} more[/] not shown: raise --limit (0 shows all), or see `syndicate status`")
    return 0


def cmd_check(args) -> int:
    from syndicate import providers
    from syndicate.cli.report import unsubscribe_warning
    from syndicate.providers.base import ProviderError
    from syndicate.settings import SettingsError

    settings = load_settings(args)
    if args.dns:
        return _check_dns(settings)
    failures = 0
    for name, channel in settings.enabled_channels().items():
        try:
            provider = providers.get(channel.provider)(settings, name, channel)
            try:
                detail = provider.check()
            finally:
                provider.close()
            status = "[yellow]WARN[/]" if "WARNING:" in detail else "[green]OK[/]  "
            out.print(f"{status} {name} ({channel.kind} via {channel.provider}): {detail}")
        except (ProviderError, SettingsError, providers.UnknownProvider) as exc:
            failures += 1
            out.print(f"[red]FAIL[/] {name} ({channel.kind} via {channel.provider}): {exc}{_check_hint(exc)}",
                      markup=True)
    if warning := unsubscribe_warning(settings):
        out.print(f"[yellow]WARN[/] web.public_url: {warning}")
    return 1 if failures else 0


def _check_dns(settings) -> int:
    from rich.markup import escape

    from syndicate.providers import sending_domain as sd

    findings = sd.check(settings)
    if not findings:
        out.print("no email channel sends from a domain of its own (outbox only): nothing to check")
        return 0
    marks = {sd.OK: "[green]OK[/]  ", sd.WARN: "[yellow]WARN[/]", sd.FAIL: "[red]FAIL[/]", sd.UNKNOWN: "[yellow]????[/]"}
    for f in findings:
        out.print(f"{marks[f.status]} {escape(f'{f.domain} {f.check}: {f.detail}')}", markup=True)
        if f.add:
            out.print(f"       add: {f.add}", markup=False)
    return 1 if any(f.status == sd.FAIL for f in findings) else 0


# What to do about each kind of failure, when the provider's message does not say it already.
_CHECK_HINTS = {
    "auth": "fix the credentials: the environment variables the channel's *_env options name, or the "
            "account's access (docs/settings.md)",
    "rate_limited": "the account is throttled now; try again later",
    "retryable": "the service did not answer properly; try again, or check api_base",
    "unknown": "the service did not answer in time; check api_base and the network",
}


def _check_hint(exc) -> str:
    hint = _CHECK_HINTS.get(getattr(exc, "error_class", ""))
    text = str(exc)
    if not hint or "set " in text or "option" in text:  # the message already says what to change
        return ""
    return f" ({hint})"


def cmd_approve(args) -> int:
    from syndicate.engine.actions import ActionRefused, approve
    from syndicate.engine.runner import ledger

    if _bulk_selection(args) is not None:
        return _bulk(args, "approve")
    if len(args.ids) != 1:
        raise UsageError("approve: name a delivery ID (or several), or --post, --channel, --state, --all-held")
    settings = load_settings(args)
    try:
        row = approve(ledger(settings), args.ids[0], actor())
    except ActionRefused as exc:
        raise UsageError(str(exc)) from None
    out.print(f"delivery {row.id} ({row.channel}) approved; due {row.due_at:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_bulk(args) -> int:
    return _bulk(args, args.command)


def _bulk_selection(args):
    """The deliveries a bulk command names, or None for `approve ID` (one delivery, the single action)."""
    from syndicate.engine.bulk import Selection

    states = tuple(args.state or ()) + (("held",) if args.all_held else ())
    selection = Selection(ids=args.ids or None, post_id=args.post, channel=args.channel, states=states or None)
    if args.command == "approve" and len(args.ids) == 1 and selection == Selection(ids=args.ids):
        return None
    return selection


def _bulk(args, action: str) -> int:
    """approve, hold, cancel or reschedule every delivery the filters name: one transaction."""
    from syndicate.engine.bulk import bulk_act, describe
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    selection = _bulk_selection(args)
    if selection.empty:
        raise UsageError(f"{action}: name the deliveries: IDs, --post ID, --channel NAME, --state STATE or --all-held")
    if selection.channel and selection.channel not in settings.channels:
        raise UsageError(f"--channel: no channel {selection.channel!r} in the settings")
    due = None
    if action == "reschedule":
        due = _local_time(args.to, settings)
    result = bulk_act(ledger(settings), action, selection, actor(), due=due,
                      reason=getattr(args, "reason", None))
    if not result.matched:
        out.print("no delivery matches")
        return 0
    out.print(describe(result) + (f"; due {due:%Y-%m-%d %H:%M} UTC" if due and result.changed else ""))
    return 0


def _local_time(value: str, settings, flag: str = "--to"):
    """TIME of FLAG: ISO 8601; without an offset it is the site's local time (site.timezone)."""
    from datetime import datetime

    from syndicate.engine.schedule import wall_to_utc

    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            return wall_to_utc(when.date(), when.time(), settings.site.tz)
        return parse_time(value)
    except (ValueError, OverflowError):
        raise UsageError(f"{flag}: not a usable ISO 8601 time: {value!r} (e.g. 2026-11-24T09:00, site time)") from None


def cmd_resolve(args) -> int:
    from syndicate.audience.subscribers import InvalidAddress, normalize
    from syndicate.engine.actions import ActionRefused, resolve, resolve_recipients
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    outcome = "sent" if args.sent else "retry" if args.retry else "cancel"
    try:
        if args.recipient or args.all_unknown:
            try:
                addresses = [normalize(a) for a in args.recipient] if args.recipient else None
            except InvalidAddress as exc:
                raise UsageError(f"--recipient: {exc}") from None
            done = resolve_recipients(ledger(settings), args.id, outcome, actor(), addresses)
            row = done.delivery
            out.print(f"delivery {row.id} ({row.channel}): {len(done.recipients)} recipients settled as "
                      f"{ {'sent': 'sent', 'retry': 'to mail again', 'cancel': 'cancelled'}[outcome] }: "
                      f"{', '.join(done.recipients[:10])}{' ...' if len(done.recipients) > 10 else ''}")
        else:
            row = resolve(ledger(settings), args.id, outcome, actor())
    except ActionRefused as exc:
        raise UsageError(str(exc)) from None
    out.print(f"delivery {row.id} ({row.channel}) is now {row.state}")
    return 0


def cmd_pause(args) -> int:
    from syndicate.engine.pause import pause
    from syndicate.engine.runner import ledger

    state, changed = pause(ledger(load_settings(args)), actor(), args.reason)
    out.print(("paused: " if changed else "already paused: ") + state.line())
    return 0


def cmd_resume(args) -> int:
    from syndicate.engine.pause import resume
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    done = resume(ledger(settings), settings, actor())
    if not done.was_paused:
        out.print("not paused: sending goes on")
        return 0
    out.print("resumed: due deliveries go out again")
    if done.held:
        out.print(f"[yellow]{len(done.held)} deliveries were due more than {settings.run.stale_after} ago while "
                  f"paused and are held for a person[/] ({', '.join(map(str, done.held[:10]))}"
                  f"{' ...' if len(done.held) > 10 else ''}): `syndicate approve ID` sends one late, "
                  "`syndicate cancel ID` drops it")
    return 0


def register(sub) -> None:
    p = sub.add_parser("run", help="poll feeds, plan and deliver what is due",
                       description="Poll feeds, plan and deliver what is due.", epilog=RUN_EXIT_HELP)
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: keep running)")
    p.add_argument("--at", metavar="TIME", help="act as if it were TIME (ISO 8601); implies --once")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="every delivery: channel, post, state, due time, attempts, errors",
                       description="Every delivery: its id, its post's id (for `syndicate post ID`), channel, "
                                   "state, due time, attempts, and a failure in plain words (-v: with the "
                                   "raw error text; --json has both).")
    p.add_argument("--json", action="store_true", help="print as JSON (every matching delivery unless --limit)")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"show the first N by due time (default {STATUS_LIMIT}; 0: all); a line says how many more")
    p.add_argument("--state", action="append", choices=STATES, help="only deliveries in this state (repeatable)")
    p.add_argument("--channel", metavar="NAME", help="only deliveries on this channel")
    p.add_argument("--since", metavar="TIME",
                   help="only deliveries that changed since TIME (ISO 8601; without an offset, site time)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("schedule", help="what will go out and when (local time and UTC), next digest editions")
    p.add_argument("--at", metavar="TIME", help="as seen at TIME (ISO 8601; default now)")
    p.add_argument("--json", action="store_true", help="print as JSON (every pending delivery unless --limit)")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"show the first N deliveries by due time (default {STATUS_LIMIT}; 0: all)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("check", help="try each channel's credentials with a harmless read call")
    p.add_argument("--dns", action="store_true", help="instead: each sending domain's SPF, DKIM and DMARC "
                                                      "records and alignment, with the records to add")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("approve", help="release held deliveries: one ID, several, or every one a filter names")
    _selection_args(p, held=True)
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("hold", help="hold planned deliveries until someone approves them (IDs or filters)")
    _selection_args(p)
    p.add_argument("--reason", help="why (shown with the held deliveries)")
    p.set_defaults(func=cmd_bulk)

    p = sub.add_parser("cancel", help="cancel planned, held, unknown or failed deliveries (IDs or filters)")
    _selection_args(p, held=True)
    p.set_defaults(func=cmd_bulk)

    p = sub.add_parser("reschedule", help="move planned or held deliveries to a new time (held ones stay held)")
    _selection_args(p, held=True)
    p.add_argument("--to", required=True, metavar="TIME",
                   help="the new due time, ISO 8601 (without an offset: the site's time zone)")
    p.set_defaults(func=cmd_bulk)

    p = sub.add_parser("pause", help="stop every send at once (sends in flight finish; polls and planning go on)")
    p.add_argument("--reason", help="why (shown in status, run and the desk)")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="send again after a pause; deliveries gone stale meanwhile wait for a person")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("resolve", help="settle an unknown or failed delivery (or its unknown recipients) "
                                       "after checking the provider")
    p.add_argument("id", type=int, metavar="ID")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--sent", action="store_true", help="it did go out: record it as sent")
    group.add_argument("--retry", action="store_true", help="it did not go out: send it again")
    group.add_argument("--cancel", action="store_true", help="leave it unsent")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--recipient", action="append", metavar="EMAIL", default=[],
                     help="settle this recipient of unknown outcome of an email delivery (repeatable); "
                          "--retry mails exactly these again")
    who.add_argument("--all-unknown", action="store_true",
                     help="settle every recipient of unknown outcome of an email delivery")
    p.set_defaults(func=cmd_resolve)


def _selection_args(p, held: bool = False) -> None:
    """The filters every bulk command shares; they combine (all must match). One transaction."""
    p.add_argument("ids", type=int, nargs="*", metavar="ID", help="delivery ids (see `syndicate status`)")
    p.add_argument("--post", type=int, metavar="ID", help="every delivery of this post")
    p.add_argument("--channel", metavar="NAME", help="every delivery on this channel")
    p.add_argument("--state", action="append", choices=("planned", "held", "unknown", "failed"),
                   help="only deliveries in this state (repeatable)")
    p.add_argument("--all-held", action="store_true", default=False,
                   help="every held delivery" if held else argparse.SUPPRESS)
