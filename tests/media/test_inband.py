"""
In-band DTMF detection: every key at telephone levels, through G.711, with
noise, twist and frequency error; and signals that must not trigger it
(noise, speech-like voiced sounds, music, call-progress tones); the
stream detector's once-per-press reporting.
"""

import math
import random

import pytest
from hypothesis import given, strategies as st

from communigate.media import g711, pcm, tones
from communigate.media.inband import DTMFDetector, detect_key

KEYS = "0123456789*#ABCD"


def noise(seconds, rms, seed=1):
    rng = random.Random(seed)
    return pcm.from_samples(rng.gauss(0, rms) for _ in range(round(seconds * 8000)))


def voiced(seconds, f0, formants=(700, 1220, 2600), level=8000.0, seed=2, vibrato=0.0):
    """A vowel-like sound: harmonics of a (possibly gliding) f0 shaped by
    three formant resonances, with a little jitter."""
    rng = random.Random(seed)
    count = round(seconds * 8000)
    harmonics = []
    for h in range(1, int(3800 / f0) + 1):
        f = h * f0
        gain = sum(1.0 / (1 + ((f - fm) / 90.0) ** 2) for fm in formants) + 0.02
        harmonics.append((h, gain, rng.uniform(0, 2 * math.pi)))
    total = sum(g for _, g, _ in harmonics)
    out = []
    phase = 0.0
    for n in range(count):
        f = f0 * (1 + vibrato * math.sin(2 * math.pi * 5 * n / 8000))
        phase += 2 * math.pi * f / 8000
        out.append(level / total * sum(g * math.sin(h * phase + p) for h, g, p in harmonics))
    return pcm.from_samples(out)


def blocks(audio, size=160):
    return [audio[i:i + 2 * size] for i in range(0, len(audio) - 2 * size + 1, 2 * size)]


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_detected_at_a_normal_level(key):
    assert detect_key(tones.dtmf(key, 0.02)) == key


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("key", KEYS)
def test_every_key_survives_g711_at_minus_25_dbm0_with_noise(law, key):
    audio = pcm.mix([tones.dtmf(key, 0.02, level=(-25, -25)), noise(0.02, 150, seed=ord(key))])
    through = getattr(g711, f"{law}_decode")(getattr(g711, f"{law}_encode")(audio))
    assert detect_key(through) == key


def test_twist_within_limits_is_accepted_and_beyond_refused():
    assert detect_key(tones.sine((770, 1336), 0.02, level=(-10, -17))) == "5"   # row 7 dB up
    assert detect_key(tones.sine((770, 1336), 0.02, level=(-10, -20))) is None  # row 10 dB up
    assert detect_key(tones.sine((770, 1336), 0.02, level=(-13, -10))) == "5"   # column 3 dB up
    assert detect_key(tones.sine((770, 1336), 0.02, level=(-16, -10))) is None  # column 6 dB up


def test_frequency_error_of_one_and_a_half_percent_is_accepted():
    assert detect_key(tones.sine((941 * 1.015, 1477 * 0.985), 0.02, level=-10)) == "#"


def test_too_quiet_a_key_is_not_detected():
    assert detect_key(tones.dtmf("1", 0.02, level=(-45, -45))) is None
    assert detect_key(bytes(320)) is None
    assert detect_key(b"\x00\x01" * 10) is None  # too short a block


@pytest.mark.parametrize("name, audio", [
    ("white noise", noise(1.0, 3000)),
    ("loud white noise", noise(1.0, 12000, seed=5)),
    ("vowel a, 120 Hz", voiced(1.0, 120)),
    ("vowel i, 220 Hz", voiced(1.0, 220, formants=(280, 2250, 2900), seed=3)),
    ("vowel u, 140 Hz with vibrato", voiced(1.0, 140, formants=(310, 870, 2250), vibrato=0.03)),
    ("vowel o, 175 Hz", voiced(1.0, 175, formants=(450, 800, 2830), seed=4)),
    ("A major chord", tones.sine((440, 554.37, 659.26), 1.0, level=-10)),
    ("two-note interval", tones.sine((697, 880), 1.0, level=-10)),
    ("dial tone", tones.sine((350, 440), 1.0, level=-13)),
    ("US ringback", tones.sine((440, 480), 1.0, level=-13)),
    ("European tone", tones.sine((425,), 1.0, level=-10)),
    ("row tone alone", tones.sine((852,), 1.0, level=-10)),
    ("column tone alone", tones.sine((1336,), 1.0, level=-10)),
    ("two row tones", tones.sine((697, 852), 1.0, level=-10)),
    ("key under loud speech", pcm.mix([tones.dtmf("5", 1.0, level=(-30, -30)), voiced(1.0, 120, level=12000)])),
])
def test_signals_that_are_not_keys_do_not_trigger(name, audio):
    assert [k for k in map(detect_key, blocks(audio)) if k] == []
    assert DTMFDetector().feed(audio) == []


def frames(audio):
    return [audio[i:i + 320] for i in range(0, len(audio), 320)]


