"""What every command shares: the consoles, bad-input errors, times, settings, the actor."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syndicate import settings as settings_mod


class _Console:
    """A rich Console made on first use: `syndicate --help` (and a command that prints nothing
    until it is done) does not wait for rich to load."""

    def __init__(self, **options):
        self._options = options
        self._console = None

    def __getattr__(self, name: str):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
            if not self._options.get("stderr") and not self._console.is_terminal:
                self._console.width = 150  # piped or captured: tables need more than rich's 80 columns
        return getattr(self._console, name)


out = _Console(highlight=False, soft_wrap=True)
err = _Console(stderr=True, highlight=False, soft_wrap=True)


_HEADROOM = timedelta(days=800)  # the longest look-ahead from an --at time (digest editions, windows)


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at: not an ISO 8601 time: {value!r} (e.g. 2026-11-24T09:00:00+00:00)") from None
    try:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        when + _HEADROOM  # schedules look ahead from it: a time at the end of the calendar cannot be used
    except OverflowError:
        raise UsageError(f"--at: {value!r} is too far in the future") from None
    return when


def load_settings(args, *, signing: bool = False) -> settings_mod.Settings:
    """The settings; with SIGNING (serve, run, worker, beat) a weak link-signing key stops the
    command here, with how to make a good one. Unset is allowed: the demo mails nobody."""
    from syndicate import settings as settings_mod

    settings = settings_mod.load(args.config)
    if signing:
        if (os.environ.get(settings.web.secret_env or "") or "").strip():
            settings_mod.signing_secret(settings.web)
        settings_mod.old_signing_secrets(settings.web)
    return settings


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"

