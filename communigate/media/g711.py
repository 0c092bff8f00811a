"""
G.711 µ-law and A-law (ITU-T G.711), exact to the standard's tables.

Linear audio everywhere in `communigate.media` is *L16 frames*: ``bytes``
of signed 16-bit little-endian samples (the WAV byte order), 8,000 samples
a second; a 20 ms frame is 160 samples, 320 octets.

Scale convention
================
G.711 defines µ-law on a 14-bit uniform scale (output values up to ±8031,
decision values up to ±8159) and A-law on a 13-bit scale (output values up
to ±4032, decision values up to ±4096).  Here those values are
*left-justified into 16 bits*: µ-law values are multiplied by 4 and A-law
values by 8, the convention of the ITU-T G.191 software tools and of most
codecs.  So µ-law 0xFF decodes to 0, 0x00 to -32124 (−8031 × 4),
0x80 to +32124; A-law 0xD5 to +8 (+1 × 8), 0x55 to -8, 0xAA to +32256
(+4032 × 8), 0x2A to -32256.

Decoding
========
`decode_table` builds each law's 256 output values from the segment
definition (µ-law: a code's inverted bits are sign, 3-bit segment ``e``
and 4-bit step ``m``, magnitude ``((2m + 33) << e) - 33``; A-law: the
code XOR 0x55 gives sign, ``e`` and ``m``, magnitude ``2m + 1`` in segment
0 and ``(2m + 33) << (e - 1)`` above), not from a pasted table.

Encoding
========
The standard segment search on the magnitude: each code stands for one
decision interval of G.711's tables (µ-law: ``[y - s/2, y + s/2)`` around
output value ``y`` with the segment's step ``s``; A-law likewise), the
lower decision value belonging to the interval, as G.711 assigns it.
Inputs beyond the last decision value take the extreme code.  Negative
inputs are the exact mirror of positive ones (sign and magnitude), so
``decode(encode(-x)) == -decode(encode(x))`` for every sample except
−32768, which is clipped like −32767.  Zero encodes as the positive zero
(µ-law 0xFF) or +8 (A-law 0xD5); −1…−3 as µ-law's negative zero 0x7F.

Within a segment the decision values lie half-way between output values,
so the decoded value is the nearest one, ties going away from zero.  At a
segment edge G.711 puts the decision value at the edge itself, which is
not half-way between the two neighbouring output values (µ-law 30 and 33
on the 14-bit scale meet at 31, not 31.5): there the standard, and so this
encoder, picks the first level of the upper segment for inputs that are
nearer the last level of the lower one.  ``tests/media/test_g711.py``
proves both facts over all 65,536 inputs.

Speed: decoding is two ``bytes.translate`` calls interleaved into the
output, encoding one lookup per sample in a 65,536-entry table
(benchmarks/media_codecs.py).
"""

from __future__ import annotations

import operator
import sys

__all__ = [
    "ulaw_decode_table",
    "alaw_decode_table",
    "ulaw_encode_sample",
    "alaw_encode_sample",
    "ulaw_decode",
    "ulaw_encode",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "silence",
    "ULAW_SILENCE",
    "ALAW_SILENCE",
]

ULAW_SILENCE = 0xFF  # positive zero
ALAW_SILENCE = 0xD5  # +8, the smallest positive level


# ------------------------------------------------------------ definitions
def _ulaw_value(code: int) -> int:
    bits = ~code & 0xFF
    segment = (bits >> 4) & 0x07
    step = bits & 0x0F
    magnitude = (((2 * step + 33) << segment) - 33) * 4
    return -magnitude if bits & 0x80 else magnitude


def _alaw_value(code: int) -> int:
    bits = code ^ 0x55
    segment = (bits >> 4) & 0x07
    step = bits & 0x0F
    if segment == 0:
        magnitude = 2 * step + 1
    else:
        magnitude = (2 * step + 33) << (segment - 1)
    magnitude *= 8
    return magnitude if bits & 0x80 else -magnitude


def ulaw_decode_table() -> tuple[int, ...]:
    """The 256 µ-law output values, indexed by code, on the 16-bit scale."""
    return tuple(_ulaw_value(code) for code in range(256))


def alaw_decode_table() -> tuple[int, ...]:
    """The 256 A-law output values, indexed by code, on the 16-bit scale."""
    return tuple(_alaw_value(code) for code in range(256))


