"""
SIP messages: the Headers multi-map, parse_message, serialize,
make_response, typed accessors, and properties over generated messages and
garbage.
"""

import pytest
from hypothesis import given, settings, strategies as st

from communigate.sip.headers import WILDCARD, CSeq, HeaderError, NameAddr, Via
from communigate.sip.message import (
    Headers,
    Request,
    Response,
    SIPParseError,
    make_response,
    parse_message,
    serialize,
)
from communigate.sip.uri import SIPURI, TelURI, parse_uri

CORE = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n"
    "From: Alice <sip:alice@atlanta.com>;tag=9fxced76sl\r\n"
    "To: Bob <sip:bob@biloxi.com>\r\n"
    "Call-ID: 3848276298220188511@atlanta.com\r\n"
)


def request(extra="", method="OPTIONS", cseq=None, body=b"", start=None, length=True):
    text = (start or f"{method} sip:bob@biloxi.com SIP/2.0") + "\r\n" + CORE
    text += f"CSeq: {cseq or '1 ' + method}\r\n" + extra
    if length:
        text += f"Content-Length: {len(body)}\r\n"
    return text.encode() + b"\r\n" + body


def error_of(data: bytes) -> SIPParseError:
    with pytest.raises(SIPParseError) as info:
        parse_message(data)
    return info.value


# ------------------------------------------------------------------ Headers
def test_headers_look_up_case_insensitively_and_by_compact_form():
    h = Headers([("v", "SIP/2.0/UDP a"), ("X-Thing", "1"), ("via", "SIP/2.0/UDP b, SIP/2.0/UDP c")])
    assert h.items() == (("Via", "SIP/2.0/UDP a"), ("X-Thing", "1"), ("Via", "SIP/2.0/UDP b, SIP/2.0/UDP c"))
    assert h.get("VIA") == "SIP/2.0/UDP a"
    assert h.get("V") == "SIP/2.0/UDP a"
    assert h.get("x-thing") == "1"
    assert h.get("Absent") is None and h.get("Absent", "d") == "d"
    assert "via" in h and "Route" not in h
    assert h.raw_values("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b, SIP/2.0/UDP c"]
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c"]
    assert len(h) == 3 and list(h)[1] == ("X-Thing", "1")


def test_get_all_splits_only_list_headers():
    h = Headers([
        ("WWW-Authenticate", 'Digest realm="a", nonce="b"'),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ("Allow", "INVITE, ACK,,BYE"),
        ("k", "path, outbound"),
        ("X-Custom", "a, b"),
    ])
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a", nonce="b"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("Supported") == ["path", "outbound"]
    assert h.get_all("X-Custom") == ["a, b"]


def test_header_modifiers_return_new_headers():
    h = Headers([("Via", "SIP/2.0/UDP a"), ("Route", "<sip:r1;lr>, <sip:r2;lr>"), ("Via", "SIP/2.0/UDP b")])
    added = h.with_added("Via", Via("TCP", "proxy", 5060, (("branch", "z9hG4bKp"),)), first=True)
    assert added.get_all("Via") == ["SIP/2.0/TCP proxy:5060;branch=z9hG4bKp", "SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.with_added("X-A", 1).items()[-1] == ("X-A", "1")
    replaced = h.with_replaced("via", "SIP/2.0/UDP z")
    assert replaced.items() == (("Via", "SIP/2.0/UDP z"), ("Route", "<sip:r1;lr>, <sip:r2;lr>"))
    assert h.with_replaced("Subject", "hi").items()[-1] == ("Subject", "hi")
    assert h.without("VIA").items() == (("Route", "<sip:r1;lr>, <sip:r2;lr>"),)
    assert h.without_first("Route").get_all("Route") == ["<sip:r2;lr>"]
    assert h.without_first("Route").without_first("Route").get("Route") is None
    assert h.without_first("Via").get_all("Via") == ["SIP/2.0/UDP b"]
    assert h.get_all("Via") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]  # unchanged


