"""``make cluster``: PostgreSQL, Kamailio and two ``ivr serve`` nodes on this machine, for a try.

Everything lives in ``cluster/`` (or the folder given as the first argument): a PostgreSQL
cluster of its own on 127.0.0.1:5433 (``initdb``/``pg_ctl`` from Debian's ``postgresql``, run as
the ``postgres`` user when started by root, as they refuse root), the nodes' deployment files
(``flows/ivr.toml`` with ``[storage]`` added, its paths made absolute), their data folders and
the voicemail folder they share.  Kamailio (``deploy/kamailio/kamailio.cfg``) listens on
127.0.0.1:5060 and spreads calls over node a (127.0.0.1:5071, RTP 20000-24999) and node b
(127.0.0.1:5072, RTP 25000-29999).  Ctrl-C (or SIGTERM) stops the nodes (they drain), Kamailio
and PostgreSQL; the folder stays, so the next start finds the same messages and switches.

Call ``sip:+41435435570@127.0.0.1:5060`` from a softphone; ``ivr switch night on --config
cluster/node-a.toml`` flips the night switch for both nodes; ``ivr calls --config
cluster/node-b.toml`` lists the calls both nodes took.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import tomlkit

REPO = Path(__file__).resolve().parents[1]
FLOWS = REPO / "flows"
PG_PORT = 5433
PROXY = "127.0.0.1:5060"
NODES = {"a": (5071, "20000-24999"), "b": (5072, "25000-29999")}


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(state: Path) -> tuple[list[str], str]:
    """Start (initialising on first use) the cluster's database; the stop command and the URL."""
    pg_bin = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]).parent
    folder = state / "postgres"
    if not folder.exists():
        folder.mkdir(parents=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(folder, user.pw_uid, user.pw_gid)
        subprocess.run(as_postgres([str(pg_bin / "initdb"), "-D", str(folder / "data"), "-U", "postgres",
                                    "-A", "trust", "-E", "UTF8", "--locale=C"]), check=True, cwd=folder)
    options = f"-c listen_addresses=127.0.0.1 -p {PG_PORT} -k {folder}"
    subprocess.run(as_postgres([str(pg_bin / "pg_ctl"), "-D", str(folder / "data"), "-o", options,
                                "-l", str(folder / "server.log"), "-w", "start"]), check=True, cwd=folder)
    stop = as_postgres([str(pg_bin / "pg_ctl"), "-D", str(folder / "data"), "-m", "fast", "-w", "stop"])
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'ivr'").fetchone():
            conn.execute("CREATE DATABASE ivr")
    return stop, f"postgresql://postgres@127.0.0.1:{PG_PORT}/ivr"


def node_config(state: Path, name: str, url: str, secret: str) -> Path:
    """flows/ivr.toml for one node: its data folder and RTP range, the shared [storage], absolute paths."""
    doc = tomlkit.parse((FLOWS / "ivr.toml").read_text(encoding="utf-8"))
    server = doc["server"]
    server["data"] = str(state / f"node-{name}" / "data")  # type: ignore[index]
    server["rtp_ports"] = NODES[name][1]  # type: ignore[index]
    server["flows"] = [str(FLOWS / f) for f in server["flows"]]  # type: ignore[index]
    doc["prompts"]["folders"] = [str((FLOWS / f).resolve()) for f in doc["prompts"]["folders"]]  # type: ignore[index]
    doc.setdefault("registrar", tomlkit.table())["nonce_secret"] = secret  # type: ignore[index]
    doc["storage"] = {"url": url, "shared": str(state / "shared")}
    path = state / f"node-{name}.toml"
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


def start_kamailio(state: Path) -> subprocess.Popen[bytes]:
    nodes = state / "dispatcher.list"
    nodes.write_text("".join(f"1 sip:127.0.0.1:{port} 0 0\n" for port, _ in NODES.values()))
    (state / "kamailio").mkdir(exist_ok=True)
    return subprocess.Popen(["kamailio", "-f", str(REPO / "deploy" / "kamailio" / "kamailio.cfg"), "-DD", "-E",
                             "-A", f"LISTEN=udp:{PROXY}", "-A", f'DISPATCHER_LIST="{nodes}"',
                             "-Y", str(state / "kamailio"), "-P", str(state / "kamailio" / "kamailio.pid")])


def ivr(*args: str) -> list[str]:
    return [sys.executable, "-m", "ivr", *args]


def main() -> int:
    state = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "cluster").resolve()
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chmod(state, 0o755)  # postgres must reach its folder inside
    secret_file = state / "nonce_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(16))
    stop_postgres, url = start_postgres(state)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        configs = {name: node_config(state, name, url, secret_file.read_text()) for name in NODES}
        subprocess.run(ivr("db", "upgrade", "--config", str(configs["a"])), check=True)
        processes.append(start_kamailio(state))
        for name, (port, _) in NODES.items():
            processes.append(subprocess.Popen(ivr("serve", "--config", str(configs[name]),
                                                  "--listen", f"127.0.0.1:{port}", "--log-format", "text")))
        print(f"cluster: Kamailio on {PROXY}, nodes a and b on 127.0.0.1:5071 and :5072, state in {state};"
              f" call sip:+41435435570@{PROXY}; Ctrl-C stops", flush=True)
        # Wait for Ctrl-C, SIGTERM or a process that ends (signals taken synchronously: the children,
        # started before, do not inherit the mask).
        stopping = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        while all(p.poll() is None for p in processes) and signal.sigtimedwait(stopping, 1.0) is None:
            pass
    finally:
        for p in reversed(processes):  # nodes drain first, then the proxy goes
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(processes):
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(stop_postgres, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
