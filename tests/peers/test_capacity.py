"""``ivr serve`` at capacity: new INVITEs get 503 with Retry-After, OPTIONS says so, a freed slot takes calls.

The limit is ``--max-calls`` (or ``server.max_calls``, by default half the RTP port pairs);
an RTP port range with no free pair refuses calls the same way instead of failing them.
Checked with real sipp calls and the server's own log; the unit tests feed the server's
user agent real OPTIONS bytes and read the deployment file's default.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.config import ConfigError, ServerConfig, load_config
from ivr.runtime.server import CAPACITY_RETRY_AFTER, ServerAgent
from ivr.sip.message import Response, parse_message
from tests.transfer.harness import peers

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")

IvrServer = Any  # conftest.IvrServer
Sipp = Callable[..., Any]
HELD_MS = "12000"  # the held call lasts this long: the checks made while it is up take a second or two


def in_background(run: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(run()), daemon=True)
    thread.start()
    return thread, out


def hold_one_call(server: IvrServer, sipp: Sipp) -> tuple[threading.Thread, list[Any], str]:
    """A sipp call that stays up HELD_MS, answered; its Call-ID."""
    thread, out = in_background(lambda: sipp("held_call.xml", server, extra=("-d", HELD_MS)))
    answer = server.wait_for(lambda r: r.get("action") == "answer", what="the held call answered")
    return thread, out, answer["call_id"]


def retry_after(result: Any) -> str:
    replies = result.received("SIP/2.0 503")
    assert replies, "no 503 in sipp's trace"
    for line in replies[0].splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "retry-after":
            return value.strip()
    raise AssertionError("503 without Retry-After:\n" + replies[0])


@pytest.mark.peer
@pytest.mark.slow
@needs_sipp
def test_a_full_server_answers_503_until_a_call_ends(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("menu.ivr", extra=("--max-calls", "1"))
    thread, out, held = hold_one_call(server, sipp)
    full = server.wait_for(lambda r: r.get("event") == "capacity_full", what="capacity_full")
    assert (full["calls"], full["max_calls"]) == (1, 1)

    rejected = sipp("invite_rejected.xml", server)
    rejected.check()
    assert retry_after(rejected) == str(CAPACITY_RETRY_AFTER)
    record = server.wait_for(
        lambda r: r.get("call_id") == rejected.call_id and r.get("event") == "call_rejected", what="call_rejected"
    )
    assert (record["reason"], record["status"], record["max_calls"]) == ("capacity", 503, 1)
    assert not any(r.get("event") == "incoming" for r in server.call_records(rejected.call_id))

    probe = sipp("options_draining.xml", server)  # OPTIONS: 503 as an INVITE would get
    probe.check()
    assert retry_after(probe) == str(CAPACITY_RETRY_AFTER)

    thread.join(60)
    out[0].check()  # the held call was never disturbed: it went on to its own BYE
    server.wait_for(lambda r: r.get("call_id") == held and r.get("event") == "ended", what="held call ended")
    server.wait_for(lambda r: r.get("event") == "capacity_available", what="capacity_available")
    sipp("options.xml", server).check()  # 200 again
    again = sipp("basic_caller_bye.xml", server)
    again.check()
    assert any(r.get("action") == "answer" for r in server.call_records(again.call_id))


def one_pair_server(ivr_server: Callable[..., IvrServer], tmp_path: Path, server_keys: str = "") -> tuple[IvrServer, int]:
    """``ivr serve`` on menu.ivr whose RTP range is a single even/odd pair (free right now); that port."""
    rtp = peers.free_port(2)
    toml = tmp_path / "one-pair.toml"
    prompts = Path(__file__).resolve().parents[2] / "prompts"
    toml.write_text(f'[server]\nrtp_ports = "{rtp}-{rtp + 1}"\n{server_keys}[prompts]\nfolders = ["{prompts}"]\n')
    return ivr_server("menu.ivr", extra=("--config", str(toml))), rtp  # the last --config wins


TRANSFER_FLOW = """\
number default -> desk

desk:
    transfer to 202 for 15s
        else -> hangup
