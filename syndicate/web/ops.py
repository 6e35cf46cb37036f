"""What operations reads: `/` (to the desk), `/healthz`, `/metrics`, and static files' caching.

``/healthz`` is the report of engine/health.py as JSON, 200 when every check passes and 503
when any is beyond its threshold (the failing ones are named in ``failing``). It is open to
all, like any load balancer's probe, and says nothing secret.

``/metrics`` (web/metrics.py) is for Prometheus. With ``metrics.token_env`` naming a variable
that is set, a scraper sends ``Authorization: Bearer <token>``; without one, only clients on
this host's loopback are answered, and a request forwarded by a proxy (``X-Forwarded-For`` or
``Forwarded``) is refused, since behind a proxy on the same host every client looks local.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, request, url_for

from syndicate.engine import health
from syndicate.ledger.models import utcnow
from syndicate.web import ledger, settings

bp = Blueprint("ops", __name__)

# Desk styles and scripts: a browser keeps them an hour, then revalidates (ETag, 304). Their
# URLs are not versioned, so an upgrade shows within the hour.
STATIC_MAX_AGE = 3600


def init_app(app: Flask) -> None:
    app.extensions["syndicate"]["started_at"] = utcnow()
    app.register_blueprint(bp)

    @app.after_request
    def _static_cache(response):
        if (request.endpoint or "").endswith("static") and response.status_code in (200, 304):
            response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}"
        return response


def _started_at():
    return current_app.extensions["syndicate"]["started_at"]


@bp.get("/")
def index():
    return redirect(url_for("desk.queue"))


@bp.get("/healthz")
def healthz():
    try:
        factory = ledger()
    except Exception as exc:  # noqa: BLE001 - reported as the failing "ledger" check
        report = health.Report(utcnow(), "unknown", [health.Check("ledger", False, f"the ledger cannot be opened: {exc}")])
    else:
        report = health.evaluate(settings(), factory, started_at=_started_at())
    return jsonify(report.as_dict()), 200 if report.ok else 503


@bp.get("/metrics")
def metrics():
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if (refusal := _refuse_metrics()) is not None:
        return refusal
    state = current_app.extensions["syndicate"]
    if "metrics" not in state:
        from prometheus_client import CollectorRegistry

        from syndicate.web.metrics import LedgerCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(LedgerCollector(settings(), ledger(), started_at=_started_at()))
        state["metrics"] = registry
    return Response(generate_latest(state["metrics"]), mimetype=CONTENT_TYPE_LATEST)


def _refuse_metrics() -> Response | None:
    name = settings().metrics.token_env
    token = (os.environ.get(name) or "").strip() if name else ""
    if token:
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return Response("a bearer token is required (metrics.token_env)\n", 401,
                        {"WWW-Authenticate": 'Bearer realm="metrics"'}, mimetype="text/plain")
    if _loopback(request.remote_addr) and not (request.headers.get("X-Forwarded-For")
                                               or request.headers.get("Forwarded")):
        return None
    return Response("metrics are served to this host only; set metrics.token_env to scrape from elsewhere\n",
                    403, mimetype="text/plain")


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").split("%")[0]).is_loopback
    except ValueError:
        return False
