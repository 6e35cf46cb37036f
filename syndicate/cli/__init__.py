"""The `syndicate` command line. Each subcommand is a thin layer over the library; the
commands live by subject: engine (run, status, schedule, check, approve, resolve), posts (feed
inspect, post, preview), workers (worker, beat), email (subscribers, recipients, lint-email),
web (serve, users), ops (doctor).

Exit codes: 0 success, 1 something went wrong while working (a delivery failed), 2 bad input
(settings, arguments, an unreadable feed, a store that cannot be opened, a file that cannot be
written), always with one clear line and never a traceback; 130 interrupted (Ctrl-C). `run --once`
says more (3 a feed failed, 4 a send needs a person, 5 a send will be retried: cli/engine.py).
"""

from __future__ import annotations

import argparse
import os
import sys

from syndicate import __version__
from syndicate.cli.common import UsageError, err, load_settings, out, parse_time
from syndicate.ledger import StoreError

__all__ = ["UsageError", "build_parser", "load_settings", "main", "out", "parse_time"]


def build_parser() -> argparse.ArgumentParser:
    # The command groups load here, not on import: the quiet run (main) needs none of them.
    from syndicate.cli import email, engine, ops, posts, web, workers

    parser = argparse.ArgumentParser(prog="syndicate", description="Blog feed -> newsletter and social posts, "
                                     "scheduled and sent exactly once.")
    parser.add_argument("--version", action="version", version=f"syndicate {__version__}")
    parser.add_argument("-c", "--config", help="settings file (default: $SYNDICATE_CONFIG, else ./settings.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (engine, posts, workers, email, web, ops):
        group.register(sub)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept -v after the subcommand too (`syndicate run --once -v`); SUPPRESS keeps a -v given
    before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                       help="log what happens")
                _verbose_everywhere(subparser)


def main(argv: list[str] | None = None) -> int:
    if (code := _quiet_run(sys.argv[1:] if argv is None else argv)) is not None:
        return code
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging  # here: the quiet run above does without it

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args) or 0
    except UsageError as exc:
        return _fail(str(exc))
    except StoreError as exc:
        return _fail(f"{_store_setting()}: {exc}")
    except OSError as exc:
        if exc.filename is None:  # not a file the command was given (a network error is a bug here)
            raise
        return _fail(f"{exc.filename}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        err.print("syndicate: interrupted", markup=False)
        return 130
    except Exception as exc:
        if not _is_settings_error(exc):
            raise
        return _fail(str(exc))


def _quiet_run(argv: list[str]) -> int | None:
    """`run --once` with nothing to do but record 304s, proven without loading the full pass
    (engine/quiet.py); None: the full pass runs."""
    from syndicate.engine import quiet

    try:
        return quiet.try_run(argv)
    except KeyboardInterrupt:
        err.print("syndicate: interrupted", markup=False)
        return 130


def _is_settings_error(exc: Exception) -> bool:
    # Settings are loaded by the commands that need them (pydantic is not loaded for --help); a
    # SettingsError can only come from a command that did.
    settings_mod = sys.modules.get("syndicate.settings")
    return settings_mod is not None and isinstance(exc, settings_mod.SettingsError)


def _fail(message: str) -> int:
    """Known bad input, one line on stderr: a settings mistake, a bad argument, a store that cannot
    be opened, a file that cannot be read or written."""
    err.print(f"syndicate: error: {message}", markup=False)
    return 2


def _store_setting() -> str:
    return "$SYNDICATE_STORE_URL" if os.environ.get("SYNDICATE_STORE_URL") else "store.url"


if __name__ == "__main__":
    sys.exit(main())
