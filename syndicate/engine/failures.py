"""What a stored failure means, in plain words: one sentence for the desk and `syndicate status`.

A delivery keeps the raw text of its last error (``last_error``: the provider's answer, the
MJML compiler's message) and its class (``error_class``, from syndicate/errors.py, or
"render"). That text is exact but written for a developer. ``explain`` turns the two into a
sentence a marketing person can act on, naming the setting to change where there is one; the
raw text stays stored and is shown one click away, never replaced.
"""

from __future__ import annotations

import re

from syndicate.settings import Settings

NETWORKS = {"email": "email", "x": "X", "facebook": "Facebook", "linkedin": "LinkedIn", "pinterest": "Pinterest",
            "mastodon": "Mastodon", "bluesky": "Bluesky", "threads": "Threads"}

_ENV_UNSET = re.compile(r"environment variable (\w+) is not set")
_OPTION_UNSET = re.compile(r"set option (\w+) to the name of the environment variable")


def explain(error_class: str | None, last_error: str | None, channel: str, settings: Settings | None = None,
            state: str | None = None) -> str | None:
    """A plain sentence for a delivery's last error (None when it has none)."""
    if not last_error:
        return None
    text = last_error
    service = _service(channel, settings)
    where = f"channels.{channel}.options"
    if match := _ENV_UNSET.search(text):
        return (f"The {service} credentials are missing: the environment variable {match.group(1)} is not set "
                f"where Syndicate runs ({where}{_secret_option(channel, settings, match.group(1))}).")
    if match := _OPTION_UNSET.search(text):
        return (f"The {service} credentials are not configured: set {where}.{match.group(1)} to the name of "
                "the environment variable that holds them.")
    if "no longer in the settings" in text:
        return f"The channel {channel} is no longer in the settings, so this cannot be sent."
    if "MJML could not compile" in text or error_class == "render":
        return ("The email could not be built from this post (something in it, such as an odd character in "
                "its title, broke the email template). Fix the post on the blog, or cancel this delivery.")
    if text.startswith("adapter error"):
        return (f"Syndicate itself failed while sending to {service} (a bug, not your settings); whether it went "
                f"out is not known. Look on {service} first, then mark it sent or send it again.")
    if text.startswith("worker stopped mid-send"):
        return (f"Syndicate stopped while sending to {service}, so whether it went out is not known. Look on "
                f"{service} first, then mark it sent or send it again.")
    return _by_class(error_class, service, channel, settings, state)


def _by_class(error_class: str | None, service: str, channel: str, settings: Settings | None,
              state: str | None) -> str:
    gave_up = state == "failed"
    if error_class == "auth":
        what = "sign-in" if service.startswith("mail") else "token"
        return (f"The {service} {what} was refused: renew it, and put the new one in the environment variable "
                f"that channels.{channel}.options{_secret_option(channel, settings)} names.")
    if error_class == "rate_limited":
        return (f"{service} asked us to slow down." + (" It will be tried again after the wait it gave."
                                                       if not gave_up else " Send it again later."))
    if error_class == "retryable":
        return (f"{service} did not answer properly (a passing fault on its side or the network). "
                + ("It gave up after the last try: check the service, then send it again." if gave_up
                   else "It will be tried again by itself."))
    if error_class == "duplicate":
        return f"{service} refused it as a copy of something already posted there; look on {service}."
    if error_class == "unknown":
        return (f"{service} did not answer in time, so whether it went out is not known. Look on {service} "
                "first, then mark it sent or send it again.")
    if error_class == "incomplete":
        return "A long send stopped part way; it continues by itself."
    return (f"{service} refused this as it is (its reason is in the details). Change it, or cancel it; sending "
            "it again unchanged will fail the same way.")


def _service(channel: str, settings: Settings | None) -> str:
    ch = settings.channels.get(channel) if settings is not None else None
    if ch is None:
        return channel
    if ch.kind == "email":
        return f"mail service ({ch.provider})" if ch.provider not in ("smtp", "outbox") else "mail server"
    return NETWORKS.get(ch.kind, ch.kind)


def _secret_option(channel: str, settings: Settings | None, variable: str | None = None) -> str:
    """'.token_env' (the option naming a secret), when the settings say which one; else ''."""
    ch = settings.channels.get(channel) if settings is not None else None
    if ch is None:
        return ""
    names = [k for k, v in ch.options.items() if k.endswith("_env") and (variable is None or v == variable)]
    return f".{names[0]}" if len(names) == 1 else ""
