"""The engine's commands: run it, see what it holds and what comes next, act on deliveries."""

from __future__ import annotations

import json

from rich.table import Table

from syndicate.cli.common import UsageError, actor, load_settings, out, parse_time


def cmd_run(args) -> int:
    from syndicate.cli.report import print_run_summary
    from syndicate.engine.runner import run_forever, run_once

    settings = load_settings(args)
    now = parse_time(args.at)
    if args.once or now is not None:
        with out.status("working…") as status:
            summary = run_once(settings, now, progress=lambda msg: status.update(msg))
        print_run_summary(out, settings, summary)
        return 1 if any(o.state == "failed" for o in summary.outcomes) else 0
    out.print(f"running every {settings.run.interval}; Ctrl-C to stop")
    try:
        run_forever(settings, on_summary=lambda s: print_run_summary(out, settings, s))
    except KeyboardInterrupt:
        out.print("stopped")
    return 0


def cmd_status(args) -> int:
    from syndicate.cli.report import print_status, status_rows

    settings = load_settings(args)
    rows = status_rows(settings)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print_status(out, settings, rows)
    return 0


def cmd_schedule(args) -> int:
    from syndicate.engine.upcoming import upcoming

    settings = load_settings(args)
    rows = upcoming(settings, parse_time(args.at))
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out.print("nothing scheduled")
        return 0
    table = Table(title=f"What goes out next (local time: {settings.site.timezone})")
    for col in ("when (local)", "when (UTC)", "channel", "what", "state"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["local"][:16].replace("T", " "), r["utc"][:16].replace("T", " "), r["channel"],
                      r["what"], r["state"] + (f" ({r['note']})" if r.get("note") else ""))
    out.print(table)
    return 0


def cmd_check(args) -> int:
    from syndicate import providers
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

    settings = load_settings(args)
    try:
        row = approve(ledger(settings), args.id, actor())
    except ActionRefused as exc:
        raise UsageError(str(exc)) from None
    out.print(f"delivery {row.id} ({row.channel}) approved; due {row.due_at:%Y-%m-%d %H:%M} UTC")
    return 0


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


def register(sub) -> None:
    p = sub.add_parser("run", help="poll feeds, plan and deliver what is due")
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: keep running)")
    p.add_argument("--at", metavar="TIME", help="act as if it were TIME (ISO 8601); implies --once")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="every delivery: channel, post, state, due time, attempts, errors")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("schedule", help="what will go out and when (local time and UTC), next digest editions")
    p.add_argument("--at", metavar="TIME", help="as seen at TIME (ISO 8601; default now)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("check", help="try each channel's credentials with a harmless read call")
    p.add_argument("--dns", action="store_true", help="instead: each sending domain's SPF, DKIM and DMARC "
                                                      "records and alignment, with the records to add")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("approve", help="release a held delivery")
    p.add_argument("id", type=int, metavar="ID")
    p.set_defaults(func=cmd_approve)

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
