"""A throw-away PostgreSQL cluster for tests: Debian's ``initdb``/``pg_ctl``, run as the ``postgres`` user.

``initdb`` and ``pg_ctl`` refuse to run as root, so they run through ``runuser -u postgres --``
on a folder of our own that postgres owns (made under /tmp: pytest's folders are private to
root).  The server listens on 127.0.0.1 on a free port and on a socket folder of its own,
trusts local connections, and skips fsync (a test's data need not survive a power cut).
:meth:`Postgres.stop` stops it immediately and removes the folder.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
PG_BIN = Path(_BIN[-1]).parent if _BIN else None
_names = itertools.count(1)


def available() -> bool:
    return PG_BIN is not None and shutil.which("runuser") is not None and _has_user("postgres")


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """One cluster; :meth:`new_database` gives each test a database of its own."""

    def __init__(self) -> None:
        assert PG_BIN is not None
        self.folder = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.port = _free_port()
        self.started = False

    def _as_postgres(self, *cmd: str, timeout: float = 60.0) -> None:
        result = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True,
                                timeout=timeout, cwd=self.folder)
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        data = self.folder / "data"
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--no-sync", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                          str(self.folder / "server.log"), "-w", "-t", "60", "start", timeout=90)
        self.started = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = f"{prefix}{next(_names)}_{os.getpid()}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def stop(self) -> None:
        if self.started:
            self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                              "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)
