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
              f"(unsubscribed earlier: not added back), {report.marked} marked unsubscribed, bounced or complained "
              f"(suppressed), {report.duplicates} duplicates, {len(report.invalid)} invalid")
    return 0


SUBSCRIBERS_LIMIT = 200  # addresses `subscribers list` prints by default (a list may hold 100,000)


def cmd_subscribers_list(args) -> int:

    from syndicate.audience import subscribers
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    factory = ledger(settings)
    limit = args.limit if args.limit is not None else (None if args.json else SUBSCRIBERS_LIMIT)
    from syndicate.audience import preferences
    from syndicate.ledger.db import transaction

    rows = subscribers.list_subscribers(factory, args.status, limit or None)
    with transaction(factory) as s:
        chosen = preferences.choices_of(s, [r.email for r in rows])
        tallies = preferences.audience_counts(s, settings)  # the desk's Audience page reads the same

    def cadence(r) -> str:
        return ",".join(chosen[r.email].cadences) if chosen.get(r.email) and chosen[r.email].cadences else "all"

    def topics(r) -> str:
        return ",".join(chosen[r.email].topics) if chosen.get(r.email) and chosen[r.email].topics else "all"

    if args.json:
        people = [{"email": r.email, "name": r.name, "status": r.status, "source": r.source,
                   "created_at": r.created_at.isoformat(),
                   "cadence": chosen[r.email].cadences if r.email in chosen else [],
                   "topics": chosen[r.email].topics if r.email in chosen else []} for r in rows]
        print(json.dumps({"subscribers": people, "counts": tallies}, indent=2, ensure_ascii=False))
        return 0
    totals = tallies["status"]
    matching = totals.get(args.status, 0) if args.status else sum(
        totals.get(k, 0) for k in ("active", "pending", "unsubscribed"))
    out.print(f"{matching} {args.status or 'subscribers'}: "
              + ", ".join(f"{totals.get(k, 0)} {k}" for k in ("active", "pending", "unsubscribed", "suppressed"))
              + (f"; showing the first {len(rows)} by address (--limit N, 0 for all)" if len(rows) < matching else ""))
    from rich.table import Table

    out.print("active per cadence: " + ", ".join(f"{n} {k}" for k, n in sorted(tallies["cadence"].items()))
              + "; per topic: " + ", ".join(f"{n} {k}" for k, n in sorted(tallies["topics"].items())))
    out.print("per channel: " + ", ".join(f"{n} {k}" for k, n in tallies["channels"].items()))
    table = Table("email", "name", "status", "since", "source", "cadence", "topics")
    for r in rows:
        table.add_row(r.email, r.name or "-", r.status, f"{r.created_at:%Y-%m-%d}", r.source or "-",
                      cadence(r), topics(r))
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


def cmd_subscribers_restore(args) -> int:
    from syndicate.audience import subscribers, suppression
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction

    settings = load_settings(args)
    try:
        address = subscribers.normalize(args.email)
    except subscribers.InvalidAddress as exc:
        raise UsageError(f"{args.email!r}: {exc}") from None
    with transaction(ledger(settings)) as s:
        lifted = suppression.restore(s, settings, address)
    out.print(f"{address}: " + ("suppression lifted; it may be mailed again" if lifted
                                else "was not suppressed; nothing changed"))
    return 0


def cmd_subscribers_export(args) -> int:
    import csv
    import sys

    from syndicate.audience import privacy
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction

    settings = load_settings(args)
    with transaction(ledger(settings)) as s:
        records = privacy.export(s, settings, args.email.strip().lower() if args.email else None)
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(("email", "section", "field", "value"))
        for record in records:
            for section, value in record.items():
                if section == "email":
                    continue
                for item in value if isinstance(value, list) else [value]:
                    for key, field_value in (item or {}).items():
                        writer.writerow((record["email"], section, key, "" if field_value is None else field_value))
        return 0
    print(json.dumps(records if not args.email else records[0], indent=2, ensure_ascii=False))
    return 0


