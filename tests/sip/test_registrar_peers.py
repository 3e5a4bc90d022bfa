"""Real phones register with the registrar: baresip and sipp over loopback UDP.

A few lines of asyncio stand in for the server's transport (parse, hand the
REGISTER to the registrar, answer with build_response) so that the digest
exchange, Contact handling and un-REGISTER are checked against real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import cast

import pytest

from ivr.sip.auth import DigestChallenger
from ivr.sip.message import Request, build_response, parse_message
from ivr.sip.registrar import Account, RegisterReply, Registrar, RegistrationStore
from ivr.sip.throttle import AuthThrottle

pytestmark = [pytest.mark.slow, pytest.mark.peer]

ALICE = Account("202", username="alice", password="Wonderland7")


class Responder(asyncio.DatagramProtocol):
    """Loopback UDP endpoint answering REGISTERs with the registrar's replies."""

    def __init__(self, registrar: Registrar) -> None:
        self.registrar = registrar
        self.replies: asyncio.Queue[tuple[Request, RegisterReply]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse_message(data)
        if not isinstance(msg, Request):
            return
        reply = self.registrar.handle_request(msg, addr, time.time())
        if not reply.drop and self.transport is not None:
            response = build_response(msg, reply.status, reply.reason, headers=reply.headers)
            self.transport.sendto(bytes(response), addr)
        self.replies.put_nowait((msg, reply))

    async def next_reply(self, timeout: float = 10.0) -> tuple[Request, RegisterReply]:
        return await asyncio.wait_for(self.replies.get(), timeout)


async def serve(registrar: Registrar) -> tuple[Responder, int, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(registrar), local_addr=("127.0.0.1", 0)
    )
    return protocol, transport.get_extra_info("sockname")[1], transport


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), 10)


def registrar() -> Registrar:
    return Registrar(RegistrationStore(), DigestChallenger("ivr"), [ALICE])


@pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip (Debian baresip-core) not installed"
)
def test_baresip_registers_and_unregisters(tmp_path: Path) -> None:
    async def run() -> None:
        reg = registrar()
        responder, port, transport = await serve(reg)
        (tmp_path / "config").write_text(
            "sip_listen 127.0.0.1:0\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule account.so\n"
        )
        (tmp_path / "accounts").write_text(
            f"<sip:alice@127.0.0.1:{port}>;auth_pass={ALICE.password};regint=600\n"
        )
        # -t 3: baresip quits by itself after 3 s, sending its un-REGISTER.
        proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(tmp_path), "-t", "3",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _, first = await responder.next_reply()
            assert first.status == 401
            request, second = await responder.next_reply()
            assert second.status == 200, second.reason
            assert any(n.lower() == "authorization" for n, _ in request.headers)
            [binding] = reg.contacts("202", time.time())
            assert binding.uri.startswith("sip:alice-") and binding.source is not None
            assert binding.source[0] == "127.0.0.1" and binding.uri.endswith(
                f":{binding.source[1]}"
            )
            assert 590 <= (binding.expires_in(time.time()) or 0) <= 600
            # The un-REGISTER on exit (same Call-ID, higher CSeq, expires=0).
            while True:
                request, reply = await responder.next_reply()
                if reply.status == 200:
                    break
            assert reg.contacts("202", time.time()) == []
        finally:
            await stop(proc)
            transport.close()
            reg.store.close()

    asyncio.run(run())


@pytest.mark.skipif(
    shutil.which("baresip") is None, reason="baresip (Debian baresip-core) not installed"
)
def test_baresip_with_a_wrong_password_is_logged_and_throttled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.sip.auth")

    async def run() -> None:
        reg = Registrar(
            RegistrationStore(), DigestChallenger("ivr"), [ALICE],
            throttle=AuthThrottle(max_failures=1), throttle_action="403",
        )  # fmt: skip
        responder, port, transport = await serve(reg)
        (tmp_path / "config").write_text(
            "sip_listen 127.0.0.1:0\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule account.so\n"
        )
        (tmp_path / "accounts").write_text(
            f"<sip:alice@127.0.0.1:{port}>;auth_pass=guess;regint=600\n"
        )
        proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(tmp_path), "-t", "10",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            statuses = [(await responder.next_reply())[1].status for _ in range(2)]
            assert statuses == [401, 401]
            assert reg.blocked("127.0.0.1", time.time())
        finally:
            await stop(proc)
            transport.close()
            reg.store.close()

    asyncio.run(run())
    assert "wrong password for user 'alice' (realm 'ivr') from 127.0.0.1:" in caplog.text
    assert "blocking 127.0.0.1 for 300 s" in caplog.text


SIPP_REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER with digest, then query">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@[remote_ip]>;tag=[call_number]
To: <sip:alice@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
Expires: 120
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@[remote_ip]>;tag=[call_number]
To: <sip:alice@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
[authentication username=alice password=Wonderland7]
Expires: 120
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200">
    <action><ereg regexp="expires=120" search_in="hdr" header="Contact:" check_it="true" assign_to="x"/></action>
  </recv>
  <Reference variables="x"/>
</scenario>
"""


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed")
def test_sipp_registers_with_digest(tmp_path: Path) -> None:
    scenario = tmp_path / "register.xml"
    scenario.write_text(SIPP_REGISTER)

    async def run() -> None:
        reg = registrar()
        responder, port, transport = await serve(reg)
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(scenario), "-m", "1", "-nostdin", "-i", "127.0.0.1", "-p", "0",
            f"127.0.0.1:{port}", "-timeout", "10", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / "errors.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, stderr.decode(errors="replace")[-500:]
            statuses = []
            while not responder.replies.empty():
                statuses.append(responder.replies.get_nowait()[1].status)
            assert statuses == [401, 200]
            [binding] = reg.contacts("202", time.time())
            assert binding.uri.startswith("sip:alice@127.0.0.1:")
            assert 115 <= (binding.expires_in(time.time()) or 0) <= 120
        finally:
            await stop(proc)
            transport.close()
            reg.store.close()

    asyncio.run(run())
