"""A real peer: sipp replays its bundled RTP captures (PCMA speech, RFC 2833 keys) into a MediaSession.

A few lines of SIP answer sipp's INVITE with an SDP that points at the
session; the SIP side here is only scaffolding (ivr's SIP stack is tested
elsewhere).  sipp's ``play_pcap_audio`` sends the captured packets verbatim
from raw sockets (root needed), so this is wire data we did not produce.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from ivr.media.clock import MediaClock
from ivr.media.session import MediaSession

SIPP_DATA = Path("/usr/share/sip-tester")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="sipp's pcap replay needs raw sockets (root)"),
    pytest.mark.skipif(
        not (SIPP_DATA / "g711a.pcap").exists(), reason="sipp's pcaps not installed"
    ),
]

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="pcap replay into ivr media">
  <send retrans="500"><![CDATA[
      INVITE sip:media@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:media@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: sip:sipp@[local_ip]:[local_port]
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
  ]]></send>
  <recv response="200"/>
  <send><![CDATA[
      ACK sip:media@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:media@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
  <nop><action><exec play_pcap_audio="AUDIO"/></action></nop>
  <pause milliseconds="1500"/>
  <nop><action><exec play_pcap_audio="SIPP/dtmf_2833_5.pcap"/></action></nop>
  <pause milliseconds="400"/>
  <nop><action><exec play_pcap_audio="SIPP/dtmf_2833_pound.pcap"/></action></nop>
  <pause milliseconds="400"/>
  <nop><action><exec play_pcap_audio="SIPP/dtmf_2833_0.pcap"/></action></nop>
  <pause milliseconds="400"/>
  <send retrans="500"><![CDATA[
      BYE sip:media@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag[call_number]
      To: <sip:media@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
  <recv response="200"/>
</scenario>
"""


def free_media_port() -> int:
    """A free even port with free neighbours for sipp's media sockets (fixed ports collide)."""
    for _ in range(100):
        base = random.randrange(10000, 19000, 2)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise AssertionError("no free media port for sipp")


def short_pcap(source: Path, packets: int) -> bytes:
    """The pcap's global header and its first ``packets`` records."""
    data = source.read_bytes()
    pos = 24
    for _ in range(packets):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
    return data[:pos]


class TinyUas(asyncio.DatagramProtocol):
    """Answers INVITE (SDP pointing at the media session) and BYE with 200; just enough for sipp."""

    def __init__(self, media_port: int) -> None:
        self.media_port = media_port
        self.transport: asyncio.DatagramTransport | None = None
        self.offer_media: tuple[str, int] | None = None
        self.answered = asyncio.get_running_loop().create_future()
        self.bye = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode()
        head, _, body = text.partition("\r\n\r\n")
        lines = head.split("\r\n")
        method = lines[0].split(" ", 1)[0]
        if method not in ("INVITE", "BYE"):
            return
        keep = [
            ln
            for ln in lines[1:]
            if ln.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        keep = [
            ln + ";tag=ivrmedia" if ln.lower().startswith("to:") and "tag=" not in ln else ln
            for ln in keep
        ]
        sdp = ""
        if method == "INVITE":
            port = next(int(ln.split()[1]) for ln in body.split("\r\n") if ln.startswith("m=audio"))
            host = next(ln.split()[2] for ln in body.split("\r\n") if ln.startswith("c="))
            self.offer_media = (host, port)
            sdp = (
                "v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.media_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
            )
            keep.append("Contact: <sip:media@127.0.0.1>")
            keep.append("Content-Type: application/sdp")
        response = (
            "SIP/2.0 200 OK\r\n"
            + "\r\n".join(keep)
            + f"\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        assert self.transport is not None
        self.transport.sendto(response.encode(), addr)
        future = self.answered if method == "INVITE" else self.bye
        if not future.done():
            future.set_result(None)


def test_sipp_pcap_replay_gives_speech_and_each_key_once(tmp_path: Path) -> None:
    audio = tmp_path / "speech.pcap"
    audio.write_bytes(short_pcap(SIPP_DATA / "g711a.pcap", 40))  # 1.2 s of PCMA speech
    scenario = tmp_path / "replay.xml"
    scenario.write_text(SCENARIO.replace("AUDIO", str(audio)).replace("SIPP", str(SIPP_DATA)))

    async def main() -> tuple[list[np.ndarray], list[str], dict[str, object], int]:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop)
        clock.start()
        session = await MediaSession.open(host="127.0.0.1", port_range=(44000, 44999), clock=clock)
        heard: list[np.ndarray] = []
        keys: list[str] = []
        session.on_audio = heard.append
        session.on_dtmf = keys.append
        transport, uas = await loop.create_datagram_endpoint(
            lambda: TinyUas(session.local_port), local_addr=("127.0.0.1", 0)
        )
        sip_port = transport.get_extra_info("sockname")[1]
        sipp = await asyncio.create_subprocess_exec(
            "sipp", f"127.0.0.1:{sip_port}", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1",
            "-p", "0", "-mp", str(free_media_port()), "-nostdin", "-timeout", "30", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / "sipp_errors.log"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        )  # fmt: skip
        try:
            await asyncio.wait_for(uas.answered, 15)
            assert uas.offer_media is not None
            session.configure(
                remote=uas.offer_media, payload_type=8, dtmf_pt=101, direction="sendrecv"
            )
            await asyncio.wait_for(uas.bye, 30)
            _, stderr = await asyncio.wait_for(sipp.communicate(), 30)
            rc = sipp.returncode if sipp.returncode is not None else -1
            assert rc == 0, stderr.decode(errors="replace")[-2000:]
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
            stats = session.stats
            session.close()
            transport.close()
            clock.stop()
        return heard, keys, stats, rc

    heard, keys, stats, rc = asyncio.run(main())
    assert rc == 0
    assert keys == [
        "5",
        "#",
        "0",
    ]  # each key exactly once, though every end packet came three times
    voiced = [f for f in heard if np.sqrt(np.mean(f.astype(np.float64) ** 2)) > 100]
    assert len(voiced) >= 15  # speech frames (30 ms each), not codec silence
    assert stats["packets_received"] == 40 + 3 * 10
    assert stats["invalid"] == 0 and stats["rejected"] == 0
