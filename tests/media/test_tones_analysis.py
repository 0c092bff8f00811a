"""
Tone generation (levels, DTMF pairs, cadences, phase continuity) and the
analysis helpers the integration tests rely on.
"""

import math

import pytest

from communigate.media import analysis, g711, pcm, tones
from communigate.media.tones import Tone, ToneGenerator


def samples(audio):
    return pcm.to_samples(audio)


def test_a_0_dbm0_sine_peaks_3_14_db_below_full_scale():
    block = samples(tones.sine([1000], 0.1, level=0.0))
    assert max(block) == pytest.approx(22827, abs=2)
    assert tones.amplitude(-6.0) == pytest.approx(22827 / 10 ** 0.3, rel=1e-3)


def test_sine_length_and_sum_of_frequencies():
    audio = tones.sine([440, 1000], 0.5, level=(-10, -20))
    assert len(audio) == 2 * 4000
    assert analysis.tone_amplitude(audio, 440) == pytest.approx(tones.amplitude(-10), rel=0.01)
    assert analysis.tone_amplitude(audio, 1000) == pytest.approx(tones.amplitude(-20), rel=0.01)
    with pytest.raises(ValueError, match="one level per frequency"):
        tones.sine([440, 480], 0.1, level=(-10,))


def test_energy_fraction_tells_which_tone_a_block_holds():
    a440 = tones.sine([440], 0.2)
    assert analysis.energy_fraction(a440, 440) == pytest.approx(1.0, abs=0.02)
    assert analysis.energy_fraction(a440, 1000) < 0.001
    mixed = pcm.mix([tones.sine([440], 0.2), tones.sine([1000], 0.2)])
    assert analysis.energy_fraction(mixed, 440) == pytest.approx(0.5, abs=0.02)
    assert analysis.energy_fraction(mixed, 1000) == pytest.approx(0.5, abs=0.02)
    assert analysis.energy_fraction(bytes(320), 440) == 0.0


@pytest.mark.parametrize("frequency", [300, 425, 440, 1000, 1633, 3100])
def test_dominant_frequency_finds_a_tone_to_a_few_hertz(frequency):
    audio = tones.sine([frequency], 0.25, level=-20)
    assert analysis.dominant_frequency(audio) == pytest.approx(frequency, abs=3)


def test_dominant_frequency_survives_g711_and_a_weaker_second_tone():
    audio = tones.sine([440, 1000], 0.25, level=(-10, -25))
    through = g711.ulaw_decode(g711.ulaw_encode(audio))
    assert analysis.dominant_frequency(through) == pytest.approx(440, abs=3)
    assert analysis.dominant_frequency(bytes(400)) == 0.0


def test_levels_and_rms():
    audio = tones.sine([1000], 0.1, level=0.0)
    assert analysis.rms(audio) == pytest.approx(22827 / math.sqrt(2), rel=0.01)
    assert analysis.level_dbfs(audio) == pytest.approx(-3.14 - 3.01, abs=0.05)
    assert analysis.level_dbfs(bytes(10)) == float("-inf")
    assert analysis.rms([]) == 0.0 and analysis.tone_amplitude([], 1) == 0.0


def test_dtmf_pairs_follow_the_keypad():
    assert tones.DTMF_FREQUENCIES["1"] == (697, 1209)
    assert tones.DTMF_FREQUENCIES["#"] == (941, 1477)
    audio = tones.dtmf("9", 0.1)
    assert analysis.energy_fraction(audio, 852) + analysis.energy_fraction(audio, 1477) > 0.95
    with pytest.raises(ValueError):
        tones.dtmf("x")


def test_generator_frames_are_phase_continuous():
    generator = ToneGenerator(Tone((425,), -13.0))
    joined = b"".join(generator.frame() for _ in range(10))
    assert joined == tones.sine([425], 0.2, level=-13.0)


def test_ringback_cadence_is_one_second_on_four_off():
    generator = ToneGenerator(tones.RINGBACK)
    frames = [generator.frame() for _ in range(250 * 2)]  # 10 s in 20 ms frames
    sounding = [analysis.rms(f) > 100 for f in frames]
    assert sounding[:50] == [True] * 50
    assert sounding[50:250] == [False] * 200
    assert sounding[250:300] == [True] * 50
    assert analysis.dominant_frequency(b"".join(frames[:20])) == pytest.approx(425, abs=3)


def test_us_busy_tone_has_two_frequencies_and_half_second_cadence():
    generator = ToneGenerator(tones.BUSY_US)
    frames = [generator.frame() for _ in range(100)]
    sounding = [analysis.rms(f) > 10 for f in frames]
    assert sounding == ([True] * 25 + [False] * 25) * 2
    block = b"".join(frames[:25])
    assert analysis.energy_fraction(block, 480) + analysis.energy_fraction(block, 620) > 0.95
