"""Rebuild the RTP captures in this folder from sipp's bundled pcaps.

Run ``python tests/data/rtp/make_captures.py`` (needs Debian ``sip-tester``).
Each ``NAME.bin`` holds the UDP payloads of ``/usr/share/sip-tester/NAME.pcap``
in capture order, each as a record: ``!IH`` header (arrival in microseconds
since the first packet, payload length) followed by the payload bytes.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

SIPP_DATA = Path("/usr/share/sip-tester")
HERE = Path(__file__).resolve().parent


def udp_payloads(pcap: bytes) -> list[tuple[float, bytes]]:
    """(timestamp, UDP payload) of every IPv4/UDP frame in a classic pcap file."""
    magic = pcap[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}.get(magic)
    if endian is None:
        raise ValueError(f"not a microsecond pcap file (magic {magic.hex()})")
    linktype = struct.unpack_from(endian + "I", pcap, 20)[0]
    link_header = {1: 14, 113: 16, 101: 0}[linktype]  # Ethernet, Linux cooked, raw IP
    out, pos = [], 24
    while pos + 16 <= len(pcap):
        sec, usec, caplen, _ = struct.unpack_from(endian + "IIII", pcap, pos)
        frame = pcap[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        ip = frame[link_header:]
        if ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        udp = ip[(ip[0] & 0x0F) * 4 :]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append((sec + usec / 1e6, bytes(udp[8:length])))
    return out


def main() -> int:
    for pcap in sorted(SIPP_DATA.glob("*.pcap")):
        packets = udp_payloads(pcap.read_bytes())
        t0 = packets[0][0]
        data = b"".join(struct.pack("!IH", round((t - t0) * 1e6), len(p)) + p for t, p in packets)
        (HERE / f"{pcap.stem}.bin").write_bytes(data)
        print(f"{pcap.stem}.bin: {len(packets)} packets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
