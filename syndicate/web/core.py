"""What every deployment answers: a health check and the branded error pages."""

from __future__ import annotations

from flask import Blueprint, render_template

from syndicate.web import settings

bp = Blueprint("core", __name__, template_folder="templates")


@bp.get("/healthz")
def healthz():
    return {"ok": True}


@bp.app_errorhandler(404)
def not_found(_exc):
    return render_template("web/message.html", site=settings().site, title="Page not found",
                           message="There is nothing at this address."), 404


@bp.app_errorhandler(405)
def not_allowed(_exc):
    return render_template("web/message.html", site=settings().site, title="Not allowed",
                           message="This address does not accept that kind of request."), 405
