"""``geoalign users add|reset-password|set-role|list``: accounts, roles and regions.

    geoalign users add lead-anna --role lead --region en-GB-manchester
    PW=... geoalign users reset-password lead-anna --password-env PW
"""

from __future__ import annotations

import argparse

from cli.common import add, engine, group, password
from collect.accounts import create_user, list_users, reset_password, set_access
from db.session import session_scope


def cmd_users_add(args: argparse.Namespace) -> int:
    secret, generated = password(args)
    with session_scope(engine()) as session:
        create_user(session, args.username, secret, args.role, args.region)
    print(f"created {args.username} ({', '.join(args.role)})"
          + (f"; password (shown once): {secret}" if generated else ""))
    return 0


def cmd_users_reset_password(args: argparse.Namespace) -> int:
    secret, generated = password(args)
    with session_scope(engine()) as session:
        reset_password(session, args.username, secret)
    print(f"password of {args.username} reset" + (f"; new password (shown once): {secret}" if generated else ""))
    return 0


def cmd_users_set_role(args: argparse.Namespace) -> int:
    active = {"yes": True, "no": False, None: None}[args.active]
    with session_scope(engine()) as session:
        user = set_access(session, args.username, roles=args.role, regions=args.region, active=active)
        summary = (f"{user.username}: roles={','.join(sorted(user.role_names))} "
                   f"regions={','.join(r.code for r in user.regions) or '-'} active={user.is_active}")
    print(summary)
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    with session_scope(engine()) as session:
        users = list_users(session)
        if not users:
            print("no users yet")
        for u in users:
            regions = ",".join(r.code for r in u.regions) or "-"
            print(f"{u.username:24} roles={','.join(sorted(u.role_names)):28} regions={regions}"
                  f"{'' if u.is_active else ' (inactive)'}")
    return 0


def register(sub) -> None:
    """``geoalign users add|reset-password|set-role|list``."""
    usr = group(sub, "users", "accounts, roles and regions")
    p = add(usr, "add", cmd_users_add, "create a user (prints a generated password once)")
    p.add_argument("username")
    p.add_argument("--role", action="append", required=True, choices=["reviewer", "engineer", "lead", "admin"],
                   help="role (repeatable)")
    p.add_argument("--region", action="append", default=[], help="region code the user reviews (repeatable)")
    p.add_argument("--password-env", help="read the password from this environment variable instead")
    p = add(usr, "reset-password", cmd_users_reset_password, "set a new password (prints a generated one once)")
    p.add_argument("username")
    p.add_argument("--password-env", help="read the new password from this environment variable instead")
    p = add(usr, "set-role", cmd_users_set_role, "replace a user's roles and/or regions, or (de)activate them")
    p.add_argument("username")
    p.add_argument("--role", action="append", choices=["reviewer", "engineer", "lead", "admin"],
                   help="role (repeatable; replaces the current roles)")
    p.add_argument("--region", action="append", help="region code (repeatable; replaces the current regions)")
    p.add_argument("--active", choices=["yes", "no"], help="activate or deactivate the account")
    add(usr, "list", cmd_users_list, "list users with roles and regions")
