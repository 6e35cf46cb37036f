"""Unsubscribe (RFC 8058 one-click) and double opt-in confirmation.

``POST /unsubscribe/<token>`` suppresses the address at once: it is what a mail client's
"Unsubscribe" button sends (body ``List-Unsubscribe=One-Click``), and what the button on the
confirmation page sends. No login, and no CSRF token by design: the signed token *is* the
authority, and one-click must work from a mail client. ``GET`` never changes anything (link
scanners and previewers fetch links); it shows a page with the button. ``?u=<token>`` works
too, for unsubscribe URLs configured in that style. A bad or forged token is a 400 page.

``/confirm/<token>`` works the same way for double opt-in: GET shows, POST confirms (and
lifts the person's own earlier unsubscribe: audience/signup.py). With
``audience.signup.welcome`` a welcome email follows. A bad or expired link says so and offers
the signup form for a new one.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from syndicate.audience import signup, subscribers
from syndicate.engine.notices import NoticeError, send_notice
from syndicate.settings import SettingsError
from syndicate.web import ledger, settings

bp = Blueprint("subscriptions", __name__, template_folder="templates")


def _token(token: str | None) -> str:
    return token or request.args.get("u") or request.args.get("token") or ""


def _bad(message: str, link: tuple[str, str] | None = None):
    return render_template("web/message.html", site=settings().site, title="This link does not work",
                           message=message, link=link), 400


@bp.app_errorhandler(SettingsError)
def _no_key(exc):
    # The signing key is unset or refused: say how to unsubscribe anyway, and tell the operator.
    current_app.logger.error("subscription links cannot be checked: %s", exc)
    return render_template("web/message.html", site=settings().site, title="This link cannot be checked right now",
                           message="To stop these emails, reply to one of them and we will remove you by hand."), 503


@bp.route("/unsubscribe", methods=["GET", "POST"])
@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str | None = None):
    token = _token(token)
    try:
        address = subscribers.read_unsubscribe_token(settings(), token)
    except subscribers.BadToken as exc:
        return _bad(f"{exc}. To stop these emails, reply to one of them and we will remove you by hand.")
    if request.method == "POST":
        subscribers.suppress(ledger(), address, reason="unsubscribed (one-click)" if _one_click()
                             else "unsubscribed (web page)")
        return render_template("web/unsubscribed.html", site=settings().site, address=address)
    already = subscribers.is_suppressed(ledger(), address)
    return render_template("web/unsubscribe.html", site=settings().site, address=address, already=already,
                           brand=settings().site.brand, preferences_url=f"/preferences/{token}")


def _one_click() -> bool:
    return request.form.get("List-Unsubscribe") == "One-Click"


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    try:
        address = subscribers.read_confirm_token(settings(), token)
    except subscribers.BadToken as exc:
        return _bad(str(exc), ("Get a new confirmation link", "/subscribe"))
    if request.method == "POST":
        was = subscribers.is_suppressed(ledger(), address) or not subscribers.list_active(ledger(), address)
        status = signup.confirm(ledger(), settings(), address)
        if status == "active" and was and settings().audience.signup.welcome:
            try:
                send_notice(ledger(), settings(), "welcome", address)
            except NoticeError as exc:
                current_app.logger.error("welcome email not sent: %s", exc)
        prefs = f"/preferences/{subscribers.unsubscribe_token(settings(), address)}" if status == "active" else None
        return render_template("web/confirmed.html", site=settings().site, address=address, status=status,
                               preferences_url=prefs)
    return render_template("web/confirm.html", site=settings().site, address=address,
                           brand=settings().site.brand)
