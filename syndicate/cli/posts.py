"""Posts by hand: inspect a feed, send one post now, preview a post or the next digest."""

from __future__ import annotations

import json
from pathlib import Path

from syndicate.cli.common import UsageError, load_settings, out, parse_time


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
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("published", "title", "url", "author", "categories", "image"):
        table.add_column(col, overflow="fold")
    for p in parsed.posts:
        table.add_row(p.published.strftime("%Y-%m-%d %H:%M") if p.published else "-", p.title or "(no title)",
                      p.url, p.author or "-", ", ".join(p.categories[:4]), "yes" if p.image_url else "-")
    out.print(table)
    return 0


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
    from syndicate.engine.manual import Held, send_post_now

    settings = load_settings(args)
    factory, post = _resolve_post(settings, args.ref)
    channels = _channels(settings, args.channel)
    if args.dry_run:
        from syndicate.cli.preview import dry_run_text, preview_payloads

        for name, payload in preview_payloads(settings, post, channels).items():
            out.print(f"[bold]── {name}[/] ({settings.channels[name].kind})")
            print(dry_run_text(settings.channels[name].kind, payload))
        out.print(f"[dim]nothing was sent; `syndicate preview post {post.id}` writes each channel's files "
                  "(the email's HTML too)[/]")
        return 0
    try:
        results = send_post_now(factory, settings, post, channels, actor="cli", approve=args.approve)
    except Held as exc:  # a hold is released only by a person saying so
        ids = ", ".join(str(r.id) for r in exc.rows)
        raise UsageError(f"{exc}; nothing was sent: check it, then add --approve to approve and send it "
                         f"(or `syndicate approve ID` for delivery {ids})") from None
    from rich.table import Table

    table = Table("channel", "delivery", "state", "detail")
    for r in results:
        table.add_row(r.channel, str(r.delivery_id or "-"), r.state, r.detail)
    out.print(f"[bold]{post.title}[/] {post.url}")
    out.print(table)
    return 1 if any(r.state in ("failed", "refused") for r in results) else 0


def cmd_preview_post(args) -> int:
    from syndicate.cli.preview import write_preview

    settings = load_settings(args)
    _, post = _resolve_post(settings, args.ref)
    written = write_preview(settings, post, _channels(settings, args.channel), Path(args.out))
    out.print(f"[bold]{post.title}[/] previews in {args.out}:")
    for path in written:
        out.print(f"  {path}")
    return 0


def cmd_preview_digest(args) -> int:
    from syndicate.cli.preview import write_digest_preview
    from syndicate.ledger.models import utcnow

    settings = load_settings(args)
    names = args.channel or [n for n, c in settings.enabled_channels().items() if c.mode == "digest"]
    if not names:
        raise UsageError("no enabled channel has mode = \"digest\"")
    for name in names:
        if name not in settings.channels or settings.channels[name].mode != "digest":
            raise UsageError(f"--channel: {name!r} is not a digest channel")
    now = parse_time(args.at) or utcnow()
    tz = settings.site.tz
    for name in names:
        preview = write_digest_preview(settings, name, Path(args.out), now, args.latest)
        when = f"{preview.at.astimezone(tz):%a %Y-%m-%d %H:%M %Z}"
        if preview.subject is None:
            out.print(f"{name}: edition {preview.key} ({when}): no posts first seen since "
                      f"{preview.since.astimezone(tz):%Y-%m-%d %H:%M}; it would be skipped")
            continue
        out.print(f"{name}: edition {preview.key} ({when}), {preview.posts} post{'s' if preview.posts != 1 else ''}: "
                  f"\"{preview.subject}\"")
        for path in preview.files:
            out.print(f"  {path}")
    return 0


def register(sub) -> None:
    feed = sub.add_parser("feed", help="work with feeds").add_subparsers(dest="feed_cmd", metavar="ACTION",
                                                                          required=True)
    p = feed.add_parser("inspect", help="parse one feed (URL or file) and show its normalized posts")
    p.add_argument("location", metavar="URL_OR_FILE")
    p.add_argument("--json", action="store_true", help="print the posts as JSON")
    p.set_defaults(func=cmd_feed_inspect)

    p = sub.add_parser("post", help="send (or show with --dry-run) one post now, by URL or post id")
    p.add_argument("ref", metavar="URL_OR_ID", help="the post's URL, or its post id: the 'post' column of "
                   "`syndicate status` (not the delivery id)")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    p.add_argument("--approve", action="store_true",
                   help="approve and send deliveries that are held (e.g. sensitive topics); without it they are refused")
    p.set_defaults(func=cmd_post)

    preview = sub.add_parser("preview", help="render without sending").add_subparsers(
        dest="preview_cmd", metavar="WHAT", required=True)
    p = preview.add_parser("post", help="render one post for its channels into a folder")
    p.add_argument("ref", metavar="URL_OR_ID", help="the post's URL, or its post id (the 'post' column of "
                   "`syndicate status`)")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
    p.add_argument("--out", default="preview", metavar="DIR", help="folder to write into (default: ./preview)")
    p.set_defaults(func=cmd_preview_post)
    p = preview.add_parser("digest", help="render the next digest edition into a folder")
    p.add_argument("--channel", action="append", metavar="NAME", help="only this digest channel (repeatable)")
    p.add_argument("--out", default="preview", metavar="DIR", help="folder to write into (default: ./preview)")
    p.add_argument("--at", metavar="TIME", help="as if it were TIME (ISO 8601)")
    p.add_argument("--latest", type=int, metavar="N", help="show the N latest posts instead (to see the design)")
    p.set_defaults(func=cmd_preview_digest)
