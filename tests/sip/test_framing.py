"""
Stream framing for SIP over TCP/TLS: messages by Content-Length, CRLF
keep-alives (RFC 5626), the size limit, and splitting at any boundary.
"""

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from communigate.sip.framing import FramingError, KeepAlive, Message, StreamFramer
from communigate.sip.message import SIPParseError, make_response, parse_message

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "rfc4475-torture"
if not TORTURE.exists():  # pragma: no cover
    TORTURE = Path("/work/shared/rfc4475-torture")


def message(body=b"", extra=b"", length=None):
    length = len(body) if length is None else length
    return (
        b"MESSAGE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKf\r\n"
        b"From: <sip:alice@atlanta.com>;tag=1\r\nTo: <sip:bob@biloxi.com>\r\nCall-ID: f1@atlanta.com\r\n"
        b"CSeq: 1 MESSAGE\r\n" + extra + b"Content-Length: " + str(length).encode() + b"\r\n\r\n" + body
    )


def feed_all(framer, chunks):
    events = []
    for chunk in chunks:
        events += framer.feed(chunk)
    return events


def test_one_message_in_one_read():
    data = message(b"hello")
    assert StreamFramer().feed(data) == [Message(data)]


def test_several_messages_and_a_partial_one():
    a, b = message(b"one"), message(b"two!", extra=b"l-x: y\r\n")
    framer = StreamFramer()
    assert framer.feed(a + b + a[:20]) == [Message(a), Message(b)]
    assert framer.buffered == 20
    assert framer.feed(a[20:]) == [Message(a)]
    assert framer.buffered == 0


def test_compact_content_length_and_lws_before_the_colon():
    data = message(b"hi").replace(b"Content-Length: 2", b"l  :\t2")
    assert StreamFramer().feed(data) == [Message(data)]


def test_the_body_is_opaque_even_with_blank_lines_inside():
    data = message(b"\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n")
    assert StreamFramer().feed(data + data) == [Message(data), Message(data)]


def test_double_crlf_is_a_ping_and_single_crlf_a_pong():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KeepAlive(False), KeepAlive(True)]
    assert framer.feed(b"\r\n") == [KeepAlive(False)]
    data = message()
    assert framer.feed(data) == [Message(data)]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n\r\n") == [KeepAlive(False), KeepAlive(True)]


def test_crlf_before_a_message_counts_as_keep_alive_and_bare_lf_is_skipped():
    data = message()
    assert StreamFramer().feed(b"\r\n" + data + b"\n\n" + data) == [KeepAlive(False), Message(data), Message(data)]


def test_missing_content_length_ends_the_stream_with_the_header_section():
    data = message().replace(b"Content-Length: 0\r\n", b"")
    framer = StreamFramer()
    (error,) = framer.feed(data + message())
    assert (error.reason, error.status) == ("Missing Content-Length", 400)
    assert error.head == data[:-4]
    assert framer.failed and framer.buffered == 0
    assert framer.feed(message()) == []
    # the transport can still answer from the header section
    response = make_response(parse_message(error.head), 400, error.reason)
    assert response.call_id == "f1@atlanta.com"


@pytest.mark.parametrize("replace, reason", [
    (b"Content-Length: -5", "Bad Content-Length"),
    (b"Content-Length: 5x", "Bad Content-Length"),
    (b"Content-Length: 12345678901", "Bad Content-Length"),
    (b"Content-Length: 0\r\nl: 0", "Multiple Content-Length"),
])
def test_bad_content_length_ends_the_stream(replace, reason):
    data = message().replace(b"Content-Length: 0", replace)
    (error,) = StreamFramer().feed(data)
    assert (error.reason, error.status) == (reason, 400)


def test_a_message_over_the_limit_gets_513_and_its_headers():
    data = message(b"x" * 2000)
    framer = StreamFramer(max_message_size=1024)
    (error,) = framer.feed(data[:400])
    assert (error.reason, error.status) == ("Message Too Large", 513)
    with pytest.raises(SIPParseError) as info:
        parse_message(error.head)
    assert make_response(info.value.partial, 513).status == 513
    assert framer.buffered == 0


def test_a_header_section_over_the_limit_is_refused_without_waiting_for_its_end():
    framer = StreamFramer(max_message_size=1024)
    events = feed_all(framer, [b"INVITE sip:a@h SIP/2.0\r\n"] + [b"X-Filler: " + b"y" * 90 + b"\r\n"] * 11)
    assert events == [FramingError("Message Too Large", 513)]
    assert framer.buffered == 0


def test_buffering_stays_bounded_while_waiting():
    framer = StreamFramer(max_message_size=4096)
    head = message(length=3000)
    assert framer.feed(head) == []
    for _ in range(10):
        assert framer.feed(b"z" * 100) == []
        assert framer.buffered <= 4096
    assert framer.feed(b"z" * (3000 - 1000)) == [Message(head + b"z" * 3000)]


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError):
        StreamFramer(0)


def stream():
    parts = [b"\r\n\r\n", message(b"body one"), b"\r\n", message(), message(b"\r\n\r\n"), b"\r\n\r\n\r\n"]
    parts.append((TORTURE / "wsinv.dat").read_bytes())
    parts.append((TORTURE / "mpart01.dat").read_bytes())
    return b"".join(parts)


def test_splitting_the_stream_at_every_byte_boundary_gives_the_same_events():
    data = stream()
    expected = StreamFramer().feed(data)
    assert sum(isinstance(e, Message) for e in expected) == 5
    assert sum(isinstance(e, KeepAlive) for e in expected) == 6
    for cut in range(len(data) + 1):
        assert feed_all(StreamFramer(), [data[:cut], data[cut:]]) == expected


def test_byte_by_byte_feeding_gives_the_same_events():
    data = stream()
    framer = StreamFramer()
    assert feed_all(framer, [data[i:i + 1] for i in range(len(data))]) == StreamFramer().feed(data)


@given(st.lists(st.integers(0, 2000), max_size=8), st.integers(64, 3000))
def test_any_split_and_any_limit_give_the_same_events(cuts, limit):
    data = stream()
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    assert feed_all(StreamFramer(limit), chunks) == StreamFramer(limit).feed(data)


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_a_stream_ending_in_an_error_gives_the_same_error_however_split(a, b):
    bad = message().replace(b"Content-Length: 0\r\n", b"").replace(b"\r\n", b"\n")
    data = stream() + bad
    a, b = sorted((min(a, len(data)), min(b, len(data))))
    expected = StreamFramer().feed(data)
    assert expected[-1] == FramingError("Missing Content-Length", 400, bad[:-2])
    assert feed_all(StreamFramer(), [data[:a], data[a:b], data[b:]]) == expected


def test_bare_lf_messages_are_framed_too():
    data = message(b"x\n").replace(b"\r\n", b"\n")
    assert StreamFramer().feed(data + data) == [Message(data), Message(data)]


@given(st.binary(max_size=400))
def test_garbage_never_raises_and_never_grows_past_the_limit(data):
    framer = StreamFramer(max_message_size=256)
    for i in range(0, len(data), 37):
        for event in framer.feed(data[i:i + 37]):
            assert isinstance(event, (Message, KeepAlive, FramingError))
        assert framer.buffered <= 256 + 37
