"""Local HTTP servers that speak each provider's documented API and record what they receive.

    from fakes import start_fake          # tests/ is on sys.path under pytest

    with start_fake("x") as (base_url, fake):
        ...  # point a channel at it: options = fake.options(); environment = fake.env()
        fake.fail_next("429", retry_after=60)       # the next request is rate limited
        fake.fail_next("stall", delay=2)            # the next one times out, then is processed
        assert len(fake.calls("POST", r"^/2/tweets$")) == 1

Names: x, facebook, linkedin, pinterest, mastodon, bluesky, threads, site (a blog serving
images); email: mailchimp, buttondown, sendgrid (Single Sends and Mail Send), postmark,
mailgun, ses. The framework (recording, faults, control endpoints) is in ``server.py``.

As a separate process (for tests that run real workers)::

    python -m tests.fakes x --port 0 --record /tmp/x.jsonl [--fail stall:1:/2/tweets]

prints its base URL as the first line on stdout and ``{"options", "env"}`` JSON (channel
options and the credentials' environment) as the second, appends one JSON line per request to the
record file as it arrives, and accepts faults at ``POST <base>/_fake/faults``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .bluesky import BlueskyFake
from .buttondown import ButtondownFake
from .facebook import FacebookFake
from .linkedin import LinkedInFake
from .mailchimp import MailchimpFake
from .mailgun import MailgunFake
from .mastodon import MastodonFake
from .pinterest import PinterestFake
from .postmark import PostmarkFake
from .sendgrid import SendGridFake
from .server import FakeAPI, Fault, Reply, Request, reply, route
from .ses import SesFake
from .site import SiteFake
from .threads import ThreadsFake
from .x import XFake

FAKES: dict[str, type[FakeAPI]] = {
    "x": XFake,
    "facebook": FacebookFake,
    "linkedin": LinkedInFake,
    "pinterest": PinterestFake,
    "mastodon": MastodonFake,
    "bluesky": BlueskyFake,
    "threads": ThreadsFake,
    "site": SiteFake,
    "mailchimp": MailchimpFake,
    "buttondown": ButtondownFake,
    "sendgrid": SendGridFake,
    "postmark": PostmarkFake,
    "mailgun": MailgunFake,
    "ses": SesFake,
}


@contextmanager
def start_fake(name: str, *, host: str = "127.0.0.1", port: int = 0, record: str | Path | None = None,
               stall_seconds: float = 3.0) -> Iterator[tuple[str, FakeAPI]]:
    """Run the fake NAME on a thread for the duration of the block: yields (base_url, fake)."""
    fake = FAKES[name](record_file=record, stall_seconds=stall_seconds)
    base_url = fake.start(host, port)
    try:
        yield base_url, fake
    finally:
        fake.stop()


__all__ = ["FAKES", "FakeAPI", "Fault", "Reply", "Request", "reply", "route", "start_fake"]
