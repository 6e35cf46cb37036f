"""The Celery side: start a worker or the one beat with the project's settings."""

from __future__ import annotations

from syndicate.cli.common import load_settings


def _celery(args, argv: list[str]) -> int:
    import os

    if args.config:  # workers/app.py reads the settings from $SYNDICATE_CONFIG
        os.environ["SYNDICATE_CONFIG"] = str(args.config)
    load_settings(args, signing=True)  # a settings mistake is reported before Celery starts
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


def register(sub) -> None:
    p = sub.add_parser("worker", help="start a Celery worker (sends deliveries, polls feeds)")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--hostname", help="Celery node name, e.g. worker1@%%h")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="start the one Celery beat (ticks the dispatcher and feed polls)")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--schedule-file", default="celerybeat-schedule", help="beat's state file")
    p.set_defaults(func=cmd_beat)
