"""The desk's pause button and the banner every desk page shows while sending is paused
(the same switch as `syndicate pause` / `resume`: syndicate/engine/pause.py)."""

from __future__ import annotations

from flask import flash, redirect, request, url_for

from syndicate.engine import pause as pause_mod
from syndicate.ledger.db import transaction
from syndicate.web import auth, ledger, roles, settings
from syndicate.web.desk import bp


@bp.app_context_processor
def _pause_state():
    """``pause`` in every desk template: the pause in force, or None (no lookup when signed out)."""
    if not request.path.startswith("/desk") or auth.current_user() is None:
        return {}
    with transaction(ledger()) as s:
        return {"pause": pause_mod.paused(s)}


@bp.post("/pause")
@auth.login_required
@roles.require("pause")  # an admin's switch: it stops every channel at once
def pause():
    reason = (request.form.get("reason") or "").strip()[:500] or None
    _state, changed = pause_mod.pause(ledger(), auth.current_user().actor, reason)
    flash("Sending is paused: nothing new goes out until someone resumes it." if changed
          else "Sending was already paused.", "success" if changed else "info")
    return redirect(_back())


@bp.post("/resume")
@auth.login_required
@roles.require("pause")
def resume():
    cfg = settings()
    done = pause_mod.resume(ledger(), cfg, auth.current_user().actor)
    if not done.was_paused:
        flash("Sending was not paused.", "info")
    elif done.held:
        flash(f"Sending resumed. {len(done.held)} deliveries whose time passed more than {cfg.run.stale_after} ago "
              "while paused wait for approval on the Held tab instead of going out late.", "success")
    else:
        flash("Sending resumed.", "success")
    return redirect(_back())


def _back() -> str:
    back = request.form.get("back") or ""
    return back if back.startswith("/desk") and not back.startswith("//") else url_for("desk.queue")