def ulaw_encode_sample(sample: int) -> int:
    """One signed 16-bit sample to its µ-law code (segment search)."""
    if sample < 0:
        magnitude, mask = -sample, 0x7F
    else:
        magnitude, mask = sample, 0xFF
    # 14-bit magnitude, floored: decision values are whole numbers on
    # that scale, so the floor lands in the same interval as the exact
    # value.  8158 is the last point below the top decision value 8159.
    biased = min(magnitude >> 2, 8158) + 33
    segment = biased.bit_length() - 6
    return ((segment << 4) | ((biased >> (segment + 1)) & 0x0F)) ^ mask


def alaw_encode_sample(sample: int) -> int:
    """One signed 16-bit sample to its A-law code (segment search)."""
    if sample < 0:
        magnitude, mask = -sample, 0x55
    else:
        magnitude, mask = sample, 0xD5
    value = min(magnitude >> 3, 4095)  # 12-bit magnitude, floored
    if value < 32:
        code = value >> 1
    else:
        segment = value.bit_length() - 5
        code = (segment << 4) | ((value >> segment) & 0x0F)
    return code ^ mask


# ------------------------------------------------------------ bulk tables
def _native_index_to_sample(index: int) -> int:
    """The sample whose little-endian octets read as ``index`` when taken
    as a native unsigned 16-bit number (what ``memoryview.cast('H')``
    yields on this machine)."""
    raw = index.to_bytes(2, sys.byteorder)
    return int.from_bytes(raw, "little", signed=True)


def _encode_table(encode_sample) -> bytes:
    return bytes(encode_sample(_native_index_to_sample(i)) for i in range(65536))


def _translate_pair(values: tuple[int, ...]) -> tuple[bytes, bytes]:
    """Two translate tables: low and high octet of each code's L16 value."""
    low = bytes(v & 0xFF for v in values)
    high = bytes((v >> 8) & 0xFF for v in values)
    return low, high


_ULAW_VALUES = ulaw_decode_table()
_ALAW_VALUES = alaw_decode_table()
_ULAW_LOW, _ULAW_HIGH = _translate_pair(_ULAW_VALUES)
_ALAW_LOW, _ALAW_HIGH = _translate_pair(_ALAW_VALUES)
_ULAW_ENCODE = _encode_table(ulaw_encode_sample)
_ALAW_ENCODE = _encode_table(alaw_encode_sample)


def _decode(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def _encode(pcm: bytes, table: bytes) -> bytes:
    if len(pcm) % 2:
        raise ValueError(f"L16 audio has an even number of octets, not {len(pcm)}")
    samples = memoryview(pcm).cast("B").cast("H")
    count = len(samples)
    if count > 1:
        return bytes(operator.itemgetter(*samples)(table))
    if count == 1:
        return bytes((table[samples[0]],))
    return b""


def ulaw_decode(data: bytes) -> bytes:
    """µ-law octets to L16 (two octets per input octet)."""
    return _decode(bytes(data), _ULAW_LOW, _ULAW_HIGH)


def alaw_decode(data: bytes) -> bytes:
    """A-law octets to L16 (two octets per input octet)."""
    return _decode(bytes(data), _ALAW_LOW, _ALAW_HIGH)


def ulaw_encode(pcm: bytes) -> bytes:
    """L16 to µ-law octets (one per sample); odd length is a ValueError."""
    return _encode(pcm, _ULAW_ENCODE)


def alaw_encode(pcm: bytes) -> bytes:
    """L16 to A-law octets (one per sample); odd length is a ValueError."""
    return _encode(pcm, _ALAW_ENCODE)


_CODECS = {
    "PCMU": (ulaw_encode, ulaw_decode, ULAW_SILENCE),
    "PCMA": (alaw_encode, alaw_decode, ALAW_SILENCE),
}


def _codec(name: str):
    try:
        return _CODECS[name.upper()]
    except KeyError:
        raise ValueError(f"not a G.711 codec: {name!r} (PCMU or PCMA)") from None


def encode(name: str, pcm: bytes) -> bytes:
    """L16 to ``PCMU`` or ``PCMA`` octets."""
    return _codec(name)[0](pcm)


def decode(name: str, data: bytes) -> bytes:
    """``PCMU`` or ``PCMA`` octets to L16."""
    return _codec(name)[1](data)


def silence(name: str, samples: int = 160) -> bytes:
    """A frame of G.711 silence (µ-law 0xFF, A-law 0xD5)."""
    return bytes((_codec(name)[2],)) * samples
