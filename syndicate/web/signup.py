"""Public signup, preferences and the archive of sent digests (issue 17).

* ``GET /subscribe``: the hosted form, in the site's brand. ``POST /subscribe`` takes the
  form (``email``, the ticket ``t``, the honeypot ``website``) or the same as JSON, from this
  site or from a page of ``site.url`` (the blog's pasted form, README). CORS is granted to that
  one origin only: a preflight from any other origin is refused (403, no ``Access-Control-*``
  headers), and so is a POST whose ``Origin`` is another site's. ``GET /subscribe/ticket``
  gives the pasted form its ticket (audience/signup.py).
* ``/preferences/<token>``: the unsubscribe token (the same signed family): GET shows the
  person's choices, POST saves them. It shows nothing but the token owner's own address.
* ``/archive``, ``/archive/<channel>-<edition>``, ``/archive/feed.xml``: every sent digest
  edition as a plain page of its posts (titles, excerpts, links to the blog): no per-reader
  token, no tracking, nothing loaded from elsewhere.
"""

from __future__ import annotations

from datetime import UTC
from email.utils import format_datetime
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from sqlalchemy import select

from syndicate.audience import preferences, signup, subscribers
from syndicate.engine.notices import NoticeError, send_notice
from syndicate.ledger.db import transaction
from syndicate.ledger.models import Delivery, DigestItem, Post, Subscriber
from syndicate.model import PostData
from syndicate.web import ledger, settings

bp = Blueprint("signup", __name__, template_folder="templates")


def init_app(app) -> None:
    """Register on APP outside the desk's CSRF tokens: a signup is checked by its Origin and
    ticket, a preferences change by its signed token (as one-click unsubscribe is)."""
    from syndicate.web.desk import csrf

    app.register_blueprint(bp)
    csrf.exempt(bp)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _site_origin() -> str:
    return _origin(settings().site.url)


def _allowed(origin: str | None) -> bool:
    """A request without Origin (a plain client), from this server, or from the site. "null" is
    what a browser sends for our own form under ``Referrer-Policy: no-referrer``; a foreign page
    sending it cannot read a ticket (no CORS for it), so its POST is still refused."""
    if not origin or origin == "null":
        return True
    return origin.lower() in (_site_origin(), _origin(request.host_url))


def _cors(response):
    origin = request.headers.get("Origin")
    if origin and origin.lower() == _site_origin():
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _limiter() -> signup.Limiter:
    state = current_app.extensions["syndicate"]
    if "signup_limiter" not in state:
        state["signup_limiter"] = signup.Limiter.for_settings(settings())
    return state["signup_limiter"]


def _form(message: str | None = None, email: str = "", status: int = 200):
    return render_template("web/subscribe.html", site=settings().site, ticket=signup.ticket(settings()),
                           message=message, email=email, honeypot=signup.HONEYPOT), status


@bp.route("/subscribe", methods=["OPTIONS"])
@bp.route("/subscribe/ticket", methods=["OPTIONS"])
def preflight():
    origin = request.headers.get("Origin")
    if not origin or origin.lower() != _site_origin():
        return Response("origin not allowed", status=403, mimetype="text/plain")
    response = Response(status=204)
    response.headers.update({"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                             "Access-Control-Allow-Methods": "GET, POST",
                             "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600"})
    return response


@bp.get("/subscribe/ticket")
def ticket():
    if not _allowed(request.headers.get("Origin")):
        return Response("origin not allowed", status=403, mimetype="text/plain")
    return _cors(jsonify(ticket=signup.ticket(settings())))


@bp.get("/subscribe")
def form():
    if not settings().signup_open:
        return _closed()
    return _form()


def _closed():
    return render_template("web/message.html", site=settings().site, title="Signup is closed",
                           message="This newsletter does not take new subscribers here."), 404


@bp.post("/subscribe")
def subscribe():
    wants_json = request.is_json
    if not _allowed(request.headers.get("Origin")):
        return Response("origin not allowed", status=403, mimetype="text/plain")
    if not settings().signup_open:
        return _closed()
    data = (request.get_json(silent=True) or {}) if wants_json else request.form
    email = str(data.get("email") or "")[:320]
    try:
        result = signup.request(ledger(), settings(), _limiter(), email=email, client=request.remote_addr or "",
                                honeypot=str(data.get(signup.HONEYPOT) or ""), ticket_value=data.get("t"))
    except signup.Refused as exc:
        status = 429 if isinstance(exc, signup.Throttled) else 400
        if wants_json:
            return _cors(jsonify(ok=False, error=str(exc), ticket_needed=isinstance(exc, signup.NeedsTicket))), status
        return _form(str(exc), email, 200 if isinstance(exc, signup.NeedsTicket) else status)
    if result.mail:
        try:
            send_notice(ledger(), settings(), "confirm", result.address)
        except NoticeError as exc:
            current_app.logger.error("signup confirmation not sent: %s", exc)
    current_app.logger.info("signup: %s", result.why)  # never the address
    message = "Thank you! Check your inbox: we sent you a link to confirm your subscription."
    if wants_json:
        return _cors(jsonify(ok=True, message=message))
    return render_template("web/message.html", site=settings().site, title="Check your inbox", message=message)