def test_headers_are_immutable_and_compare_by_content():
    h = Headers([("Subject", "x")])
    with pytest.raises(AttributeError):
        h._items = ()
    assert h == Headers([("s", "x")])
    assert hash(h) == hash(Headers([("Subject", "x")]))
    assert h != Headers([("Subject", "y")])


def test_headers_refuse_line_breaks_bad_names_and_content_length():
    with pytest.raises(HeaderError):
        Headers([("Subject", "a\r\nVia: evil")])
    with pytest.raises(HeaderError):
        Headers([("Bad Name", "x")])
    with pytest.raises(HeaderError):
        Headers([("Content-Length", "5")])
    with pytest.raises(HeaderError):
        Headers().with_added("l", "5")


# ----------------------------------------------------------------- parsing
def test_a_plain_request_parses_with_typed_accessors():
    m = parse_message(request("Max-Forwards: 70\r\nContact: <sip:alice@192.0.2.1>;expires=60\r\nExpires: 3600\r\n"))
    assert isinstance(m, Request) and m.is_request
    assert m.method == "OPTIONS" and m.uri == parse_uri("sip:bob@biloxi.com")
    assert m.top_via() == Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK74bf9"), ("rport", None)))
    assert m.from_().display_name == "Alice" and m.from_().tag == "9fxced76sl"
    assert m.to().tag is None
    assert m.call_id == "3848276298220188511@atlanta.com"
    assert m.cseq() == CSeq(1, "OPTIONS")
    assert m.max_forwards() == 70
    assert m.expires() == 3600
    assert m.contacts()[0].expires == 60
    assert m.routes() == () and m.record_routes() == () and m.paths() == ()
    assert m.content_length == 0 and m.body == b""


def test_typed_headers_other_than_the_core_are_parsed_lazily_and_cached():
    m = parse_message(request("Contact: <sip:broken\r\nRoute: nonsense <\r\nExpires: soon\r\n"))
    for accessor in (m.contacts, m.routes, m.expires):
        with pytest.raises(HeaderError):
            accessor()
    good = parse_message(request("Contact: <sip:a@h>, <sip:b@h>\r\n"))
    assert good.contacts() is good.contacts()


def test_contact_star_is_the_wildcard():
    m = parse_message(request("Contact: *\r\nExpires: 0\r\n", method="REGISTER"))
    assert m.contacts() == (WILDCARD,)
    m = parse_message(request("Contact: *\r\nContact: <sip:a@h>\r\n", method="REGISTER"))
    with pytest.raises(HeaderError):
        m.contacts()


def test_folding_lws_around_colon_and_compact_names():
    data = (
        b"INVITE sip:a@h SIP/2.0\r\n"
        b"v : SIP/2.0/UDP h\r\n ;branch=z9hG4bKa\r\n"
        b"f:\r\n\t<sip:b@h>;tag=1\r\n"
        b"t  :<sip:a@h>\r\n"
        b"i: x@y\r\n"
        b"CSeq: 0001\r\n    INVITE\r\n"
        b"Subject: two\r\n  lines\r\n"
        b"l: 0\r\n\r\n"
    )
    m = parse_message(data)
    assert m.headers.items()[:2] == (("Via", "SIP/2.0/UDP h ;branch=z9hG4bKa"), ("From", "<sip:b@h>;tag=1"))
    assert m.headers.get("Subject") == "two lines"
    assert m.cseq() == CSeq(1, "INVITE")
    assert m.top_via().branch == "z9hG4bKa"


def test_bare_lf_line_ends_and_leading_crlf_are_tolerated():
    crlf = request("Subject: x\r\n", body=b"body\r\n")
    m = parse_message(b"\r\n\r\n" + crlf.replace(b"\r\n", b"\n").replace(b"Content-Length: 6", b"Content-Length: 4"))
    assert m.headers.get("Subject") == "x"
    assert m.body == b"body"
    assert parse_message(crlf).body == b"body\r\n"


