"""Subscribers' privacy, checked before a send: lint-email's privacy rules on every rendered email.

A message that would make a mail client fetch something from a host that is not the practice's
(a CDN or analytics image in a post, a featured image hosted elsewhere) tells that host who
opened which post. Each email channel's ``options.third_party_images`` says what happens:

* ``"hold"`` (the default): the delivery is held, with the findings as its reason; a person
  decides (fix the post on the site and re-send, or approve it knowingly);
* ``"drop"``: those images are removed from the message; anything still failing is held.

The practice's own hosts are the site's, the logo's and the web app's, plus the channel's
``options.image_hosts`` (the same allow-list `syndicate lint-email --allow-host` takes).
"""

from __future__ import annotations

from syndicate.email.lint import drop_third_party_images, privacy_findings, site_hosts
from syndicate.settings import Channel, Settings

POLICIES = ("hold", "drop")


def allowed_hosts(settings: Settings, channel: Channel) -> set[str]:
    return site_hosts(settings, [str(h) for h in channel.options.get("image_hosts") or []])


def apply(payload: dict, settings: Settings, channel: Channel) -> dict:
    """PAYLOAD (an email's) under the channel's policy, with ``privacy``: the findings left."""
    hosts = allowed_hosts(settings, channel)
    html = payload["html"]
    if channel.options.get("third_party_images", "hold") == "drop":
        html, _ = drop_third_party_images(html, hosts)
    return {**payload, "html": html, "privacy": [str(f) for f in privacy_findings(html, hosts)]}


def hold_reason(payload: dict) -> str | None:
    """Why the email must wait for a person, or None when nothing in it reaches a third party."""
    found = payload.get("privacy") or []
    if not found:
        return None
    more = f" (and {len(found) - 2} more)" if len(found) > 2 else ""
    return ("privacy: the email would load from other sites, which learn who opened it: "
            + "; ".join(found[:2]) + more)
