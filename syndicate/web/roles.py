"""Who may do what at the desk: three roles, each including the one below it.

    editor    edit (a social post's text, an email's subject and preheader, the next digest's),
              propose (hold with a reason), reschedule, send a test email
    approver  what an editor may, and approve, send now, cancel, settle unknown deliveries
    admin     what an approver may, and the accounts, the settings view and the pause switch

An account's role is ``staff_users.role`` (migration 0011: accounts made before it are admin);
``syndicate users add NAME --role ROLE`` sets it (the first account defaults to admin, later
ones to editor: the least that can work). The desk hides what a role may not do, and the
server refuses it anyway (403, logged with who and what): ``require`` on a route,
``check`` inside one whose action is in its URL.

The two-person rule (``safety.two_person_rule``): a sensitive post's delivery cannot be
approved (or sent now) by the person who last edited it.
"""

from __future__ import annotations

import logging
from functools import wraps

from flask import abort, g, request
from sqlalchemy import select

from syndicate.ledger.db import transaction
from syndicate.ledger.models import Event, StaffUser

log = logging.getLogger(__name__)

ROLES = ("editor", "approver", "admin")  # each includes the ones before it
# The least role each action needs.
NEEDS = {
    "edit": "editor", "edit-email": "editor", "edit-digest": "editor", "hold": "editor",
    "reschedule": "editor", "test-email": "editor", "no-email": "editor",
    "approve": "approver", "send-now": "approver", "cancel": "approver", "resolve": "approver",
    "users": "admin", "settings": "admin", "pause": "admin",
}
SECOND_PERSON = ("approve", "send-now")  # what the two-person rule guards
_EDITS = ("edit",)  # the audit trail's action for every content edit


class RoleError(ValueError):
    """An unknown role name; str() lists the known ones."""


def check_role(role: str) -> str:
    value = (role or "").strip().lower()
    if value not in ROLES:
        raise RoleError(f"{role!r} is not a role: use one of {', '.join(ROLES)}")
    return value


def may(role: str | None, action: str) -> bool:
    """Whether ROLE may do ACTION (an unknown action needs admin)."""
    if role not in ROLES:
        return False
    return ROLES.index(role) >= ROLES.index(NEEDS.get(action, "admin"))


def current_role() -> str | None:
    """The signed-in account's role (looked up once per request), or None when signed out."""
    from syndicate.web import auth, ledger

    if "staff_role" in g:
        return g.staff_role
    staff = auth.current_user()
    role = None
    if staff is not None:
        with transaction(ledger()) as s:
            role = s.scalar(select(StaffUser.role).where(StaffUser.id == staff.id))
    g.staff_role = role
    return role


def can(action: str) -> bool:
    """For templates: whether the signed-in account may do ACTION."""
    return may(current_role(), action)


def check(action: str) -> None:
    """Refuse (403, logged) when the signed-in account may not do ACTION."""
    from syndicate.web import auth

    if not may(current_role(), action):
        staff = auth.current_user()
        log.warning("desk: %s (%s) may not %s: refused %s %s", staff.name if staff else "nobody",
                    current_role() or "no role", action, request.method, request.path)
        abort(403, description=f"Your account ({current_role() or 'no role'}) may not {action.replace('-', ' ')}: "
                               f"that needs the {NEEDS.get(action, 'admin')} role. Ask an admin.")


def require(action: str):
    """Decorator: the view needs a role that may do ACTION (use under ``auth.login_required``)."""
    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            check(action)
            return view(*args, **kwargs)
        return wrapper
    return decorate


def last_editor(s, delivery_id: int) -> str | None:
    """The actor of the delivery's latest content edit, or None."""
    return s.scalar(select(Event.actor).where(Event.delivery_id == delivery_id, Event.action.in_(_EDITS))
                    .order_by(Event.id.desc()).limit(1))


def set_role(factory, name: str, role: str) -> bool:
    """Give the account NAME the role ROLE; False if there is no such account."""
    role = check_role(role)
    with transaction(factory) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.name == name))
        if row is None:
            return False
        row.role = role
        return True


def default_role(factory) -> str:
    """The role of a new account when none is given: admin for the first, else editor."""
    with transaction(factory) as s:
        return "editor" if s.scalar(select(StaffUser.id).limit(1)) is not None else "admin"


def roles_by_name(factory) -> dict[str, str]:
    with transaction(factory) as s:
        return dict(s.execute(select(StaffUser.name, StaffUser.role)).all())
