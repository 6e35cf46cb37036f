"""Operations on the command line: the WSGI server `syndicate serve` runs on, `syndicate doctor`,
and day two: secrets at rest, backup and restore of the ledger, alerts.

Why waitress and not gunicorn: waitress is pure Python with no C parts and runs on every OS
a practice may use (gunicorn needs fork, so not on Windows), it serves with a pool of threads
in one process, which suits this app (requests wait on the ledger, the broker or a test send,
not on the CPU), and its limits on request size, headers and slow clients are ordinary
options. It is a real production server: HTTP/1.1 keep-alive, a bounded request body, no
debugger, no reloader. Werkzeug's development server (reloader, tracebacks in the browser
when debugging) stays behind `--dev`. Anyone who prefers gunicorn or uWSGI can point it at
``syndicate.web.wsgi:app``.
"""

from __future__ import annotations

import json
from pathlib import Path

from syndicate.cli.common import UsageError, load_settings, out

# The largest request body accepted: the desk's forms and the unsubscribe POST are tiny; this
# only keeps a client from filling memory or disk. Flask's own MAX_CONTENT_LENGTH (web/__init__.py)
# is tighter still for the app's routes.
MAX_REQUEST_BODY = 1024 * 1024


def run_server(app, args) -> None:
    """Serve APP on args.host:args.port: waitress, or Werkzeug's development server with --dev."""
    if getattr(args, "dev", False):
        from werkzeug.serving import run_simple

        out.print("[yellow]development server (--dev):[/] not for production")
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False, use_debugger=False)
        return
    import waitress

    # ident: the Server header says "syndicate", neither Werkzeug nor a version to look up.
    # Proxy headers are left for the app to see (no proxy is trusted, so they change nothing in
    # the request's address or scheme): /metrics refuses a forwarded request when it has no token.
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads, ident="syndicate",
                   max_request_body_size=MAX_REQUEST_BODY, clear_untrusted_proxy_headers=False,
                   channel_timeout=60, _quiet=True)


def cmd_doctor(args) -> int:
    from syndicate.engine import health
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    report = health.evaluate(settings, ledger(settings))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.ok else 1
    for check in report.checks:
        mark = "[dim]skip[/]" if check.skipped else ("[green]ok[/]  " if check.ok else "[red]FAIL[/]")
        out.print(f"{mark} {check.name:<12} ", end="")
        out.print(check.detail, markup=False, highlight=False)
    if report.ok:
        out.print(f"healthy ({report.runner} runner)")
        return 0
    out.print(f"[red]unhealthy:[/] {', '.join(c.name for c in report.failing)}")
    return 1


def cmd_secrets(args) -> int:
    from syndicate.ledger.sealed import new_key

    if args.action == "keygen":
        print(new_key())
        return 0
    from syndicate.engine.runner import ledger
    from syndicate.providers.tokens import reseal_all

    settings = load_settings(args)
    count = reseal_all(ledger(settings), settings)
    out.print(f"{count} stored token rows encrypted under the first key in {settings.store.encryption_key_env}; "
              "the other keys may now be removed from it")
    return 0


def cmd_backup(args) -> int:
    from syndicate.engine.backup import BackupError, backup

    settings = load_settings(args)
    try:
        done = backup(settings.store_url, Path(args.file))
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    out.print(f"ledger saved to {done}")
    return 0


def cmd_restore(args) -> int:
    from syndicate.engine.backup import BackupError, restore

    settings = load_settings(args)
    if not args.yes:
        raise UsageError("restore replaces the whole ledger with the backup: stop every runner, worker and beat "
                         "first, then add --yes")
    try:
        unknown = restore(settings.store_url, Path(args.file))
    except BackupError as exc:
        raise UsageError(str(exc)) from None
    out.print(f"ledger restored from {args.file}")
    if unknown:
        out.print(f"[yellow]{unknown} deliveries were sending when the backup was taken: they are now unknown[/] "
                  "(nothing is resent on its own): check each with the provider, then `syndicate resolve ID "
                  "--sent|--retry|--cancel`")
    return 0


def cmd_alerts(args) -> int:
    from syndicate.engine.alerts import send_alerts
    from syndicate.engine.runner import ledger

    settings = load_settings(args)
    sent = send_alerts(ledger(settings), settings)
    out.print(", ".join(f"{kind}: {n}" for kind, n in sent.items()) if sent else "nothing new to alert")
    return 0


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check that the work is being done (the same checks as /healthz)",
                       description="Check the ledger, the broker (workers only), the runner's heartbeat, due "
                                   "and hanging deliveries, and every feed's last success, against the "
                                   "[health] thresholds. Exit 0 when healthy, 1 when not.")
    p.add_argument("--json", action="store_true", help="print the report as JSON (as /healthz does)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("secrets", help="encryption of the OAuth tokens kept in the ledger: a new key, or "
                                       "re-encrypt every token under the first key (rotation)")
    p.add_argument("action", choices=("rotate", "keygen"),
                   help="rotate: re-encrypt every stored token under the first key of store.encryption_key_env; "
                        "keygen: print a new key")
    p.set_defaults(func=cmd_secrets)

    p = sub.add_parser("backup", help="copy the ledger to FILE (SQLite: online backup; PostgreSQL: pg_dump)")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="replace the ledger with a backup; sends in flight then become unknown "
                                       "(never resent)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--yes", action="store_true", help="yes, replace the whole ledger")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("alerts", help="send the alerts due now (the run loop and beat do this on their own)")
    p.set_defaults(func=cmd_alerts)
