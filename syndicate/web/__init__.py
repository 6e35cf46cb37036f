"""The web app: `syndicate serve`. Today the subscription pages; the preview desk grows in here.

``create_app(settings)`` builds a Flask app; each area is a blueprint of its own module
(``subscriptions``: one-click unsubscribe and double opt-in confirmation). Pages load nothing
from elsewhere (no fonts, scripts or images from third parties), and every response carries a
strict Content-Security-Policy.

Production: ``syndicate serve`` (waitress; cli/web.py says why) behind the practice's HTTPS
proxy, or any WSGI server on ``syndicate.web.wsgi:app`` (settings from ``$SYNDICATE_CONFIG``);
``web.public_url`` is the address mail clients use.
"""

from __future__ import annotations

from flask import Flask, current_app
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from syndicate.ledger.db import open_ledger
from syndicate.settings import Settings

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")


def create_app(settings: Settings) -> Flask:
    from syndicate.web import core, desk, hooks, ops, signup, subscriptions

    app = Flask(__name__)
    app.url_map.converters["int"] = _RowId  # before any route is added: every <int:...> is bounded
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024, JSON_AS_ASCII=False)
    app.extensions["syndicate"] = {"settings": settings}
    app.register_blueprint(core.bp)
    app.register_blueprint(subscriptions.bp)
    desk.init_app(app, settings)  # the preview desk and its sign-in (/desk)
    hooks.init_app(app)  # bounce and complaint webhooks (/hooks/*), signed: no CSRF
    signup.init_app(app)  # /subscribe (Origin and ticket checked), /preferences (signed token), /archive
    ops.init_app(app)  # / (to the desk), /healthz, /metrics, static caching

    @app.after_request
    def _headers(response):
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # tokens stay out of Referer
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


class _RowId(IntegerConverter):
    """An <int:...> id the database can hold: a larger one is a 404, not an overflow (500)."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 (werkzeug's name)
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def settings() -> Settings:
    return current_app.extensions["syndicate"]["settings"]


def ledger() -> sessionmaker[Session]:
    state = current_app.extensions["syndicate"]
    if "ledger" not in state:
        state["ledger"] = open_ledger(state["settings"].store_url)
    return state["ledger"]
