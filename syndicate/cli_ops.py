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