def test_the_stream_detector_reports_each_press_once():
    silence = bytes(2 * 480)  # 60 ms
    audio = b"".join(tones.dtmf(k, 0.08) + silence for k in "1599#")
    detector = DTMFDetector()
    keys = [k for f in frames(audio) for k in detector.feed(f)]
    assert keys == list("1599#")


def test_a_long_press_is_one_key_and_a_short_blip_none():
    detector = DTMFDetector()
    assert [k for f in frames(tones.dtmf("7", 1.0)) for k in detector.feed(f)] == ["7"]
    assert DTMFDetector().feed(bytes(320) + tones.dtmf("7", 0.03) + bytes(320)) == []
    assert DTMFDetector().feed(bytes(320) + tones.dtmf("7", 0.05) + bytes(320)) == ["7"]


def test_a_dropout_inside_a_press_does_not_make_two():
    press = tones.dtmf("3", 0.2)
    audio = press[:1600] + bytes(160) + press[1760:]  # 10 ms hole after 100 ms
    assert DTMFDetector().feed(audio) == ["3"]


def test_keys_inside_speech_are_still_found():
    speech = voiced(0.3, 130, level=3000)
    audio = speech + pcm.mix([tones.dtmf("8", 0.1, level=(-8, -6)), speech[:1600]]) + speech
    assert DTMFDetector().feed(audio) == ["8"]


def test_a_40_ms_pause_separates_two_presses_of_one_key():
    audio = tones.dtmf("1", 0.06) + bytes(2 * 320) + tones.dtmf("1", 0.06)
    assert DTMFDetector().feed(audio) == ["1", "1"]


@pytest.mark.parametrize("formants", [(700, 1220, 2600), (280, 2250, 2900), (450, 800, 2830), (310, 870, 2250)])
def test_no_voice_pitch_from_80_to_320_hz_triggers(formants):
    for f0 in range(80, 321, 8):
        audio = voiced(0.2, f0, formants=formants, seed=f0, vibrato=0.01)
        assert DTMFDetector().feed(audio) == [], f"f0={f0}"


@given(st.lists(st.integers(-32768, 32767), min_size=160, max_size=160))
def test_a_block_made_of_two_halves_has_the_powers_goertzel_gives_the_whole(samples):
    from communigate.media.analysis import goertzel_power
    from communigate.media.inband import _block_powers, _COLUMNS, _Half, _ROWS

    first, second = _Half(samples[:80]), _Half(samples[80:])
    for frequencies in (_ROWS, _COLUMNS):
        expected = [goertzel_power(samples, f) for f in frequencies]
        got = _block_powers(first, second, frequencies)
        scale = max(1.0, max(expected))
        assert all(abs(g - e) <= 1e-9 * scale for g, e in zip(got, expected))
    assert first.energy + second.energy == sum(x * x for x in samples)


def _reference_key(samples):
    """The detector's rules written out plainly (every power computed)."""
    from communigate.media.analysis import goertzel_power
    from communigate.media.tones import DTMF_COLUMNS, DTMF_KEYS, DTMF_ROWS

    n = len(samples)
    energy = sum(x * x for x in samples)
    floor = (400.0 * n / 2) ** 2
    if energy * n / 2 < 2 * floor:
        return None
    rows = [goertzel_power(samples, f) for f in DTMF_ROWS]
    columns = [goertzel_power(samples, f) for f in DTMF_COLUMNS]
    r, c = max(range(4), key=rows.__getitem__), max(range(4), key=columns.__getitem__)
    if any(p * 4 > rows[r] for i, p in enumerate(rows) if i != r) or rows[r] < floor:
        return None
    if any(p * 4 > columns[c] for i, p in enumerate(columns) if i != c) or columns[c] < floor:
        return None
    if rows[r] > columns[c] * 10 ** 0.8 or columns[c] > rows[r] * 10 ** 0.4:
        return None
    if 2.0 * (rows[r] + columns[c]) / (n * energy) < 0.6:
        return None
    return DTMF_KEYS[r][c]


@given(
    row=st.sampled_from([697, 770, 852, 941, 600, 1000]),
    column=st.sampled_from([1209, 1336, 1477, 1633, 1100, 1800]),
    row_level=st.floats(-40, -3),
    column_level=st.floats(-40, -3),
    noise=st.floats(0, 3000),
    seed=st.integers(0, 2**16),
)
def test_the_detector_agrees_with_the_rules_written_out(row, column, row_level, column_level, noise, seed):
    rng = random.Random(seed)
    tone = pcm.to_samples(tones.sine((row, column), 0.02, level=(row_level, column_level)))
    samples = [max(-32768, min(32767, x + round(rng.gauss(0, noise)))) for x in tone]
    expected = _reference_key(samples)
    assert detect_key(samples) == expected
    detector = DTMFDetector(min_blocks=1)
    keys = detector.feed(pcm.from_samples(samples[:80])) + detector.feed(pcm.from_samples(samples[80:]))
    assert keys == ([] if expected is None else [expected])
