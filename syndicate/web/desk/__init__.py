"""The preview desk: marketing staff see what will go out, and approve, edit, hold or send it.

Pages (all behind sign-in, see syndicate/web/auth.py):

    /desk/                      the queue: upcoming, held, failed, unknown, sent; by post or channel
    /desk/post/<id>             one post on every channel, exactly as it will go out, with actions
    /desk/delivery/<id>         one delivery (a digest edition's, or a post's: redirects to the post)
    /desk/digest                each digest channel's next edition, as it would be sent now
    /desk/calendar              a week (or a month) per channel, in the site's time zone
    POST /desk/digest/<channel>/edit    the next edition's subject and preheader
    POST /desk/delivery/<id>/<action>   approve, hold, cancel, send-now, reschedule, edit, edit-email,
                                        test-email, resolve (each a compare-and-set in
                                        syndicate/engine/actions.py, recorded with who and when)

Previews come from the payload stored on each delivery: what staff see is what is sent. Emails
are shown in sandboxed iframes (srcdoc; no scripts run in them) at 600 and 375 px.

Security: a session key derived from the secret that ``web.secret_env`` names (a random one
per process when it is unset: sessions then end when the server restarts); CSRF tokens on
every form; a strict Content-Security-Policy (scripts only from this server, nothing from
third parties; images over https, which the emails' own images need).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from datetime import timedelta

from flask import Blueprint, Flask, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from syndicate.settings import Settings

log = logging.getLogger(__name__)

bp = Blueprint("desk", __name__, url_prefix="/desk", template_folder="templates", static_folder="static",
               static_url_path="/static")
csrf = CSRFProtect()

# Desk pages: scripts and styles from this server only. Inline styles are allowed because the
# emails previewed in srcdoc iframes (which inherit this policy) are styled inline; images over
# https because an email's images live on the practice's site.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def session_key(settings: Settings) -> tuple[bytes, bool]:
    """The key that signs desk sessions, and whether it is stable across restarts.

    Derived from the link-signing secret (never that secret itself, so a leaked session key
    cannot forge unsubscribe links); random per process when the secret is not set.
    """
    secret = os.environ.get(settings.web.secret_env or "")
    if not secret:
        return secrets.token_bytes(32), False
    return hmac.new(secret.encode(), b"syndicate preview desk session", hashlib.sha256).digest(), True


def init_app(app: Flask, settings: Settings) -> None:
    """Add the desk and its sign-in to APP (the subscription pages stay open, without CSRF)."""
    from syndicate.web import auth, roles, subscriptions
    from syndicate.web.desk import views  # noqa: F401  (registers the routes on bp)

    key, stable = session_key(settings)
    if not stable:
        log.warning("%s is not set: desk sessions are signed with a random key and end when the server "
                    "restarts", settings.web.secret_env)
    app.secret_key = key
    app.config.update(
        SESSION_COOKIE_NAME="syndicate_desk",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SYNDICATE_DESK_SECURE_COOKIE", "") == "1",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=auth.SESSION_HOURS),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session: long reviews are fine
        WTF_CSRF_SSL_STRICT=False,  # behind a proxy the Referer may not match; the token is the check
    )
    csrf.init_app(app)
    csrf.exempt(subscriptions.bp)  # one-click unsubscribe: the signed token is the authority
    app.register_blueprint(auth.bp)
    app.register_blueprint(bp)

    @app.after_request
    def _strict(response):
        if request.path.startswith("/desk"):  # the desk and its sign-in page (and their static files)
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Frame-Options"] = "DENY"
        return response

    app.jinja_env.globals["can"] = roles.can  # the desk hides what the account's role may not do

    @app.errorhandler(403)
    def _forbidden(exc):
        return render_template("desk/message.html", site=settings.site, title="Not for your role",
                               message=getattr(exc, "description", "") or "Your account may not do this."), 403

    @app.errorhandler(CSRFError)
    def _csrf_failed(exc):
        return render_template("desk/message.html", site=settings.site, title="This form has expired",
                               message="The page was open too long, or the form came from somewhere else. "
                                       "Go back, reload the page, and try again. Nothing was changed."), 400
