"""Content current at send time: checked after a delivery is claimed, before ``sending``.

A delivery's payload is rendered at planning time, but it may wait (a channel's ``delay``, a
send window, a person's approval). Meanwhile the blog may fix a typo (a poll sees the edit and
updates the post's ``content_hash``) or take the post down. Just before the send:

- ``content.withdraw_gone``: one HEAD request (GET where HEAD is not allowed), no redirects
  followed, only to the site's own host, with a short time limit. 404 or 410: the delivery is
  withdrawn (``cancelled``, the reason shown) instead of sent. Any other answer, or none, and it
  is sent: a flaky site never stops a send.
- ``content.refresh_at_send``: the post's ``content_hash`` differs from the one the payload was
  rendered from (``Delivery.rendered_hash``): render it again, keeping what a person edited at
  the desk (``payloads.EDITED``: the social text, an email's subject and preheader), store it,
  and record a ``content refreshed`` event holding the text parts before and after (the desk
  shows their diff). A render that fails keeps the old payload and says so. The new copy is
  judged as the planner judges a new post: if the edit made the post sensitive (safe messaging,
  on a social channel), the channel approves every post, or the email now loads from other
  sites (privacy), the delivery goes back to ``held`` with the reason instead of being sent:
  what a person approved, or what needed no approval, is not what the blog says now.

Both are compare-and-sets on the claimed row with its token: a claim lost meanwhile changes
nothing. Digest editions are not checked (each edition is rendered when it is planned).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from syndicate.engine.states import record, transition
from syndicate.ledger.db import retry_on_disconnect, single_statement, transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.model import PostData
from syndicate.settings import Settings

# requests loads with the first page checked (a pool child loads it at start when pages are
# checked: workers/preload.py), the renderers with the first refresh: most sends need neither.
if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

GONE = (404, 410)
REFRESHED = "content refreshed"
WITHDRAWN = "withdrawn"
HELD = "held"


def before_send(factory: sessionmaker[Session], settings: Settings, delivery_id: int, token: str,
                actor: str, http: requests.Session | None = None) -> str | None:
    """Run both checks on a claimed delivery. Returns ``"withdrawn"`` when it was cancelled
    (nothing to send), ``"held"`` when the new copy needs a person, ``"refreshed"`` when it was
    rendered again, else None."""
    return check(factory, settings, delivery_id, token, actor, http=http)[0]


def check(factory: sessionmaker[Session], settings: Settings, delivery_id: int, token: str, actor: str, *,
          http: requests.Session | None = None, row=None) -> tuple[str | None, str | None]:
    """``before_send``'s verdict, and the post's content hash the checks went by (None when
    there was nothing to check): the start may require it unchanged (engine/send_record.py), so
    that what was checked is what is sent. ROW: the delivery's ``claimed_posts`` row, read
    earlier by the caller (a chunk's rows in one read); else it is read now."""
    if row is None:
        row = retry_on_disconnect(lambda: _claimed_post(factory, delivery_id))
    if row is None or row.state != "claimed" or row.claim_token != token or row.url is None:
        return None, None  # not this claim's any more, or no post behind it (a digest)
    url, current, rendered = row.url, row.content_hash, row.rendered_hash
    cfg = settings.content
    if cfg.withdraw_gone:
        status = page_status(url, settings, http)
        if status in GONE:
            reason = (f"withdrawn: the post's page answers {status} "
                      f"({'Gone' if status == 410 else 'Not Found'}) at {url}; it was taken down, so it was not sent")
            with transaction(factory) as s:
                if transition(s, delivery_id, from_states=("claimed",), token=token, to_state="cancelled",
                              actor=actor, claim_token=None, lease_until=None, hold_reason=reason, detail=reason):
                    log.info("delivery %s: %s", delivery_id, reason)
                    return WITHDRAWN, current
            return None, current
    if cfg.refresh_at_send and rendered and current and rendered != current:
        return _refresh(factory, settings, delivery_id, token, actor), None  # it read the post again
    return None, current


def claimed_posts(factory: sessionmaker[Session], delivery_ids: list[int]) -> dict:
    """``check``'s rows for several deliveries, one read: {delivery id: row}."""
    def read():
        with single_statement(factory) as conn:
            return {row.id: row for row in conn.execute(_claimed_posts_statement(), {"p_ids": delivery_ids})}
    return retry_on_disconnect(read)


@cache
def _claimed_posts_statement():
    return (select(Delivery.id, Delivery.state, Delivery.claim_token, Delivery.rendered_hash, Post.url,
                   Post.content_hash)
            .outerjoin(Post, Post.id == Delivery.post_id).where(Delivery.id.in_(bindparam("p_ids", expanding=True))))


@cache
def _claimed_post_statement():
    return (select(Delivery.state, Delivery.claim_token, Delivery.rendered_hash, Post.url, Post.content_hash)
            .outerjoin(Post, Post.id == Delivery.post_id).where(Delivery.id == bindparam("p_id")))


def _claimed_post(factory, delivery_id: int):
    """The delivery's claim and its post's page and hash, in one read (one round trip on
    PostgreSQL: a single statement needs no transaction of its own)."""
    with single_statement(factory) as conn:
        return conn.execute(_claimed_post_statement(), {"p_id": delivery_id}).first()


# Names reserved never to resolve (RFC 2606, 6761): a demo or test site is not asked.
_RESERVED = (".example", ".test", ".invalid", ".localhost")


def checks_pages(settings: Settings) -> bool:
    """Whether sends ask the site for the post's page first (``withdraw_gone`` on a site that
    resolves): then every send may make that request."""
    return settings.content.withdraw_gone and not _host(settings.site.url).endswith(_RESERVED)


def page_status(url: str, settings: Settings, http: requests.Session | None = None) -> int | None:
    """The HTTP status of URL (HEAD, else GET), or None when it is not on the site's host or
    did not answer in time."""
    host = _host(url)
    if host != _host(settings.site.url) or not url.lower().startswith(("http://", "https://")) \
            or host.endswith(_RESERVED):
        return None
    import requests

    timeout = settings.content.check_timeout.total_seconds()
    headers = {"User-Agent": settings.fetch.user_agent}
    client = http or requests
    try:
        resp = client.head(url, timeout=timeout, allow_redirects=False, headers=headers)
        if resp.status_code in (405, 501):  # HEAD not allowed: a GET, its body left unread
            resp = client.get(url, timeout=timeout, allow_redirects=False, headers=headers, stream=True)
            resp.close()
        return resp.status_code
    except requests.RequestException as exc:
        log.info("could not check %s before sending (%s); sending as planned", url, type(exc).__name__)
        return None


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().removeprefix("www.")


def _refresh(factory, settings: Settings, delivery_id: int, token: str, actor: str) -> str | None:
    from syndicate.render.payloads import EDITED

    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        post = s.get(Post, row.post_id)
        old, kind, channel, current, rendered = row.payload or {}, row.kind, row.channel, post.content_hash, \
            row.rendered_hash
        data = PostData.from_dict(post.data)
    try:
        new = rerender(settings, channel, kind, data, old)
    except Exception as exc:  # the new copy does not render: send what was approved
        detail = f"the feed's copy changed, but it could not be rendered again ({type(exc).__name__}: {exc}); " \
                 "sending the copy as planned"
        with transaction(factory) as s:
            record(s, delivery_id, actor, "refresh failed", detail)
        log.warning("delivery %s: %s", delivery_id, detail)
        return None
    reason = _hold_reason(settings, channel, new, data)
    with transaction(factory) as s:
        done = s.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.state == "claimed",
                                                Delivery.claim_token == token)
                         .values(payload=new, rendered_hash=current, updated_at=utcnow())
                         .execution_options(synchronize_session=False)).rowcount
        if done != 1:
            return None
        record(s, delivery_id, actor, REFRESHED, json.dumps({
            "from": rendered, "to": current, "kept": list(old.get(EDITED) or []),
            "before": text_parts(kind, old), "after": text_parts(kind, new)}))
        if reason:
            reason = f"the post changed on the blog since it was planned; {reason}"
            transition(s, delivery_id, from_states=("claimed",), token=token, to_state="held", actor=actor,
                       claim_token=None, lease_until=None, hold_reason=reason, detail=reason)
            log.info("delivery %s: the feed's copy changed since planning and now waits for a person", delivery_id)
            return HELD
    log.info("delivery %s: the feed's copy changed since planning; rendered again", delivery_id)
    return "refreshed"


