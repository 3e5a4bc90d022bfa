"""Console accounts: who may log in, with which role, and how their secrets are kept.

Every extension of the deployment file is a possible user; its user name is the extension's
``username`` (or its number when it has none).  A user can log in once ``ivr web passwd USER``
has set a web password; the names in ``[http] admins`` get the admin role (everything), every
other user the user role (their own extension, mailbox and forwarding).

Secrets live in ``web/users.json`` in the data folder (mode 0600): argon2id hashes of the web
passwords (argon2-cffi's defaults, RFC 9106) and, for API tokens, only the SHA-256 of each
token (a token is 32 random bytes, so a fast hash is enough; it is shown once when made).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ivr.config import Config, Extension
from ivr.runtime.atomic import write_text_atomically
from ivr.storage.adminfile import read_json_file

Role = Literal["admin", "user"]
USERS_FILE = Path("web") / "users.json"
MIN_PASSWORD = 10
_HASHER = PasswordHasher()
# Verified when the user name is unknown, so a wrong name costs as long as a wrong password.
_DECOY = _HASHER.hash(secrets.token_hex(16))


class UserError(Exception):
    """An unknown user, a weak password or an unreadable users file; the message says which."""


@dataclass(frozen=True)
class WebUser:
    """A logged-in person: their name, role and the extension they own."""

    name: str
    role: Role
    extension: str
    mailbox: str | None

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def owns_extension(self, number: str) -> bool:
        return self.admin or number == self.extension

    def owns_mailbox(self, box: str) -> bool:
        return self.admin or (self.mailbox is not None and box == self.mailbox)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "extension": self.extension, "mailbox": self.mailbox}


def user_name(extension: Extension) -> str:
    return extension.username or extension.number


def find_user(config: Config, name: str) -> WebUser | None:
    """The account ``name`` stands for in this deployment, None if no extension has that name."""
    for ext in config.extensions:
        if user_name(ext) == name:
            role: Role = "admin" if name in config.http.admins else "user"
            return WebUser(name, role, ext.number, ext.mailbox)
    return None


def users_path(data: Path) -> Path:
    return Path(data) / USERS_FILE


def read_users(data: Path) -> dict[str, Any]:
    """The file's content: ``{"passwords": {name: hash}, "tokens": {sha256: {...}}}``."""
    path = users_path(data)
    raw = read_json_file(path, "the console users", UserError, default={})
    if not isinstance(raw, dict) or not isinstance(raw.get("passwords", {}), dict):
        raise UserError(f"{path}: expected an object with \"passwords\" and \"tokens\"")
    return {"passwords": dict(raw.get("passwords", {})), "tokens": dict(raw.get("tokens", {}))}


def _write_users(data: Path, users: dict[str, Any]) -> None:
    path = users_path(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)  # the atomic write keeps this mode
    os.chmod(path, 0o600)
    write_text_atomically(path, json.dumps(users, indent=2, sort_keys=True) + "\n")


def set_password(config: Config, name: str, password: str) -> None:
    """Store the argon2id hash of ``name``'s new web password."""
    if find_user(config, name) is None:
        raise UserError(f"no extension has the user name {name!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the web password must have at least {MIN_PASSWORD} characters")
    users = read_users(config.data)
    users["passwords"][name] = _HASHER.hash(password)
    _write_users(config.data, users)


def check_password(config: Config, name: str, password: str) -> WebUser | None:
    """The user if ``password`` is theirs, else None; always takes one argon2 verification (slow: a thread's job)."""
    stored = read_users(config.data)["passwords"].get(name)
    user = find_user(config, name)
    try:
        _HASHER.verify(stored if stored and user else _DECOY, password)
    except (VerificationError, InvalidHashError):
        return None
    return user if stored else None


def new_token(config: Config, name: str, label: str) -> str:
    """A new API token for ``name`` (returned once; only its SHA-256 is stored)."""
    if find_user(config, name) is None:
        raise UserError(f"no extension has the user name {name!r}")
    token = "ivr_" + secrets.token_urlsafe(32)
    users = read_users(config.data)
    users["tokens"][_digest(token)] = {"user": name, "label": label, "created": round(time.time())}
    _write_users(config.data, users)
    return token


def token_user(config: Config, token: str) -> WebUser | None:
    """The user an API token belongs to, None for an unknown token."""
    entry = read_users(config.data)["tokens"].get(_digest(token))
    return find_user(config, entry["user"]) if isinstance(entry, dict) else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
