"""The `syndicate` command line. Each subcommand is a thin layer over the library.

Exit codes: 0 success, 1 something went wrong while working (a delivery failed), 2 bad input
(settings, arguments, an unreadable feed), always with one clear line and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from syndicate import __version__
from syndicate import settings as settings_mod

out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:  # piped or captured: tables need more than rich's 80-column default
    out.width = 150
err = Console(stderr=True, highlight=False, soft_wrap=True)


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: not an ISO 8601 time: {value!r} (e.g. 2026-11-24T09:00:00+00:00)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def load_settings(args) -> settings_mod.Settings:
    return settings_mod.load(args.config)


# ---------------------------------------------------------------- run


def cmd_run(args) -> int:
    from syndicate.engine.runner import run_forever, run_once
    from syndicate.report import print_run_summary

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


# ---------------------------------------------------------------- feed inspect


def cmd_feed_inspect(args) -> int:
    from syndicate.feeds import FeedError, fetch, parse

    try:
        fetched = fetch(args.location)
        parsed = parse(fetched.body, url=fetched.final_url or args.location, content_type=fetched.content_type)
    except FeedError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps({"title": parsed.title, "link": parsed.link, "format": parsed.format,
                          "warnings": parsed.warnings, "posts": [p.to_dict() for p in parsed.posts]},
                         indent=2, ensure_ascii=False))
        return 0
    out.print(f"[bold]{parsed.title or '(untitled feed)'}[/] {parsed.link}  [dim]{parsed.format}, "
              f"{len(parsed.posts)} posts[/]")
    for warning in parsed.warnings:
        out.print(f"[yellow]warning:[/] {warning}")
    table = Table(show_lines=False)
    for col in ("published", "title", "url", "author", "categories", "image"):
        table.add_column(col, overflow="fold")
    for p in parsed.posts:
        table.add_row(p.published.strftime("%Y-%m-%d %H:%M") if p.published else "-", p.title or "(no title)",
                      p.url, p.author or "-", ", ".join(p.categories[:4]), "yes" if p.image_url else "-")
    out.print(table)
    return 0


# ---------------------------------------------------------------- post / preview


def _resolve_post(settings, ref: str):
    """Find a post in the ledger; poll the configured feeds once if it is not there yet."""
    from syndicate.engine.actions import find_post
    from syndicate.engine.poll import poll_feed
    from syndicate.engine.runner import ledger
    from syndicate.ledger.db import transaction
    from syndicate.ledger.models import utcnow

    factory = ledger(settings)
    with transaction(factory) as s:
        post = find_post(s, ref)
    if post is None:
        for feed in settings.feeds:
            poll_feed(factory, settings, feed, utcnow())
        with transaction(factory) as s:
            post = find_post(s, ref)
    if post is None:
        raise UsageError(f"no post {ref!r} in the configured feeds ({', '.join(f.name for f in settings.feeds)})")
    return factory, post


def _channels(settings, names: list[str] | None) -> list[str]:
    """The per-post channels named (default: all enabled); digest channels send editions, not posts."""
    per_post = [name for name, ch in settings.enabled_channels().items() if ch.mode == "per_post"]
    for name in names or []:
        if name not in per_post:
            raise UsageError(f"--channel: no enabled per-post channel {name!r} (have: {', '.join(per_post)}; "
                             "digests: `syndicate preview digest`)")
    return names or per_post


def cmd_post(args) -> int:
    from syndicate.engine.manual import send_post_now

    settings = load_settings(args)
    factory, post = _resolve_post(settings, args.ref)
    channels = _channels(settings, args.channel)
    if args.dry_run:
        from syndicate.preview import preview_payloads

        for name, payload in preview_payloads(settings, post, channels).items():
            out.print(f"[bold]── {name}[/] ({settings.channels[name].kind})")
            print(json.dumps(payload, indent=2, ensure_ascii=False)[:4000])
        return 0
    results = send_post_now(factory, settings, post, channels, actor="cli")
    table = Table("channel", "delivery", "state", "detail")
    for r in results:
        table.add_row(r.channel, str(r.delivery_id or "-"), r.state, r.detail)
    out.print(f"[bold]{post.title}[/] {post.url}")
    out.print(table)
    return 1 if any(r.state == "failed" for r in results) else 0


def cmd_preview_post(args) -> int:
    from syndicate.preview import write_preview

    settings = load_settings(args)
    _, post = _resolve_post(settings, args.ref)
    written = write_preview(settings, post, _channels(settings, args.channel), Path(args.out))
    out.print(f"[bold]{post.title}[/] previews in {args.out}:")
    for path in written:
        out.print(f"  {path}")
    return 0


# ---------------------------------------------------------------- status


def cmd_status(args) -> int:
    from syndicate.report import print_status, status_rows

    settings = load_settings(args)
    rows = status_rows(settings)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print_status(out, settings, rows)
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syndicate", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"syndicate {__version__}")
    parser.add_argument("-c", "--config", help="settings file (default: $SYNDICATE_CONFIG, else ./settings.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="poll feeds, plan and deliver what is due")
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: keep running)")
    p.add_argument("--at", metavar="TIME", help="act as if it were TIME (ISO 8601); implies --once")
    p.set_defaults(func=cmd_run)

    feed = sub.add_parser("feed", help="work with feeds").add_subparsers(dest="feed_cmd", metavar="ACTION",
                                                                          required=True)
    p = feed.add_parser("inspect", help="parse one feed (URL or file) and show its normalized posts")
    p.add_argument("location", metavar="URL_OR_FILE")
    p.add_argument("--json", action="store_true", help="print the posts as JSON")
    p.set_defaults(func=cmd_feed_inspect)

    p = sub.add_parser("post", help="send (or show with --dry-run) one post now")
    p.add_argument("ref", metavar="URL_OR_ID", help="the post's URL, or its id in `syndicate status`")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    p.set_defaults(func=cmd_post)

    preview = sub.add_parser("preview", help="render without sending").add_subparsers(
        dest="preview_cmd", metavar="WHAT", required=True)
    p = preview.add_parser("post", help="render one post for its channels into a folder")
    p.add_argument("ref", metavar="URL_OR_ID")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
    p.add_argument("--out", default="preview", metavar="DIR", help="folder to write into (default: ./preview)")
    p.set_defaults(func=cmd_preview_post)

    p = sub.add_parser("status", help="every delivery: channel, post, state, due time, attempts, errors")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_status)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Commands that live with their own module (workers, scheduling, operator actions)."""
    from syndicate import cli_desk, cli_ops

    return [cli_ops.register, cli_ops.register_celery, cli_ops.register_engine, cli_ops.register_email,
            cli_desk.register_desk]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except (settings_mod.SettingsError, UsageError) as exc:
        err.print(f"syndicate: error: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
