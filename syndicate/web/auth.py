"""Staff accounts and sign-in for the preview desk.

Accounts live in the ledger (``staff_users``), created with ``syndicate users add NAME``; only a
salted scrypt hash of each password is stored (werkzeug.security, at OWASP's cost: N=2^17, r=8,
p=1; older, cheaper hashes are redone at the next sign-in). Signing in puts the account's id in
Flask's signed session cookie (HttpOnly, SameSite=Lax), with a fingerprint of the password
hash, the account's session epoch and the time of sign-in: changing a password, removing the
account or signing out (which bumps the epoch) ends its sessions at the next request, and no
session lives longer than ``web.session_max_hours`` however busy (``web.session_idle_hours``
without a request ends it sooner).

Guessing is slowed in the ledger (``sign_in_throttle``), so every web worker sees it: each
attempt is counted with one atomic upsert *before* the password is checked, per name and
source address (MAX_FAILURES tries per LOCKOUT) and per source address over all names
(CLIENT_MAX per CLIENT_WINDOW). Past the limit the attempt is not checked at all; the answer
says how long to wait. Unknown names are counted, answered and timed exactly like real ones (a
dummy hash is checked), so the lockout tells nobody which names exist, and a lockout holds only
for the address the guesses came from: nobody can lock a staff member out from elsewhere.

Every desk page requires a signed-in account (``login_required``); the unsubscribe and confirm
pages never do. CSRF tokens (Flask-WTF) guard every form of the desk.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, wraps
from urllib.parse import quote, urlsplit

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import case, delete, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from syndicate.engine.states import record
from syndicate.ledger.db import transaction
from syndicate.ledger.models import SignInThrottle, StaffUser, utcnow
from syndicate.ledger.upsert import dialect_insert

MIN_PASSWORD = 10
MAX_FAILURES = 5  # tries per name from one address ...
LOCKOUT = timedelta(minutes=5)  # ... in this window
CLIENT_MAX = 30  # tries over all names from one address ...
CLIENT_WINDOW = timedelta(minutes=15)  # ... in this window
OWASP_SCRYPT = "scrypt:131072:8:1"  # OWASP's scrypt cost: N=2^17 (128 MiB), r=8, p=1
PASSWORD_METHOD = OWASP_SCRYPT  # older, cheaper hashes are redone at the next sign-in
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")


@cache
def _dummy_hash(method: str) -> str:
    # Checked when the name is unknown, so a wrong name takes as long as a wrong password.
    return generate_password_hash("not a real password; timing only", method=method)


class AccountError(Exception):
    """A bad name or password for an account; str() says why, in one line."""


class Locked(Exception):
    """Too many tries from this address; str() says how long to wait."""


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


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=PASSWORD_METHOD)


def add_user(factory: sessionmaker[Session], name: str, password: str, *, replace: bool = False) -> Staff:
    """Create an account (or, with REPLACE, set a new password for an existing one)."""
    name = normalize_name(name)
    hashed = hash_password(check_password(password))
    with transaction(factory) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.name == name))
        if row is not None and not replace:
            raise AccountError(f"there is already an account named {name!r} (use --reset to set a new password)")
        if row is None:
            row = StaffUser(name=name, password_hash=hashed, created_at=utcnow(), session_epoch=0)
            s.add(row)
        else:
            row.password_hash = hashed
        try:
            s.flush()
        except IntegrityError:
            raise AccountError(f"there is already an account named {name!r}") from None
        s.execute(delete(SignInThrottle).where(SignInThrottle.key.like(f"name:{name}|%")))
        return _staff(row)


def list_users(factory: sessionmaker[Session]) -> list[Staff]:
    with transaction(factory) as s:
        return [_staff(r) for r in s.scalars(select(StaffUser).order_by(StaffUser.name))]


def remove_user(factory: sessionmaker[Session], name: str) -> bool:
    """Delete an account; its open sessions end at their next request. False if there was none."""
    name = normalize_name(name)
    with transaction(factory) as s:
        return s.execute(delete(StaffUser).where(StaffUser.name == name)).rowcount == 1


def end_sessions(factory: sessionmaker[Session], staff_id: int) -> None:
    """Sign the account out everywhere: every cookie issued before now stops working."""
    with transaction(factory) as s:
        s.execute(update(StaffUser).where(StaffUser.id == staff_id)
                  .values(session_epoch=StaffUser.session_epoch + 1))


def authenticate(factory: sessionmaker[Session], name: str, password: str, client: str = "-",
                 now: datetime | None = None) -> Staff | None:
    """The account if NAME and PASSWORD match; None if not. Raises Locked when CLIENT (the
    source address) has had too many tries, for this name or overall: then nothing is checked."""
    now = now or utcnow()
    password = password or ""
    try:
        name = normalize_name(name)
    except AccountError:
        name = ""  # counted and answered like any unknown name
    key = f"name:{name[:100]}|{client[:100]}"
    _count_attempt(factory, key, f"client:{client[:100]}", name, now)
    with transaction(factory) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.name == name)) if name else None
        stored = row.password_hash if row is not None else None
    if stored is None or not check_password_hash(stored, password):
        if stored is None:
            check_password_hash(_dummy_hash(PASSWORD_METHOD), password)
        with transaction(factory) as s:
            record(s, None, f"desk:{name or '?'}", "sign-in refused", f"wrong name or password from {client}",
                   now=now)
        return None
    values = {"last_login_at": now}
    if not stored.startswith(PASSWORD_METHOD + "$"):
        values["password_hash"] = hash_password(password)  # a cheaper, older hash: redo it
    with transaction(factory) as s:
        s.execute(update(StaffUser).where(StaffUser.id == row.id).values(**values))
        s.execute(delete(SignInThrottle).where(SignInThrottle.key == key))
        s.execute(update(SignInThrottle).where(SignInThrottle.key == f"client:{client[:100]}",
                                               SignInThrottle.attempts > 0)
                  .values(attempts=SignInThrottle.attempts - 1))  # a success costs the address nothing
        record(s, None, f"desk:{name}", "sign in", f"from {client}", now=now)
        return _staff(row)


def _count_attempt(factory: sessionmaker[Session], name_key: str, client_key: str, name: str,
                   now: datetime) -> None:
    """Count one attempt on both keys (atomically, before any check); Locked past either limit."""
    with transaction(factory) as s:
        s.execute(delete(SignInThrottle).where(SignInThrottle.window_start < now - timedelta(days=1)))  # old rows
        waits = []
        for key, limit, window in ((name_key, MAX_FAILURES, LOCKOUT), (client_key, CLIENT_MAX, CLIENT_WINDOW)):
            attempts, start = _increment(s, key, now, window)
            if attempts > limit:
                waits.append(start + window - now)
                if attempts == limit + 1:  # once per window in the audit trail, not once per guess
                    record(s, None, f"desk:{name or '?'}", "sign-in throttled",
                           f"{attempts - 1} tries from {key.rpartition(':')[2].rpartition('|')[2]}", now=now)
    if waits:
        minutes = max(1, round(max(waits).total_seconds() / 60))
        raise Locked(f"Too many tries from here. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")


def _increment(s: Session, key: str, now: datetime, window: timedelta) -> tuple[int, datetime]:
    """attempts += 1 for KEY in one statement (a new window when the last one is over)."""
    table = SignInThrottle.__table__
    expired = table.c.window_start < now - window
    stmt = (dialect_insert(s)(table).values(key=key, attempts=1, window_start=now)
            .on_conflict_do_update(index_elements=["key"], set_={
                "attempts": case((expired, 1), else_=table.c.attempts + 1),
                "window_start": case((expired, literal(now, table.c.window_start.type)),
                                     else_=table.c.window_start)})
            .returning(table.c.attempts, table.c.window_start))
    attempts, start = s.execute(stmt).one()
    return attempts, start


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
    from syndicate.web import ledger, settings

    staff = None
    user_id = session.get("staff_id")
    if user_id is not None:
        signed_in = session.get("signed_in_at", 0)
        fresh = 0 <= time.time() - signed_in < settings().web.session_max_hours * 3600
        with transaction(ledger()) as s:
            row = s.get(StaffUser, user_id)
            if (row is not None and fresh and session.get("staff_mark") == _fingerprint(row.password_hash)
                    and session.get("staff_epoch") == row.session_epoch):
                staff = _staff(row)
        if staff is None:
            session.clear()  # removed, signed out, too old, or the password changed since
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
    # Only back into the desk: never an open redirect to another site, never a control
    # character (a CR/LF would break the Location header).
    if (target and target.startswith("/desk") and not urlsplit(target).netloc and "\\" not in target
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)):
        return quote(target, safe="/?&=#%:@!$'()*+,;~-._")
    return url_for("desk.queue")


def client_address() -> str:
    """The source address of this request (the proxy's X-Forwarded-For when web.proxy_hops says so)."""
    return request.remote_addr or "-"


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    from syndicate.web import ledger, settings

    error = None
    name = ""
    if request.method == "POST":
        name = request.form.get("name", "")
        try:
            staff = authenticate(ledger(), name, request.form.get("password", ""), client_address())
        except Locked as exc:
            staff, error = None, str(exc)
        if staff is not None:
            with transaction(ledger()) as s:
                row = s.get(StaffUser, staff.id)
                mark, epoch = _fingerprint(row.password_hash), row.session_epoch
            session.clear()  # a fresh session (and CSRF token) for the signed-in account
            session.permanent = True
            session.update(staff_id=staff.id, staff_mark=mark, staff_epoch=epoch, signed_in_at=int(time.time()))
            return redirect(_safe_next(request.args.get("next")))
        error = error or "That name and password do not match an account."
    status = 401 if error else 200
    return render_template("desk/sign_in.html", site=settings().site, error=error, name=name), status


@bp.post("/sign-out")
def sign_out():
    from syndicate.web import ledger

    staff = current_user()
    if staff is not None:  # server-side: a copy of the cookie stops working too
        end_sessions(ledger(), staff.id)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.sign_in"))
