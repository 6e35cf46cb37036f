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


# ---------------------------------------------------------------- email: subscribers, serve, lint, digest


def cmd_subscribers_import(args) -> int:
    from pathlib import Path

    from syndicate import subscribers
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


def cmd_subscribers_list(args) -> int:
    import json

    from rich.table import Table

    from syndicate import subscribers
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    factory = ledger(settings)
    rows = subscribers.list_subscribers(factory, args.status)
    if args.json:
        print(json.dumps([{"email": r.email, "name": r.name, "status": r.status, "source": r.source,
                           "created_at": r.created_at.isoformat()} for r in rows], indent=2, ensure_ascii=False))
        return 0
    table = Table("email", "name", "status", "since", "source")
    for r in rows:
        table.add_row(r.email, r.name or "-", r.status, f"{r.created_at:%Y-%m-%d}", r.source or "-")
    out.print(table)
    totals = subscribers.counts(factory)
    out.print(", ".join(f"{totals.get(k, 0)} {k}" for k in ("active", "pending", "unsubscribed", "suppressed")))
    return 0


def cmd_subscribers_remove(args) -> int:
    from syndicate import subscribers
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


def cmd_serve(args) -> int:
    from werkzeug.serving import run_simple

    from syndicate.web import create_app

    settings = load_settings(args)
    app = create_app(settings)
    out.print(f"serving on http://{args.host}:{args.port} (public address: {settings.public_url}); Ctrl-C to stop")
    run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)
    return 0


def cmd_lint_email(args) -> int:
    from pathlib import Path

    from syndicate import lint_email
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


def cmd_preview_digest(args) -> int:
    from pathlib import Path

    from sqlalchemy import select

    from syndicate.cli import parse_time
    from syndicate.engine.digest import edition_posts, upcoming_edition
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import Post, utcnow
    from syndicate.model import PostData
    from syndicate.payloads import digest_payload, personalize

    settings = load_settings(args)
    names = args.channel or [n for n, c in settings.enabled_channels().items() if c.mode == "digest"]
    if not names:
        raise UsageError("no enabled channel has mode = \"digest\"")
    for name in names:
        if name not in settings.channels or settings.channels[name].mode != "digest":
            raise UsageError(f"--channel: {name!r} is not a digest channel")
    now = parse_time(args.at) or utcnow()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    factory = ledger(settings)
    for name in names:
        with transaction(factory) as s:
            edition = upcoming_edition(s, settings, name, now)
            posts = edition_posts(edition)
            if args.latest:
                rows = s.scalars(select(Post).where(Post.plan != "ignore").order_by(Post.id.desc())
                                 .limit(args.latest))
                posts = [PostData.from_dict(p.data) for p in rows]
        when = f"{edition.at.astimezone(settings.site.tz):%a %Y-%m-%d %H:%M %Z}"
        if not posts:
            out.print(f"{name}: edition {edition.key} ({when}): no new posts since "
                      f"{edition.since.astimezone(settings.site.tz):%Y-%m-%d %H:%M}; it would be skipped")
            continue
        payload = digest_payload(posts, settings, name, edition.as_dict())
        base = folder / f"{name}-{edition.key}"
        base.with_suffix(".html").write_text(payload["html"], encoding="utf-8")
        base.with_suffix(".txt").write_text(payload["text"], encoding="utf-8")
        # As the SMTP provider builds it, with "{token}" where each recipient's token goes.
        to = (payload["to"] or ["subscriber@example.org"])[0]
        base.with_suffix(".eml").write_bytes(bytes(personalize(payload, to, "{token}")))
        out.print(f"{name}: edition {edition.key} ({when}), {len(posts)} posts: \"{payload['subject']}\"")
        for suffix in (".html", ".txt", ".eml"):
            out.print(f"  {base.with_suffix(suffix)}")
    return 0


def cmd_recipients(args) -> int:
    from rich.table import Table

    from syndicate.engine.runner import ledger
    from syndicate.recipients import recipient_report

    settings = load_settings(args)
    rows = recipient_report(ledger(settings), args.id)
    if not rows:
        out.print(f"delivery {args.id}: no recipient records (not an SMTP delivery, or not sent yet)")
        return 0
    table = Table("recipient", "state", "code", "attempts", "detail")
    for r in rows:
        table.add_row(r.recipient, r.state, str(r.code or "-"), str(r.attempts), r.error or r.message_id or "")
    out.print(table)
    unresolved = [r.recipient for r in rows if r.state in ("sending", "unknown")]
    if unresolved:
        out.print(f"[yellow]{len(unresolved)} recipients may or may not have the message (a crash or a "
                  f"dropped connection mid-send); they are never mailed again by this delivery.[/]")
    return 0


def _preview_subparsers(sub):
    """The `preview` command's own subcommands, to add `preview digest` beside `preview post`."""
    import argparse

    preview = sub.choices.get("preview")
    for action in getattr(preview, "_actions", []):
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register_email(sub) -> None:
    subs = sub.add_parser("subscribers", help="the subscriber list: import, list, remove, invite").add_subparsers(
        dest="subscribers_cmd", metavar="ACTION", required=True)
    p = subs.add_parser("import", help="add addresses from a CSV file (email[,name]); safe to repeat")
    p.add_argument("file", metavar="FILE.csv")
    p.set_defaults(func=cmd_subscribers_import)
    p = subs.add_parser("list", help="show the list")
    p.add_argument("--status", choices=("active", "pending", "unsubscribed"))
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_subscribers_list)
    p = subs.add_parser("remove", help="take an address off the list and never mail it again")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=cmd_subscribers_remove)
    p = subs.add_parser("invite", help="double opt-in: email each pending address its confirm link")
    p.add_argument("--channel", required=True, metavar="NAME", help="the SMTP email channel to send with")
    p.set_defaults(func=cmd_subscribers_invite)

    p = sub.add_parser("recipients", help="per-recipient send records of one email delivery")
    p.add_argument("id", type=int, metavar="DELIVERY_ID")
    p.set_defaults(func=cmd_recipients)

    p = sub.add_parser("serve", help="run the web app (one-click unsubscribe, confirm links)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("lint-email", help="check rendered emails: size, alt text, URLs, hosts, headers")
    p.add_argument("files", nargs="+", metavar="FILE.eml|FILE.html")
    p.add_argument("--allow-host", action="append", metavar="HOST",
                   help="another host images may load from (repeatable)")
    p.set_defaults(func=cmd_lint_email)

    preview = _preview_subparsers(sub)
    target = preview if preview is not None else sub
    p = target.add_parser("digest" if preview is not None else "preview-digest",
                          help="render the next digest edition into a folder")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this digest channel (repeatable)")
    p.add_argument("--out", default="preview", metavar="DIR", help="folder to write into (default: ./preview)")
    p.add_argument("--at", metavar="TIME", help="as if it were TIME (ISO 8601)")
    p.add_argument("--latest", type=int, metavar="N", help="show the N latest posts instead (to see the design)")
    p.set_defaults(func=cmd_preview_digest)
