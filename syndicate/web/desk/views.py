"""The desk's pages and actions (routes on ``syndicate.web.desk.bp``).

Every action is one of syndicate/engine/actions.py (a compare-and-set on the delivery,
recorded with the signed-in person as actor): a delivery a worker has already claimed is
refused with the reason shown, never raced. Actions answer with a redirect back to the page
and a one-line message (post/redirect/get); a refused edit too, with the text as typed kept in
the session for the page to show again (nothing typed is lost, and a reload re-posts nothing).
Each action needs a role (web/roles.py): a refused one answers 403.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from flask import abort, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup
from sqlalchemy import select

from syndicate.audience import subscribers
from syndicate.engine import actions, digest, heartbeat
from syndicate.engine import bulk as bulk_actions
from syndicate.engine.actions import ActionRefused
from syndicate.engine.deliver import deliver
from syndicate.engine.dispatch import claim_one
from syndicate.engine.manual import Held, send_post_now
from syndicate.engine.schedule import wall_to_utc
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, Post, utcnow
from syndicate.model import PostData
from syndicate.render.email import INBOX_LINE, INBOX_SUBJECT, PREHEADER_LENGTH, SUBJECT_MAX
from syndicate.render.safety import is_sensitive, matched_topics
from syndicate.web import auth, ledger, roles, settings
from syndicate.web.desk import bp, previews
from syndicate.web.desk import calendar as desk_calendar
from syndicate.web.desk.testmail import SendTestError, send_test_email

_LOOK_AHEAD = timedelta(days=800)  # the longest the schedule looks ahead from a due time
RESOLUTIONS = {"sent": "marked as sent", "retry": "set to be sent again", "cancel": "cancelled"}
RECIPIENT_RESOLUTIONS = {"sent": "marked as having it", "retry": "will be mailed again",
                         "cancel": "left unmailed"}


@bp.app_template_filter("local")
def local_time(value: datetime | None, style: str = "long") -> str:
    """A UTC instant in the site's time zone: "Tue Nov 24, 9:00 AM" (the year when not this year)."""
    if value is None:
        return "—"
    here = value.astimezone(settings().site.tz)
    year = "" if here.year == datetime.now(here.tzinfo).year else f" {here.year}"
    if style == "short":
        return f"{here:%b} {here.day}{year}, {_clock(here)}"
    return f"{here:%a %b} {here.day}{year}, {_clock(here)}"


@bp.app_template_filter("tally")
def tally(count) -> Markup:
    """A count as shown: "3,000", or past its cap "10,000+" read aloud as "more than 10,000"
    (ledger/counts.py: the desk counts at most that many rows of a tab)."""
    if getattr(count, "exact", True):
        return Markup.escape(str(count))
    return Markup('<span aria-hidden="true">{}</span><span class="sr-only"> {}</span>').format(count, count.spoken)


@bp.app_template_filter("input_time")
def input_time(value: datetime) -> str:
    """The value of a datetime-local input, in the site's time zone."""
    return value.astimezone(settings().site.tz).strftime("%Y-%m-%dT%H:%M")


@bp.app_template_filter("actor")
def actor_label(actor: str) -> str:
    if actor.startswith("desk:"):
        return actor.removeprefix("desk:")
    if actor.startswith("cli:"):
        return f"{actor.removeprefix('cli:')} (command line)"
    return {"planner": "Planner", "dispatcher": "Dispatcher", "reaper": "Reaper", "cli": "Command line"}.get(
        actor, actor.replace("worker:", "Worker "))