def test_body_follows_content_length_and_trailing_octets_are_ignored():
    m = parse_message(request(body=b"hello") + b"NEXT MESSAGE")
    assert m.body == b"hello"


def test_without_content_length_the_body_is_the_rest_of_the_datagram():
    assert parse_message(request(length=False, body=b"v=0\r\n")).body == b"v=0\r\n"


def test_a_header_section_ending_with_the_datagram_is_accepted():
    data = request().rstrip(b"\r\n")
    assert parse_message(data).call_id == "3848276298220188511@atlanta.com"


@pytest.mark.parametrize("extra, length, reason", [
    ("", "20", "Content-Length exceeds message"),
    ("", "-1", "Bad Content-Length"),
    ("", "five", "Bad Content-Length"),
    ("", "1" * 11, "Bad Content-Length"),
    ("Content-Length: 0\r\n", "0", "Multiple Content-Length"),
])
def test_content_length_errors(extra, length, reason):
    data = request(extra=extra + f"l: {length}\r\n", length=False)
    error = error_of(data)
    assert (error.status, error.reason, error.is_request) == (400, reason, True)
    assert error.partial.call_id == "3848276298220188511@atlanta.com"


@pytest.mark.parametrize("start, status, reason", [
    ("OPTIONS sip:a@h SIP/7.0", 505, "Version Not Supported"),
    ("OPTIONS sip:a@h sip/2.0", None, None),
    ("OPTIONS  sip:a@h SIP/2.0", 400, "Malformed Request-Line"),
    ("OPTIONS sip:a@h SIP/2.0 ", 400, "Malformed Request-Line"),
    ("OPTIONS sip:a@h; lr SIP/2.0", 400, "Malformed Request-Line"),
    ("OPTIONS sip:a@h HTTP/1.1", 400, "Malformed Request-Line"),
    ("OPTIONS <sip:a@h> SIP/2.0", 400, "Bad Request-URI"),
    ("OPTIONS sip:a@h?Route=x SIP/2.0", 400, "Bad Request-URI (headers not allowed)"),
    ("OPT(IONS sip:a@h SIP/2.0", 400, "Malformed Request-Line"),
])
def test_request_line_errors(start, status, reason):
    data = request(start=start)
    if status is None:
        assert parse_message(data).version == "SIP/2.0"
        return
    error = error_of(data)
    assert (error.status, error.reason) == (status, reason)
    assert error.is_request and error.partial.top_via().host == "192.0.2.1"


def test_tel_and_unknown_request_uris_parse_for_the_application_to_judge():
    assert isinstance(parse_message(request(start="OPTIONS tel:+15551234 SIP/2.0")).uri, TelURI)
    assert parse_message(request(start="OPTIONS unk:thing SIP/2.0")).uri.scheme == "unk"


@pytest.mark.parametrize("extra, cseq, reason", [
    ("", "1 INVITE", "CSeq method mismatch"),
    ("", "x OPTIONS", "Bad CSeq"),
    ("", "4294967296 OPTIONS", "Bad CSeq"),
    ("Max-Forwards: 256\r\n", None, "Bad Max-Forwards"),
    ("Max-Forwards: -1\r\n", None, "Bad Max-Forwards"),
    ("Max-Forwards: 1\r\nMax-Forwards: 2\r\n", None, "Multiple Max-Forwards"),
    ("To: <sip:c@h>\r\n", None, "Multiple To"),
    ("Via: SIP/2.0/UDP h;;\r\n", None, "Malformed Via"),
    ("Bad header line\r\n", None, "Malformed header line 'Bad header line'"),
    (": novalue\r\n", None, "Malformed header line ': novalue'"),
])
def test_core_header_errors_name_the_fault(extra, cseq, reason):
    error = error_of(request(extra, cseq=cseq))
    assert (error.status, error.reason) == (400, reason)
    assert isinstance(error.partial, Request)


def test_missing_core_headers_are_all_named():
    data = b"INVITE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    assert error_of(data).reason == "Missing From, To, Call-ID"