# ---------------------------------------------------------------------------- preferences


def _read_token(token: str) -> str | None:
    try:
        return subscribers.read_unsubscribe_token(settings(), token)
    except subscribers.BadToken:
        return None


def _bad_link():
    return render_template("web/message.html", site=settings().site, title="This link does not work",
                           message="This preferences link is not valid (it may have been cut short). "
                                   "Use the link in a recent email, or subscribe again to get a new one.",
                           link=("Get a new link", "/subscribe")), 400


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def prefs(token: str):
    address = _read_token(token)
    if address is None:
        return _bad_link()
    conf = settings()
    message, error = None, None
    with transaction(ledger()) as s:
        row = s.scalar(select(Subscriber).where(Subscriber.email == address))
        if row is None or row.status != "active" or subscribers.suppressed_among(s, [address], conf):
            return render_template("web/message.html", site=conf.site, title="You are not subscribed",
                                   message="This address gets no newsletters from us now.",
                                   link=("Subscribe again", "/subscribe"))
        if request.method == "POST":
            try:
                preferences.save(s, conf, row, request.form.getlist("cadence"), request.form.getlist("topic"))
                message = "Saved. Your next emails follow these choices."
            except preferences.BadChoice as exc:
                error = str(exc)
        chosen = preferences.read(s, row)
    cadences = chosen.cadences or preferences.offered_cadences(conf)
    return render_template("web/preferences.html", site=conf.site, address=address, token=token,
                           offered=[(c, preferences.CADENCE_LABELS[c]) for c in preferences.offered_cadences(conf)],
                           cadences=cadences, topics=conf.audience.topics, chosen_topics=chosen.topics,
                           message=message, error=error), (400 if error else 200)


# ---------------------------------------------------------------------------- the archive


def _editions(s, limit: int = 200) -> list[tuple[str, Delivery]]:
    rows = s.scalars(select(Delivery).where(Delivery.subject.like("digest:%"), Delivery.state == "sent")
                     .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(limit))
    return [(f"{d.channel}-{d.subject.removeprefix('digest:')}", d) for d in rows]


def _posts(s, delivery: Delivery) -> list[PostData]:
    ids = ((delivery.payload or {}).get("edition") or {}).get("post_ids") or list(
        s.scalars(select(DigestItem.post_id).where(DigestItem.delivery_id == delivery.id)))
    rows = {p.id: p for p in s.scalars(select(Post).where(Post.id.in_(ids)))}
    return [PostData.from_dict(rows[i].data) for i in ids if i in rows]


@bp.get("/archive")
def archive():
    with transaction(ledger()) as s:
        editions = [(slug, d.payload.get("subject", slug), d.sent_at) for slug, d in _editions(s)]
    return render_template("web/archive.html", site=settings().site, editions=editions)


@bp.get("/archive/feed.xml")
def archive_feed():
    conf = settings()
    with transaction(ledger()) as s:
        editions = [(slug, d.payload.get("subject", slug), d.sent_at, d.payload.get("preheader", ""))
                    for slug, d in _editions(s, 50)]
    body = render_template("web/archive_feed.xml", site=conf.site, base=conf.public_url,
                           editions=[(slug, title, format_datetime(at.astimezone(UTC)) if at else "", summary)
                                     for slug, title, at, summary in editions])
    return Response(body, mimetype="application/rss+xml")


@bp.get("/archive/<slug>")
def edition(slug: str):
    with transaction(ledger()) as s:
        found = next((d for name, d in _editions(s, 1000) if name == slug), None)
        if found is None:
            return render_template("web/message.html", site=settings().site, title="Page not found",
                                   message="There is no sent edition at this address.",
                                   link=("All editions", "/archive")), 404
        posts = _posts(s, found)
        subject, sent_at = found.payload.get("subject", slug), found.sent_at
    return render_template("web/edition.html", site=settings().site, subject=subject, sent_at=sent_at, posts=posts)
