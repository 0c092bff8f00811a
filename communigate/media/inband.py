"""
In-band DTMF detection (Goertzel) for 8 kHz audio, e.g. decoded G.711
from a phone that sends its keys as tones rather than RFC 4733 events.

`detect_key(block)` judges one block (160 samples is the intended size):
it returns the key whose row and column tones are both present, or None.
A key is present when

- each of its two tones has a peak amplitude of at least
  ``min_amplitude`` (default 400, about -35 dBm0 on the scale of
  `communigate.media.tones`);
- the stronger row tone is at least ``peak_ratio`` (default 4, 6 dB)
  stronger than every other row frequency, and likewise for columns;
- the twist is within bounds: the row tone at most 8 dB stronger than the
  column tone ("normal" twist), the column tone at most 4 dB stronger
  ("reverse" twist);
- the two tones carry at least ``min_purity`` (default 0.6) of the
  block's energy — speech and music spread theirs over many frequencies.

`DTMFDetector` makes the same judgement over a stream in blocks of 160
samples every 80 (10 ms), each half-block's share of the tone powers
worked out once for the two blocks it is in, and reports a key once it was present in
``min_blocks`` (default 3: 40 ms of tone) blocks in a row; the same key
is reported again only after ``min_gap`` (default 3) blocks without it
(a 40 ms pause gives three; a 10 ms interruption, which ITU-T Q.24 says
is no pause, at most two).  Feed it L16 frames of
any length; it returns the keys completed by each frame.
"""

from __future__ import annotations

import array
import math
import operator

from communigate.media.analysis import goertzel_power
from communigate.media.pcm import to_samples
from communigate.media.tones import DTMF_COLUMNS, DTMF_KEYS, DTMF_ROWS

__all__ = ["detect_key", "DTMFDetector"]

RATE = 8000
NORMAL_TWIST_DB = 8.0
REVERSE_TWIST_DB = 4.0


def _powers(samples, frequencies) -> list[float]:
    return [goertzel_power(samples, f, RATE) for f in frequencies]


def _strongest(powers: list[float], ratio: float) -> int | None:
    best = max(range(len(powers)), key=powers.__getitem__)
    top = powers[best]
    if any(p * ratio > top for i, p in enumerate(powers) if i != best):
        return None
    return best


def _decide(
    n: int,
    energy: float,
    rows_of,
    columns_of,
    *,
    min_amplitude: float = 400.0,
    peak_ratio: float = 4.0,
    min_purity: float = 0.6,
    normal_twist_db: float = NORMAL_TWIST_DB,
    reverse_twist_db: float = REVERSE_TWIST_DB,
) -> str | None:
    """
    The key of a block of C{n} samples holding C{energy} (the sum of the
    squared samples), whose tone powers C{rows_of()} and C{columns_of()}
    give (|X(f)|² at the row, then the column frequencies); asked for only
    as far as the block might still hold a key.
    """
    # Power of a sine of peak A over n samples is (A n / 2)²: compare there.
    floor = (min_amplitude * n / 2) ** 2
    if energy * n / 2 < 2 * floor:
        return None  # too quiet to hold two tones at the minimum level
    rows = rows_of()
    row = _strongest(rows, peak_ratio)
    if row is None or rows[row] < floor:
        return None
    # The column tone is at most reverse_twist_db above the row tone, so
    # a row tone too weak for the two to reach min_purity even then rules
    # the key out before the columns are worked out (music, speech).
    if 2.0 * rows[row] * (1 + 10 ** (reverse_twist_db / 10)) < min_purity * n * energy:
        return None
    columns = columns_of()
    column = _strongest(columns, peak_ratio)
    if column is None or columns[column] < floor:
        return None
    row_power, column_power = rows[row], columns[column]
    if row_power > column_power * 10 ** (normal_twist_db / 10):
        return None
    if column_power > row_power * 10 ** (reverse_twist_db / 10):
        return None
    if 2.0 * (row_power + column_power) / (n * energy) < min_purity:
        return None
    return DTMF_KEYS[row][column]


def detect_key(samples, **thresholds) -> str | None:
    """
    The DTMF key sounding in this block of 8 kHz samples, or None.
    C{thresholds}: C{min_amplitude}, C{peak_ratio}, C{min_purity},
    C{normal_twist_db}, C{reverse_twist_db} (see the module docstring).
    """
    if isinstance(samples, (bytes, bytearray, memoryview)):
        samples = to_samples(bytes(samples))
    n = len(samples)
    if n < 64:
        return None
    return _decide(
        n,
        sum(map(operator.mul, samples, samples)),
        lambda: _powers(samples, DTMF_ROWS),
        lambda: _powers(samples, DTMF_COLUMNS),
        **thresholds,
    )


