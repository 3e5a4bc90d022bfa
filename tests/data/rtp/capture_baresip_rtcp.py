"""Record the RTCP a real baresip sends in a short call, into ``baresip_rtcp.bin``.

Run ``python tests/data/rtp/capture_baresip_rtcp.py`` (needs Debian
``baresip-core``).  A few lines of SIP answer baresip's INVITE with an SDP
pointing at a :class:`~ivr.media.session.MediaSession`, which plays a tone to
baresip (so baresip's reports carry a report block about our stream) while
every RTCP datagram baresip sends is kept.  The call lasts ``SECONDS``;
baresip hangs up with an RTCP BYE.  Records use the same ``!IH`` format as
``make_captures.py``.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from ivr.media.clip import Clip
from ivr.media.clock import MediaClock
from ivr.media.session import MediaSession

HERE = Path(__file__).resolve().parent
SECONDS = 13

CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
sip_trans_def\t\tudp
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module_app\t\tmenu.so
module_app\t\taccount.so
audio_source\t\taufile,{mic}
audio_player\t\taubridge,nowhere
audio_alert\t\taubridge,nowhere
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
"""


class RecordingSession(MediaSession):
    """A MediaSession that also keeps every RTCP datagram it receives."""

    rtcp_seen: list[tuple[float, bytes]]

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        self.rtcp_seen.append((time.monotonic(), bytes(data)))
        super()._on_rtcp(data, addr)


class Answerer(asyncio.DatagramProtocol):
    """200 OK to INVITE (SDP at our session) and BYE; remembers baresip's media address."""

    def __init__(self, media_port: int) -> None:
        self.media_port = media_port
        self.transport: asyncio.DatagramTransport | None = None
        self.remote_media: asyncio.Future[tuple[str, int]] = (
            asyncio.get_running_loop().create_future()
        )
        self.bye: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
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
            ln + ";tag=cap" if ln.lower().startswith("to:") and "tag=" not in ln else ln
            for ln in keep
        ]
        sdp = ""
        if method == "INVITE":
            sdp_lines = body.split("\r\n")
            port = next(int(ln.split()[1]) for ln in sdp_lines if ln.startswith("m=audio"))
            host = next(ln.split()[2] for ln in sdp_lines if ln.startswith("c="))
            sdp = (
                "v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
            )
            assert self.transport is not None
            own_port = self.transport.get_extra_info("sockname")[1]
            keep += [f"Contact: <sip:cap@127.0.0.1:{own_port}>", "Content-Type: application/sdp"]
            if not self.remote_media.done():
                self.remote_media.set_result((host, port))
        elif not self.bye.done():
            self.bye.set_result(None)
        reply = (
            "SIP/2.0 200 OK\r\n"
            + "\r\n".join(keep)
            + f"\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        )
        assert self.transport is not None
        self.transport.sendto(reply.encode(), addr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def capture(folder: Path) -> list[tuple[float, bytes]]:
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    session = await RecordingSession.open(host="127.0.0.1", port_range=(46000, 46999), clock=clock)
    session.rtcp_seen = []
    transport, answerer = await loop.create_datagram_endpoint(
        lambda: Answerer(session.local_port), local_addr=("127.0.0.1", 0)
    )
    sip_port = transport.get_extra_info("sockname")[1]
    mic = folder / "mic.wav"
    with wave.open(str(mic), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        t = np.arange(8000 * 30) / 8000
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    (folder / "config").write_text(CONFIG.format(sip_port=free_port(), mic=mic))
    (folder / "accounts").write_text("<sip:capture@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    phone = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(folder), "-e", f"/dial sip:media@127.0.0.1:{sip_port}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        remote = await asyncio.wait_for(answerer.remote_media, 10)
        session.configure(remote=remote, payload_type=0, dtmf_pt=None, direction="sendrecv")
        session.rtcp_interval = 2.0
        session.play(Clip.tone(1000, SECONDS), prompt_id=1)
        await asyncio.sleep(SECONDS)
        print(f"{len(session.rtcp_seen)} RTCP datagrams so far; stopping baresip")
        phone.terminate()  # baresip hangs up on SIGTERM: SIP BYE and RTCP BYE
        await asyncio.wait_for(phone.wait(), 10)
        await asyncio.sleep(0.5)
    finally:
        if phone.returncode is None:
            phone.kill()
            await phone.wait()
        session.close()
        transport.close()
        clock.stop()
    return session.rtcp_seen


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        seen = asyncio.run(capture(Path(tmp)))
    if not seen:
        print("baresip sent no RTCP", file=sys.stderr)
        return 1
    t0 = seen[0][0]
    data = b"".join(struct.pack("!IH", round((t - t0) * 1e6), len(p)) + p for t, p in seen)
    (HERE / "baresip_rtcp.bin").write_bytes(data)
    print(f"baresip_rtcp.bin: {len(seen)} RTCP datagrams")
    return 0


if __name__ == "__main__":
    sys.exit(main())
