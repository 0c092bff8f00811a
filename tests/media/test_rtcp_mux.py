"""
RTCP multiplexed on the RTP port (RFC 5761): telling the two apart on a
shared port, offering and answering C{a=rtcp-mux}, and the relay's
rewrite of a description that multiplexes.
"""

from hypothesis import given, strategies as st

from communigate.media.offer_answer import (
    DEFAULT_CAPABILITIES,
    answer,
    make_offer,
    mux_compatible,
    rewrite,
    streams,
)
from communigate.media.rtcp import ReceiverReport, ReportBlock, SenderReport, compound
from communigate.media.rtp import RTPPacket, is_rtcp
from communigate.media.sdp import parse_sdp

U32 = st.integers(0, 2**32 - 1)
BLOCKS = st.lists(st.builds(ReportBlock, U32, st.integers(0, 255), st.integers(-2**23, 2**23 - 1),
                            U32, U32, U32, U32), max_size=3).map(tuple)
REPORTS = st.one_of(
    st.builds(SenderReport, U32, st.integers(0, 2**64 - 1), U32, U32, U32, BLOCKS),
    st.builds(ReceiverReport, U32, BLOCKS),
)


# ------------------------------------------------------------------ demux
@given(
    payload_type=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    marker=st.booleans(),
    sequence=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=200),
)
def test_rtp_of_a_payload_type_outside_64_to_95_is_never_taken_for_rtcp(payload_type, marker, sequence, payload):
    data = RTPPacket(payload_type, sequence, 0, 1, payload, marker).serialize()
    assert not is_rtcp(data)


@given(report=REPORTS, cname=st.text(min_size=1, max_size=20))
def test_every_rtcp_report_is_taken_for_rtcp(report, cname):
    assert is_rtcp(compound(report, cname))


@given(payload_type=st.integers(64, 95))
def test_payload_types_64_to_95_with_the_marker_look_like_rtcp_so_mux_refuses_them(payload_type):
    data = RTPPacket(payload_type, 1, 0, 1, b"x" * 160, True).serialize()
    assert is_rtcp(data)
    assert not mux_compatible([payload_type])


@given(st.lists(st.none() | st.integers(0, 127), max_size=4))
def test_mux_is_compatible_exactly_when_no_marked_packet_of_the_types_looks_like_rtcp(payload_types):
    looks_like_rtcp = any(
        is_rtcp(RTPPacket(pt, 1, 0, 1, b"", True).serialize()) for pt in payload_types if pt is not None
    )
    assert mux_compatible(payload_types) is not looks_like_rtcp


# ------------------------------------------------------------ offer/answer
def offer_text(mux=True, formats="0 101", event_pt="101", port=49170):
    lines = [
        "v=0", "o=alice 1 1 IN IP4 192.0.2.10", "s=-", "c=IN IP4 192.0.2.10", "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        f"a=rtpmap:{event_pt} telephone-event/8000",
    ]
    if mux:
        lines.append("a=rtcp-mux")
    return parse_sdp("\r\n".join(lines) + "\r\n")


def test_an_offer_asking_for_mux_says_so_and_keeps_its_rtcp_port():
    sd = make_offer(DEFAULT_CAPABILITIES, "192.0.2.1", 20000, rtcp_mux=True)
    assert "a=rtcp-mux\r\n" in str(sd)
    (info,) = streams(sd)
    assert info.rtcp_mux and info.rtcp_port == 20001
    assert "a=rtcp-mux" not in str(make_offer(DEFAULT_CAPABILITIES, "192.0.2.1", 20000))


def test_an_answer_accepts_mux_when_offered_and_wanted():
    sd = answer(offer_text(), DEFAULT_CAPABILITIES, "198.51.100.1", [40000], rtcp_mux=True)
    assert "a=rtcp-mux\r\n" in str(sd)
    assert streams(sd)[0].rtcp_mux


def test_an_answer_does_not_mux_when_the_offer_did_not_ask_or_we_cannot():
    not_offered = answer(offer_text(mux=False), DEFAULT_CAPABILITIES, "198.51.100.1", [40000], rtcp_mux=True)
    not_wanted = answer(offer_text(), DEFAULT_CAPABILITIES, "198.51.100.1", [40000])
    for sd in (not_offered, not_wanted):
        assert "rtcp-mux" not in str(sd)
        assert not streams(sd)[0].rtcp_mux


def test_an_answer_declines_mux_when_a_chosen_payload_type_is_64_to_95():
    sd = answer(offer_text(formats="0 77", event_pt="77"), DEFAULT_CAPABILITIES, "198.51.100.1", [40000],
                rtcp_mux=True)
    assert streams(sd)[0].event_payload_type == 77
    assert "rtcp-mux" not in str(sd)


@given(offered=st.booleans(), wanted=st.booleans(), event_pt=st.integers(35, 127))
def test_an_answer_muxes_exactly_when_offered_wanted_and_no_chosen_payload_type_is_64_to_95(
    offered, wanted, event_pt
):
    sd = answer(offer_text(mux=offered, formats=f"0 {event_pt}", event_pt=str(event_pt)),
                DEFAULT_CAPABILITIES, "198.51.100.1", [40000], rtcp_mux=wanted)
    (info,) = streams(parse_sdp(str(sd)))
    assert info.event_payload_type == event_pt
    assert info.rtcp_mux == (offered and wanted and not 64 <= event_pt <= 95)


def test_a_rejected_stream_never_muxes():
    sd = parse_sdp("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
                   "m=audio 0 RTP/AVP 0\r\na=rtcp-mux\r\n")
    assert not streams(sd)[0].rtcp_mux


# ----------------------------------------------------------- relay rewrite
def test_the_relay_rewrite_keeps_rtcp_mux_and_points_a_same_port_rtcp_at_its_rtp_port():
    sdp = (b"v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
           b"m=audio 49170 RTP/AVP 0\r\na=rtcp:49170\r\na=rtcp-mux\r\n")
    out = rewrite(sdp, "203.0.113.7", {0: 30000})
    assert out == sdp.replace(b"10.0.0.5\r\nt=", b"203.0.113.7\r\nt=").replace(
        b"m=audio 49170", b"m=audio 30000").replace(b"a=rtcp:49170", b"a=rtcp:30000")
    (info,) = streams(parse_sdp(out))
    assert info.rtcp_mux and info.port == info.rtcp_port == 30000


def test_the_relay_rewrite_points_a_separate_rtcp_port_at_its_rtcp_port_whether_or_not_muxed():
    sdp = (b"v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
           b"m=audio 49170 RTP/AVP 0\r\na=rtcp:49175\r\na=rtcp-mux\r\n")
    out = rewrite(sdp, "203.0.113.7", {0: 30000})
    assert b"a=rtcp:30001\r\n" in out and b"a=rtcp-mux\r\n" in out