"""


@pytest.mark.peer
@pytest.mark.slow
@needs_sipp
def test_a_transfers_outgoing_leg_is_not_a_call(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    """max_calls 2: a caller bridged to phone 202 holds two RTP pairs but one slot; a second caller gets in."""
    phone_port = peers.free_port(1)
    phone_dir = tmp_path / "phone"
    phone_dir.mkdir()
    phone = subprocess.Popen(
        [shutil.which("sipp") or "sipp", "-sf", str(Path(__file__).parent / "scenarios" / "uas_answer.xml"),
         "-i", "127.0.0.1", "-p", str(phone_port), "-mp", str(peers.free_port(4)), "-m", "1", "-nostdin",
         "-timeout", "60s", "-timeout_error", "-trace_msg", "-message_file", str(phone_dir / "messages.log")],
        cwd=phone_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        flow = tmp_path / "desk.ivr"
        flow.write_text(TRANSFER_FLOW)
        # call_waiting: the second caller's transfer rings 202 again instead of finding it busy
        # (ivr.runtime.phones), so that call stays up until its caller hangs up, as this test needs.
        extension = f'[[extensions]]\nnumber = "202"\ncall_waiting = true\ncontacts = ["sip:202@127.0.0.1:{phone_port}"]\n'
        server = ivr_server(flow, sections=extension, extra=("--max-calls", "2"))
        thread, out = in_background(lambda: sipp("held_call.xml", server, extra=("-d", HELD_MS)))
        done = server.wait_for(lambda r: r.get("event") == "transfer_done", what="transfer_done")
        assert done["outcome"] == "answered" and done["target"] == "202"

        sipp("options.xml", server).check()  # one call of two up, the leg aside: 200
        assert not any(r.get("event") == "capacity_full" for r in server.records)
        second = sipp("basic_caller_bye.xml", server)
        second.check()  # answered: the leg did not take the second slot
        assert not any(r.get("event") == "call_rejected" for r in server.records)
        assert any(r.get("action") == "answer" for r in server.call_records(second.call_id))

        thread.join(60)
        out[0].check()  # the caller hung up; ivr hung up the phone
        phone_out, _ = phone.communicate(timeout=30)
        assert phone.returncode == 0, phone_out[-2000:]
    finally:
        if phone.poll() is None:
            phone.kill()
            phone.communicate()


@pytest.mark.peer
@pytest.mark.slow
@needs_sipp
def test_no_free_rtp_port_pair_is_a_503_not_a_failed_call(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    """One RTP port pair and max_calls 5: the second call finds no port and is refused with 503."""
    server, _ = one_pair_server(ivr_server, tmp_path, "max_calls = 5\n")
    thread, out, held = hold_one_call(server, sipp)

    probe = sipp("options_draining.xml", server)
    probe.check()  # no port for a call: OPTIONS says 503 too
    rejected = sipp("invite_rejected.xml", server)
    rejected.check()
    assert retry_after(rejected) == str(CAPACITY_RETRY_AFTER)
    record = server.wait_for(
        lambda r: r.get("call_id") == rejected.call_id and r.get("event") == "call_rejected", what="call_rejected"
    )
    assert record["reason"] == "rtp_ports"
    assert not any(r.get("event") == "capacity_full" for r in server.records)  # 1 call of 5

    thread.join(60)
    out[0].check()
    # "ended" is logged once the call's media is closed and its port pair back in the pool
    server.wait_for(lambda r: r.get("call_id") == held and r.get("event") == "ended", what="held call ended")
    again = sipp("basic_caller_bye.xml", server)  # the pair is free again
    again.check()


# --------------------------------------------------------------------------- unit level

OPTIONS = (
    b"OPTIONS sip:ivr@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-cap-1\r\n"
    b"From: <sip:probe@127.0.0.1:5070>;tag=probe1\r\n"
    b"To: <sip:ivr@127.0.0.1:5060>\r\n"
    b"Call-ID: capacity-probe-1@127.0.0.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def options_reply(refusal: str) -> Response:
    ua = ServerAgent(local_host="127.0.0.1", local_port=5060)
    ua.refusal = lambda: refusal
    ua.receive(OPTIONS, ("127.0.0.1", 5070), "udp", 0.0)
    sent = ua.outgoing()
    assert len(sent) == 1
    reply = parse_message(sent[0].data)
    assert isinstance(reply, Response)
    return reply


def test_options_answers_503_with_retry_after_while_calls_would_be_refused() -> None:
    reply = options_reply("capacity")
    assert reply.status == 503
    assert reply.headers.get("Retry-After") == str(CAPACITY_RETRY_AFTER)


def test_options_answers_200_while_calls_are_taken() -> None:
    assert options_reply("").status == 200


def test_the_default_limit_is_half_the_rtp_port_pairs(tmp_path: Path) -> None:
    assert ServerConfig().call_limit == 2500  # 20000-29999: 5,000 pairs
    toml = tmp_path / "ivr.toml"
    toml.write_text('[server]\nrtp_ports = "30001-30010"\n')  # 30002..30009: 4 pairs
    assert load_config(toml).server.call_limit == 2
    toml.write_text('[server]\nrtp_ports = "30000-30001"\n')  # one pair still takes one call
    assert load_config(toml).server.call_limit == 1
    toml.write_text('[server]\nmax_calls = 40\n')
    assert load_config(toml).server.call_limit == 40


@pytest.mark.parametrize("value", ["-1", '"many"', "true", "2.5"])
def test_a_bad_max_calls_names_the_key(tmp_path: Path, value: str) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text(f"[server]\nmax_calls = {value}\n")
    with pytest.raises(ConfigError, match=r"server\.max_calls: expected a whole number of calls"):
        load_config(toml)


@pytest.mark.peer
@needs_sipp
def test_rtp_ports_held_by_another_program_are_a_503_not_a_failed_call(
    ivr_server: Callable[..., IvrServer], sipp: Sipp, tmp_path: Path
) -> None:
    """Our pool thinks the one pair is free, but another program has bound it: 503, Retry-After, no 500."""
    server, rtp = one_pair_server(ivr_server, tmp_path)
    squatters = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for offset, sock in enumerate(squatters):
            sock.bind(("127.0.0.1", rtp + offset))  # after the start: ivr binds RTP only per call
        rejected = sipp("invite_rejected.xml", server)
        rejected.check()
        assert retry_after(rejected) == str(CAPACITY_RETRY_AFTER)
        record = server.wait_for(
            lambda r: r.get("call_id") == rejected.call_id and r.get("action") == "reject", what="reject"
        )
        assert record["status"] == 503 and "no RTP port" in record["reason"]
    finally:
        for sock in squatters:
            sock.close()
    again = sipp("basic_caller_bye.xml", server)  # the other program is gone: the pair takes calls
    again.check()
