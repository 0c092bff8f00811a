"""
Tones as L16 audio at 8 kHz: sines at given frequencies and levels, the
DTMF pairs, and the cadenced call-progress tones (ringback, busy, dial).

Levels are in dBm0 per frequency component: 0 dBm0 is a sine whose peak
is 3.14 dB below 16-bit full scale (peak 22,827), the G.711 A-law
reference (µ-law's is 3.17 dB, the same to 0.03 dB).

`sine(frequencies, seconds)` returns a block of audio.  A `ToneGenerator`
hands out successive frames with a continuous phase, following a
`Tone`'s cadence (on/off periods in seconds, repeated; none means
continuous).  The presets are the ITU-T E.180 European tones (425 Hz) and
the North American precise tones.
"""

from __future__ import annotations

import math
from typing import Sequence

import attrs

from communigate.media.pcm import from_samples

__all__ = [
    "Tone",
    "ToneGenerator",
    "sine",
    "dtmf",
    "amplitude",
    "DTMF_FREQUENCIES",
    "RINGBACK",
    "BUSY",
    "DIAL",
    "CONGESTION",
    "RINGBACK_US",
    "BUSY_US",
    "DIAL_US",
]

RATE = 8000
ZERO_DBM0_PEAK = 32768 * 10 ** (-3.14 / 20)

DTMF_ROWS = (697, 770, 852, 941)
DTMF_COLUMNS = (1209, 1336, 1477, 1633)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES = {
    key: (DTMF_ROWS[r], DTMF_COLUMNS[c])
    for r, row in enumerate(DTMF_KEYS)
    for c, key in enumerate(row)
}


def amplitude(level_dbm0: float) -> float:
    """Peak amplitude of a sine at ``level_dbm0``."""
    return ZERO_DBM0_PEAK * 10 ** (level_dbm0 / 20)


def _render(frequencies, levels, start: int, count: int, rate: int) -> list[float]:
    parts = [
        (2 * math.pi * f / rate, amplitude(level)) for f, level in zip(frequencies, levels)
    ]
    return [
        sum(a * math.sin(w * n) for w, a in parts)
        for n in range(start, start + count)
    ]


def _levels(frequencies: Sequence[float], level) -> tuple[float, ...]:
    if isinstance(level, (int, float)):
        return (float(level),) * len(frequencies)
    if len(level) != len(frequencies):
        raise ValueError("one level per frequency")
    return tuple(level)


def sine(frequencies: Sequence[float], seconds: float, level=-10.0, rate: int = RATE) -> bytes:
    """L16 audio: the sum of sines at ``frequencies``, each at ``level``
    dBm0 (one number, or one per frequency), lasting ``seconds``."""
    frequencies = tuple(frequencies)
    count = round(seconds * rate)
    return from_samples(_render(frequencies, _levels(frequencies, level), 0, count, rate))


def dtmf(key: str, seconds: float = 0.1, level=(-7.0, -5.0), rate: int = RATE) -> bytes:
    """The DTMF pair of ``key`` (0-9 * # A-D); by default the low tone at
    -7 dBm0 and the high one at -5 dBm0 (2 dB of pre-emphasis)."""
    try:
        pair = DTMF_FREQUENCIES[key.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF key: {key!r}") from None
    return sine(pair, seconds, level, rate)


@attrs.frozen
class Tone:
    """Frequencies, a level (dBm0, per frequency) and a cadence of
    (on, off) seconds repeated; an empty cadence is a continuous tone."""

    frequencies: tuple[float, ...]
    level: float = -13.0
    cadence: tuple[tuple[float, float], ...] = ()


RINGBACK = Tone((425,), -13.0, ((1.0, 4.0),))
BUSY = Tone((425,), -13.0, ((0.5, 0.5),))
CONGESTION = Tone((425,), -13.0, ((0.2, 0.2),))
DIAL = Tone((425,), -13.0)
RINGBACK_US = Tone((440, 480), -19.0, ((2.0, 4.0),))
BUSY_US = Tone((480, 620), -24.0, ((0.5, 0.5),))
DIAL_US = Tone((350, 440), -13.0)


class ToneGenerator:
    """Successive frames of a `Tone`, phase-continuous, with its cadence."""

    def __init__(self, tone: Tone, rate: int = RATE):
        self.tone = tone
        self.rate = rate
        self._position = 0  # samples since the start
        self._levels = _levels(tone.frequencies, tone.level)
        self._period = sum(round((on + off) * rate) for on, off in tone.cadence)
        self._on_ranges = []
        start = 0
        for on, off in tone.cadence:
            self._on_ranges.append((start, start + round(on * rate)))
            start += round((on + off) * rate)

    def _sounding(self, n: int) -> bool:
        if not self._period:
            return True
        phase = n % self._period
        return any(a <= phase < b for a, b in self._on_ranges)

    def frame(self, samples: int = 160) -> bytes:
        """The next ``samples`` samples as L16."""
        start = self._position
        self._position += samples
        values = _render(self.tone.frequencies, self._levels, start, samples, self.rate)
        if self._period:
            values = [v if self._sounding(start + i) else 0.0 for i, v in enumerate(values)]
        return from_samples(values)