def test_bad_call_id_is_refused():
    data = request().replace(b"Call-ID: 3848276298220188511@atlanta.com", b"Call-ID: a@b@c")
    assert error_of(data).reason == "Bad Call-ID"


def test_responses_parse_and_failing_ones_say_they_are_responses():
    head = "SIP/2.0 180 Ringing\r\n" + CORE + "CSeq: 1 INVITE\r\nl: 0\r\n\r\n"
    m = parse_message(head.encode())
    assert isinstance(m, Response) and not m.is_request
    assert (m.status, m.reason, m.status_class) == (180, "Ringing", 1)
    assert parse_message(head.replace("180 Ringing", "200").encode()).reason == ""
    for bad, reason in (("1800 Ringing", "Bad Status-Code"), ("099 x", "Bad Status-Code"),
                        ("700 x", "Bad Status-Code"), ("2O0 OK", "Bad Status-Code")):
        error = error_of(head.replace("180 Ringing", bad).encode())
        assert (error.reason, error.is_request) == (reason, False)
    assert error_of(head.replace("SIP/2.0 180", "SIP/3.0 180", 1).encode()).status == 505


def test_a_bare_cr_inside_a_header_is_refused_so_it_cannot_split_a_header_downstream():
    error = error_of(request("Subject: hi\rVia: SIP/2.0/UDP evil\r\n"))
    assert error.reason == "Bare CR in header section"


def test_expires_over_32_bits_is_clamped_and_huge_numbers_do_not_overflow():
    assert parse_message(request("Expires: " + "9" * 5000 + "\r\n")).expires() == 2**32 - 1
    assert error_of(request(start="OPTIONS sip:a@h SIP/" + "2" * 5000 + ".0")).reason == "Malformed Request-Line"
    assert error_of(request("Max-Forwards: " + "7" * 5000 + "\r\n")).reason == "Bad Max-Forwards"


def test_garbage_start_lines():
    assert error_of(b"").reason == "Malformed Request-Line"
    assert error_of(b"\r\n\r\n").reason == "Malformed Request-Line"
    assert error_of(b"SIP/2.0\r\n\r\n").is_request is False


# -------------------------------------------------------------- serializing
def test_serialize_is_canonical():
    data = (
        b"OPTIONS sip:a@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKa\r\nf: <sip:b@h>;tag=1\r\n"
        b"t: <sip:a@h>\r\ni: x@y\r\nl: 2\r\ncseq: 1 OPTIONS\r\nk: path\r\n\r\nhi"
    )
    assert serialize(parse_message(data)) == (
        b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:b@h>;tag=1\r\n"
        b"To: <sip:a@h>\r\nCall-ID: x@y\r\nCSeq: 1 OPTIONS\r\nSupported: path\r\nContent-Length: 2\r\n\r\nhi"
    )