def _hold_reason(settings: Settings, channel: str, payload: dict, data: PostData) -> str | None:
    """Why the new copy must wait for a person, judged as the planner judges a new post (a flood
    is about the number of posts at once, not their copy, so it is not asked again)."""
    from syndicate.email import privacy  # loaded only when a copy is rendered anew
    from syndicate.engine.planner import content_hold_reason
    from syndicate.render.safety import is_sensitive

    if channel not in settings.channels:
        return None
    return privacy.hold_reason(payload) or content_hold_reason(settings, channel, is_sensitive(data, settings.safety))


def rerender(settings: Settings, channel: str, kind: str, data: PostData, old: dict) -> dict:
    """DATA rendered for CHANNEL again, with what a person edited in OLD kept."""
    from syndicate.engine.actions import SNIPPET_FIELDS, snippet_text, with_snippet
    from syndicate.render.payloads import EDITED, build_payload

    edited = list(old.get(EDITED) or [])
    overrides = {name: old.get(name) for name in ("subject", "preheader") if name in edited}
    new = build_payload(data, settings, channel, overrides or None)
    if "text" in edited and kind in SNIPPET_FIELDS:
        options = settings.channels[channel].options if channel in settings.channels else None
        new, _ = with_snippet(kind, new, snippet_text(kind, old), options)
    if edited:
        new[EDITED] = edited
    if kind == "email" and channel in settings.channels:  # third-party images, as at planning
        from syndicate.email import privacy

        new = privacy.apply(new, settings, settings.channels[channel])
    if "route" in old:  # who it is for (email/routing.py) does not change with the copy
        new["route"] = old["route"]
    return new


def text_parts(kind: str, payload: dict) -> dict[str, str]:
    """The parts of a payload a person reads, for a diff: an email's subject, preheader and
    plain text; a social post's text (and a pin's title)."""
    from syndicate.engine.actions import SNIPPET_FIELDS, snippet_text

    payload = payload or {}
    if kind == "email":
        return {name: str(payload.get(name) or "") for name in ("subject", "preheader", "text")}
    parts = {"text": snippet_text(kind, payload)} if kind in SNIPPET_FIELDS else {}
    if kind == "pinterest":
        parts["title"] = str(payload.get("title") or "")
    return parts
