"""Operator commands: approve held deliveries, settle unknown ones."""

from __future__ import annotations

import getpass

from syndicate.cli import UsageError, load_settings, out


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def cmd_approve(args) -> int:
    from syndicate.engine.actions import ActionRefused, approve
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    try:
        row = approve(ledger(settings), args.id, _actor())
    except ActionRefused as exc:
        raise UsageError(str(exc)) from None
    out.print(f"delivery {row.id} ({row.channel}) approved; due {row.due_at:%Y-%m-%d %H:%M} UTC")
    return 0


def cmd_resolve(args) -> int:
    from syndicate.engine.actions import ActionRefused, resolve
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    outcome = "sent" if args.sent else "retry" if args.retry else "cancel"
    try:
        row = resolve(ledger(settings), args.id, outcome, _actor())
    except ActionRefused as exc:
        raise UsageError(str(exc)) from None
    out.print(f"delivery {row.id} ({row.channel}) is now {row.state}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("approve", help="release a held delivery")
    p.add_argument("id", type=int, metavar="ID")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("resolve", help="settle an unknown or failed delivery after checking the provider")
    p.add_argument("id", type=int, metavar="ID")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--sent", action="store_true", help="it did go out: record it as sent")
    group.add_argument("--retry", action="store_true", help="it did not go out: send it again")
    group.add_argument("--cancel", action="store_true", help="leave it unsent")
    p.set_defaults(func=cmd_resolve)


# ---------------------------------------------------------------- Celery worker and beat


def _celery(args, argv: list[str]) -> int:
    import os

    if args.config:  # workers/app.py reads the settings from $SYNDICATE_CONFIG
        os.environ["SYNDICATE_CONFIG"] = str(args.config)
    load_settings(args)  # a settings mistake is reported before Celery starts
    from workers.app import app

    app.start(argv)
    return 0


def cmd_worker(args) -> int:
    argv = ["worker", f"--loglevel={args.loglevel}", f"--concurrency={args.concurrency}"]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    return _celery(args, argv)


def cmd_beat(args) -> int:
    return _celery(args, ["beat", f"--loglevel={args.loglevel}", f"--schedule={args.schedule_file}"])


def register_celery(sub) -> None:
    p = sub.add_parser("worker", help="start a Celery worker (sends deliveries, polls feeds)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--hostname", help="Celery node name, e.g. worker1@%%h")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="start the one Celery beat (ticks the dispatcher and feed polls)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--schedule-file", default="celerybeat-schedule", help="beat's state file")
    p.set_defaults(func=cmd_beat)


# ---------------------------------------------------------------- schedule and check


def cmd_schedule(args) -> int:
    import json

    from rich.table import Table

    from syndicate.cli import parse_time
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
    failures = 0
    for name, channel in settings.enabled_channels().items():
        try:
            provider = providers.get(channel.provider)(settings, name, channel)
            try:
                detail = provider.check()
            finally:
                provider.close()
            out.print(f"[green]OK[/]   {name} ({channel.kind} via {channel.provider}): {detail}")
        except (ProviderError, SettingsError, providers.UnknownProvider) as exc:
            failures += 1
            out.print(f"[red]FAIL[/] {name} ({channel.kind} via {channel.provider}): {exc}", markup=True)
    return 1 if failures else 0


def register_engine(sub) -> None:
    p = sub.add_parser("schedule", help="what will go out and when (local time and UTC), next digest editions")
    p.add_argument("--at", metavar="TIME", help="as seen at TIME (ISO 8601; default now)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("check", help="try each channel's credentials with a harmless read call")
    p.set_defaults(func=cmd_check)
