"""``ivr web``: the console's users: set a web password, make an API token.

``ivr web passwd USER`` asks for the new web password twice (or reads one line from standard
input when it is not a terminal) and stores its argon2id hash in the data folder's
``web/users.json``; USER is an extension's ``username`` (or its number).  ``ivr web token USER``
prints a new API token for integrations (``Authorization: Bearer TOKEN``); only its SHA-256 is
kept, so it is shown once.  Who is admin is the deployment file's ``[http] admins``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from ivr.commands.options import add_config_option, add_data_option, description


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("web", help="console users: web passwords and API tokens",
                              description=description(__doc__))
    sub = p.add_subparsers(dest="web_command", metavar="passwd|token", required=True)
    passwd = sub.add_parser("passwd", help="set a user's web password")
    token = sub.add_parser("token", help="print a new API token for a user")
    token.add_argument("--label", default="", help="what the token is for (kept with it)")
    for q in (passwd, token):
        q.add_argument("user", metavar="USER", help="an extension's username (or its number)")
        add_config_option(q)
        add_data_option(q, " holding web/users.json")
    passwd.set_defaults(func=run_passwd)
    token.set_defaults(func=run_token)


def _config(args: argparse.Namespace) -> Any:
    from ivr.config import load_config

    return load_config(args.config, data=args.data)


def run_passwd(args: argparse.Namespace) -> int:
    from ivr.config import ConfigError
    from ivr.web.users import UserError, set_password

    try:
        config = _config(args)
        set_password(config, args.user, _read_password())
    except (ConfigError, UserError, OSError) as exc:
        print(f"ivr web passwd: {exc}", file=sys.stderr)
        return 1
    print(f"web password of {args.user} set")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from ivr.config import ConfigError
    from ivr.web.users import UserError, new_token

    try:
        print(new_token(_config(args), args.user, args.label))
    except (ConfigError, UserError, OSError) as exc:
        print(f"ivr web token: {exc}", file=sys.stderr)
        return 1
    return 0


def _read_password() -> str:
    from ivr.web.users import UserError

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New web password: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("the two passwords differ; nothing changed")
    return first
