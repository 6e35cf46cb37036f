"""The `syndicate` command line. Each subcommand is a thin layer over the library; the
commands live by subject: engine (run, status, schedule, check, approve, resolve), posts (feed
inspect, post, preview), workers (worker, beat), email (subscribers, recipients, lint-email),
web (serve, users).

Exit codes: 0 success, 1 something went wrong while working (a delivery failed), 2 bad input
(settings, arguments, an unreadable feed), always with one clear line and never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from syndicate import __version__
from syndicate import settings as settings_mod
from syndicate.cli import email, engine, posts, web, workers
from syndicate.cli.common import UsageError, err, load_settings, out, parse_time

__all__ = ["UsageError", "build_parser", "load_settings", "main", "out", "parse_time"]

GROUPS = (engine, posts, workers, email, web)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syndicate", description="Blog feed -> newsletter and social posts, "
                                     "scheduled and sent exactly once.")
    parser.add_argument("--version", action="version", version=f"syndicate {__version__}")
    parser.add_argument("-c", "--config", help="settings file (default: $SYNDICATE_CONFIG, else ./settings.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


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
