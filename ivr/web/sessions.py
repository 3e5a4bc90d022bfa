"""Console sessions: the cookie, its CSRF token, and the login throttle.

A login makes a session: 32 random bytes in the ``ivr_session`` cookie (HttpOnly,
SameSite=Strict, Secure when the console is served over TLS) and a second random CSRF token
that every state-changing request made with the cookie must carry, in the ``X-CSRF-Token``
header or a form's ``csrf`` field.  Sessions live in memory: a restart logs everyone out.  A
session ends ``[http] session_lifetime`` after the login, or at logout.

Wrong logins are counted per source address by the registrar's own
:class:`~ivr.sip.throttle.AuthThrottle`: 10 within a minute block the address for five minutes.
Sans-IO: every call is told ``now``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from ivr.sip.throttle import AuthThrottle
from ivr.web.users import WebUser

COOKIE = "ivr_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_FAILURES = 10  # wrong logins from one address within LOGIN_WINDOW ...
LOGIN_WINDOW = 60.0
LOGIN_BLOCK = 300.0  # ... block it this long
MAX_SESSIONS = 10_000


@dataclass
class Session:
    user: WebUser
    csrf: str
    expires: float


class Sessions:
    """Live sessions by cookie value, and the login throttle."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._by_id: dict[str, Session] = {}
        self.throttle = AuthThrottle(LOGIN_FAILURES, LOGIN_WINDOW, LOGIN_BLOCK)

    def create(self, user: WebUser, now: float) -> tuple[str, Session]:
        if len(self._by_id) >= MAX_SESSIONS:
            self._purge(now)
        sid = secrets.token_urlsafe(32)
        session = self._by_id[sid] = Session(user, secrets.token_urlsafe(32), now + self.lifetime)
        return sid, session

    def get(self, sid: str, now: float) -> Session | None:
        """The session of a cookie value; None when unknown or expired (an expired one is forgotten)."""
        session = self._by_id.get(sid)
        if session is not None and now >= session.expires:
            del self._by_id[sid]
            return None
        return session

    def end(self, sid: str) -> None:
        self._by_id.pop(sid, None)

    def _purge(self, now: float) -> None:
        for sid in [s for s, v in self._by_id.items() if now >= v.expires]:
            del self._by_id[sid]
        while len(self._by_id) >= MAX_SESSIONS:  # still full: the oldest logins go first
            del self._by_id[next(iter(self._by_id))]


def csrf_ok(session: Session, given: str | None) -> bool:
    """Compared in constant time: a wrong token tells nothing about the right one."""
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())