def cmd_subscribers_forget(args) -> int:
    from syndicate.audience import privacy, subscribers
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction

    settings = load_settings(args)
    try:
        address = subscribers.normalize(args.email)
    except subscribers.InvalidAddress as exc:
        raise UsageError(f"{args.email!r}: {exc}") from None
    with transaction(ledger(settings)) as s:
        counts = privacy.forget(s, settings, address)
    out.print(f"{address}: forgotten ({counts['subscriber']} subscriber row, {counts['recipient_sends']} send "
              f"records, {counts['events']} events erased); kept only as a keyed hash on the suppression list, "
              "so it is never mailed again")
    return 0


def cmd_subscribers_sync(args) -> int:
    from syndicate.engine.runner import ledger
    from syndicate.providers.listsync import sync_all

    settings = load_settings(args)
    reports = sync_all(ledger(settings), settings, args.channel)
    if not reports:
        out.print("no Mailchimp or Buttondown email channel to read back")
    failed = False
    for report in reports:
        failed = failed or bool(report.error)
        out.print(report.line(), markup=False)
    return 1 if failed else 0


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
        settings = load_settings(args)
        hosts = lint_email.site_hosts(settings, args.allow_host or [])
        for warning in lint_email.brand_warnings(settings):
            out.print(f"warning: {warning}", markup=False)
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


def cmd_bounces_fetch(args) -> int:
    from syndicate.providers import bouncebox
    from syndicate.providers.base import ProviderError

    settings = load_settings(args)
    names = bouncebox.mailboxes(settings)
    if args.channel:
        if args.channel not in names:
            raise UsageError(f"--channel: {args.channel!r} is not an enabled email channel with bounce_imap_host")
        names = [args.channel]
    if not names:
        out.print("no channel has a bounce mailbox (set return_path and bounce_imap_host on an SMTP channel)")
        return 0
    failed = 0
    for name in names:
        try:
            out.print(bouncebox.fetch(settings, name).summary())
        except ProviderError as exc:
            failed += 1
            out.print(f"{name}: {exc}")
    return 1 if failed else 0


def register(sub) -> None:
    subs = sub.add_parser("subscribers", help="the subscriber list: import, list, remove, invite").add_subparsers(
        dest="subscribers_cmd", metavar="ACTION", required=True)
    p = subs.add_parser("import", help="add addresses from a CSV file (email[,name]); safe to repeat")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=cmd_subscribers_import)
    p = subs.add_parser("list", help="show the list")
    p.add_argument("--status", choices=("active", "pending", "unsubscribed", "bounced", "complained"))
    p.add_argument("--json", action="store_true", help="print as JSON (every address unless --limit)")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"show the first N by address (default {SUBSCRIBERS_LIMIT}; 0: all); the totals come first")
    p.set_defaults(func=cmd_subscribers_list)
    p = subs.add_parser("remove", help="take an address off the list and never mail it again")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_remove)
    p = subs.add_parser("restore", help="staff only: lift an address's suppression (bounce, complaint, "
                        "unsubscribe); the only way back")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_restore)
    p = subs.add_parser("export", help="everything held about one address (or all): subscriber, sends, "
                        "events, suppression")
    p.add_argument("email", metavar="EMAIL", nargs="?")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON (the default)")
    fmt.add_argument("--csv", action="store_true", help="CSV: email, section, field, value")
    p.set_defaults(func=cmd_subscribers_export)
    p = subs.add_parser("forget", help="erase an address (data protection); only a keyed hash stays, "
                        "suppressed")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_forget)
    p = subs.add_parser("sync", help="read unsubscribed and cleaned members back from Mailchimp and "
                        "Buttondown into the suppression list")
    p.add_argument("--channel", metavar="NAME", help="only this channel")
    p.set_defaults(func=cmd_subscribers_sync)
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

    bounces = sub.add_parser("bounces", help="bounce reports (DSNs) and complaints sent back by mail").add_subparsers(
        dest="bounces_cmd", metavar="ACTION", required=True)
    p = bounces.add_parser("fetch", help="read the bounce mailbox over IMAP, suppress what bounced or "
                           "complained, and move or delete each report handled")
    p.add_argument("--channel", metavar="NAME", help="only this channel's mailbox")
    p.set_defaults(func=cmd_bounces_fetch)
