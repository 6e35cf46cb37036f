"""The Celery side: start a worker or the one beat with the project's settings."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from syndicate.cli.common import load_settings

if TYPE_CHECKING:  # loaded by the commands that read settings, not by `syndicate --help`
    from syndicate import settings as settings_mod


def _celery(args, argv: list[str], check=None) -> int:
    if args.config:  # workers/app.py reads the settings from $SYNDICATE_CONFIG
        os.environ["SYNDICATE_CONFIG"] = str(args.config)
    settings = load_settings(args, signing=True)  # a settings mistake is reported before Celery starts
    if check:
        check(settings)
    from workers.app import app

    app.start(argv)
    return 0


def signing_channels(settings: settings_mod.Settings) -> list[str]:
    """Email channels whose sends sign each recipient's unsubscribe link with the key that
    ``web.secret_env`` names (SMTP and the direct-send APIs; the outbox and campaign providers
    don't). Known by provider name: the worker's main process does not load the providers."""
    from syndicate.providers import SIGNS_LINKS

    return [name for name, ch in settings.channels.items() if ch.kind == "email" and ch.provider in SIGNS_LINKS]


def _require_secret(settings: settings_mod.Settings) -> None:
    # Without the key every email to the subscriber list would fail as "auth" and wait for a
    # person; say so now, in one line, instead of after the first send.
    from syndicate.settings import SettingsError

    names = signing_channels(settings)
    if names and not (os.environ.get(settings.web.secret_env or "") or "").strip():
        raise SettingsError(
            f"channels.{names[0]} signs unsubscribe links: set {settings.web.secret_env} (web.secret_env) "
            "for every worker, the same value `syndicate serve` has")


def worker_argv(args) -> list[str]:
    # A distinct Celery node name per process by default (Celery's own is celery@host for
    # all): the audit trail records the node (worker:<node>), so it tells workers apart.
    hostname = args.hostname or f"syndicate-{os.getpid()}@%h"
    return ["worker", f"--loglevel={args.loglevel}", f"--concurrency={args.concurrency}", f"--hostname={hostname}"]


def cmd_worker(args) -> int:
    return _celery(args, worker_argv(args), check=_require_secret)


def cmd_beat(args) -> int:
    return _celery(args, ["beat", f"--loglevel={args.loglevel}", f"--schedule={args.schedule_file}"])


def register(sub) -> None:
    p = sub.add_parser("worker", help="start a Celery worker (sends deliveries, polls feeds)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--hostname", help="Celery node name, unique per worker (default syndicate-<pid>@%%h)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="start the one Celery beat (ticks the dispatcher and feed polls)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--schedule-file", default="celerybeat-schedule", help="beat's state file")
    p.set_defaults(func=cmd_beat)
