"""
Offer/answer (RFC 3264): codec choice, telephone-event, stream order and
rejection, direction and hold, NoCommonCodec; offers; stream info; and the
relay's SDP rewrite.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media.offer_answer import (
    DEFAULT_CAPABILITIES,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    NoCommonCodec,
    answer,
    format_events,
    make_offer,
    parse_events,
    rewrite,
    streams,
)
from communigate.media.sdp import RtpMap, SDPError, parse_sdp


def offer(*media_sections, session="c=IN IP4 192.0.2.10\r\n"):
    return parse_sdp(
        "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\n" + session + "t=0 0\r\n" + "".join(media_sections)
    )


PHONE = (
    "m=audio 49170 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)


def test_a_phone_offer_gets_pcmu_and_telephone_events_0_15():
    sd = answer(offer(PHONE), DEFAULT_CAPABILITIES, "198.51.100.1", [40000], session_id=7, session_version=1)
    assert str(sd) == (
        "v=0\r\n"
        "o=- 7 1 IN IP4 198.51.100.1\r\n"
        "s=-\r\n"
        "c=IN IP4 198.51.100.1\r\n"
        "t=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def test_the_first_offered_codec_we_support_wins_not_our_preference():
    sd = answer(offer("m=audio 4000 RTP/AVP 18 8 0\r\n"), DEFAULT_CAPABILITIES, "198.51.100.1", [40000])
    assert sd.media[0].formats == ("8",)
    assert streams(sd)[0].codec == RtpMap("PCMA", 8000)


def test_a_dynamic_payload_type_for_pcmu_is_matched_by_name_case_insensitively():
    sd = answer(offer("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 pcmu/8000\r\n"),
                DEFAULT_CAPABILITIES, "198.51.100.1", [40000])
    assert sd.media[0].formats == ("96",)
    assert sd.media[0].rtpmap() == {"96": RtpMap("pcmu", 8000)}


def test_telephone_event_needs_our_clock_rate_and_a_common_event():
    wideband_only = offer(
        "m=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/48000\r\n"
    )
    assert answer(wideband_only, DEFAULT_CAPABILITIES, "h", [1]).media[0].formats == ("0",)
    flash_only = offer("m=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\na=fmtp:100 16\r\n")
    assert answer(flash_only, DEFAULT_CAPABILITIES, "h", [1]).media[0].formats == ("0",)
    no_fmtp = offer("m=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/8000\r\n")
    answered = answer(no_fmtp, DEFAULT_CAPABILITIES, "h", [1]).media[0]
    assert answered.formats == ("0", "100") and answered.fmtp("100") == "0-15"
    without_events = answer(no_fmtp, (PCMU,), "h", [1]).media[0]
    assert without_events.formats == ("0",)


def test_m_line_order_is_kept_and_unusable_streams_are_rejected_with_port_0():
    sd = answer(
        offer(
            "m=video 5000 RTP/AVP 31\r\n",
            "m=audio 4000 RTP/SAVP 0\r\n",
            "m=audio 0 RTP/AVP 0\r\n",
            PHONE,
            "m=audio 6000 RTP/AVP 8\r\n",
            "m=image 7000 udptl t38\r\n",
        ),
        DEFAULT_CAPABILITIES, "198.51.100.1", {3: 40000},
    )
    assert [(m.media, m.port, m.proto, m.formats) for m in sd.media] == [
        ("video", 0, "RTP/AVP", ("31",)),
        ("audio", 0, "RTP/SAVP", ("0",)),
        ("audio", 0, "RTP/AVP", ("0",)),
        ("audio", 40000, "RTP/AVP", ("0", "101")),
        ("audio", 0, "RTP/AVP", ("8",)),  # only one audio stream by default
        ("image", 0, "udptl", ("t38",)),
    ]
    assert all(not m.attributes for m in sd.media if m.port == 0)
    two = answer(offer(PHONE, "m=audio 6000 RTP/AVP 8\r\n"), DEFAULT_CAPABILITIES, "h", [1, 3], max_audio=2)
    assert [m.port for m in two.media] == [1, 3]


def test_no_usable_audio_stream_is_no_common_codec():
    with pytest.raises(NoCommonCodec):
        answer(offer("m=audio 4000 RTP/AVP 18 3\r\n"), DEFAULT_CAPABILITIES, "h", [1])
    with pytest.raises(NoCommonCodec):
        answer(offer("m=video 5000 RTP/AVP 31\r\n"), DEFAULT_CAPABILITIES, "h", [1])
    with pytest.raises(NoCommonCodec):
        answer(offer("m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n"),
               DEFAULT_CAPABILITIES, "h", [1])
    with pytest.raises(NoCommonCodec):  # no address anywhere
        answer(offer("m=audio 4000 RTP/AVP 0\r\n", session=""), DEFAULT_CAPABILITIES, "h", [1])
    with pytest.raises(NoCommonCodec):
        answer(offer(), DEFAULT_CAPABILITIES, "h", [1])


def test_a_missing_port_for_an_accepted_stream_is_a_value_error():
    with pytest.raises(ValueError, match="no local port"):
        answer(offer(PHONE), DEFAULT_CAPABILITIES, "h", [])


@pytest.mark.parametrize("offered, local, expected", [
    ("sendrecv", "sendrecv", "sendrecv"),
    ("sendonly", "sendrecv", "recvonly"),
    ("recvonly", "sendrecv", "sendonly"),
    ("inactive", "sendrecv", "inactive"),
    ("sendrecv", "sendonly", "sendonly"),
    ("sendrecv", "recvonly", "recvonly"),
    ("sendonly", "sendonly", "inactive"),
    ("sendrecv", "inactive", "inactive"),
])
def test_direction_negotiation(offered, local, expected):
    sd = answer(offer(f"m=audio 4000 RTP/AVP 0\r\na={offered}\r\n"), DEFAULT_CAPABILITIES, "h", [1],
                direction=local)
    assert sd.direction(0) == expected


def test_session_level_direction_applies_to_the_stream():
    sd = answer(offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP4 192.0.2.10\r\na=sendonly\r\n"),
                DEFAULT_CAPABILITIES, "h", [1])
    assert sd.direction(0) == "recvonly"


def test_old_style_hold_means_send_nothing():
    held = offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP4 0.0.0.0\r\n")
    info = streams(held)[0]
    assert info.old_style_hold and not info.receives and info.sends
    assert answer(held, DEFAULT_CAPABILITIES, "198.51.100.1", [1]).direction(0) == "recvonly"
    both = offer("m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n", session="c=IN IP4 0.0.0.0\r\n")
    assert answer(both, DEFAULT_CAPABILITIES, "h", [1]).direction(0) == "inactive"


def test_answer_from_an_ipv6_address_and_copied_timing():
    timed = offer(PHONE, session="c=IN IP4 192.0.2.10\r\n").timings
    sd = answer(offer(PHONE), DEFAULT_CAPABILITIES, "2001:db8::5", [40000])
    assert sd.connection.addrtype == "IP6" and sd.origin.addrtype == "IP6"
    assert "c=IN IP6 2001:db8::5\r\n" in str(sd)
    later = parse_sdp(str(offer(PHONE)).replace("t=0 0", "t=3034423619 3042462419"))
    assert answer(later, DEFAULT_CAPABILITIES, "h", [1]).timings == later.timings != timed


def test_bad_direction_argument_is_refused():
    with pytest.raises(ValueError, match="direction must be"):
        answer(offer(PHONE), DEFAULT_CAPABILITIES, "h", [1], direction="hold")
    with pytest.raises(ValueError, match="direction must be"):
        make_offer(DEFAULT_CAPABILITIES, "h", 1, direction="hold")


# ------------------------------------------------------------------ offers
def test_an_offer_lists_every_capability_with_dynamic_types_from_101():
    sd = make_offer(DEFAULT_CAPABILITIES, "198.51.100.1", 40000, session_id=3, session_version=4)
    assert str(sd) == (
        "v=0\r\no=- 3 4 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 8 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
        "a=ptime:20\r\na=sendrecv\r\n"
    )


def test_hold_offers_and_their_answers():
    hold = make_offer(DEFAULT_CAPABILITIES, "198.51.100.1", 40000, direction="sendonly")
    assert hold.direction(0) == "sendonly"
    assert answer(hold, DEFAULT_CAPABILITIES, "h", [1]).direction(0) == "recvonly"
    old = make_offer(DEFAULT_CAPABILITIES, "198.51.100.1", 40000, old_style_hold=True)
    assert old.connection.address == "0.0.0.0" and old.origin.address == "198.51.100.1"
    assert answer(old, DEFAULT_CAPABILITIES, "h", [1]).direction(0) == "recvonly"


def test_our_own_offer_is_answerable_by_us():
    sd = make_offer((PCMA, TELEPHONE_EVENT), "192.0.2.1", 5000)
    reply = answer(sd, DEFAULT_CAPABILITIES, "192.0.2.2", [6000])
    info = streams(reply)[0]
    assert (info.payload_type, info.event_payload_type, info.events) == (8, 101, frozenset(range(16)))


# ------------------------------------------------------------- stream info
def test_stream_info_reads_rtcp_address_events_and_ptime():
    info = streams(offer(PHONE + "a=rtcp:53020 IN IP4 192.0.2.99\r\n"))[0]
    assert (info.address, info.port) == ("192.0.2.10", 49170)
    assert (info.rtcp_address, info.rtcp_port) == ("192.0.2.99", 53020)
    assert info.payload_type == 0 and info.codec == RtpMap("PCMU", 8000, None)
    assert info.event_payload_type == 101 and info.events == frozenset(range(17))
    assert info.ptime == 20 and info.direction == "sendrecv" and info.accepted
    plain = streams(offer("m=audio 4000 RTP/AVP 8\r\na=rtcp:4005\r\n"))[0]
    assert (plain.rtcp_address, plain.rtcp_port) == ("192.0.2.10", 4005)
    default = streams(offer("m=audio 4000 RTP/AVP 8\r\n"))[0]
    assert default.rtcp_port == 4001 and default.event_payload_type is None
    rejected = streams(offer("m=audio 0 RTP/AVP 8\r\n"))[0]
    assert not rejected.accepted and rejected.rtcp_port is None and not rejected.sends


@pytest.mark.parametrize("fmtp, events", [
    (None, set(range(16))),
    ("", set(range(16))),
    ("0-15", set(range(16))),
    ("0-11,16", set(range(12)) | {16}),
    ("16, 32-33 ,x,5-3,300", {16, 32, 33}),
])
def test_event_lists(fmtp, events):
    assert parse_events(fmtp) == events


@given(st.sets(st.integers(0, 255), min_size=1))
def test_event_lists_round_trip(events):
    assert parse_events(format_events(events)) == events


def test_codec_matching_checks_rate_and_channels():
    assert PCMU.matches(RtpMap("PCMU", 8000)) and PCMU.matches(RtpMap("PCMU", 8000, 1))
    assert not PCMU.matches(RtpMap("PCMU", 16000)) and not PCMU.matches(RtpMap("PCMU", 8000, 2))
    assert Codec("opus", 48000, None, 2).matches(RtpMap("OPUS", 48000, 2))


# ------------------------------------------------------------------ rewrite
RELAYED = (
    b"v=0\r\n"
    b"o=alice 1 1 IN IP4 10.0.0.5\r\n"
    b"s=-\r\n"
    b"c=IN IP4 10.0.0.5\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=rtcp:49171 IN IP4 10.0.0.5\r\n"
    b"a=x-custom:keep me  exactly\r\n"
    b"m=video 0 RTP/AVP 31\r\n"
)


def test_rewrite_replaces_address_ports_and_rtcp_and_keeps_the_rest():
    out = rewrite(RELAYED, "203.0.113.7", {0: 30000, 1: 30002})
    assert out == RELAYED.replace(b"c=IN IP4 10.0.0.5", b"c=IN IP4 203.0.113.7").replace(
        b"m=audio 49170", b"m=audio 30000").replace(
        b"a=rtcp:49171 IN IP4 10.0.0.5", b"a=rtcp:30001 IN IP4 203.0.113.7")
    assert b"m=video 0 RTP/AVP 31" in out  # a rejected stream stays rejected
    assert b"o=alice 1 1 IN IP4 10.0.0.5" in out


def test_rewrite_keeps_line_ends_and_str_type():
    text = RELAYED.decode().replace("\r\n", "\n")
    out = rewrite(text, "2001:db8::7", {0: 30000})
    assert isinstance(out, str) and "\r" not in out
    assert "c=IN IP6 2001:db8::7\n" in out and "a=rtcp:30001 IN IP6 2001:db8::7\n" in out


def test_rewrite_keeps_old_style_hold():
    held = RELAYED.replace(b"c=IN IP4 10.0.0.5", b"c=IN IP4 0.0.0.0")
    out = rewrite(held, "203.0.113.7", {0: 30000})
    assert b"c=IN IP4 0.0.0.0\r\n" in out and b"m=audio 30000" in out


def test_rewrite_gives_an_unrelayed_stream_its_old_address():
    two = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\n"
        b"m=audio 5000 RTP/AVP 8\r\ni=not relayed\r\na=sendrecv\r\n"
        b"m=audio 6000 RTP/AVP 8\r\nc=IN IP4 10.0.0.6\r\n"
        b"m=audio 7000 RTP/AVP 8"
    )
    out = rewrite(two, "203.0.113.7", {0: 30000})
    sd = parse_sdp(out)
    assert sd.connection.address == "203.0.113.7"
    assert [sd.connection_of(i).address for i in range(4)] == ["203.0.113.7", "10.0.0.5", "10.0.0.6", "10.0.0.5"]
    assert [m.port for m in sd.media] == [30000, 5000, 6000, 7000]
    assert b"m=audio 5000 RTP/AVP 8\r\ni=not relayed\r\nc=IN IP4 10.0.0.5\r\na=sendrecv\r\n" in out
    assert out.endswith(b"m=audio 7000 RTP/AVP 8\r\nc=IN IP4 10.0.0.5\r\n")


def test_rewrite_of_a_media_level_connection_only_touches_that_stream():
    body = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.5\r\n"
        b"m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.0.0.6\r\n"
    )
    out = rewrite(body, "203.0.113.7", {1: 30000})
    assert out == body.replace(b"5000", b"30000").replace(b"10.0.0.6", b"203.0.113.7")


def test_rewrite_refuses_a_broken_body():
    with pytest.raises(SDPError):
        rewrite(b"not sdp", "203.0.113.7", {0: 1})


@given(st.integers(1, 65534), st.ip_addresses().map(str))
def test_rewritten_description_reads_the_relay_address_and_port(port, address):
    out = rewrite(RELAYED, address, {0: port})
    info = streams(parse_sdp(out))[0]
    assert (info.address, info.port, info.rtcp_address, info.rtcp_port) == (address, port, address, port + 1)
    # Everything but the c=, m= and a=rtcp lines is untouched.
    changed = {b"c=", b"m=", b"a=rtcp"}
    keep = [line for line in RELAYED.split(b"\r\n") if not any(line.startswith(c) for c in changed)]
    assert keep == [line for line in out.split(b"\r\n") if not any(line.startswith(c) for c in changed)]


ICE_OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    b"a=ice-lite\r\na=ice-options:trickle\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
    b"a=ice-ufrag:F7gI\r\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n"
    b"a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host\r\n"
    b"a=candidate:2 1 UDP 1694498815 198.51.100.9 41000 typ srflx raddr 10.0.0.5 rport 4000\r\n"
    b"a=end-of-candidates\r\na=sendrecv\r\n"
    b"m=video 5000 RTP/AVP 31\r\n"
    b"a=candidate:1 1 UDP 2130706431 10.0.0.5 5000 typ host\r\n"
)


def test_rewrite_removes_the_ice_attributes_of_relayed_streams():
    out = rewrite(ICE_OFFER, "203.0.113.7", {0: 30000, 1: 30002})
    assert b"candidate" not in out and b"ice-" not in out
    assert out.endswith(b"m=video 30002 RTP/AVP 31\r\n")
    assert b"m=audio 30000 RTP/AVP 0\r\na=sendrecv\r\n" in out


def test_rewrite_keeps_ice_for_a_stream_it_does_not_relay():
    out = rewrite(ICE_OFFER, "203.0.113.7", {0: 30000})
    sd = parse_sdp(out)
    assert [name for name, _ in sd.media[0].attributes] == ["sendrecv"]
    assert [name for name, _ in sd.media[1].attributes] == ["candidate"]
    # The unrelayed stream's candidates still need the session's ICE options.
    assert [name for name, _ in sd.attributes] == ["ice-lite", "ice-options"]