_ROWS, _COLUMNS = tuple(DTMF_ROWS), tuple(DTMF_COLUMNS)


class _Half:
    """
    Half a block (one hop) of samples and what the two blocks it belongs
    to need of it, each worked out at most once: its energy, and its DFT
    at the row and at the column frequencies (counted from its own first
    sample).  A block of two halves A and B has, at angular frequency w,
    X = A + e^(-j w h) B (h: a half's length), so overlapping blocks cost
    one pass per sample instead of two, and the column tones are never
    computed for a block whose row tones already rule a key out (nearly
    every block of speech).
    """

    __slots__ = ("samples", "energy", "_parts")

    def __init__(self, samples) -> None:
        # A list: multiplying its ints is three times quicker than reading
        # an array's elements.
        self.samples = samples = samples.tolist() if isinstance(samples, array.array) else list(samples)
        self.energy = sum(map(operator.mul, samples, samples))
        self._parts: dict[tuple[float, ...], list[tuple[float, float]]] = {}

    def parts(self, frequencies: tuple[float, ...]) -> list[tuple[float, float]]:
        found = self._parts.get(frequencies)
        if found is None:
            samples, mul = self.samples, operator.mul
            found = self._parts[frequencies] = [
                (sum(map(mul, samples, cosines)), sum(map(mul, samples, sines)))
                for cosines, sines, _ in _tables(frequencies, len(samples))
            ]
        return found


_TABLES: dict[tuple[tuple[float, ...], int], list[tuple[list[float], list[float], complex]]] = {}


def _tables(frequencies: tuple[float, ...], length: int) -> list[tuple[list[float], list[float], complex]]:
    """
    For each frequency: e^(-j w n) for n below C{length} as cosines and
    sines, and e^(-j w length), which moves a half's DFT to the second
    half of a block.
    """
    found = _TABLES.get((frequencies, length))
    if found is None:
        found = []
        for frequency in frequencies:
            w = 2.0 * math.pi * frequency / RATE
            found.append((
                [math.cos(w * i) for i in range(length)],
                [-math.sin(w * i) for i in range(length)],
                complex(math.cos(w * length), -math.sin(w * length)),
            ))
        _TABLES[(frequencies, length)] = found
    return found


def _block_powers(first: _Half, second: _Half, frequencies: tuple[float, ...]) -> list[float]:
    powers = []
    tables = _tables(frequencies, len(first.samples))
    for (a_re, a_im), (b_re, b_im), (_, _, rotate) in zip(first.parts(frequencies), second.parts(frequencies), tables):
        re = a_re + rotate.real * b_re - rotate.imag * b_im
        im = a_im + rotate.real * b_im + rotate.imag * b_re
        powers.append(re * re + im * im)
    return powers


class DTMFDetector:
    """Keys in a stream of L16 frames, each reported once per key press."""

    block = 160
    hop = 80

    def __init__(self, min_blocks: int = 3, min_gap: int = 3, **thresholds):
        self.min_blocks = min_blocks
        self.min_gap = min_gap
        self.thresholds = thresholds
        self._pending = array.array("h")
        self._previous: _Half | None = None
        self._candidate: str | None = None
        self._count = 0
        self._reported: str | None = None
        self._misses = 0

    def feed(self, pcm: bytes) -> list[str]:
        """Keys completed by this frame (usually none)."""
        self._pending.extend(to_samples(pcm))
        keys = []
        hop = self.hop
        while len(self._pending) >= hop:
            half = _Half(self._pending[:hop])
            del self._pending[:hop]
            first, self._previous = self._previous, half
            if first is None:
                continue
            key = self._judge(_decide(
                hop * 2,
                first.energy + half.energy,
                lambda: _block_powers(first, half, _ROWS),
                lambda: _block_powers(first, half, _COLUMNS),
                **self.thresholds,
            ))
            if key is not None:
                keys.append(key)
        return keys

    def _judge(self, key: str | None) -> str | None:
        if key is not None and key == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = key, (1 if key else 0)
        if self._reported is not None:
            # The reported key must be gone for min_gap blocks before it
            # (or another) can be reported again: one block lost in the
            # middle of a tone does not make two presses.
            if key == self._reported:
                self._misses = 0
            else:
                self._misses += 1
                if self._misses >= self.min_gap:
                    self._reported = None
        if key is not None and self._count >= self.min_blocks and self._reported is None:
            self._reported = key
            self._misses = 0
            return key
        return None
