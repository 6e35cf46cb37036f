"""Email commands: the subscriber list, per-recipient records, and the email lint."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from syndicate.cli.common import UsageError, load_settings, out


def cmd_subscribers_import(args) -> int:

    from syndicate.audience import subscribers
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    report = subscribers.import_csv(ledger(settings), settings, path)
    for line, value, why in report.invalid:
        out.print(f"[yellow]line {line}:[/] {value!r} skipped: {why}", markup=True)
    out.print(f"{path.name}: {report.added} added" + (f" ({report.pending} pending confirmation)"
                                                       if report.pending else "")
              + f", {report.updated} updated, {report.unchanged} already there, {report.suppressed} suppressed "
              f"(unsubscribed earlier: not added back), {report.duplicates} duplicates, {len(report.invalid)} invalid")
    return 0


SUBSCRIBERS_LIMIT = 200  # addresses `subscribers list` prints by default (a list may hold 100,000)


def cmd_subscribers_list(args) -> int:

    from syndicate.audience import subscribers
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    factory = ledger(settings)
    limit = args.limit if args.limit is not None else (None if args.json else SUBSCRIBERS_LIMIT)
    rows = subscribers.list_subscribers(factory, args.status, limit or None)
    if args.json:
        print(json.dumps([{"email": r.email, "name": r.name, "status": r.status, "source": r.source,
                           "created_at": r.created_at.isoformat()} for r in rows], indent=2, ensure_ascii=False))
        return 0
    totals = subscribers.counts(factory)
    matching = totals.get(args.status, 0) if args.status else sum(
        totals.get(k, 0) for k in ("active", "pending", "unsubscribed"))
    out.print(f"{matching} {args.status or 'subscribers'}: "
              + ", ".join(f"{totals.get(k, 0)} {k}" for k in ("active", "pending", "unsubscribed", "suppressed"))
              + (f"; showing the first {len(rows)} by address (--limit N, 0 for all)" if len(rows) < matching else ""))
    from rich.table import Table

    table = Table("email", "name", "status", "since", "source")
    for r in rows:
        table.add_row(r.email, r.name or "-", r.status, f"{r.created_at:%Y-%m-%d}", r.source or "-")
    out.print(table)
    return 0


def cmd_subscribers_remove(args) -> int:
    from syndicate.audience import subscribers
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    try:
        known = subscribers.remove(ledger(settings), args.email)
    except subscribers.InvalidAddress as exc:
        raise UsageError(f"{args.email!r}: {exc}") from None
    note = "" if known else " (it was not on the list; it is suppressed all the same)"
    out.print(f"{args.email}: removed and suppressed: never mailed again{note}")
    return 0


def cmd_subscribers_invite(args) -> int:
    from syndicate.providers.smtp import send_invites

    settings = load_settings(args)
    channel = settings.channels.get(args.channel)
    if channel is None or channel.kind != "email" or channel.provider != "smtp":
        raise UsageError(f"--channel: {args.channel!r} is not an email channel with provider = \"smtp\"")
    sent, failed = send_invites(settings, args.channel)
    out.print(f"{sent} confirmation emails sent" + (f", {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_recipients(args) -> int:
    from syndicate.email.recipients import recipient_report
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    rows = recipient_report(ledger(settings), args.id)
    if args.json:
        print(json.dumps([{"recipient": r.recipient, "state": r.state, "code": r.code, "attempts": r.attempts,
                           "message_id": r.message_id, "detail": r.error,
                           "updated_at": r.updated_at.isoformat() if r.updated_at else None} for r in rows],
                         indent=2, ensure_ascii=False))
        return 0
    if not rows:
        out.print(f"delivery {args.id}: no recipient records (not an email delivery to our own list, or not "
                  "sent yet)")
        return 0
    from rich.table import Column, Table

    table = Table("state", "code", "attempts", "detail")
    table.columns.insert(0, Column("recipient", no_wrap=True))  # an address is never cut
    for r in rows:
        table.add_row(r.recipient, r.state, str(r.code or "-"), str(r.attempts), r.error or r.message_id or "")
    out.print(table)
    counts = Counter(r.state for r in rows)
    out.print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    if counts.get("unknown"):
        out.print(f"[yellow]{counts['unknown']} recipients may or may not have the message (a worker stopped or "
                  "the connection dropped after their message went out); they are never mailed again by a send. "
                  "Check the mail server's log, then: "
                  f"`syndicate resolve {args.id} --recipient EMAIL --sent|--retry|--cancel` (or --all-unknown).[/]")
    return 0


def cmd_lint_email(args) -> int:

    from syndicate.email import lint as lint_email
    from syndicate.settings import SettingsError

    try:
        hosts = lint_email.site_hosts(load_settings(args), args.allow_host or [])
    except SettingsError:
        if not args.allow_host:
            raise
        hosts = {h.lower().removeprefix("www.") for h in args.allow_host}
    failed = False
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        findings = lint_email.lint_file(path, hosts)
        failed = failed or bool(findings)
        if not findings:
            out.print(f"{path}: ok")
        for finding in findings:
            out.print(f"{path}: {finding}", markup=False)
    return 1 if failed else 0


def register(sub) -> None:
    subs = sub.add_parser("subscribers", help="the subscriber list: import, list, remove, invite").add_subparsers(
        dest="subscribers_cmd", metavar="ACTION", required=True)
    p = subs.add_parser("import", help="add addresses from a CSV file (email[,name]); safe to repeat")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=cmd_subscribers_import)
    p = subs.add_parser("list", help="show the list")
    p.add_argument("--status", choices=("active", "pending", "unsubscribed"))
    p.add_argument("--json", action="store_true", help="print as JSON (every address unless --limit)")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"show the first N by address (default {SUBSCRIBERS_LIMIT}; 0: all); the totals come first")
    p.set_defaults(func=cmd_subscribers_list)
    p = subs.add_parser("remove", help="take an address off the list and never mail it again")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_remove)
    p = subs.add_parser("invite", help="double opt-in: email each pending address its confirm link")
    p.add_argument("--channel", required=True, metavar="NAME", help="the SMTP email channel to send with")
    p.set_defaults(func=cmd_subscribers_invite)

    p = sub.add_parser("recipients", help="per-recipient send records of one email delivery")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("id", type=int, metavar="DELIVERY_ID")
    p.set_defaults(func=cmd_recipients)

    p = sub.add_parser("lint-email", help="check rendered emails: size, alt text, URLs, hosts, headers")
    p.add_argument("files", nargs="+", metavar="FILE.eml|FILE.html")
    p.add_argument("--allow-host", action="append", metavar="HOST",
                   help="another host images may load from (repeatable)")
    p.set_defaults(func=cmd_lint_email)