def test_built_messages_serialize_with_the_right_content_length():
    req = Request(
        "MESSAGE", SIPURI("sip", "bob", None, "biloxi.com"),
        [("Via", Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bKm"),))),
         ("From", NameAddr("Alice", parse_uri("sip:alice@atlanta.com"), (("tag", "1"),))),
         ("To", NameAddr(None, parse_uri("sip:bob@biloxi.com"))),
         ("Call-ID", "m1@atlanta.com"), ("CSeq", CSeq(1, "MESSAGE")), ("Max-Forwards", 70)],
    ).with_body("héllo".encode(), "text/plain;charset=utf-8")
    wire = bytes(req)
    assert wire.endswith(b"Content-Type: text/plain;charset=utf-8\r\nContent-Length: 6\r\n\r\nh\xc3\xa9llo")
    assert parse_message(wire) == req
    assert req.with_body(b"").headers.get("Content-Type") is None
    assert req.with_uri(parse_uri("sip:x@y")).uri.host == "y"


def test_built_messages_refuse_what_would_break_the_start_line():
    with pytest.raises(ValueError):
        Request("INVITE sip:x SIP/2.0\r\nVia:", parse_uri("sip:a@h"))
    with pytest.raises(ValueError):
        Response(200, "OK\r\nVia: evil")


# ------------------------------------------------------------ make_response
def test_make_response_copies_what_rfc3261_8_2_6_says():
    data = request(
        "Via: SIP/2.0/TCP proxy;branch=z9hG4bKp\r\nRecord-Route: <sip:proxy;lr>\r\n"
        "Max-Forwards: 69\r\nTimestamp: 54\r\n", method="INVITE", body=b"v=0\r\n",
    )
    req = parse_message(data)
    resp = make_response(req, 180, to_tag="as83kd9bs")
    assert (resp.status, resp.reason, resp.version) == (180, "Ringing", "SIP/2.0")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.from_() == req.from_()
    assert resp.to().tag == "as83kd9bs" and resp.to().uri == req.to().uri
    assert resp.call_id == req.call_id and resp.cseq() == req.cseq()
    assert "Record-Route" not in resp.headers and "Max-Forwards" not in resp.headers
    assert "Timestamp" not in resp.headers and resp.body == b""
    trying = make_response(req, 100)
    assert trying.headers.get("Timestamp") == "54" and trying.to().tag is None


def test_make_response_keeps_an_existing_to_tag_and_adds_headers():
    req = parse_message(request().replace(b"To: Bob <sip:bob@biloxi.com>", b"To: <sip:bob@biloxi.com>;tag=old"))
    resp = make_response(req, 405, headers=[("Allow", "INVITE, ACK"), ("Contact", NameAddr(None, parse_uri("sip:b@h")))],
                         to_tag="new")
    assert resp.to().tag == "old"
    assert resp.reason == "Method Not Allowed"
    assert resp.headers.get_all("Allow") == ["INVITE", "ACK"] and resp.headers.get("Contact") == "<sip:b@h>"
    assert make_response(req, 499).reason == ""
    with pytest.raises(ValueError):
        make_response(req, 99)


def test_make_response_from_a_partial_with_a_bad_to():
    error = error_of(request().replace(b"To: Bob <sip:bob@biloxi.com>", b'To: "unterminated <sip:bob@biloxi.com>'))
    assert error.reason == "Malformed To"
    resp = make_response(error.partial, 400, error.reason, to_tag="t")
    assert resp.headers.get("To") == '"unterminated <sip:bob@biloxi.com>'
    assert serialize(resp).startswith(b"SIP/2.0 400 Malformed To\r\nVia: ")


# -------------------------------------------------------------- properties
token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True)
value_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n") | st.sampled_from(
    ["\udcff", "\udc80", "\x00", ",", ";", '"', "<", ">"]
)
hosts = st.sampled_from(["example.com", "192.0.2.1", "2001:db8::1", "a-b.example.org"])
uris = st.builds(
    SIPURI, st.sampled_from(["sip", "sips"]), st.none() | st.text(value_char, min_size=1, max_size=8),
    st.none(), hosts, st.none() | st.integers(1, 65535),
    st.lists(st.tuples(token, st.none() | token), max_size=3).map(tuple),
)
name_addrs = st.builds(
    NameAddr, st.none() | st.text(value_char, max_size=10), uris,
    st.lists(st.tuples(token, st.none() | token), max_size=3).map(tuple),
)
vias = st.builds(
    Via, st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]), hosts, st.none() | st.integers(1, 65535),
    st.lists(st.tuples(token, st.none() | token), max_size=3).map(tuple),
)
extension = st.tuples(token.map(lambda t: "X-" + t), st.text(value_char, max_size=30))


@st.composite
def headers(draw, method):
    items = [("Via", v) for v in draw(st.lists(vias, min_size=1, max_size=3))]
    items += [("From", draw(name_addrs)), ("To", draw(name_addrs)),
              ("Call-ID", draw(token)), ("CSeq", CSeq(draw(st.integers(0, 2**32 - 1)), method))]
    if draw(st.booleans()):
        items.append(("Max-Forwards", draw(st.integers(0, 255))))
    items += [("Contact", c) for c in draw(st.lists(name_addrs, max_size=2))]
    items += draw(st.lists(extension, max_size=4))
    return draw(st.permutations(items))


