"""
L16 frames (signed 16-bit little-endian samples, see `communigate.media.g711`)
as numbers, and the sums a mixer makes of them.

- `to_samples` / `from_samples`: octets ↔ ``array('h')`` (``from_samples``
  saturates values outside 16 bits);
- `mix`: the saturated sum of several frames;
- `mix_minus`: for each of N frames, the sum of all the *others* — what each
  conference party hears — computed as one total minus each party's own
  frame (2N passes over the frame, not N²).

Frames of different lengths are summed over the shortest.  Saturation is
plain clipping to [-32768, 32767], done only for a frame that actually
overflows (the conversion to 16 bits raises, and only then is the frame
clipped).
"""

from __future__ import annotations

import array
import operator
import sys
from typing import Sequence

__all__ = ["to_samples", "from_samples", "mix", "mix_minus", "clip"]

_LITTLE = sys.byteorder == "little"
_MIN, _MAX = -32768, 32767


def to_samples(pcm: bytes) -> array.array:
    """L16 octets as an ``array('h')``; an odd length is a ValueError."""
    if len(pcm) % 2:
        raise ValueError(f"L16 audio has an even number of octets, not {len(pcm)}")
    samples = array.array("h")
    samples.frombytes(pcm)
    if not _LITTLE:
        samples.byteswap()
    return samples


def clip(values) -> list[int]:
    """Values saturated to the 16-bit range (a list, unchanged if none overflow)."""
    values = list(values)
    if values and (max(values) > _MAX or min(values) < _MIN):
        values = [_MAX if v > _MAX else _MIN if v < _MIN else v for v in values]
    return values


def from_samples(values) -> bytes:
    """Numbers (ints, or floats rounded) as L16 octets, saturated to 16 bits."""
    samples = array.array("h", clip(map(round, values)))
    if not _LITTLE:
        samples.byteswap()
    return samples.tobytes()


def _to_l16(values) -> bytes:
    """Ints to L16 octets, saturating only if some value overflows (the
    common case costs no comparisons)."""
    values = list(values)
    try:
        samples = array.array("h", values)
    except OverflowError:
        samples = array.array("h", clip(values))
    if not _LITTLE:
        samples.byteswap()
    return samples.tobytes()


def mix(frames: Sequence[bytes]) -> bytes:
    """The saturated sum of L16 frames (silence of length 0 for none)."""
    if not frames:
        return b""
    if len(frames) == 1:
        return bytes(frames[0])
    return _to_l16(map(sum, zip(*map(to_samples, frames))))


def mix_minus(frames: Sequence[bytes]) -> list[bytes]:
    """For each frame, the saturated sum of all the other frames.

    With one frame the result is one frame of silence of its length.
    """
    parts = [to_samples(frame) for frame in frames]
    if not parts:
        return []
    total = list(map(sum, zip(*parts)))
    return [_to_l16(map(operator.sub, total, own)) for own in parts]
