"""Human actions on deliveries, shared by the CLI and the preview desk.

Each is a compare-and-set: an action on a delivery a worker has already claimed is refused
with a clear message (ActionRefused), never raced. Every action is recorded with its actor.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from syndicate.email import recipients
from syndicate.engine.states import record, transition
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.render.payloads import EDITED
from syndicate.render.textlength import find_hashtags, rule_for


class ActionRefused(Exception):
    """The delivery is not in a state that allows the action; str() says why, in one line."""


def _act(factory, delivery_id: int, *, allowed: tuple[str, ...], to_state: str | None, actor: str, what: str,
         **values) -> Delivery:
    """Move the delivery from one of ALLOWED to TO_STATE (None: it keeps its state)."""
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        if row.state not in allowed:
            raise ActionRefused(f"delivery {delivery_id}: cannot {what} a delivery that is {row.state}"
                                f" (only {', '.join(allowed)})")
        if not transition(s, delivery_id, from_states=(row.state,), to_state=to_state or row.state, actor=actor,
                          detail=what, **values):
            raise ActionRefused(f"delivery {delivery_id}: changed while you acted; look again")
    with transaction(factory) as s:
        return s.get(Delivery, delivery_id)


def approve(factory, delivery_id: int, actor: str, now: datetime | None = None) -> Delivery:
    """Release a held delivery; it goes at its due time, or now if that has passed."""
    return _act(factory, delivery_id, allowed=("held",), to_state="planned", actor=actor, what="approve",
                hold_reason=None)


def hold(factory, delivery_id: int, actor: str, reason: str = "held by a person") -> Delivery:
    return _act(factory, delivery_id, allowed=("planned",), to_state="held", actor=actor, what="hold",
                hold_reason=reason)


def cancel(factory, delivery_id: int, actor: str) -> Delivery:
    return _act(factory, delivery_id, allowed=("planned", "held", "unknown", "failed"), to_state="cancelled",
                actor=actor, what="cancel", claim_token=None)


def keep_out_of_email(factory, post_id: int, keep: bool, actor: str) -> list[int]:
    """Set the post's "keep out of email" (``posts.no_email``, honoured by planning:
    ``engine/carry.py``). Keeping it out cancels its email deliveries not yet sent (planned or
    held; one already sending goes on); each change is in the audit trail. Letting it back in
    plans nothing again: a cancelled delivery stays cancelled. The ids cancelled."""
    with transaction(factory) as s:
        post = s.get(Post, post_id)
        if post is None:
            raise ActionRefused(f"post {post_id}: no such post")
        post.no_email = keep
        ids = list(s.scalars(select(Delivery.id).where(Delivery.post_id == post_id, Delivery.kind == "email",
                                                        Delivery.state.in_(("planned", "held"))))) if keep else []
        cancelled = [i for i in ids if transition(s, i, from_states=("planned", "held"), to_state="cancelled",
                                                  actor=actor, detail="kept out of email", claim_token=None)]
        record(s, None, actor, "no-email", f"post {post_id}: {'kept out of' if keep else 'let back into'} email"
               + (f"; cancelled {len(cancelled)} email deliveries" if cancelled else ""))
    return cancelled


def send_now(factory, delivery_id: int, actor: str, now: datetime | None = None, approve: bool = False) -> Delivery:
    """Make a planned delivery due at once; a held one only with APPROVE (a person's explicit go).

    A hold (safe messaging, a flood, a person's) is released only by approving it: sending by
    hand without saying so must not slip a held post past the person who should look at it.
    """
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        state, reason = (row.state, row.hold_reason) if row else (None, None)
    if state == "held" and not approve:
        raise ActionRefused(f"delivery {delivery_id}: it is held ({reason or 'waiting for approval'}); "
                            "approve it to send it")
    return _act(factory, delivery_id, allowed=("planned", "held") if approve else ("planned",), to_state="planned",
                actor=actor, what="approve and send now" if state == "held" else "send now", due_at=now or utcnow(),
                hold_reason=None)


def reschedule(factory, delivery_id: int, due: datetime, actor: str) -> Delivery:
    """Change when a planned or held delivery is due; a held one stays held (only approve releases it)."""
    return _act(factory, delivery_id, allowed=("planned", "held"), to_state=None, actor=actor,
                what=f"reschedule to {due.isoformat()}", due_at=due)


def resolve(factory, delivery_id: int, outcome: str, actor: str, now: datetime | None = None) -> Delivery:
    """Settle an ``unknown`` (or ``failed``) delivery after a person checked the provider.

    sent: it did go out; retry: it did not, send it again; cancel: leave it unsent. An email
    delivery with recipients of unknown outcome is settled per recipient (``resolve_recipients``):
    the person must say whom they checked, so this refuses it and says how.
    """
    with transaction(factory) as s:
        unresolved = recipients.unresolved_recipients(s, delivery_id)
    if unresolved:
        raise ActionRefused(
            f"delivery {delivery_id}: {len(unresolved)} recipients may or may not have the message "
            f"({', '.join(unresolved[:3])}{', ...' if len(unresolved) > 3 else ''}); settle them with "
            f"--recipient EMAIL or --all-unknown (`syndicate recipients {delivery_id}` lists them)")
    allowed = ("unknown", "failed")
    if outcome == "sent":
        return _act(factory, delivery_id, allowed=allowed, to_state="sent", actor=actor,
                    what="resolve as sent", sent_at=now or utcnow())
    if outcome == "retry":
        return _act(factory, delivery_id, allowed=allowed, to_state="planned", actor=actor,
                    what="resolve: retry", due_at=now or utcnow(), claim_token=None, last_error=None)
    if outcome == "cancel":
        return cancel(factory, delivery_id, actor)
    raise ValueError(f"unknown outcome {outcome!r}")


@dataclass
class Settled:
    delivery: Delivery
    recipients: list[str]  # the recipients settled


def resolve_recipients(factory, delivery_id: int, outcome: str, actor: str, addresses: list[str] | None,
                       now: datetime | None = None) -> Settled:
    """A person's word on an email delivery's recipients of unknown outcome (ADDRESSES; None: all).

    sent: they have it; cancel: leave them unmailed; retry: they do not have it, mail them again
    (the delivery is planned again, due now: it mails them, and nobody already settled). Once no
    recipient is unknown, a delivery that waited for this is ``sent`` (or planned, for a retry).
    One transaction; one audit event per recipient.
    """
    now = now or utcnow()
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        if row.state in ("claimed", "sending"):
            raise ActionRefused(f"delivery {delivery_id}: a worker is sending it right now; look again when it "
                                "is done")
        try:
            settled = recipients.settle(s, delivery_id, addresses, outcome, actor)
        except recipients.NotSettled as exc:
            raise ActionRefused(str(exc)) from None
        if not settled:
            raise ActionRefused(f"delivery {delivery_id}: no recipient of unknown outcome to settle")
        state = recipients.SETTLEMENTS[outcome]
        for address in settled:
            record(s, delivery_id, actor, f"recipient {outcome}", f"{address}: unknown -> {state}", now=now)
        _after_settling(s, row, actor, now)
    with transaction(factory) as s:
        return Settled(s.get(Delivery, delivery_id), settled)


def _after_settling(s: Session, row: Delivery, actor: str, now: datetime) -> None:
    """Move a delivery that waited on its recipients once none is unknown any more."""
    if row.state not in ("unknown", "failed") or recipients.unresolved_recipients(s, row.id):
        return
    tally = recipients.tally(s, row.id)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(tally.items()))
    if tally.get("deferred"):
        transition(s, row.id, from_states=(row.state,), to_state="planned", actor=actor, now=now, due_at=now,
                   claim_token=None, last_error=None, detail=f"recipients settled ({summary}); the rest are mailed")
    elif row.state == "unknown":
        transition(s, row.id, from_states=("unknown",), to_state="sent", actor=actor, now=now, sent_at=now,
                   last_error=None, error_class=None, provider_ref=f"recipients: {summary}",
                   detail=f"every recipient settled ({summary})")


def find_post(s: Session, ref: str) -> Post | None:
    """A post by ledger id, URL, or identity."""
    if ref.isdigit():
        return s.get(Post, int(ref))
    normalized = ref.rstrip("/")
    return s.scalars(
        select(Post).where(or_(Post.url == ref, Post.url == normalized, Post.url == normalized + "/",
                               Post.identity == ref)).order_by(Post.id).limit(1)
    ).first()



# ---------------------------------------------------------------- editing a stored payload
#
# The preview desk lets a person change a social post's text before it goes. The stored
# payload is what will be sent, so an edit rewrites it, with the same guarantees as the state
# actions: only while the delivery is planned or held, as one compare-and-set (a worker that
# claimed the row first wins and the edit is refused), recorded in the audit trail.

EDITABLE = ("planned", "held")
# The field of each network's request body that carries the post's text.
SNIPPET_FIELDS = {"x": "text", "facebook": "message", "linkedin": "commentary", "pinterest": "description",
                  "mastodon": "status", "bluesky": "text", "threads": "text"}
_NETWORK_NAMES = {"x": "X", "facebook": "Facebook", "linkedin": "LinkedIn", "pinterest": "Pinterest",
                  "mastodon": "Mastodon", "bluesky": "Bluesky", "threads": "Threads"}
# LinkedIn "little text": a hashtag is written {hashtag|\#|Tag}; reserved characters are escaped.
_LITTLE_HASHTAG = re.compile(r"\{hashtag\|\\#\|([^{}|]*)\}")
_LITTLE_ESCAPE = re.compile(r"\\(.)", re.S)


@dataclass(frozen=True)
class Measured:
    """A snippet's length by its network's own count, and the limit it must stay within."""

    count: int
    limit: int

    @property
    def fits(self) -> bool:
        return self.count <= self.limit


def snippet_text(kind: str, payload: dict) -> str:
    """The text a person reads and edits (LinkedIn's little-text escapes undone)."""
    text = str((payload or {}).get(SNIPPET_FIELDS[kind], ""))
    return from_little_text(text) if kind == "linkedin" else text


def measure_snippet(kind: str, payload: dict, options: dict | None = None) -> Measured:
    """The stored text measured as the network counts it (rule_for), against its limit."""
    rule = rule_for(kind, options)
    text = str((payload or {}).get(SNIPPET_FIELDS[kind], ""))
    limit = rule.limit
    if kind == "mastodon":  # the content warning counts toward the instance's limit
        limit -= rule.measure(str(payload.get("spoiler_text") or ""))
    return Measured(rule.measure(text), limit)


def with_snippet(kind: str, payload: dict, text: str, options: dict | None = None) -> tuple[dict, Measured]:
    """PAYLOAD with its text replaced by TEXT (as a person typed it), and the new measure.

    Bluesky's facets (UTF-8 byte offsets of links and hashtags) are computed anew; LinkedIn's
    text is escaped into little text, its hashtags written as hashtag templates.
    """
    if kind not in SNIPPET_FIELDS:
        raise ActionRefused(f"{kind} deliveries have no editable text")
    text = _clean(text)
    new = copy.deepcopy(payload)
    if kind == "linkedin":
        new["commentary"] = to_little_text(text)
    else:
        new[SNIPPET_FIELDS[kind]] = text
    if kind == "bluesky":
        new["facets"] = _bluesky_facets_for(text, new)
    return new, measure_snippet(kind, new, options)


def edit_payload(factory, delivery_id: int, payload: dict, actor: str, detail: str,
                 expect_updated_at: datetime | None = None) -> Delivery:
    """Store PAYLOAD on a planned or held delivery (compare-and-set), recording DETAIL."""
    now = utcnow()
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        if row.state not in EDITABLE:
            raise ActionRefused(f"delivery {delivery_id}: cannot edit a delivery that is {row.state}"
                                f" (only {', '.join(EDITABLE)})")
        where = [Delivery.id == delivery_id, Delivery.state.in_(EDITABLE)]
        if expect_updated_at is not None:
            where.append(Delivery.updated_at == expect_updated_at)
        done = s.execute(update(Delivery).where(*where).values(payload=payload, updated_at=now)
                         .execution_options(synchronize_session=False)).rowcount
        if done != 1:
            raise ActionRefused(f"delivery {delivery_id}: changed while you acted; look again")
        record(s, delivery_id, actor, "edit", detail, now=now)
    with transaction(factory) as s:
        return s.get(Delivery, delivery_id)


def edit_text(factory, delivery_id: int, text: str, actor: str, options: dict | None = None) -> Delivery:
    """Replace a social delivery's text; refused (nothing stored) past the network's limit.

    OPTIONS are the channel's options (a Mastodon instance may allow more than 500).
    """
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        kind, payload, seen = row.kind, row.payload, row.updated_at
    if kind not in SNIPPET_FIELDS:
        raise ActionRefused(f"delivery {delivery_id}: {kind} deliveries have no editable text")
    before = measure_snippet(kind, payload, options)
    new, after = with_snippet(kind, payload, text, options)
    name = _NETWORK_NAMES[kind]
    if not _clean(text):
        raise ActionRefused(f"delivery {delivery_id}: the text is empty; nothing was changed")
    if not after.fits:
        raise ActionRefused(f"delivery {delivery_id}: too long for {name}: {after.count} of {after.limit} "
                            f"characters as {name} counts them ({after.count - after.limit} over); "
                            "nothing was changed")
    old = snippet_text(kind, payload)
    if _clean(old) == _clean(text):
        raise ActionRefused(f"delivery {delivery_id}: the text is unchanged")
    detail = f"edited the text ({before.count} -> {after.count} of {after.limit}); it was: {old}"
    new[EDITED] = marked_edited(payload, "text")
    return edit_payload(factory, delivery_id, new, actor, detail, expect_updated_at=seen)


def marked_edited(payload: dict, *names: str) -> list[str]:
    """PAYLOAD's list of what people edited, with NAMES added (a re-render keeps them)."""
    return sorted(set(payload.get(EDITED) or []) | set(names))


def from_little_text(text: str) -> str:
    """LinkedIn little text as a person reads it: "{hashtag|\\#|Calm}" -> "#Calm", "\\(" -> "("."""
    return _LITTLE_ESCAPE.sub(r"\1", _LITTLE_HASHTAG.sub(lambda m: "#" + m.group(1), text))


def to_little_text(text: str) -> str:
    """Plain text as LinkedIn little text: reserved characters escaped, hashtags as templates."""
    out, pos = [], 0
    for start, end in find_hashtags(text):
        out.append(_escape_little(text[pos:start]))
        out.append(f"{{hashtag|\\#|{text[start + 1:end]}}}")
        pos = end
    out.append(_escape_little(text[pos:]))
    return "".join(out)


def _escape_little(text: str) -> str:
    return re.sub(r"([\\|{}@\[\]()<>#*_~])", r"\\\1", text)


def _bluesky_facets_for(text: str, payload: dict) -> list[dict]:
    from syndicate.render.social import bluesky_facets

    link = str(((payload.get("embed") or {}).get("external") or {}).get("uri") or "")
    return bluesky_facets(text, link)


def _clean(text: str) -> str:
    # Browsers send CRLF from a textarea; the networks get plain newlines, no trailing blanks.
    return "\n".join(line.rstrip() for line in (text or "").replace("\r\n", "\n").replace("\r", "\n")
                     .split("\n")).strip()


# ---------------------------------------------------------------- an email's subject and preheader
#
# A person may rewrite an email's subject and preheader (a post's email, a planned digest
# edition, or the next digest edition before it is planned). Each edit is measured against the
# same limits the desk shows live, then the email is rendered again with it (the preheader
# lives inside the HTML), so what is approved is what is sent.


def email_fields(subject: str, preheader: str) -> dict[str, str]:
    """SUBJECT and PREHEADER as one line each, or ActionRefused saying which limit they break."""
    from syndicate.render.email import PREHEADER_LENGTH, SUBJECT_MAX

    subject, preheader = " ".join((subject or "").split()), " ".join((preheader or "").split())
    if not subject:
        raise ActionRefused("the subject is empty; nothing was changed")
    if len(subject) > SUBJECT_MAX:
        raise ActionRefused(f"the subject is too long: {len(subject)} of {SUBJECT_MAX} characters "
                            f"({len(subject) - SUBJECT_MAX} over); nothing was changed")
    if len(preheader) > PREHEADER_LENGTH:
        raise ActionRefused(f"the preheader is too long: {len(preheader)} of {PREHEADER_LENGTH} characters "
                            f"({len(preheader) - PREHEADER_LENGTH} over); nothing was changed")
    return {"subject": subject, "preheader": preheader}


def edit_email(factory, settings, delivery_id: int, subject: str, preheader: str, actor: str) -> Delivery:
    """Store a person's subject and preheader on a planned or held email delivery, rendered again."""
    from syndicate.model import PostData
    from syndicate.render.payloads import build_payload, digest_payload

    fields = email_fields(subject, preheader)
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            raise ActionRefused(f"delivery {delivery_id}: no such delivery")
        if row.kind != "email" or "html" not in (row.payload or {}):
            raise ActionRefused(f"delivery {delivery_id}: only a rendered email has a subject to edit")
        payload, seen, channel = row.payload, row.updated_at, row.channel
        post = s.get(Post, row.post_id) if row.post_id else None
        edition = payload.get("edition")
        ids = [] if post or not edition else list(edition.get("post_ids") or [])
        found = {p.id: PostData.from_dict(p.data) for p in s.scalars(select(Post).where(Post.id.in_(ids)))}
        posts = [found[i] for i in ids if i in found]  # in the edition's order
        content_hash = post.content_hash if post else None
    if (payload.get("subject"), payload.get("preheader")) == (fields["subject"], fields["preheader"]):
        raise ActionRefused(f"delivery {delivery_id}: the subject and preheader are unchanged")
    if channel not in settings.channels:
        raise ActionRefused(f"delivery {delivery_id}: channel {channel!r} is no longer in the settings")
    if post is not None:
        new = build_payload(PostData.from_dict(post.data), settings, channel, fields)
    else:
        if not posts:
            raise ActionRefused(f"delivery {delivery_id}: this edition's posts are no longer in the ledger")
        new = digest_payload(posts, settings, channel, edition, fields)
    new[EDITED] = marked_edited(payload, *[k for k in fields if fields[k] != payload.get(k)])
    detail = (f"edited the subject and preheader; they were: {payload.get('subject', '')!r} / "
              f"{payload.get('preheader', '')!r}")
    row = edit_payload(factory, delivery_id, new, actor, detail, expect_updated_at=seen)
    if content_hash:
        with transaction(factory) as s:  # rendered from the post as it stands now
            s.execute(update(Delivery).where(Delivery.id == delivery_id).values(rendered_hash=content_hash)
                      .execution_options(synchronize_session=False))
    return row