@st.composite
def messages(draw):
    """(message, the typed values its headers were written from)"""
    method = draw(token)
    items = draw(headers(method))
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        message = Request(method, draw(uris), items, body)
    else:
        message = Response(draw(st.integers(100, 699)), draw(st.text(value_char, max_size=20)), items, body)
    return message, items


@given(messages())
def test_generated_messages_round_trip(generated):
    message, items = generated
    wire = serialize(message)
    parsed = parse_message(wire)
    assert parsed == message
    assert serialize(parsed) == wire
    typed = {name: [v for n, v in items if n == name] for name in ("Via", "From", "To", "CSeq", "Contact")}
    assert list(parsed.vias()) == typed["Via"]
    assert [parsed.from_()] == typed["From"] and [parsed.to()] == typed["To"]
    assert [parsed.cseq()] == typed["CSeq"]
    assert list(parsed.contacts()) == typed["Contact"]
    assert parsed.body == message.body


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_sip_parse_error(data):
    try:
        parse_message(data)
    except SIPParseError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_messages_raise_only_sip_parse_error(data):
    wire = bytearray(request("Contact: <sip:a@h>;q=0.5\r\nRoute: <sip:r;lr>\r\n", body=b"v=0\r\n"))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(wire) - 1))
        wire[position:position + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
    try:
        message = parse_message(bytes(wire))
    except SIPParseError:
        return
    # whatever parsed serializes, and the lazy accessors raise only HeaderError
    serialize(message)
    for accessor in (message.contacts, message.routes, message.expires, message.record_routes):
        try:
            accessor()
        except HeaderError:
            pass


def test_with_top_via_keeps_the_parsed_vias_true_to_the_text():
    """
    Stamping the top Via keeps the other parsed values (no reparse) and
    what the copy says of its Vias is what its text says.
    """
    request = parse_message(
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport, SIP/2.0/TCP proxy.example;branch=z9hG4bKb\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: x@y\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    stamped = request.with_top_via(request.top_via().with_rport(4000).with_received("203.0.113.9"))
    assert stamped.from_() is request.from_()
    assert stamped.vias() == parse_message(serialize(stamped)).vias()
    assert stamped.top_via().received == "203.0.113.9" and stamped.top_via().rport == 4000
    assert stamped.vias()[1] == request.vias()[1]


@pytest.mark.parametrize(
    "vias",
    [
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1;rport\r\nVia: SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n",
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n",
        "v: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n",
    ],
)
@pytest.mark.parametrize("via_first", [True, False])
def test_a_new_top_via_goes_first_of_all_lines_as_the_generic_edit_puts_it(vias, via_first):
    head = "OPTIONS sip:b@example.com SIP/2.0\r\n"
    others = (
        "Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
        "Call-ID: x@a\r\nCSeq: 1 OPTIONS\r\n"
    )
    text = head + (vias + others if via_first else others + vias) + "Content-Length: 0\r\n\r\n"
    request = parse_message(text.encode())
    new = request.top_via().with_parameters(("rport", "5062"), ("received", "192.0.2.9"))
    stamped = request.with_top_via(new)
    expected = request.headers.without_first("Via").with_added("Via", new, first=True)
    assert stamped.headers.items() == expected.items()
    assert stamped.vias() == (new,) + request.vias()[1:]
    assert stamped.headers.get_all("Via") == expected.get_all("Via")
    assert bytes(stamped) == bytes(request.with_headers(expected))


def test_setting_several_parameters_at_once_is_setting_them_in_turn():
    via = parse_message(
        b"OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example;rport;branch=z9hG4bK1;received=x\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x@a\r\nCSeq: 1 OPTIONS\r\n\r\n"
    ).top_via()
    assert via.with_parameters(("rport", "5"), ("received", "h"), ("ttl", None)) == (
        via.with_rport(5).with_received("h").with_parameter("ttl")
    )
