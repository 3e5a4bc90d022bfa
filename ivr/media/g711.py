"""G.711 mu-law (PCMU) and A-law (PCMA) by numpy lookup tables (ITU-T G.711).

Encoding uses a 65536-entry table indexed by the 16-bit sample, decoding a
256-entry table, so a 20 ms frame is two numpy takes.  No ``audioop``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PCM16 = npt.NDArray[np.int16]

_BIAS = 0x84
_CLIP = 32635


def _ulaw_encode_one(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), _CLIP) + _BIAS
    exponent = max(magnitude.bit_length() - 8, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_one(code: int) -> int:
    code = ~code & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + _BIAS) << exponent
    magnitude -= _BIAS
    return -magnitude if code & 0x80 else magnitude


def _alaw_encode_one(sample: int) -> int:
    sign = 0x00 if sample < 0 else 0x80
    magnitude = min(abs(sample) if sample >= 0 else -sample - 1, 32767) >> 3
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (sign | code) ^ 0x55


def _alaw_decode_one(code: int) -> int:
    code ^= 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


_ALL = range(-32768, 32768)
ULAW_ENCODE = np.array([_ulaw_encode_one(s) for s in _ALL], dtype=np.uint8)
ALAW_ENCODE = np.array([_alaw_encode_one(s) for s in _ALL], dtype=np.uint8)
ULAW_DECODE = np.array([_ulaw_decode_one(c) for c in range(256)], dtype=np.int16)
ALAW_DECODE = np.array([_alaw_decode_one(c) for c in range(256)], dtype=np.int16)

#: RTP static payload types (RFC 3551) and encoding names.
PCMU = 0
PCMA = 8
CODEC_NAMES = {PCMU: "PCMU", PCMA: "PCMA"}
SILENCE = {PCMU: 0xFF, PCMA: 0xD5}


def encode(pcm: PCM16, payload_type: int) -> bytes:
    """16-bit linear samples -> G.711 bytes for ``payload_type`` (0 PCMU, 8 PCMA)."""
    table = ULAW_ENCODE if payload_type == PCMU else ALAW_ENCODE
    index = np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768
    return table[index].tobytes()


def decode(data: bytes, payload_type: int) -> PCM16:
    """G.711 bytes -> 16-bit linear samples."""
    table = ULAW_DECODE if payload_type == PCMU else ALAW_DECODE
    # take() of a uint8 view is the cheapest numpy lookup (once per received packet)
    return table.take(np.frombuffer(data, _U8))


_U8 = np.dtype(np.uint8)


def ulaw_encode(pcm: PCM16) -> bytes:
    return encode(pcm, PCMU)


def ulaw_decode(data: bytes) -> PCM16:
    return decode(data, PCMU)


def alaw_encode(pcm: PCM16) -> bytes:
    return encode(pcm, PCMA)


def alaw_decode(data: bytes) -> PCM16:
    return decode(data, PCMA)
