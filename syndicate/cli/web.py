"""The web app: `syndicate serve` (preview desk, unsubscribe and confirm links) and staff accounts."""

from __future__ import annotations

import getpass
import sys

from syndicate.cli.common import UsageError, load_settings, out


def cmd_serve(args) -> int:
    import os

    from syndicate.cli.ops import run_server
    from syndicate.engine.runner import ledger
    from syndicate.settings import old_signing_secrets
    from syndicate.web import auth, create_app

    settings = load_settings(args, signing=True)
    users = auth.list_users(ledger(settings))
    out.print(f"preview desk: http://{args.host}:{args.port}/desk/ ("
              + (f"{len(users)} staff account{'s' if len(users) != 1 else ''})" if users
                 else "no staff accounts yet: add one with `syndicate users add NAME`)"))
    if not os.environ.get(settings.web.secret_env or ""):
        out.print(f"[yellow]warning:[/] {settings.web.secret_env} is not set: desk sign-ins end when the "
                  "server restarts, and unsubscribe links cannot be checked")
    if os.environ.get(settings.web.old_secret_env or "") and not old_signing_secrets(settings.web):
        out.print(f"[yellow]warning:[/] {settings.web.old_secret_env} is set but not accepted: "
                  "web.old_secret_until is unset or has passed")
    app = create_app(settings)
    out.print(f"serving on http://{args.host}:{args.port} (public address: {settings.public_url}); Ctrl-C to stop")
    run_server(app, args)  # waitress; Werkzeug's development server only with --dev (cli/ops.py)
    return 0


def _read_password(args) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password; pipe it in with --password-stdin")
    first = getpass.getpass("Password (at least 10 characters): ")
    if getpass.getpass("Same password again: ") != first:
        raise UsageError("the two passwords differ; nothing was changed")
    return first


def cmd_users_add(args) -> int:
    from syndicate.engine.runner import ledger
    from syndicate.web import auth, roles

    settings = load_settings(args)
    factory = ledger(settings)
    try:
        auth.normalize_name(args.name)
        role = roles.check_role(args.role) if args.role else None
        if role is None and not args.reset:
            role = roles.default_role(factory)
        staff = auth.add_user(factory, args.name, _read_password(args), replace=args.reset)
    except (auth.AccountError, roles.RoleError) as exc:
        raise UsageError(str(exc)) from None
    if role:
        roles.set_role(factory, staff.name, role)
    role = roles.roles_by_name(factory).get(staff.name, "")
    verb = "has a new password" if args.reset else "can now sign in to the preview desk"
    out.print(f"{staff.name} ({role}) {verb} (/desk on `syndicate serve`)")
    return 0


def cmd_users_role(args) -> int:
    from syndicate.engine.runner import ledger
    from syndicate.web import auth, roles

    settings = load_settings(args)
    try:
        name = auth.normalize_name(args.name)
        changed = roles.set_role(ledger(settings), name, args.role)
    except (auth.AccountError, roles.RoleError) as exc:
        raise UsageError(str(exc)) from None
    if not changed:
        raise UsageError(f"no account named {args.name!r} (see `syndicate users list`)")
    out.print(f"{name} is now {args.role.strip().lower()} (from its next page at the desk)")
    return 0


def cmd_users_list(args) -> int:
    import json

    from rich.table import Table

    from syndicate.engine.runner import ledger
    from syndicate.web import auth, roles

    settings = load_settings(args, signing=True)
    users = auth.list_users(ledger(settings))
    role = roles.roles_by_name(ledger(settings))
    if args.json:
        print(json.dumps([{"name": u.name, "role": role.get(u.name), "created_at": u.created_at.isoformat(),
                           "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
                          for u in users], indent=2))
        return 0
    if not users:
        out.print("no staff accounts yet: `syndicate users add NAME`")
        return 0
    tz = settings.site.tz
    table = Table("name", "role", "created", "last sign-in",
                  title=f"Preview desk accounts (times in {settings.site.timezone})")
    for u in users:
        table.add_row(u.name, role.get(u.name, ""), f"{u.created_at.astimezone(tz):%Y-%m-%d %H:%M}",
                      f"{u.last_login_at.astimezone(tz):%Y-%m-%d %H:%M}" if u.last_login_at else "never")
    out.print(table)
    return 0


def cmd_users_remove(args) -> int:
    from syndicate.engine.runner import ledger
    from syndicate.web import auth

    settings = load_settings(args)
    try:
        removed = auth.remove_user(ledger(settings), args.name)
    except auth.AccountError as exc:
        raise UsageError(str(exc)) from None
    if not removed:
        raise UsageError(f"no account named {args.name!r} (see `syndicate users list`)")
    out.print(f"{args.name.strip().lower()} removed; any open desk session of theirs ends at once")
    return 0


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the web app: the preview desk (/desk), unsubscribe and confirm links",
                       description="Run the web app: the preview desk at /desk (staff sign in), one-click "
                                   "unsubscribe and confirm links (open to all).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--threads", type=int, default=8, help="requests served at once (default 8)")
    p.add_argument("--dev", action="store_true", help="Werkzeug's development server instead of waitress")
    p.set_defaults(func=cmd_serve)

    users = sub.add_parser("users", help="preview desk staff accounts: add, list, remove").add_subparsers(
        dest="users_cmd", metavar="ACTION", required=True)
    p = users.add_parser("add", help="create an account (asks for the password twice)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--reset", action="store_true", help="set a new password for an existing account")
    p.add_argument("--role", choices=("editor", "approver", "admin"),
                   help="what the account may do (default: admin for the first account, editor after)")
    p.set_defaults(func=cmd_users_add)
    p = users.add_parser("role", help="change an account's role (editor, approver, admin)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("role", metavar="ROLE", choices=("editor", "approver", "admin"))
    p.set_defaults(func=cmd_users_role)
    p = users.add_parser("list", help="show the accounts and their last sign-in")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_users_list)
    p = users.add_parser("remove", help="delete an account (its sessions end at once)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_users_remove)
