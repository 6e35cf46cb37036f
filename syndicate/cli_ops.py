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