@bp.app_template_test("match_color")
def match_color(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{3,8}", value) is not None


def _clock(t: datetime) -> str:
    return f"{t.hour % 12 or 12}:{t.minute:02d} {'AM' if t.hour < 12 else 'PM'}"


def _page(template: str, status: int = 200, **context):
    site = settings().site
    now = datetime.now(site.tz)
    with transaction(ledger()) as s:
        counts = previews.tab_counts(s)
        pulse = heartbeat.latest(s)
    return render_template(template, site=site, staff=auth.current_user(), counts=counts, runner=_runner(pulse),
                           subject_limit=SUBJECT_MAX, inbox_subject=INBOX_SUBJECT, inbox_line=INBOX_LINE,
                           preheader_limit=PREHEADER_LENGTH, role=roles.current_role(),
                           tz_label=f"{site.timezone.replace('_', ' ')} ({now:%Z})",
                           labels=previews.STATE_LABELS, networks=previews.NETWORKS, **context), status


def _runner(pulse: heartbeat.Pulse | None) -> tuple[str, str]:
    """(level, one line): whether anything is sending, when it last ran and when it runs next."""
    if pulse is None:
        return "stopped", ("Nothing is sending: no runner has run yet. Approved posts go out once `syndicate run` "
                           "(or the workers and beat) is started.")
    now = utcnow()
    line = f"{pulse.label} last ran {_ago(now - pulse.at)}"
    if not pulse.alive(now):
        return "stopped", (f"Nothing is sending: {line} ({local_time(pulse.at)}) and has not run since. Approved "
                           "posts wait until it runs again.")
    line = line[:1].upper() + line[1:]
    if pulse.next_at:
        line += f"; it sends what is due next {_ahead(pulse.next_at - now)}"
    if pulse.next_poll_at:
        line += f", and checks the feeds next at {_clock(pulse.next_poll_at.astimezone(settings().site.tz))}"
    return "running", line + "."


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return "just now" if seconds < 2 else f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _ahead(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return "now" if seconds < 1 else f"in {seconds} s" if seconds < 120 else f"in {seconds // 60} min"


# ---------------------------------------------------------------- pages


@bp.get("/")
@auth.login_required
def queue():
    tab = request.args.get("tab", "upcoming")
    if tab not in previews.TABS:
        tab = "upcoming"
    by = "channel" if request.args.get("by") == "channel" else "post"
    cfg = settings()
    channel = request.args.get("channel") or None
    if channel not in cfg.channels:
        channel = None
    day = _day(request.args.get("day")) if tab == "sent" else None
    first = request.args.get("start", "1")
    try:
        with transaction(ledger()) as s:
            page = previews.queue_page(s, cfg, tab, channel=channel, day=day, after=request.args.get("after"),
                                       first=int(first) if first.isdigit() else 1)
    except ValueError:  # a mangled cursor: start from the first page
        return redirect(url_for("desk.queue", tab=tab, by=by, channel=channel, day=day and day.isoformat()))
    rows = page.rows
    groups = previews.group_by_channel(rows, cfg) if by == "channel" else previews.group_by_post(rows)
    filters = {"tab": tab, "by": by, "channel": channel, "day": day.isoformat() if day else None}
    return _page("desk/queue.html", tab=tab, by=by, tabs=previews.TABS, groups=groups, total=page.total,
                 page=page, channel=channel, day=day, filters=filters, channels=list(cfg.channels),
                 bulk=tab in previews.BULK_TABS, yesterday=datetime.now(cfg.site.tz).date() - timedelta(days=1))


def _day(value: str | None):
    """A YYYY-MM-DD from the Sent tab's day picker (None: every day)."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@bp.get("/post/<int:post_id>")
@auth.login_required
def post_page(post_id: int):
    drafts, errors = _take_drafts()
    return _post_page(post_id, drafts, errors)


DRAFTS = "desk_drafts"  # the session key of refused edits: {delivery id or "digest:channel": [fields, message]}


def _keep_draft(key: str, fields: dict[str, str], message: str) -> None:
    kept = dict(session.get(DRAFTS) or {})
    kept[key] = [fields, message]
    session[DRAFTS] = kept


def _take_drafts() -> tuple[dict, dict]:
    """The refused edits kept for this page (once: a reload shows the stored text again)."""
    kept = session.pop(DRAFTS, None) or {}
    drafts = {(int(k) if k.isdigit() else k): v[0] for k, v in kept.items()}
    errors = {(int(k) if k.isdigit() else k): v[1] for k, v in kept.items()}
    return drafts, errors


def _post_page(post_id: int, drafts: dict | None = None, errors: dict | None = None, status: int = 200):
    cfg = settings()
    factory = ledger()
    with transaction(factory) as s:
        post = s.get(Post, post_id)
        if post is None:
            abort(404)
        rows = list(s.scalars(select(Delivery).where(Delivery.post_id == post_id)))
        events = previews.events_by_delivery(s, [r.id for r in rows])
        unknown = previews.unknown_recipients_by_delivery(s, [r.id for r in rows if r.kind == "email"])
    order = {name: i for i, name in enumerate(cfg.channels)}
    rows.sort(key=lambda r: (order.get(r.channel, len(order)), r.id))
    data = PostData.from_dict(post.data)
    active = subscribers.counts(factory).get("active", 0)
    views = [previews.delivery_view(r, cfg, data, events[r.id], active) for r in rows]
    for view in views:
        view.unknown_recipients = unknown.get(view.row.id, [])
    unplanned = [name for name in cfg.enabled_channels()
                 if cfg.channels[name].mode != "digest" and name not in {r.channel for r in rows}]
    activity = sorted((e for r in rows for e in events[r.id]), key=lambda e: (e.at, e.id), reverse=True)
    return _page("desk/post.html", status, post=post, data=data, views=views, unplanned=unplanned,
                 topics=matched_topics(data, cfg.safety), activity=activity, drafts=drafts or {},
                 errors=errors or {}, deliveries={r.id: r for r in rows})


@bp.get("/delivery/<int:delivery_id>")
@auth.login_required
def delivery_page(delivery_id: int):
    factory = ledger()
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            abort(404)
        if row.post_id is not None:
            return redirect(url_for("desk.post_page", post_id=row.post_id, _anchor=f"d{row.id}"))
        events = previews.events_by_delivery(s, [row.id])[row.id]
        unknown = previews.unknown_recipients_by_delivery(s, [row.id])[row.id]
    view = previews.delivery_view(row, settings(), None, events, subscribers.counts(factory).get("active", 0))
    view.unknown_recipients = unknown
    drafts, errors = _take_drafts()
    return _page("desk/delivery.html", view=view, drafts=drafts, errors=errors)


@bp.get("/digest")
@auth.login_required
def digest_page():
    factory = ledger()
    with transaction(factory) as s:
        editions = previews.next_digests(s, settings(), subscribers_active=subscribers.counts(factory)
                                         .get("active", 0))
        planned = list(s.scalars(select(Delivery).where(Delivery.subject.like("digest:%"),
                                                        Delivery.state.in_(("planned", "held", "claimed",
                                                                            "sending", "unknown", "failed")))
                                 .order_by(Delivery.due_at)))
    drafts, errors = _take_drafts()
    return _page("desk/digest.html", editions=editions, planned=planned, drafts=drafts, errors=errors)


@bp.get("/calendar")
@auth.login_required
def calendar():
    """A week (or with ?view=month, a month) per channel, in the site's time zone."""
    cfg = settings()
    view = "month" if request.args.get("view") == "month" else "week"
    anchor = _day(request.args.get("start")) or datetime.now(cfg.site.tz).date()
    channel = request.args.get("channel") or None
    if channel not in cfg.channels:
        channel = None
    with transaction(ledger()) as s:
        cal = desk_calendar.build(s, cfg, view, anchor, channel)
    return _page("desk/calendar.html", cal=cal, channel=channel, channels=list(cfg.channels))


@bp.post("/digest/<channel>/edit")
@auth.login_required
@roles.require("edit-digest")
def edit_next_digest(channel: str):
    """A person's subject and preheader for a digest channel's next edition, before it is planned."""
    cfg = settings()
    ch = cfg.channels.get(channel)
    if ch is None or ch.mode != "digest":
        abort(404)
    fields = {"subject": request.form.get("subject", ""), "preheader": request.form.get("preheader", "")}
    back = url_for("desk.digest_page", _anchor=f"digest-{channel}")
    with transaction(ledger()) as s:
        key = digest.upcoming_edition(s, cfg, channel, utcnow()).key
    if request.form.get("edition") and request.form.get("edition") != key:
        return _refused(f"Nothing was changed: edition {request.form.get('edition')} has been planned meanwhile; "
                        "edit it from its own page.", back)
    try:
        clean = actions.email_fields(fields["subject"], fields["preheader"])
    except ActionRefused as exc:
        _keep_draft(f"digest:{channel}", fields, _sentence(str(exc)))
        return redirect(back)
    digest.save_edition_overrides(ledger(), channel, key, clean, auth.current_user().actor)
    flash(f"Saved. Edition {key} of {channel} goes out with the new subject and preheader.", "success")
    return redirect(back)


def _sentence(reason: str) -> str:
    return (reason[:1].upper() + reason[1:]).rstrip(".") + "."


# ---------------------------------------------------------------- actions


@bp.post("/delivery/<int:delivery_id>/<action>")
@auth.login_required
def act(delivery_id: int, action: str):
    handler = _ACTIONS.get(action)
    if handler is None:
        abort(404)
    roles.check(action)
    with transaction(ledger()) as s:
        row = s.get(Delivery, delivery_id)
        if row is None:
            abort(404)
        post_id, channel = row.post_id, row.channel
    back = (url_for("desk.post_page", post_id=post_id, _anchor=f"d{delivery_id}") if post_id
            else url_for("desk.delivery_page", delivery_id=delivery_id))
    actor = auth.current_user().actor
    try:
        message, category = handler(delivery_id, actor, channel)
    except _Redo as redo:  # post/redirect/get, with what was typed kept for the page
        _keep_draft(str(delivery_id), redo.draft, redo.message)
        return redirect(back)
    except (ActionRefused, SendTestError, ValueError) as exc:
        return _refused(_explain(delivery_id, str(exc)), back)
    flash(message, category)
    return redirect(back)


@bp.post("/bulk")
@auth.login_required
def bulk():
    """One action on the ticked deliveries of a queue tab, or on every one the tab's filter shows."""
    cfg = settings()
    tab = request.form.get("tab", "held")
    channel = request.form.get("channel") or None
    channel = channel if channel in cfg.channels else None
    back = url_for("desk.queue", tab=tab, by=request.form.get("by", "post"), channel=channel)
    action = request.form.get("action", "")
    if action in bulk_actions.ACTIONS:
        roles.check(action)
    if action not in bulk_actions.ACTIONS or tab not in previews.BULK_TABS:
        return _refused("Nothing was changed: choose Approve, Hold, Reschedule or Cancel.", back)
    if request.form.get("scope") == "all":
        selection = bulk_actions.Selection(states=previews.TABS[tab][1], channel=channel)
    else:
        ids = [int(i) for i in request.form.getlist("id") if i.isdigit()]
        if not ids:
            return _refused("Nothing was changed: tick the deliveries first, or choose every one on this tab.", back)
        selection = bulk_actions.Selection(ids=ids)
    due = None
    if action == "reschedule":
        due = _bulk_due(request.form.get("when", ""))
        if isinstance(due, str):
            return _refused(due, back)
    result = bulk_actions.bulk_act(ledger(), action, selection, auth.current_user().actor, due=due,
                                   reason=f"held by {auth.current_user().name}")
    text = bulk_actions.describe(result)
    text = text[:1].upper() + text[1:] + "."
    if due is not None and result.changed:
        text += f" They go out on {local_time(due)}" + (" once approved." if tab == "held" else ".")
    flash(text, "success" if result.changed else "info")
    return redirect(back)


def _bulk_due(value: str) -> datetime | str:
    """The datetime-local of the bulk form as UTC, or why it cannot be used."""
    try:
        wall = datetime.strptime(value.strip(), "%Y-%m-%dT%H:%M")
        due = wall_to_utc(wall.date(), wall.time(), settings().site.tz)
    except (ValueError, OverflowError):
        return f"Nothing was changed: {value!r} is not a date and time (pick one to reschedule to)."
    if due < utcnow() - timedelta(minutes=1):
        return f"Nothing was changed: {local_time(due)} has already passed."
    return due


class _Redo(Exception):
    """A refused edit: the page is shown again with the text as typed (DRAFT: field -> text)."""

    def __init__(self, message: str, draft: dict[str, str]):
        super().__init__(message)
        self.message, self.draft = message, draft


def _refused(message: str, back: str):
    flash(message, "error")
    return redirect(back)


def _explain(delivery_id: int, message: str) -> str:
    """The actions module's reason, with what it means for the person at the desk."""
    with transaction(ledger()) as s:
        state = s.scalar(select(Delivery.state).where(Delivery.id == delivery_id))
    reason = message.removeprefix(f"delivery {delivery_id}: ").rstrip(".")
    text = (reason[:1].upper() + reason[1:] if "nothing was changed" in reason
            else f"Nothing was changed: {reason}") + "."
    if state in ("claimed", "sending"):
        text += " A worker has already picked this delivery up and is sending it; it can no longer be changed here."
    return text


def _channel_label(channel: str) -> str:
    ch = settings().channels.get(channel)
    return f"{previews.NETWORKS.get(ch.kind, ch.kind)} ({channel})" if ch else channel


def _second_person(delivery_id: int, actor: str, what: str) -> None:
    """The two-person rule (safety.two_person_rule): a sensitive post's delivery is approved by
    someone other than its last editor."""
    cfg = settings()
    if not cfg.safety.two_person_rule:
        return
    with transaction(ledger()) as s:
        row = s.get(Delivery, delivery_id)
        post = s.get(Post, row.post_id) if row.post_id else None
        sensitive = post is not None and is_sensitive(PostData.from_dict(post.data), cfg.safety)
        editor = roles.last_editor(s, delivery_id)
    if sensitive and editor == actor:
        raise ActionRefused(f"delivery {delivery_id}: you edited this sensitive post last, so someone else must "
                            f"{what} it (two-person rule)")


def _approve(delivery_id: int, actor: str, channel: str):
    _second_person(delivery_id, actor, "approve")
    row = actions.approve(ledger(), delivery_id, actor)
    when = "with the next run" if row.due_at <= utcnow() else f"on {local_time(row.due_at)}"
    return f"Approved. {_channel_label(channel)} goes out {when}.", "success"


def _hold(delivery_id: int, actor: str, channel: str):
    reason = " ".join(request.form.get("reason", "").split())[:300]
    actions.hold(ledger(), delivery_id, actor, reason=reason or f"held by {actor.removeprefix('desk:')}")
    return f"Held. {_channel_label(channel)} waits until someone approves it.", "success"


def _cancel(delivery_id: int, actor: str, channel: str):
    actions.cancel(ledger(), delivery_id, actor)
    return f"Cancelled. {_channel_label(channel)} will not be sent.", "success"


def _send_now(delivery_id: int, actor: str, channel: str):
    _second_person(delivery_id, actor, "send")
    cfg, factory = settings(), ledger()
    with transaction(factory) as s:
        row = s.get(Delivery, delivery_id)
        post = s.get(Post, row.post_id) if row.post_id else None
        state = row.state
    if state not in ("planned", "held"):
        raise ActionRefused(f"delivery {delivery_id}: cannot send now a delivery that is {state} "
                            "(only planned, held)")
    if channel not in cfg.enabled_channels():
        raise ActionRefused(f"delivery {delivery_id}: channel {channel!r} is not enabled in the settings")
    # Only the held card's "Approve and send now" button says approve: a page that showed the row
    # planned (plain "Send now") cannot release a hold put on it since.
    approve = request.form.get("approve") == "1"
    if post is not None:
        try:
            result = send_post_now(factory, cfg, post, [channel], actor, approve=approve)[0]
        except Held as exc:
            raise ActionRefused(f"delivery {delivery_id}: it is held ({exc.rows[0].hold_reason}); "
                                "approve it to send it") from None
        if result.state == "refused":
            raise ActionRefused(f"delivery {delivery_id}: {result.detail}")
        outcome, detail = result.state, result.detail
    else:  # a digest edition: the same claim and delivery, in-process
        actions.send_now(factory, delivery_id, actor, approve=approve)
        claim = claim_one(factory, delivery_id, utcnow(), ttl=cfg.run.claim_ttl, actor=actor)
        if claim is None:
            outcome, detail = "busy", ""
        else:
            done = deliver(factory, cfg, claim.delivery_id, claim.token, actor=actor)
            outcome, detail = done.state, done.detail
    label = _channel_label(channel)
    if outcome == "sent":
        return f"Sent. {label} went out just now.", "success"
    if outcome == "busy":
        return f"{label} is on its way: a worker picked it up at the same moment.", "info"
    if outcome in ("claimed", "sending"):
        raise ActionRefused(f"delivery {delivery_id}: a worker is sending it right now")
    return f"{label} was not sent: {outcome}" + (f" ({detail})" if detail else "") + ".", "error"


def _reschedule(delivery_id: int, actor: str, channel: str):
    value = request.form.get("when", "").strip()
    try:
        wall = datetime.strptime(value, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ActionRefused(f"delivery {delivery_id}: {value!r} is not a date and time") from None
    try:
        due = wall_to_utc(wall.date(), wall.time(), settings().site.tz)
        due + _LOOK_AHEAD  # the schedule looks ahead from a due time: the calendar's last days cannot be used
    except OverflowError:
        raise ActionRefused(f"delivery {delivery_id}: {value.replace('T', ' ')} is too far in the future") from None
    if due < utcnow() - timedelta(minutes=1):
        raise ActionRefused(f"delivery {delivery_id}: {local_time(due)} has already passed "
                            "(use Send now to send at once)")
    row = actions.reschedule(ledger(), delivery_id, due, actor)
    if row.state == "held":  # a new time never releases a hold
        return (f"Rescheduled to {local_time(due)}. {_channel_label(channel)} is still held: it goes out "
                "then only if someone approves it.", "success")
    return f"Rescheduled. {_channel_label(channel)} goes out on {local_time(due)}.", "success"


def _edit(delivery_id: int, actor: str, channel: str):
    text = request.form.get("text", "")
    ch = settings().channels.get(channel)
    try:
        actions.edit_text(ledger(), delivery_id, text, actor, options=ch.options if ch else None)
    except ActionRefused as exc:
        if "too long" in str(exc) or "empty" in str(exc):
            raise _Redo(_explain(delivery_id, str(exc)), {"text": text}) from None
        raise
    return f"Saved. The new text for {_channel_label(channel)} is what will be sent.", "success"


def _edit_email(delivery_id: int, actor: str, channel: str):
    subject, preheader = request.form.get("subject", ""), request.form.get("preheader", "")
    try:
        actions.edit_email(ledger(), settings(), delivery_id, subject, preheader, actor)
    except ActionRefused as exc:
        if "too long" in str(exc) or "empty" in str(exc) or "unchanged" in str(exc):
            raise _Redo(_explain(delivery_id, str(exc)), {"subject": subject, "preheader": preheader}) from None
        raise
    return (f"Saved. {_channel_label(channel)} goes out with the new subject and preheader (rendered again: "
            "the preview below is what will be sent).", "success")


def _test_email(delivery_id: int, actor: str, channel: str):
    address = request.form.get("address", "").strip()
    where = send_test_email(ledger(), settings(), delivery_id, address, actor)
    return f"Test email sent to {address} ({where}).", "success"


def _resolve(delivery_id: int, actor: str, channel: str):
    outcome = request.form.get("outcome", "")
    if outcome not in RESOLUTIONS:
        raise ActionRefused(f"delivery {delivery_id}: choose sent, retry or cancel")
    recipient, every = request.form.get("recipient", "").strip(), request.form.get("all_unknown") == "1"
    if recipient or every:  # an email delivery's recipients of unknown outcome, one or all
        done = actions.resolve_recipients(ledger(), delivery_id, outcome, actor, [recipient] if recipient else None)
        who = done.recipients[0] if len(done.recipients) == 1 else f"{len(done.recipients)} recipients"
        return (f"Settled: {who} {RECIPIENT_RESOLUTIONS[outcome]}. {_channel_label(channel)} is now "
                f"{done.delivery.state}.", "success")
    actions.resolve(ledger(), delivery_id, outcome, actor)
    return f"Settled. {_channel_label(channel)} is {RESOLUTIONS[outcome]}.", "success"


_ACTIONS = {"approve": _approve, "hold": _hold, "cancel": _cancel, "send-now": _send_now,
            "reschedule": _reschedule, "edit": _edit, "edit-email": _edit_email, "test-email": _test_email,
            "resolve": _resolve}


@bp.post("/post/<int:post_id>/no-email")
@auth.login_required
def keep_out_of_email(post_id: int):
    """The post's "keep out of email" toggle: its email deliveries not yet sent are cancelled."""
    roles.check("no-email")
    keep = request.form.get("keep") == "1"
    try:
        cancelled = actions.keep_out_of_email(ledger(), post_id, keep, auth.current_user().actor)
    except ActionRefused:
        abort(404)
    flash(f"Kept out of email; {len(cancelled)} email{'s' if len(cancelled) != 1 else ''} cancelled." if keep
          else "Email may carry this post again (cancelled emails stay cancelled).", "ok")
    return redirect(url_for("desk.post_page", post_id=post_id))


@bp.get("/audience")
@auth.login_required
def audience_page():
    """Subscribers per status; active readers per channel, topic and cadence (the same counts
    as ``syndicate subscribers list``)."""
    from syndicate.audience import preferences

    cfg = settings()
    with transaction(ledger()) as s:
        counts = preferences.audience_counts(s, cfg)
    labels = {name: topic.label for name, topic in cfg.audience.topics.items()}
    return _page("desk/audience.html", tallies=counts, topic_labels=labels,
                 cadence_labels=preferences.CADENCE_LABELS)


@bp.get("/deliverability")
@auth.login_required
def deliverability_page():
    """Sent, bounced and complained per edition and per channel, with the services' limits."""
    from syndicate.audience import suppression

    with transaction(ledger()) as s:
        per = suppression.delivery_rates(s)
        rows = list(s.execute(select(Delivery.id, Delivery.channel, Delivery.subject, Post.title)
                              .outerjoin(Post, Delivery.post_id == Post.id)
                              .where(Delivery.id.in_(list(per))).order_by(Delivery.id.desc())))
    editions = [{"id": i, "channel": channel, "title": title or subject, **per[i]} for i, channel, subject, title in rows]
    channels = suppression.channel_rates(per, {e["id"]: e["channel"] for e in editions})
    return _page("desk/deliverability.html", editions=editions, channels=channels)
