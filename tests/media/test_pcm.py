"""
L16 frames as numbers, and the mixer's sums (saturated, each party without
its own frame).
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media import pcm

sample = st.integers(-32768, 32767)


def frame(*values):
    return pcm.from_samples(values)


def test_samples_round_trip_through_l16_octets():
    assert pcm.from_samples([1, -2, 32767, -32768]) == b"\x01\x00\xfe\xff\xff\x7f\x00\x80"
    assert list(pcm.to_samples(b"\x01\x00\xfe\xff")) == [1, -2]


def test_from_samples_rounds_floats_and_saturates():
    assert list(pcm.to_samples(pcm.from_samples([0.6, -0.6, 40000, -40000.0]))) == [1, -1, 32767, -32768]


def test_odd_octet_count_is_refused():
    with pytest.raises(ValueError, match="even number"):
        pcm.to_samples(b"\x00")


def test_mix_sums_and_saturates():
    assert list(pcm.to_samples(pcm.mix([frame(1, 30000, -30000), frame(2, 30000, -30000)]))) == [3, 32767, -32768]
    assert pcm.mix([]) == b""
    assert pcm.mix([frame(5)]) == frame(5)


def test_mix_minus_gives_each_party_the_others_only():
    a, b, c = frame(100, 1), frame(20, 2), frame(3, 4)
    heard = [list(pcm.to_samples(f)) for f in pcm.mix_minus([a, b, c])]
    assert heard == [[23, 6], [103, 5], [120, 3]]
    assert pcm.mix_minus([a]) == [frame(0, 0)]
    assert pcm.mix_minus([]) == []


@given(st.lists(st.lists(sample, min_size=4, max_size=4), min_size=1, max_size=8))
def test_mix_minus_equals_the_saturated_sum_of_the_others(parties):
    frames = [pcm.from_samples(p) for p in parties]
    for i, heard in enumerate(pcm.mix_minus(frames)):
        others = [p for j, p in enumerate(parties) if j != i]
        expected = [max(-32768, min(32767, sum(col))) for col in zip(*others)] if others else [0] * 4
        assert list(pcm.to_samples(heard)) == expected
