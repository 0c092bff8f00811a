"""
The relay's packet classifier and latching rules (communigate.media.latch):
RTP and RTCP told apart by header fields only, malformed datagrams
refused whatever they hold, and the source a party is latched to.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media.latch import (
    ADMITTED,
    LATCHED,
    REFUSED,
    PacketKind,
    Peer,
    classify,
    malformation,
)
from communigate.media.rtcp import ReceiverReport, SenderReport, compound, parse_rtcp
from communigate.media.rtp import RTPError, RTPExtension, RTPPacket, is_rtcp, parse_rtp

# -- classify ---------------------------------------------------------------------


def test_a_g711_packet_is_rtp():
    packet = RTPPacket(0, 1, 160, 0x1234, b"\xff" * 160).serialize()
    assert classify(packet) is PacketKind.RTP
    assert malformation(packet) == ""


def test_a_compound_rtcp_report_is_rtcp():
    report = compound(ReceiverReport(0x1234), "alice@example.com")
    assert classify(report) is PacketKind.RTCP


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "0 octets"),
        (b"\x80\x00\x00\x01\x00\x00\x00", "7 octets"),
        (bytes.fromhex("40 00 0001 00000000 00000001"), "version 1"),
        (bytes.fromhex("00 00 0001 00000000 00000001"), "version 0"),
        (bytes.fromhex("80 00 0001 0000 0000 00"), "shorter than the 12-octet RTP header"),
        (bytes.fromhex("83 00 0001 00000000 00000001 00000002"), "runs past the end"),  # 3 CSRCs, 1 there
        (bytes.fromhex("90 00 0001 00000000 00000001 bede 0004 00000000"), "runs past the end"),
        (bytes.fromhex("a0 00 0001 00000000 00000001 00 00 00 00"), "runs past the end"),  # pad count 0
        (bytes.fromhex("a0 00 0001 00000000 00000001 00 00 00 09"), "runs past the end"),
        (bytes.fromhex("81 c9 0007 00001234"), "RTCP length of 32 octets in a 8-octet datagram"),
        (b"\x16\xfe\xfd" + b"\x00" * 30, "version 0"),  # a DTLS record
        (b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\x00" * 12, "version 0"),  # a STUN request
    ],
)
def test_malformed_datagrams_are_neither_and_say_why(data, reason):
    assert classify(data) is None
    assert reason in malformation(data)


@given(
    payload_type=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 2**32 - 1), max_size=15),
    extension=st.none() | st.builds(RTPExtension, st.integers(0, 0xFFFF), st.binary(max_size=12).map(
        lambda b: b + bytes(-len(b) % 4))),
    payload=st.binary(max_size=300),
    padding=st.integers(0, 255),
)
def test_every_well_formed_rtp_packet_is_rtp(payload_type, marker, csrcs, extension, payload, padding):
    # Payload types 64-95 with the marker bit are the RTCP range (RFC 5761 §4).
    data = RTPPacket(payload_type, 7, 8, 9, payload, marker, tuple(csrcs), extension, padding).serialize()
    assert classify(data) is PacketKind.RTP


@given(st.binary(max_size=80))
def test_any_datagram_is_classified_without_error_and_agrees_with_the_parsers(data):
    kind = classify(data)
    if kind is PacketKind.RTP:
        parse_rtp(data)  # the full parser accepts what the classifier lets through
        assert not is_rtcp(data)
    elif kind is PacketKind.RTCP:
        assert is_rtcp(data) and data[0] >> 6 == 2
    else:
        assert malformation(data)
        if not is_rtcp(data):
            with pytest.raises(RTPError):
                parse_rtp(data)


@given(st.binary(min_size=12, max_size=80))
def test_whatever_the_rtp_parser_refuses_the_classifier_refuses(data):
    try:
        parse_rtp(data)
    except RTPError:
        assert is_rtcp(data) or classify(data) is None


def test_a_sender_report_alone_is_rtcp_and_parses():
    data = compound(SenderReport(1, 0, 0, 0, 0), "x")
    assert classify(data) is PacketKind.RTCP
    assert parse_rtcp(data)


# -- Peer -------------------------------------------------------------------------------


def test_a_party_is_latched_from_its_sdp_host_on_any_port_then_only_from_that_source():
    peer = Peer()
    peer.expect(("192.0.2.10", 4000), latch_any=False)
    assert peer.destination() == ("192.0.2.10", 4000)
    assert peer.admit(("198.51.100.1", 4000)) == REFUSED
    assert peer.admit(("192.0.2.10", 4002)) == LATCHED
    assert peer.latched == ("192.0.2.10", 4002)
    assert peer.destination() == ("192.0.2.10", 4002)
    assert peer.admit(("192.0.2.10", 4002)) == ADMITTED
    assert peer.admit(("192.0.2.10", 4000)) == REFUSED


def test_a_natted_party_is_latched_from_anywhere_and_cannot_be_reached_before():
    peer = Peer()
    peer.expect(("10.0.0.5", 4000), latch_any=True)
    assert peer.destination() is None
    assert peer.admit(("203.0.113.9", 61000)) == LATCHED
    assert peer.destination() == ("203.0.113.9", 61000)
    assert peer.admit(("203.0.113.9", 61001)) == REFUSED


def test_a_party_without_sdp_admits_nothing_unless_natted():
    peer = Peer()
    assert peer.admit(("192.0.2.10", 4000)) == REFUSED
    assert peer.destination() is None
    peer.expect(None, latch_any=True)
    assert peer.admit(("192.0.2.10", 4000)) == LATCHED


def test_the_same_address_again_keeps_the_latch_and_a_new_one_drops_it():
    peer = Peer()
    peer.expect(("192.0.2.10", 4000), latch_any=False)
    peer.admit(("192.0.2.10", 4000))
    assert peer.expect(("192.0.2.10", 4000), latch_any=False) is False
    assert peer.latched == ("192.0.2.10", 4000)
    assert peer.expect(("192.0.2.20", 5000), latch_any=False) is True
    assert peer.latched is None
    assert peer.destination() == ("192.0.2.20", 5000)
    assert peer.admit(("192.0.2.10", 4000)) == REFUSED
    assert peer.admit(("192.0.2.20", 5000)) == LATCHED


def test_a_hold_address_or_port_zero_leaves_the_expectation_alone():
    peer = Peer()
    peer.expect(("192.0.2.10", 4000), latch_any=False)
    peer.admit(("192.0.2.10", 4000))
    assert peer.expect(("0.0.0.0", 4000), latch_any=False) is False
    assert peer.expect(("192.0.2.10", 0), latch_any=False) is False
    assert peer.expected == ("192.0.2.10", 4000) and peer.latched == ("192.0.2.10", 4000)


def test_ipv6_addresses_are_compared_in_canonical_form():
    peer = Peer()
    peer.expect(("2001:DB8:0:0::10", 4000), latch_any=False)
    assert peer.admit(("2001:db8::10", 4000, 0, 0)) == LATCHED
    assert peer.latched == ("2001:db8::10", 4000)


def test_a_host_name_in_sdp_is_never_resolved_the_party_is_latched_from_anywhere():
    peer = Peer()
    peer.expect(("phone.example.com", 4000), latch_any=False)
    assert peer.expected is None and peer.latch_any
    assert peer.destination() is None
    assert peer.admit(("192.0.2.10", 4000)) == LATCHED
