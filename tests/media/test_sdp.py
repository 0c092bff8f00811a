"""
SDP (RFC 4566): parsing, serialising, accessors, errors, and hypothesis
round trips.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media.sdp import (
    Connection,
    Media,
    Origin,
    RtpMap,
    SDPError,
    SessionDescription,
    Timing,
    parse_sdp,
)

# RFC 4566 §5's example, written in the RFC's order.
RFC_EXAMPLE = (
    b"v=0\r\n"
    b"o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\n"
    b"s=SDP Seminar\r\n"
    b"i=A Seminar on the session description protocol\r\n"
    b"u=http://www.example.com/seminars/sdp.pdf\r\n"
    b"e=j.doe@example.com (Jane Doe)\r\n"
    b"c=IN IP4 224.2.17.12/127\r\n"
    b"t=2873397496 2873404696\r\n"
    b"a=recvonly\r\n"
    b"m=audio 49170 RTP/AVP 0\r\n"
    b"m=video 51372 RTP/AVP 99\r\n"
    b"a=rtpmap:99 h263-1998/90000\r\n"
)

PHONE_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=rtcp:49171 IN IP4 192.0.2.10\r\n"
    b"a=sendrecv\r\n"
)


def test_the_rfc_example_parses_and_writes_back_byte_for_byte():
    sd = parse_sdp(RFC_EXAMPLE)
    assert sd.origin == Origin("jdoe", "2890844526", "2890842807", "IN", "IP4", "10.47.16.5")
    assert sd.name == "SDP Seminar"
    assert sd.emails == ("j.doe@example.com (Jane Doe)",)
    assert sd.connection == Connection("224.2.17.12/127", "IP4", "IN")
    assert sd.connection.host == "224.2.17.12"
    assert sd.timings == (Timing(2873397496, 2873404696),)
    assert [m.media for m in sd.media] == ["audio", "video"]
    assert sd.media[1].rtpmap() == {"99": RtpMap("h263-1998", 90000)}
    assert sd.direction(0) == "recvonly"  # session-level attribute applies
    assert sd.serialize() == RFC_EXAMPLE


def test_a_phone_offer_and_its_accessors():
    sd = parse_sdp(PHONE_OFFER)
    audio = sd.media[0]
    assert audio.formats == ("0", "8", "101")
    assert audio.rtpmap()["101"] == RtpMap("telephone-event", 8000)
    assert audio.fmtp("101") == "0-16" and audio.fmtp("0") is None
    assert audio.ptime == 20
    assert audio.rtcp == (49171, Connection("192.0.2.10"))
    assert sd.direction(0) == "sendrecv"
    assert sd.connection_of(0) == Connection("192.0.2.10")
    assert audio.attribute("sendrecv") == "" and audio.attribute("nope") is None
    assert sd.serialize() == PHONE_OFFER


def test_ipv6_media_level_connection_and_port_count():
    sd = parse_sdp(
        "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nt=0 0\n"
        "m=audio 5004/2 RTP/AVP 0\nc=IN IP6 2001:db8::2\na=sendonly\n"
    )
    media = sd.media[0]
    assert (media.port, media.port_count) == (5004, 2)
    assert sd.connection is None
    assert sd.connection_of(0) == Connection("2001:db8::2", "IP6")
    assert sd.direction(0) == "sendonly"
    assert str(sd).endswith("m=audio 5004/2 RTP/AVP 0\r\nc=IN IP6 2001:db8::2\r\na=sendonly\r\n")


def test_repeat_zone_key_bandwidth_and_phone_lines():
    text = (
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=x\r\np=+1 617 555-6011\r\nb=AS:64\r\n"
        "t=3034423619 3042462419\r\nr=7d 1h 0 25h\r\nr=604800 3600 0 90000\r\n"
        "z=2882844526 -1h 2898848070 0\r\nk=prompt\r\n"
        "m=audio 0 RTP/AVP 0\r\ni=rejected\r\nb=AS:0\r\nk=clear:x\r\n"
    )
    sd = parse_sdp(text)
    assert sd.timings[0].repeats == ("7d 1h 0 25h", "604800 3600 0 90000")
    assert sd.zone.startswith("2882844526") and sd.key == "prompt"
    assert sd.media[0].info == "rejected" and sd.media[0].key == "clear:x"
    assert str(sd) == text


def test_missing_t_line_is_tolerated_and_written_as_zero():
    sd = parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n")
    assert sd.timings == (Timing(0, 0),)


def test_non_utf8_octets_survive():
    data = PHONE_OFFER.replace(b"s=-", b"s=caf\xe9")
    assert parse_sdp(data).serialize() == data


@pytest.mark.parametrize("text, message", [
    ("", "starts with v=0"),
    ("v=1\r\n", "starts with v=0"),
    ("o=- 1 1 IN IP4 h\r\nv=0\r\n", "starts with v=0"),
    ("v=0\r\ns=-\r\n", "no o= line"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\n", "no s= line"),
    ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "six fields"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "more than one"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\n", "c= needs"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0\r\n", "t= needs"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1 2 3\r\n", "r= before"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nx=1\r\n", "unknown SDP line type"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio\r\n", "m= needs"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio x RTP/AVP 0\r\n", "not a number"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "out of range"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\ns=again\r\n", "not allowed in a media"),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\ni=a\r\ni=b\r\n", "more than one i="),
    ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\na=\r\n", "without a name"),
    ("v=0\r\ngarbage\r\n", "not an SDP line"),
])
def test_malformed_descriptions_raise_sdp_error(text, message):
    with pytest.raises(SDPError, match=message):
        parse_sdp(text)


def test_malformed_rtpmap_and_ptime_values_are_skipped():
    sd = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0 96\r\n"
        "a=rtpmap:96 opus\r\na=rtpmap:97 x/y\r\na=ptime:abc\r\na=rtcp:zz\r\n"
    )
    assert sd.media[0].rtpmap() == {}
    assert sd.media[0].ptime is None and sd.media[0].rtcp is None


# ---------------------------------------------------------------- round trips
token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-._+*", min_size=1, max_size=12)
# Any text without control characters (no CR/LF inside a value).
free_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)
addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), token,
)
connections = addresses.map(Connection.for_address)
attributes = st.tuples(token, st.none() | free_text)
medias = st.builds(
    Media,
    media=st.sampled_from(["audio", "video", "image", "application"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "RTP/SAVP", "udptl", "TCP/MSRP"]),
    formats=st.lists(token, min_size=1, max_size=5).map(tuple),
    port_count=st.none() | st.integers(1, 4),
    info=st.none() | free_text,
    connections=st.lists(connections, max_size=2).map(tuple),
    bandwidths=st.lists(st.sampled_from(["AS:64", "CT:128", "TIAS:64000"]), max_size=2).map(tuple),
    key=st.none() | token,
    attributes=st.lists(attributes, max_size=6).map(tuple),
)
descriptions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, token, st.integers(0, 2**63).map(str), st.integers(0, 2**63).map(str),
                     st.just("IN"), st.sampled_from(["IP4", "IP6"]), addresses),
    name=free_text,
    info=st.none() | free_text,
    uri=st.none() | token,
    emails=st.lists(token, max_size=2).map(tuple),
    phones=st.lists(token, max_size=2).map(tuple),
    connection=st.none() | connections,
    bandwidths=st.lists(st.sampled_from(["AS:64", "CT:128"]), max_size=2).map(tuple),
    timings=st.lists(st.builds(Timing, st.integers(0, 2**40), st.integers(0, 2**40),
                               st.lists(token, max_size=2).map(tuple)), min_size=1, max_size=2).map(tuple),
    zone=st.none() | token,
    key=st.none() | token,
    attributes=st.lists(attributes, max_size=4).map(tuple),
    media=st.lists(medias, max_size=4).map(tuple),
)


@given(descriptions)
def test_every_description_survives_serialize_then_parse(sd):
    assert parse_sdp(sd.serialize()) == sd
    assert parse_sdp(str(sd)) == sd


@given(st.binary(max_size=200))
def test_arbitrary_octets_parse_or_raise_sdp_error(data):
    try:
        parse_sdp(b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n" + data)
    except SDPError:
        pass
