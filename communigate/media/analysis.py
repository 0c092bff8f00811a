"""
Measuring audio: what a test (or a detector) asks of a block of samples.

Samples are any sequence of numbers (an ``array('h')`` from
`communigate.media.pcm.to_samples`, a list); L16 octets are accepted too
and converted.

- `goertzel_power(samples, f)`: |X(f)|², the squared magnitude of the
  block's discrete Fourier transform at exactly ``f`` Hz (the Goertzel
  recurrence; ``f`` need not fall on a bin).
- `energy_fraction(samples, f)`: that power as a share of the block's
  energy, scaled so that a pure sine at ``f`` gives about 1.0 and a block
  without it about 0.0 — "does A hear 440 Hz, and not its own 1 kHz?"
  is ``energy_fraction(block, 440) > 0.5 and energy_fraction(block, 1000) < 0.01``.
- `tone_amplitude(samples, f)`: the peak amplitude of the ``f`` component.
- `dominant_frequency(samples)`: the strongest frequency, from a Hann-
  windowed FFT refined with Goertzel in 1 Hz steps.
- `rms`, `level_dbfs` (0 dBFS: a full-scale square wave, so a full-scale
  sine is -3 dBFS).

All pure Python; fine for tests and one detector per channel, not for bulk
analysis.
"""

from __future__ import annotations

import cmath
import math
from typing import Sequence

from communigate.media.pcm import to_samples

__all__ = [
    "goertzel_power",
    "energy_fraction",
    "tone_amplitude",
    "dominant_frequency",
    "rms",
    "level_dbfs",
]


def _samples(samples) -> Sequence[float]:
    if isinstance(samples, (bytes, bytearray, memoryview)):
        return to_samples(bytes(samples))
    return samples


def goertzel_power(samples, frequency: float, rate: int = 8000) -> float:
    """|X(f)|² of the block at ``frequency`` Hz."""
    samples = _samples(samples)
    coefficient = 2.0 * math.cos(2.0 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


def energy_fraction(samples, frequency: float, rate: int = 8000) -> float:
    """The share of the block's energy at ``frequency`` (≈1 for a pure sine
    there, ≈0 without it; 0.0 for a silent block)."""
    samples = _samples(samples)
    energy = math.fsum(x * x for x in samples)
    if not energy:
        return 0.0
    return 2.0 * goertzel_power(samples, frequency, rate) / (len(samples) * energy)


def tone_amplitude(samples, frequency: float, rate: int = 8000) -> float:
    """Peak amplitude of the block's component at ``frequency``."""
    samples = _samples(samples)
    if not samples:
        return 0.0
    return 2.0 * math.sqrt(max(0.0, goertzel_power(samples, frequency, rate))) / len(samples)


def rms(samples) -> float:
    samples = _samples(samples)
    if not samples:
        return 0.0
    return math.sqrt(math.fsum(x * x for x in samples) / len(samples))


def level_dbfs(samples) -> float:
    """RMS level relative to 32768 (-inf for silence)."""
    value = rms(samples)
    return 20.0 * math.log10(value / 32768.0) if value else float("-inf")


def _fft(values: list[complex]) -> list[complex]:
    """Iterative radix-2 FFT; ``len(values)`` is a power of two."""
    n = len(values)
    out = list(values)
    j = 0
    for i in range(1, n):
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            out[i], out[j] = out[j], out[i]
    size = 2
    while size <= n:
        step = cmath.exp(-2j * math.pi / size)
        half = size // 2
        twiddles = [step ** k for k in range(half)]
        for start in range(0, n, size):
            for k in range(half):
                a = out[start + k]
                b = out[start + k + half] * twiddles[k]
                out[start + k] = a + b
                out[start + k + half] = a - b
        size *= 2
    return out


def dominant_frequency(samples, rate: int = 8000, *, max_samples: int = 2048) -> float:
    """The frequency (Hz, to about 1 Hz for a steady tone) of the strongest
    component of the first ``max_samples`` samples; 0.0 for silence."""
    samples = list(_samples(samples))[:max_samples]
    if len(samples) < 16 or not any(samples):
        return 0.0
    n = 1 << (len(samples).bit_length() - 1)  # largest power of two that fits
    block = samples[:n]
    mean = sum(block) / n
    window = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
    spectrum = _fft([complex((x - mean) * w) for x, w in zip(block, window)])
    peak = max(range(1, n // 2), key=lambda k: abs(spectrum[k]))
    bin_width = rate / n
    centre = peak * bin_width
    # Refine with Goertzel on the windowed block, 1 Hz steps around the bin.
    windowed = [(x - mean) * w for x, w in zip(block, window)]
    span = int(bin_width) + 1
    candidates = [centre + d for d in range(-span, span + 1) if 0 < centre + d < rate / 2]
    return float(max(candidates, key=lambda f: goertzel_power(windowed, f, rate)))
