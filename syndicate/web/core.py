"""What every deployment answers: the favicon and the branded error pages (/healthz: web/ops.py)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, render_template, send_from_directory

from syndicate.web import settings

bp = Blueprint("core", __name__, template_folder="templates")


@bp.get("/favicon.ico")
def favicon():
    # An SVG under the name browsers ask for unprompted (pages link it too): no 404 in the console.
    response = send_from_directory(Path(__file__).parent / "desk" / "static", "favicon.svg",
                                   mimetype="image/svg+xml", max_age=86400)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.app_errorhandler(404)
def not_found(_exc):
    return render_template("web/message.html", site=settings().site, title="Page not found",
                           message="There is nothing at this address."), 404


@bp.app_errorhandler(405)
def not_allowed(_exc):
    return render_template("web/message.html", site=settings().site, title="Not allowed",
                           message="This address does not accept that kind of request."), 405
