"""
RTCP (RFC 3550 §6): SR, RR, SDES, BYE, other types, compound packets and
their A.2 validity checks, NTP helpers, and the A.7 report interval.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media import rtcp
from communigate.media.rtcp import (
    Goodbye,
    RTCPError,
    RTCPPacket,
    ReceiverReport,
    ReportBlock,
    SDESChunk,
    SenderReport,
    SourceDescription,
    compound,
    parse_rtcp,
    rtcp_interval,
    serialize_compound,
)

BLOCK = ReportBlock(0x22222222, 25, 7, 0x0001FFFF, 80, 0x12345678, 32768)
SR_BYTES = bytes.fromhex(
    "81c8000c" "11111111" "e3a1b2c300000000" "000001f4" "00000032" "00001f40"
    "22222222" "19000007" "0001ffff" "00000050" "12345678" "00008000"
)


def test_a_sender_report_with_one_block_has_the_rfc_layout():
    report = SenderReport(0x11111111, 0xE3A1B2C3_00000000, 500, 50, 8000, (BLOCK,))
    assert report.serialize() == SR_BYTES
    assert parse_rtcp(SR_BYTES) == (report,)


def test_an_empty_receiver_report_is_two_words():
    assert ReceiverReport(0xAABBCCDD).serialize() == bytes.fromhex("80c90001aabbccdd")
    assert parse_rtcp(bytes.fromhex("80c90001aabbccdd")) == (ReceiverReport(0xAABBCCDD),)


def test_cumulative_lost_is_signed_24_bits_and_clamped_on_output():
    negative = ReportBlock(1, 0, -3)
    data = ReceiverReport(9, (negative,)).serialize()
    assert data[12:16] == bytes.fromhex("00fffffd")
    assert parse_rtcp(data)[0].reports[0].cumulative_lost == -3
    huge = ReceiverReport(9, (ReportBlock(1, 0, 10**9), ReportBlock(2, 0, -(10**9)))).serialize()
    blocks = parse_rtcp(huge)[0].reports
    assert [b.cumulative_lost for b in blocks] == [0x7FFFFF, -0x800000]


def test_sdes_cname_chunk_is_null_terminated_and_word_aligned():
    sdes = SourceDescription.with_cname(0x11111111, "alice@192.0.2.1")
    data = sdes.serialize()
    # 4 header + 4 SSRC + 2 + 15 item + 3 nulls = 28
    assert data[:4] == bytes.fromhex("81ca0006") and len(data) == 28
    assert data.endswith(b"192.0.2.1\x00\x00\x00")
    parsed = parse_rtcp(data, compound=False)[0]
    assert parsed == sdes and parsed.chunks[0].cname == "alice@192.0.2.1"


def test_sdes_chunk_of_a_whole_word_gets_a_full_null_word():
    chunk = SDESChunk(1, ((rtcp.SDES_CNAME, b"ab"),))  # 4 + 2 + 2 = 8 octets
    assert chunk.serialize() == bytes.fromhex("00000001") + b"\x01\x02ab" + bytes(4)
    two = SourceDescription((chunk, SDESChunk(2, ((rtcp.SDES_TOOL, b"x"), (rtcp.SDES_NOTE, b"")))))
    assert parse_rtcp(two.serialize(), compound=False) == (two,)
    assert two.chunks[1].cname is None


def test_bye_with_and_without_reason():
    assert Goodbye((5,)).serialize() == bytes.fromhex("81cb000100000005")
    bye = Goodbye((5, 6), "hang up")
    data = bye.serialize()
    assert data[:4] == bytes.fromhex("82cb0004") and data[12:20] == b"\x07hang up"
    assert parse_rtcp(data, compound=False) == (bye,)


def test_other_packet_types_are_kept_as_count_and_body():
    app = RTCPPacket(rtcp.APP, 3, b"\x00\x00\x00\x01name" + b"data")
    assert parse_rtcp(app.serialize(), compound=False) == (app,)


def test_a_compound_report_carries_sr_sdes_and_bye():
    report = SenderReport(7, 1, 2, 3, 4)
    data = compound(report, "bob@example.com", Goodbye((7,), "bye"))
    sr, sdes, bye = parse_rtcp(data)
    assert sr == report and sdes.chunks[0].ssrc == 7 and sdes.chunks[0].cname == "bob@example.com"
    assert bye == Goodbye((7,), "bye")
    assert len(parse_rtcp(compound(ReceiverReport(7), "x"))) == 2


def test_compound_must_start_with_a_report():
    with pytest.raises(ValueError, match="starts with a sender or receiver report"):
        serialize_compound([Goodbye((1,))])


RR = bytes.fromhex("80c90001aabbccdd")


@pytest.mark.parametrize("data, message", [
    (b"\x80\xc9", "too short"),
    (Goodbye((1,)).serialize(), "starts with a SR or RR"),
    (bytes.fromhex("40c90001aabbccdd"), "starts with a SR or RR"),
    (bytes.fromhex("a0c90002aabbccdd00000004"), "starts with a SR or RR"),  # padded first packet
    (RR + bytes.fromhex("40cb000100000001"), "version 1"),
    (RR + b"\x81\xcb", "header runs past"),
    (RR + bytes.fromhex("81cb0002") + bytes(4), "runs past the end"),
    (bytes.fromhex("80c90000"), "receiver report too short"),
    (bytes.fromhex("81c90001aabbccdd"), "1 report blocks is too short"),
    (bytes.fromhex("80c8000111111111"), "sender report too short"),
    (RR + bytes.fromhex("a1cb000200000001") + bytes.fromhex("80c90001aabbccdd"), "not the last"),
    (RR + bytes.fromhex("a1cb000200000001 00000000"), "padding count 0"),
    (RR + bytes.fromhex("a1cb000200000001 00000009"), "padding count 9"),
    (RR + bytes.fromhex("81ca0001 00000001"), "not terminated"),
    (RR + bytes.fromhex("81ca0002 00000001 0109616200"), "runs past the end"),
    (RR + bytes.fromhex("81ca0002 00000001 01056162"), "item runs past"),
    (RR + bytes.fromhex("82ca0002 00000001 01000000"), "chunk runs past"),
    (RR + bytes.fromhex("82cb0001 00000001"), "BYE with 2 sources"),
    (RR + bytes.fromhex("81cb0002 00000001 09616263"), "reason runs past"),
])
def test_invalid_compound_packets_raise_rtcp_errors(data, message):
    with pytest.raises(RTCPError, match=message):
        parse_rtcp(data)


def test_padding_in_the_last_packet_is_allowed():
    data = RR + bytes.fromhex("a1cb0002 00000001 00000004")
    assert parse_rtcp(data)[1] == Goodbye((1,))


def test_a_lone_packet_of_any_type_with_compound_false():
    assert parse_rtcp(Goodbye((1,)).serialize(), compound=False) == (Goodbye((1,)),)


def test_ntp_helpers():
    ntp = rtcp.ntp_timestamp(0.5)
    assert ntp == (2208988800 << 32) + 2**31
    assert rtcp.ntp_seconds(ntp) == 0.5
    assert rtcp.ntp_middle(0x1122334455667788) == 0x33445566


blocks = st.builds(
    ReportBlock, st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(-0x800000, 0x7FFFFF),
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
)
word_blobs = st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4))
u32 = st.integers(0, 2**32 - 1)
reports = st.one_of(
    st.builds(SenderReport, u32, st.integers(0, 2**64 - 1), u32, u32, u32,
              st.lists(blocks, max_size=3).map(tuple), word_blobs),
    st.builds(ReceiverReport, u32, st.lists(blocks, max_size=3).map(tuple), word_blobs),
)
others = st.one_of(
    st.builds(SourceDescription, st.lists(st.builds(
        SDESChunk, u32,
        st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=20)), max_size=3).map(tuple),
    ), max_size=3).map(tuple)),
    st.builds(Goodbye, st.lists(u32, max_size=4).map(tuple), st.none() | st.text(max_size=30)),
    st.builds(RTCPPacket, st.sampled_from([rtcp.APP, 205, 206, 207]), st.integers(0, 31), word_blobs),
)


@given(reports, st.lists(others, max_size=4))
def test_compound_packets_survive_a_round_trip(report, rest):
    rest = [p for p in rest if not (isinstance(p, Goodbye) and p.reason and len(p.reason.encode()) > 255)]
    packets = (report, *rest)
    assert parse_rtcp(serialize_compound(packets)) == packets


@given(st.binary(max_size=120))
def test_arbitrary_octets_parse_or_raise_rtcp_error(data):
    try:
        parse_rtcp(data)
    except RTCPError:
        pass


# ------------------------------------------------------------ A.7 interval
CALL = dict(rtcp_bw=500.0, avg_rtcp_size=100.0)  # 5% of 80 kbit/s in octets/s


def test_two_party_call_reports_every_5_seconds_on_average():
    interval = rtcp_interval(2, 2, we_sent=True, initial=False, **CALL)
    assert interval == pytest.approx(5 / rtcp.COMPENSATION)
    assert rtcp_interval(2, 2, we_sent=True, initial=True, **CALL) == pytest.approx(2.5 / rtcp.COMPENSATION)


def test_randomisation_spreads_the_interval_from_half_to_one_and_a_half():
    low = rtcp_interval(2, 2, we_sent=True, initial=False, random=0.0, **CALL)
    high = rtcp_interval(2, 2, we_sent=True, initial=False, random=0.999999, **CALL)
    assert low == pytest.approx(2.5 / rtcp.COMPENSATION)
    assert high == pytest.approx(7.5 / rtcp.COMPENSATION, rel=1e-5)


def test_reduced_minimum_is_360_over_kbps_for_senders_or_unicast():
    sender = rtcp_interval(2, 2, we_sent=True, initial=False, session_kbps=80, **CALL)
    assert sender == pytest.approx(4.5 / rtcp.COMPENSATION)
    receiver = rtcp_interval(2, 1, we_sent=False, initial=False, session_kbps=80, **CALL)
    assert receiver == pytest.approx(5 / rtcp.COMPENSATION)
    unicast = rtcp_interval(2, 1, we_sent=False, initial=False, session_kbps=80, unicast=True, **CALL)
    assert unicast == pytest.approx(4.5 / rtcp.COMPENSATION)
    slow = rtcp_interval(2, 2, we_sent=True, initial=False, session_kbps=40, **CALL)
    assert slow == pytest.approx(5 / rtcp.COMPENSATION)  # never above 5 s


def test_large_sessions_share_bandwidth_between_senders_and_receivers():
    receiver = rtcp_interval(1000, 10, we_sent=False, initial=False, **CALL)
    assert receiver == pytest.approx(100 * 990 / 375 / rtcp.COMPENSATION)
    sender = rtcp_interval(1000, 10, we_sent=True, initial=False, **CALL)
    assert sender == pytest.approx(100 * 10 / 125 / rtcp.COMPENSATION)
    # Senders above a quarter of the members: everyone shares all of it.
    equal = rtcp_interval(1000, 500, we_sent=False, initial=False, **CALL)
    assert equal == pytest.approx(100 * 1000 / 500 / rtcp.COMPENSATION)


def test_interval_arguments_are_checked():
    with pytest.raises(ValueError):
        rtcp_interval(0, 0, 500.0, False, 100.0, False)


def test_average_size_moves_by_a_sixteenth():
    assert rtcp.average_rtcp_size(100.0, 260) == pytest.approx(110.0)
