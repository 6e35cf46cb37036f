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
    POST /desk/pause, /desk/resume      the pause button (syndicate/engine/pause.py); a banner
                                        on every page while paused

Previews come from the payload stored on each delivery: what staff see is what is sent. Emails
are shown in sandboxed iframes (srcdoc; no scripts run in them) at 600 and 375 px.

Security: a session key derived from the secret that ``web.secret_env`` names (a random one
per process when it is unset: sessions then end when the server restarts; a weak one is
refused), with the previous key accepted during a rotation (``web.old_secret_env``); CSRF
tokens on every form, and a desk POST whose Origin is another site's is refused as well; a
strict Content-Security-Policy (scripts only from this server; images only from this server,
data: URLs and the practice's own hosts, so a preview never makes a staff browser call a
third party); over HTTPS the cookie is Secure and HSTS is sent; with ``web.public_url`` set,
only its host (and loopback) is answered, so redirects never echo a forged Host header.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from syndicate.settings import Settings, old_signing_secrets, signing_secret


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""

log = logging.getLogger(__name__)

bp = Blueprint("desk", __name__, url_prefix="/desk", template_folder="templates", static_folder="static",
               static_url_path="/static")
csrf = CSRFProtect()

# Desk pages: scripts and styles from this server only. Inline styles are allowed because the
# emails previewed in srcdoc iframes (which inherit this policy) are styled inline; images from
# this server, data: URLs and the practice's own hosts (IMAGE_SOURCES, filled per app).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src {images}; "
       "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_LOOPBACK = ["localhost", "127.0.0.1", "[::1]", "::1"]


def _derive(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"syndicate preview desk session", hashlib.sha256).digest()


def session_key(settings: Settings) -> tuple[bytes, bool]:
    """The key that signs desk sessions, and whether it is stable across restarts.

    Derived from the link-signing secret (never that secret itself, so a leaked session key
    cannot forge unsubscribe links); random per process when the secret is not set. A weak
    secret raises SettingsError (the one accessor, signing_secret, decides for links and here).
    """
    if not (os.environ.get(settings.web.secret_env or "") or "").strip():
        return secrets.token_bytes(32), False
    return _derive(signing_secret(settings.web)), True


def image_sources(settings: Settings) -> str:
    """CSP img-src for the desk: this server, data: URLs, the practice's hosts and subdomains."""
    from syndicate.email.lint import site_hosts

    hosts = sorted(site_hosts(settings))
    return " ".join(["'self'", "data:"] + [f"https://{h} https://*.{h}" for h in hosts])


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over HTTPS (behind the proxy too)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app: Flask, settings: Settings) -> None:
    """Add the desk and its sign-in to APP (the subscription pages stay open, without CSRF)."""
    from syndicate.web import auth, roles, subscriptions
    from syndicate.web.desk import pausing, views  # noqa: F401  (registers the routes on bp)

    key, stable = session_key(settings)
    if not stable:
        log.warning("%s is not set: desk sessions are signed with a random key and end when the server "
                    "restarts", settings.web.secret_env)
    app.secret_key = key
    app.session_interface = _SessionInterface()
    app.config.update(
        SECRET_KEY_FALLBACKS=[_derive(old) for old in old_signing_secrets(settings.web)],
        SESSION_COOKIE_NAME="syndicate_desk",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("SYNDICATE_DESK_SECURE_COOKIE", "") == "1",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.web.session_idle_hours),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session: long reviews are fine
        WTF_CSRF_SSL_STRICT=False,  # behind a proxy the Referer may not match; the token (and Origin) check
    )
    if settings.web.public_url:  # production: answer only the public host (and loopback, for the server itself)
        app.config["TRUSTED_HOSTS"] = [urlsplit(settings.web.public_url).hostname] + _LOOPBACK
    if settings.web.proxy_hops:
        n = settings.web.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    csp = CSP.format(images=image_sources(settings))
    csrf.init_app(app)
    csrf.exempt(subscriptions.bp)  # one-click unsubscribe: the signed token is the authority
    app.register_blueprint(auth.bp)
    app.register_blueprint(bp)

    @app.before_request
    def _same_origin():
        # Defence in depth beside the CSRF token: a browser names the site a form came from.
        # "null" is what it sends for our own forms under Referrer-Policy: no-referrer.
        origin = request.headers.get("Origin")
        if request.method == "POST" and request.path.startswith("/desk") and origin not in (None, "null"):
            allowed = {f"{request.scheme}://{request.host}", _origin(settings.web.public_url or "")}
            if origin not in allowed:
                raise CSRFError("the form came from another site")

    @app.after_request
    def _strict(response):
        if request.path.startswith("/desk"):  # the desk and its sign-in page (and their static files)
            response.headers["Content-Security-Policy"] = csp
            response.headers["X-Frame-Options"] = "DENY"
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
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
