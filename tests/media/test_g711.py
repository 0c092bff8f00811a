"""
G.711 against the standard: the 256 output values of each law from the
segment tables of ITU-T G.711 (written here as segment edges and steps,
independently of the module's formula), and the encoder over all 65,536
16-bit inputs against the standard's decision intervals.
"""

import array
import bisect
import sys

import pytest
from hypothesis import given, strategies as st

from communigate.media import g711

# G.711 Table 2a (µ-law), positive half, 14-bit scale: segment edges and
# the step inside each segment.  Segment 0 starts with the zero interval
# [0, 1), output 0; every other interval's output is its midpoint.
ULAW_EDGES = [1, 31, 95, 223, 479, 991, 2015, 4063, 8159]
ULAW_STEPS = [2, 4, 8, 16, 32, 64, 128, 256]
# G.711 Table 1a (A-law), positive half, 13-bit scale (segments 1 and 2 of
# the standard share the step 2 and are segment 0 and 1 of the code).
ALAW_EDGES = [0, 32, 64, 128, 256, 512, 1024, 2048, 4096]
ALAW_STEPS = [2, 2, 4, 8, 16, 32, 64, 128]


def ulaw_intervals():
    """(code, lower decision value, output value) on the 14-bit scale."""
    out = [(0xFF, 0, 0)]
    for segment, step in enumerate(ULAW_STEPS):
        low = ULAW_EDGES[segment]
        for i in range(1 if segment == 0 else 0, 16):
            start = low + (i - 1) * step if segment == 0 else low + i * step
            out.append((0xFF - (16 * segment + i), start, start + step // 2))
    return out


def alaw_intervals():
    """(code, lower decision value, output value) on the 13-bit scale."""
    out = []
    for segment, step in enumerate(ALAW_STEPS):
        for i in range(16):
            start = ALAW_EDGES[segment] + i * step
            out.append(((0x80 | (segment << 4) | i) ^ 0x55, start, start + step // 2))
    return out


def expected_values(intervals, scale, negative_code):
    values = {}
    for code, _, output in intervals:
        values[code] = output * scale
        values[negative_code(code)] = -output * scale
    return values


ULAW_EXPECTED = expected_values(ulaw_intervals(), 4, lambda c: c & 0x7F)
ALAW_EXPECTED = expected_values(alaw_intervals(), 8, lambda c: c & 0x7F)


def test_the_standard_tables_written_here_cover_every_code_once():
    assert sorted(ULAW_EXPECTED) == list(range(256))
    assert sorted(ALAW_EXPECTED) == list(range(256))


def test_every_ulaw_code_decodes_to_the_standard_value_times_four():
    table = g711.ulaw_decode_table()
    assert {code: table[code] for code in range(256)} == ULAW_EXPECTED


def test_every_alaw_code_decodes_to_the_standard_value_times_eight():
    table = g711.alaw_decode_table()
    assert {code: table[code] for code in range(256)} == ALAW_EXPECTED


@pytest.mark.parametrize("code, value", [
    (0xFF, 0), (0x7F, 0), (0x00, -32124), (0x80, 32124), (0xFE, 8), (0x7E, -8),
    (0xF0, 120), (0xEF, 132), (0xE0, 372), (0xDF, 396),
])
def test_ulaw_anchor_values(code, value):
    assert g711.ulaw_decode_table()[code] == value
    assert g711.ulaw_decode(bytes([code])) == value.to_bytes(2, "little", signed=True)


@pytest.mark.parametrize("code, value", [
    (0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24),
    (0xC5, 264), (0xF5, 528),
])
def test_alaw_anchor_values(code, value):
    assert g711.alaw_decode_table()[code] == value
    assert g711.alaw_decode(bytes([code])) == value.to_bytes(2, "little", signed=True)


# --------------------------------------------------------------- encoding
ALL_INPUTS = range(-32768, 32768)
ALL_L16 = array.array("h", ALL_INPUTS)
if sys.byteorder != "little":
    ALL_L16.byteswap()
ALL_L16 = ALL_L16.tobytes()


def reference_encode(intervals, scale, negative_code, top):
    """Encoder straight from the decision intervals: the interval whose
    lower decision value is the largest not above |x| / scale."""
    intervals = sorted(intervals, key=lambda item: item[1])
    lows = [low for _, low, _ in intervals]
    codes = [code for code, _, _ in intervals]

    def encode(x):
        magnitude = min(abs(x) / scale, top)
        code = codes[bisect.bisect_right(lows, magnitude) - 1]
        return negative_code(code) if x < 0 else code

    return encode


@pytest.mark.parametrize("law, intervals, scale, top", [
    ("ulaw", ulaw_intervals(), 4, 8159),
    ("alaw", alaw_intervals(), 8, 4096),
])
def test_every_16_bit_input_encodes_to_the_code_of_its_decision_interval(law, intervals, scale, top):
    encoded = getattr(g711, f"{law}_encode")(ALL_L16)
    assert len(encoded) == 65536
    reference = reference_encode(intervals, scale, lambda c: c & 0x7F, top)
    wrong = [x for x, code in zip(ALL_INPUTS, encoded) if code != reference(x)]
    assert wrong == []
    # The single-sample encoder is the same function.
    single = getattr(g711, f"{law}_encode_sample")
    assert all(single(x) == code for x, code in zip(ALL_INPUTS[::97], encoded[::97]))


def segment_edge_exceptions(edges, steps, scale, first_segment):
    """Inputs nearer the last level of a segment than the first level of
    the next, which G.711 nevertheless puts in the next (its decision value
    is the segment edge, not the midpoint between the two levels)."""
    out = set()
    for segment in range(first_segment, len(steps)):
        edge = edges[segment] * scale
        below = (edges[segment] - steps[segment - 1] // 2) * scale
        above = (edges[segment] + steps[segment] // 2) * scale
        for x in range(edge, 32768):
            if abs(x - below) < abs(above - x):
                out.add(x)
                out.add(-x)
            else:
                break
    return out


@pytest.mark.parametrize("law, edges, steps, scale, first_segment", [
    ("ulaw", ULAW_EDGES, ULAW_STEPS, 4, 1),
    ("alaw", ALAW_EDGES, ALAW_STEPS, 8, 2),
])
def test_decoded_value_is_the_nearest_level_except_just_above_segment_edges(
        law, edges, steps, scale, first_segment):
    decoded = array.array("h")
    decoded.frombytes(getattr(g711, f"{law}_decode")(getattr(g711, f"{law}_encode")(ALL_L16)))
    if sys.byteorder != "little":
        decoded.byteswap()
    levels = sorted(set(getattr(g711, f"{law}_decode_table")()))
    exceptions = set()
    for x, y in zip(ALL_INPUTS, decoded):
        i = bisect.bisect_left(levels, x)
        neighbours = levels[max(0, i - 1):i + 1]
        best = min(abs(level - x) for level in neighbours)
        if abs(y - x) != best:
            exceptions.add(x)
        elif x != 0 and sum(abs(level - x) == best for level in neighbours) == 2:
            assert abs(y) > abs(x), f"tie at {x} should go away from zero, went to {y}"
    assert exceptions == segment_edge_exceptions(edges, steps, scale, first_segment)
    # Even there the error stays within half a step of the upper segment.
    for x, y in zip(ALL_INPUTS, decoded):
        if x in exceptions:
            assert abs(y - x) <= max(steps) * scale // 2


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_encoding_is_symmetric_in_sign(law):
    encoded = getattr(g711, f"{law}_encode")(ALL_L16)
    table = getattr(g711, f"{law}_decode_table")()
    value = dict(zip(ALL_INPUTS, (table[c] for c in encoded)))
    assert all(value[-x] == -value[x] for x in range(1, 32768))
    assert value[-32768] == value[-32767]


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_every_code_survives_decode_then_encode(law):
    codes = bytes(range(256))
    again = getattr(g711, f"{law}_encode")(getattr(g711, f"{law}_decode")(codes))
    if law == "ulaw":
        # Negative zero (0x7F) decodes to 0, which encodes as positive zero.
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes


def test_zero_and_small_inputs():
    assert g711.ulaw_encode_sample(0) == 0xFF
    assert g711.ulaw_encode_sample(-1) == 0x7F
    assert g711.alaw_encode_sample(0) == 0xD5
    assert g711.alaw_encode_sample(-1) == 0x55


def test_named_codecs_and_silence():
    frame = bytes(320)
    assert g711.encode("PCMU", frame) == g711.silence("PCMU") == b"\xff" * 160
    assert g711.encode("pcma", frame) == g711.silence("PCMA") == b"\xd5" * 160
    assert g711.decode("PCMU", b"\xff") == b"\x00\x00"
    with pytest.raises(ValueError, match="not a G.711 codec"):
        g711.encode("G729", frame)


def test_odd_length_l16_is_refused():
    with pytest.raises(ValueError, match="even number"):
        g711.ulaw_encode(b"\x00\x01\x02")
    assert g711.ulaw_encode(b"") == b""
    assert g711.alaw_encode(b"\x00\x00") == b"\xd5"


@given(st.binary(max_size=400))
def test_decode_length_doubles_and_reencode_is_stable(data):
    for law in ("ulaw", "alaw"):
        pcm = getattr(g711, f"{law}_decode")(data)
        assert len(pcm) == 2 * len(data)
        again = getattr(g711, f"{law}_encode")(pcm)
        assert getattr(g711, f"{law}_decode")(again) == pcm
