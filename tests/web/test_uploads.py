"""Greetings and prompt recordings uploaded through the API of a real ``ivr serve``: conversion,
permissions, bad files, the upload limit and names that try to leave the data and prompt folders."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from .conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]
GREETINGS = "/api/v1/mailboxes/{box}/greetings"


def wav(seconds: float = 0.1, rate: int = 44100, channels: int = 2) -> bytes:
    """A tone as a WAV file in a rate and channel count playback does not use."""
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
    out = io.BytesIO()
    soundfile.write(out, np.repeat(tone[:, None], channels, axis=1), rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


def greeting_file(server: WebServer, box: str, kind: str):  # type: ignore[no-untyped-def]
    return server.data / "voicemail" / box / "greetings" / f"{kind}.wav"


def test_a_user_uploads_a_greeting_that_is_converted_to_telephone_audio_and_plays_back(web_server: WebServer) -> None:
    client = web_server.client("201")
    reply = client.request("PUT", GREETINGS.format(box="201") + "/busy", data=wav(), content_type="audio/wav")
    assert reply.status == 200, reply.text
    assert reply.json()["greetings"] == {"unavailable": False, "busy": True, "temporary": False, "name": False}
    info = soundfile.info(str(greeting_file(web_server, "201", "busy")))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert abs(info.duration - 0.1) < 0.01
    audio = client.get(GREETINGS.format(box="201") + "/busy/audio")
    assert audio.status == 200 and audio.headers["Content-Type"] == "audio/wav"
    assert audio.body == greeting_file(web_server, "201", "busy").read_bytes()
    assert client.get(GREETINGS.format(box="201")).json()["greetings"]["busy"] is True
    assert client.request("DELETE", GREETINGS.format(box="201") + "/busy").json()["greetings"]["busy"] is False
    assert not greeting_file(web_server, "201", "busy").exists()
    assert client.get(GREETINGS.format(box="201") + "/busy/audio").json() == {
        "error": "mailbox 201 has no busy greeting"}


@pytest.mark.parametrize("method, suffix", [("GET", ""), ("PUT", "/name"), ("GET", "/name/audio"),
                                            ("DELETE", "/name")])
def test_a_user_cannot_see_or_change_another_users_greetings(web_server: WebServer, method: str, suffix: str) -> None:
    greeting_file(web_server, "202", "name").parent.mkdir(parents=True, exist_ok=True)
    greeting_file(web_server, "202", "name").write_bytes(wav(rate=8000, channels=1))
    before = greeting_file(web_server, "202", "name").read_bytes()
    reply = web_server.client("201").request(method, GREETINGS.format(box="202") + suffix,
                                             data=wav() if method == "PUT" else None,
                                             content_type="audio/wav" if method == "PUT" else None)
    assert (reply.status, reply.json()) == (403, {"error": "mailbox 202 is not yours"})
    assert greeting_file(web_server, "202", "name").read_bytes() == before
    assert web_server.client("100").get(GREETINGS.format(box="202")).json()["greetings"]["name"] is True


@pytest.mark.parametrize("data, content_type, status, error", [
    (b"this is not audio at all", "audio/wav", 400, "not a WAV file (expected a RIFF/WAVE header)"),
    (b"RIFF\x00\x00\x00\x00WAVEgarbage-garbage", "audio/wav", 400, None),
    (wav(seconds=0.01), "audio/wav", 400, "the recording is shorter than 0.1 s"),
    (wav(), "application/json", 415, "expected a WAV file (Content-Type: audio/wav), got 'application/json'"),
])
def test_a_bad_greeting_is_a_clear_4xx_and_keeps_the_old_one(
    web_server: WebServer, data: bytes, content_type: str, status: int, error: str | None
) -> None:
    client = web_server.client("202")
    assert client.request("PUT", GREETINGS.format(box="202") + "/unavailable", data=wav(),
                          content_type="audio/wav").status == 200
    before = greeting_file(web_server, "202", "unavailable").read_bytes()
    reply = client.request("PUT", GREETINGS.format(box="202") + "/unavailable", data=data, content_type=content_type)
    assert reply.status == status
    if error is None:
        assert reply.json()["error"].startswith("not a readable WAV file: ")
    else:
        assert reply.json() == {"error": error}
    assert greeting_file(web_server, "202", "unavailable").read_bytes() == before
    leftovers = [p.name for p in greeting_file(web_server, "202", "unavailable").parent.iterdir()]
    assert not [name for name in leftovers if name.startswith(".")]  # no half-written upload left


def test_a_greeting_over_the_upload_limit_is_a_413_and_changes_nothing(web_server: WebServer) -> None:
    reply = web_server.client("201").request("PUT", GREETINGS.format(box="201") + "/temporary",
                                             data=wav(seconds=1.0), content_type="audio/wav")
    assert (reply.status, reply.json()) == (413, {"error": "the request body is larger than the upload limit of "
                                                           "20000 bytes"})
    assert not greeting_file(web_server, "201", "temporary").exists()


def test_an_unknown_kind_or_mailbox_is_a_404(web_server: WebServer) -> None:
    client = web_server.client("100")
    reply = client.request("PUT", GREETINGS.format(box="201") + "/holiday", data=wav(), content_type="audio/wav")
    assert reply.json() == {"error": "no greeting kind 'holiday'; one of unavailable, busy, temporary, name"}
    assert client.get(GREETINGS.format(box="999")).json() == {"error": "no mailbox '999'"}


# ------------------------------------------------------------------ prompts


def test_an_admin_uploads_a_prompt_recording_lists_plays_and_deletes_it(web_server: WebServer) -> None:
    client = web_server.client("100")
    reply = client.request("PUT", "/api/v1/prompts/de/voicemail.leave.saved_goodbye", data=wav(),
                           content_type="audio/wav")
    assert reply.json() == {"language": "de", "id": "voicemail.leave.saved_goodbye",
                            "path": "de/voicemail.leave.saved_goodbye.wav"}
    path = web_server.prompts / "de" / "voicemail.leave.saved_goodbye.wav"
    assert soundfile.info(str(path)).samplerate == 8000
    listed = client.get("/api/v1/prompts").json()["prompts"]
    entry = next(p for p in listed if p["id"] == "voicemail.leave.saved_goodbye")
    assert entry["language"] == "de" and entry["sentence"]  # the catalogue sentence it replaces
    assert client.get("/api/v1/prompts/de/voicemail.leave.saved_goodbye/audio").body == path.read_bytes()
    assert client.request("DELETE", "/api/v1/prompts/de/voicemail.leave.saved_goodbye").json()["deleted"] is True
    assert not path.exists()


def test_a_user_cannot_upload_prompts(web_server: WebServer) -> None:
    reply = web_server.client("201").request("PUT", "/api/v1/prompts/en/welcome", data=wav(), content_type="audio/wav")
    assert (reply.status, reply.json()) == (403, {"error": "this needs the admin role"})
    assert not (web_server.prompts / "en").exists()


@pytest.mark.parametrize("path, status", [
    ("/api/v1/prompts/en/..%2F..%2Fdata%2Fweb%2Fusers", 400),
    ("/api/v1/prompts/en/..", 400),
    ("/api/v1/prompts/en/.hidden", 400),
    ("/api/v1/prompts/en/a..b", 400),
    ("/api/v1/prompts/en/%2Fetc%2Fpasswd", 400),
    ("/api/v1/prompts/en/name%00.txt", 400),
    ("/api/v1/prompts/..%2F..%2Fetc/passwd", 404),
    ("/api/v1/prompts/xx/welcome", 404),
    ("/api/v1/mailboxes/..%2F..%2Fweb/greetings/name", 404),
    ("/api/v1/mailboxes/201/greetings/..%2F..%2F202%2Fgreetings%2Fname", 404),
])
def test_a_name_never_leads_outside_the_data_and_prompt_folders(web_server: WebServer, path: str, status: int) -> None:
    client = web_server.client("100")
    before = sorted(p for p in web_server.data.parent.rglob("*") if p.is_file() and "tts-cache" not in p.parts)
    for method, where in (("PUT", path), ("DELETE", path), ("GET", path + "/audio")):
        reply = client.request(method, where, data=wav() if method == "PUT" else None,
                               content_type="audio/wav" if method == "PUT" else None)
        assert reply.status in (status, 404), (method, reply.status, reply.text)
        assert "error" in reply.json()
    after = sorted(p for p in web_server.data.parent.rglob("*") if p.is_file() and "tts-cache" not in p.parts)
    new = [p for p in after if p not in before]
    assert [p for p in new if "voicemail" in p.parts or "prompts" in p.parts] == []


def test_a_symlink_leading_out_of_the_prompt_folder_is_refused(web_server: WebServer) -> None:
    outside = web_server.data.parent / "outside"
    outside.mkdir(exist_ok=True)
    (web_server.prompts / "it").symlink_to(outside, target_is_directory=True)
    try:
        reply = web_server.client("100").request("PUT", "/api/v1/prompts/it/welcome", data=wav(),
                                                 content_type="audio/wav")
        assert (reply.status, reply.json()) == (400, {"error": "that name leads outside the data and prompt folders"})
        assert list(outside.iterdir()) == []
    finally:
        (web_server.prompts / "it").unlink()
