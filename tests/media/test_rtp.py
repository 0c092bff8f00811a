"""
RTP packets (RFC 3550 §5.1): fields, CSRCs, header extension, padding,
the errors for malformed datagrams, and round trips.
"""

import struct

import pytest
from hypothesis import given, strategies as st

from communigate.media.rtp import RTPError, RTPExtension, RTPPacket, is_rtcp, parse_rtp


def test_a_plain_packet_parses_into_its_fields():
    data = bytes.fromhex("80 00 1234 00000a00 deadbeef") + b"\xff" * 160
    packet = parse_rtp(data)
    assert packet == RTPPacket(0, 0x1234, 0xA00, 0xDEADBEEF, b"\xff" * 160)
    assert packet.serialize() == data
    assert bytes(packet) == data


def test_marker_and_payload_type_share_the_second_octet():
    packet = parse_rtp(bytes.fromhex("80 e5 0001 00000000 00000001") + b"\x0a\x80\x00\xa0")
    assert packet.marker and packet.payload_type == 101
    assert packet.serialize()[1] == 0xE5


def test_csrc_list_and_extension_come_before_the_payload():
    data = (
        bytes.fromhex("92 08 0002 00000140 00000001")  # CC=2, X
        + bytes.fromhex("00000011 00000022")
        + bytes.fromhex("bede 0001") + b"\x10\xaa\x00\x00"
        + b"payload"
    )
    packet = parse_rtp(data)
    assert packet.csrcs == (0x11, 0x22)
    assert packet.extension == RTPExtension(0xBEDE, b"\x10\xaa\x00\x00")
    assert packet.payload == b"payload"
    assert packet.serialize() == data


def test_padding_is_removed_and_counted():
    data = bytes.fromhex("a0 00 0001 00000000 00000001") + b"abcd" + b"\x00\x00\x00\x04"
    packet = parse_rtp(data)
    assert packet.payload == b"abcd" and packet.padding == 4
    assert packet.serialize() == data


def test_padding_can_take_every_octet_after_the_header():
    data = bytes.fromhex("a0 00 0001 00000000 00000001") + b"\x00\x00\x03"
    assert parse_rtp(data).payload == b""


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (bytes(11), "too short"),
    (bytes.fromhex("40 00 0001 00000000 00000001"), "version 1"),
    (bytes.fromhex("c0 00 0001 00000000 00000001"), "version 3"),
    (bytes.fromhex("83 00 0001 00000000 00000001") + bytes(8), "CSRC list of 3"),
    (bytes.fromhex("90 00 0001 00000000 00000001") + b"\xbe\xde", "extension runs past"),
    (bytes.fromhex("90 00 0001 00000000 00000001") + bytes.fromhex("bede 0002") + bytes(4),
     "extension of 2 words"),
    (bytes.fromhex("a0 00 0001 00000000 00000001") + b"ab\x00", "padding count of 0"),
    (bytes.fromhex("a0 00 0001 00000000 00000001") + b"ab\x04", "padding of 4 octets"),
    (bytes.fromhex("b0 00 0001 00000000 00000001") + bytes.fromhex("bede 0000") + b"\x05", "padding of 5"),
])
def test_malformed_packets_raise_rtp_errors_naming_the_fault(data, message):
    with pytest.raises(RTPError, match=message):
        parse_rtp(data)


@pytest.mark.parametrize("packet, message", [
    (RTPPacket(128, 0, 0, 0), "payload type"),
    (RTPPacket(0, 70000, 0, 0), "out of range"),
    (RTPPacket(0, 0, 2**32, 0), "out of range"),
    (RTPPacket(0, 0, 0, 0, csrcs=tuple(range(16))), "15 CSRCs"),
    (RTPPacket(0, 0, 0, 0, extension=RTPExtension(1, b"abc")), "multiple of 4"),
    (RTPPacket(0, 0, 0, 0, padding=256), "padding"),
])
def test_building_refuses_fields_out_of_range(packet, message):
    with pytest.raises(ValueError, match=message):
        packet.serialize()


def test_rtcp_is_told_apart_on_a_shared_port():
    assert is_rtcp(bytes.fromhex("80c8 0006"))  # SR
    assert is_rtcp(bytes.fromhex("80c9 0001"))  # RR
    assert not is_rtcp(bytes.fromhex("8000 0001"))  # PCMU
    assert not is_rtcp(bytes.fromhex("80e5 0001"))  # marker + PT 101
    assert not is_rtcp(b"\x80")


packets = st.builds(
    RTPPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 2**32 - 1), max_size=15).map(tuple),
    extension=st.none() | st.builds(
        RTPExtension, st.integers(0, 0xFFFF), st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4))
    ),
    padding=st.integers(0, 255),
)


@given(packets)
def test_every_packet_survives_a_round_trip(packet):
    assert parse_rtp(packet.serialize()) == packet


@given(st.binary(max_size=80))
def test_arbitrary_octets_parse_or_raise_rtp_error(data):
    try:
        packet = parse_rtp(data)
    except RTPError:
        return
    assert len(packet.payload) + 12 + 4 * len(packet.csrcs) + packet.padding <= len(data)


def test_struct_layout_of_the_fixed_header():
    packet = RTPPacket(8, 1, 2, 3, marker=True)
    assert struct.unpack("!BBHII", packet.serialize()) == (0x80, 0x88, 1, 2, 3)
