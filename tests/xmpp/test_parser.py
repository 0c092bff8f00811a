"""
The XML stream parser: events for headers, stanzas and the close;
restricted XML, malformed XML and size limits as stream faults.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.xmpp.namespaces import NS_CLIENT, NS_STREAMS
from communigate.xmpp.parser import (
    MAX_DEPTH,
    ElementReceived,
    StreamClosed,
    StreamFault,
    StreamOpened,
    StreamParser,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>"
)


def opened(max_stanza_size=65536):
    parser = StreamParser(max_stanza_size)
    (event,) = parser.feed(HEADER)
    assert isinstance(event, StreamOpened)
    return parser


def fault(parser, data):
    with pytest.raises(StreamFault) as info:
        parser.feed(data)
    return info.value


def test_the_header_is_reported_with_its_namespaces_and_attributes():
    parser = StreamParser()
    (event,) = parser.feed(HEADER)
    assert event == StreamOpened(
        NS_STREAMS, "stream", NS_CLIENT, {"to": "example.com", "version": "1.0", "xml:lang": "en"}
    )
    assert parser.opened


def test_stanzas_arrive_as_elements_in_the_client_namespace():
    parser = opened()
    events = parser.feed(b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq><message><body>a &amp; b</body></message>")
    assert [type(e) for e in events] == [ElementReceived, ElementReceived]
    iq, message = (e.element for e in events)
    assert (iq.uri, iq.name, iq["type"], iq["id"]) == (NS_CLIENT, "iq", "get", "1")
    assert iq.firstChildElement().uri == "urn:xmpp:ping"
    assert str(message.body) == "a & b"


def test_a_stanza_split_over_many_reads_arrives_once_complete():
    parser = opened()
    data = b"<message to='bob@example.com'><body>hello</body></message>"
    events = []
    for byte in data:
        events += parser.feed(bytes([byte]))
    assert len(events) == 1 and str(events[0].element.body) == "hello"


def test_whitespace_between_stanzas_is_ignored():
    parser = opened(max_stanza_size=100)
    for _ in range(200):
        assert parser.feed(b" \n") == []


def test_the_closing_tag_closes_the_stream_and_later_data_is_ignored():
    parser = opened()
    assert parser.feed(b"</stream:stream>") == [StreamClosed()]
    assert parser.feed(b"<junk") == []


@pytest.mark.parametrize(
    "data, condition",
    [
        (b"<iq><unclosed></iq>", "not-well-formed"),
        (b"<iq a='1' a='2'/>", "not-well-formed"),
        (b"<body>&unknown;</body>", "not-well-formed"),
        (b"<x:iq/>", "bad-namespace-prefix"),
        (b"<!-- comment -->", "restricted-xml"),
        (b"<?php echo 1; ?>", "restricted-xml"),
        (b"<iq>\xff\xfe</iq>", "not-well-formed"),
    ],
)
def test_bad_xml_is_a_stream_fault_with_the_rfc_condition(data, condition):
    assert fault(opened(), data).condition == condition


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><a>&lol3;</a>"""


def test_billion_laughs_is_refused_as_restricted_xml_before_any_entity_is_defined():
    parser = StreamParser()
    error = fault(parser, BILLION_LAUGHS)
    assert error.condition == "restricted-xml"
    assert "document type" in error.text


def test_a_doctype_inside_the_stream_is_not_well_formed():
    assert fault(opened(), b"<!DOCTYPE x [<!ENTITY a 'b'>]>").condition in ("not-well-formed", "restricted-xml")


def test_the_parser_stays_failed_after_a_fault():
    parser = opened()
    fault(parser, b"<iq></x>")
    fault(parser, b"/>")
    with pytest.raises(StreamFault):
        parser.feed(b"<iq/>")


def test_a_stanza_over_the_size_limit_is_a_policy_violation():
    parser = opened(max_stanza_size=1000)
    parser.feed(b"<message><body>" + b"x" * 500)
    error = fault(parser, b"y" * 600)
    assert error.condition == "policy-violation"


def test_a_large_stanza_in_one_read_is_a_policy_violation():
    parser = opened(max_stanza_size=1000)
    assert fault(parser, b"<message><body>" + b"x" * 5000 + b"</body></message>").condition == "policy-violation"


def test_a_start_tag_that_never_ends_is_a_policy_violation():
    parser = opened(max_stanza_size=1000)
    assert fault(parser, b"<message a='" + b"x" * 2000).condition == "policy-violation"


def test_many_small_stanzas_in_one_read_are_within_the_limit():
    parser = opened(max_stanza_size=200)
    events = parser.feed(b"<presence/>" * 500)
    assert len(events) == 500


def test_deep_nesting_is_a_policy_violation():
    parser = opened()
    data = b"<iq>" + b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH + b"</iq>"
    assert fault(parser, data).condition == "policy-violation"


def test_nesting_up_to_the_limit_is_accepted():
    parser = opened()
    depth = MAX_DEPTH - 1
    (event,) = parser.feed(b"<iq>" + b"<a>" * depth + b"</a>" * depth + b"</iq>")
    assert event.element.name == "iq"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_events_or_a_stream_fault(data):
    parser = opened(max_stanza_size=256)
    try:
        for event in parser.feed(data):
            assert isinstance(event, (ElementReceived, StreamClosed))
    except StreamFault as e:
        assert e.condition in {"not-well-formed", "restricted-xml", "policy-violation", "bad-namespace-prefix"}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=50))
def test_escaped_text_round_trips_whatever_the_read_sizes(text, chunk):
    from xml.sax.saxutils import escape

    allowed = "".join(c for c in text if c in "\t\n" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd"))
    data = f"<message><body>{escape(allowed)}</body></message>".encode()
    parser = opened()
    events = []
    for start in range(0, len(data), chunk):
        events += parser.feed(data[start : start + chunk])
    (event,) = events
    body = event.element.body
    assert (str(body) if body is not None and body.children else "") == allowed.replace("\r", "\n")
