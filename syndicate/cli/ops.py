"""Day-two operations: secrets at rest, backup and restore of the ledger, alerts."""

from __future__ import annotations

from pathlib import Path

from syndicate.cli.common import UsageError, load_settings, out


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
