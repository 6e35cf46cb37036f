"""Staff accounts and sign-in for the preview desk.

Accounts live in the ledger (``staff_users``), created with ``syndicate users add NAME``; only a
salted scrypt hash of each password is stored (werkzeug.security). Signing in puts the account's
id in Flask's signed session cookie (HttpOnly, SameSite=Lax, 12 hours), together with a
fingerprint of the password hash: changing a password or removing the account signs its
sessions out at the next request. Five wrong passwords in a row lock the account for five
minutes (the attempts are counted in the ledger, so every web worker sees them).

Every desk page requires a signed-in account (``login_required``); the unsubscribe and confirm
pages never do. CSRF tokens (Flask-WTF) guard every form of the desk.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from syndicate.engine.states import record
from syndicate.ledger.db import transaction
from syndicate.ledger.models import StaffUser, utcnow

MIN_PASSWORD = 10
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=5)
SESSION_HOURS = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")
# Checked when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a real password; timing only")


class AccountError(Exception):
    """A bad name or password for an account; str() says why, in one line."""


class Locked(Exception):
    """Too many wrong passwords in a row; str() says how long to wait."""


@dataclass(frozen=True)
class Staff:
    id: int
    name: str
    created_at: datetime
    last_login_at: datetime | None

    @property
    def actor(self) -> str:
        """How the audit trail names this person."""
        return f"desk:{self.name}"


def normalize_name(name: str) -> str:
    value = (name or "").strip().lower()
    if not _NAME.match(value):
        raise AccountError(f"{name!r} is not a usable name: use 1-100 letters, digits, '.', '_', '-' or '@', "
                           "starting with a letter or digit")
    return value


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if password != password.strip():
        raise AccountError("the password starts or ends with a space (a copy-paste slip?)")
    return password


def add_user(factory: sessionmaker[Session], name: str, password: str, *, replace: bool = False) -> Staff:
    """Create an account (or, with REPLACE, set a new password for an existing one)."""
    name = normalize_name(name)
    hashed = generate_password_hash(check_password(password))
    with transaction(factory) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.name == name))
        if row is not None and not replace:
            raise AccountError(f"there is already an account named {name!r} (use --reset to set a new password)")
        if row is None:
            row = StaffUser(name=name, password_hash=hashed, created_at=utcnow(), failed_logins=0)
            s.add(row)
        else:
            row.password_hash, row.failed_logins, row.locked_until = hashed, 0, None
        try:
            s.flush()
        except IntegrityError:
            raise AccountError(f"there is already an account named {name!r}") from None
        return _staff(row)


def list_users(factory: sessionmaker[Session]) -> list[Staff]:
    with transaction(factory) as s:
        return [_staff(r) for r in s.scalars(select(StaffUser).order_by(StaffUser.name))]


def remove_user(factory: sessionmaker[Session], name: str) -> bool:
    """Delete an account; its open sessions end at their next request. False if there was none."""
    name = normalize_name(name)
    with transaction(factory) as s:
        return s.execute(delete(StaffUser).where(StaffUser.name == name)).rowcount == 1


def authenticate(factory: sessionmaker[Session], name: str, password: str,
                 now: datetime | None = None) -> Staff | None:
    """The account if NAME and PASSWORD match; None if not. Raises Locked while locked out."""
    now = now or utcnow()
    try:
        name = normalize_name(name)
    except AccountError:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    with transaction(factory) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.name == name))
        if row is None:
            check_password_hash(_DUMMY_HASH, password or "")
            return None
        if row.locked_until is not None and row.locked_until > now:
            minutes = max(1, round((row.locked_until - now).total_seconds() / 60))
            raise Locked(f"Too many wrong passwords for this account. Try again in {minutes} "
                         f"minute{'s' if minutes != 1 else ''}.")
        if not check_password_hash(row.password_hash, password or ""):
            failures = row.failed_logins + 1
            values = {"failed_logins": failures}
            if failures >= MAX_FAILURES:
                values = {"failed_logins": 0, "locked_until": now + LOCKOUT}
            s.execute(update(StaffUser).where(StaffUser.id == row.id).values(**values))
            record(s, None, f"desk:{name}", "sign-in refused", "wrong password"
                   + (f"; locked for {int(LOCKOUT.total_seconds() // 60)} minutes" if failures >= MAX_FAILURES
                      else ""), now=now)
            return None
        s.execute(update(StaffUser).where(StaffUser.id == row.id)
                  .values(failed_logins=0, locked_until=None, last_login_at=now))
        record(s, None, f"desk:{name}", "sign in", None, now=now)
        return _staff(row)


def _staff(row: StaffUser) -> Staff:
    return Staff(row.id, row.name, row.created_at, row.last_login_at)


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- Flask: sessions and sign-in

bp = Blueprint("auth", __name__, url_prefix="/desk", template_folder="desk/templates")


def current_user() -> Staff | None:
    """The signed-in account of this request, or None (looked up once per request)."""
    if "staff" in g:
        return g.staff
    from syndicate.web import ledger

    staff = None
    user_id, mark = session.get("staff_id"), session.get("staff_mark")
    if user_id is not None:
        with transaction(ledger()) as s:
            row = s.get(StaffUser, user_id)
            if row is not None and mark == _fingerprint(row.password_hash):
                staff = _staff(row)
        if staff is None:
            session.clear()  # removed, or the password changed since
    g.staff = staff
    return staff


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


def _safe_next(target: str | None) -> str:
    # Only back into the desk: never an open redirect to another site.
    if target and target.startswith("/desk") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("desk.queue")


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    from syndicate.web import ledger, settings

    error = None
    name = ""
    if request.method == "POST":
        name = request.form.get("name", "")
        try:
            staff = authenticate(ledger(), name, request.form.get("password", ""))
        except Locked as exc:
            staff, error = None, str(exc)
        if staff is not None:
            with transaction(ledger()) as s:
                mark = _fingerprint(s.get(StaffUser, staff.id).password_hash)
            session.clear()  # a fresh session (and CSRF token) for the signed-in account
            session.permanent = True
            session["staff_id"], session["staff_mark"] = staff.id, mark
            return redirect(_safe_next(request.args.get("next")))
        error = error or "That name and password do not match an account."
    status = 401 if error else 200
    return render_template("desk/sign_in.html", site=settings().site, error=error, name=name), status


@bp.post("/sign-out")
def sign_out():
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))
