"""
SIP, tel and other URIs: parsing, escaping, IPv6 references, parameters,
and the RFC 3261 §19.1.4 comparison.
"""

import time

import attrs
import pytest
from hypothesis import given, strategies as st

from communigate.sip.uri import (
    AbsoluteURI,
    SIPURI,
    TelURI,
    URIError,
    parse_uri,
    uri_equal,
)


def test_a_full_sip_uri_parses_into_its_parts():
    uri = parse_uri("sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent")
    assert uri == SIPURI(
        "sips", "alice", "secret", "atlanta.com", 5061,
        (("transport", "tcp"), ("lr", None)),
        (("subject", "project x"), ("priority", "urgent")),
    )
    assert uri.secure and uri.transport == "tcp" and uri.lr
    assert str(uri) == "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent"


def test_a_uri_without_user_or_port():
    uri = parse_uri("sip:example.com")
    assert (uri.user, uri.password, uri.host, uri.port) == (None, None, "example.com", None)
    assert uri.serialize() == "sip:example.com"


def test_the_scheme_is_case_insensitive_and_stored_lower_case():
    assert parse_uri("SIP:bob@Biloxi.com").scheme == "sip"
    assert parse_uri("SIP:bob@Biloxi.com").host == "Biloxi.com"


def test_ipv6_references_hold_the_bare_address_and_write_brackets():
    uri = parse_uri("sip:bob@[2001:db8::1]:5060;maddr=[2001:db8::2]")
    assert uri.host == "2001:db8::1"
    assert uri.port == 5060
    assert uri.maddr == "[2001:db8::2]"
    assert uri.host_port == "[2001:db8::1]:5060"
    assert str(uri) == "sip:bob@[2001:db8::1]:5060;maddr=[2001:db8::2]"
    assert str(SIPURI("sip", None, None, "::1")) == "sip:[::1]"


def test_user_part_is_unescaped_in_the_object_and_escaped_only_where_needed():
    uri = parse_uri("sip:%75se%72;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert str(uri) == "sip:user;par=u%40example.net@example.com"
    assert str(SIPURI("sip", "I have spaces", None, "h")) == "sip:I%20have%20spaces@h"
    assert str(SIPURI("sip", "jürgen", None, "h")) == "sip:j%C3%BCrgen@h"
    assert str(SIPURI("sip", "+1-555;phone-context=x?&=$,/", None, "h")) == "sip:+1-555;phone-context=x?&=$,/@h"


def test_escaped_nul_survives_and_is_not_a_terminator():
    uri = parse_uri("sip:null-%00-null@example.com")
    assert uri.user == "null-\x00-null"
    assert str(uri) == "sip:null-%00-null@example.com"
    assert parse_uri("sip:%00@h") != parse_uri("sip:%00%00@h")


def test_octets_that_are_not_utf8_round_trip():
    uri = parse_uri("sip:%FF%FE@h")
    assert str(uri) == "sip:%FF%FE@h"


def test_parameters_are_unescaped_and_looked_up_case_insensitively():
    uri = parse_uri("sip:caller@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31;Transport=UDP")
    assert uri.parameters == (("lr", None), ("name", "value%41"), ("Transport", "UDP"))
    assert uri.lr
    assert uri.parameter("NAME") == "value%41"
    assert uri.transport == "udp"
    assert uri.parameter("absent") is None
    assert uri.parameter("lr") is None and uri.has_parameter("lr")
    assert str(uri) == "sip:caller@host5.example.net;lr;name=value%2541;Transport=UDP"


def test_parameter_modifiers_return_new_uris():
    uri = parse_uri("sip:a@h;transport=udp;x=1")
    assert str(uri.with_parameter("TRANSPORT", "tcp")) == "sip:a@h;TRANSPORT=tcp;x=1"
    assert str(uri.with_parameter("lr")) == "sip:a@h;transport=udp;x=1;lr"
    assert str(uri.without_parameter("transport")) == "sip:a@h;x=1"
    assert str(uri) == "sip:a@h;transport=udp;x=1"
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        uri.host = "other"


def test_evolve_style_helpers():
    uri = parse_uri("sip:alice:pw@Atlanta.COM:5070;transport=tcp?subject=x")
    assert str(uri.with_host("192.0.2.1", 5080)) == "sip:alice:pw@192.0.2.1:5080;transport=tcp?subject=x"
    assert str(uri.with_user(None)) == "sip:Atlanta.COM:5070;transport=tcp?subject=x"
    assert str(uri.without_headers()) == "sip:alice:pw@Atlanta.COM:5070;transport=tcp"
    assert str(uri.address_of_record()) == "sip:alice@atlanta.com"


def test_uri_headers_are_unescaped():
    uri = parse_uri("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == (("Route", "<sip:sip.example.com>"),)
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_the_unusual_but_legal_userinfo_of_rfc4475():
    uri = parse_uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert parse_uri(str(uri)) == uri


def test_a_hash_in_the_user_part_is_tolerated_and_escaped_on_output():
    assert str(parse_uri("sip:*21#@pbx")) == "sip:*21%23@pbx"


@pytest.mark.parametrize("text", [
    "sip:", "sip:@example.com", "sip:user@", "sip:user@host:99999", "sip:user@host:port",
    "sip:user@ho st", "sip:user@example.com; lr", "<sip:user@example.com>",
    "sip:user@example.com;;lr", "sip:user@example.com;", "sip:a%zz@h", "sip:a@h?x",
    "sip:a@[2001:db8::1", "sip:a@h;=v", "user@example.com", "", ":x", "1tel:123",
    "http:", "http:a b", "tel:", "tel:abc;", "sip:a\r\nX: y@h",
])
def test_malformed_uris_raise_uri_error(text):
    with pytest.raises(URIError):
        parse_uri(text)


def test_uri_error_is_a_value_error():
    assert issubclass(URIError, ValueError)


def test_constructing_an_impossible_sip_uri_is_refused():
    with pytest.raises(URIError):
        SIPURI("tel", None, None, "h")
    with pytest.raises(URIError):
        SIPURI("sip", "", None, "h")
    with pytest.raises(URIError):
        SIPURI("sip", None, None, "evil\r\nVia: x")
    with pytest.raises(URIError):
        SIPURI("sip", None, None, "h", 70000)


def test_tel_and_other_uris_refuse_impossible_parts():
    with pytest.raises(URIError):
        TelURI("+1\r\nVia: x")
    with pytest.raises(URIError):
        AbsoluteURI("http", "//a b")
    with pytest.raises(URIError):
        AbsoluteURI("1x", "y")


def test_tel_uris_are_their_own_type():
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com;ext=12")
    assert uri == TelURI("+1-201-555-0123", (("phone-context", "example.com"), ("ext", "12")))
    assert uri.scheme == "tel" and uri.is_global
    assert uri.digits == "+12015550123"
    assert uri.parameter("ext") == "12"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;ext=12"
    assert not parse_uri("tel:7042;phone-context=example.com").is_global


def test_other_schemes_are_kept_opaque_for_the_application_to_refuse():
    assert parse_uri("nobodyKnowsThisScheme:totallyopaquecontent") == AbsoluteURI(
        "nobodyknowsthisscheme", "totallyopaquecontent"
    )
    assert parse_uri("soap.beep://192.0.2.103:3002") == AbsoluteURI("soap.beep", "//192.0.2.103:3002")
    assert str(parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")) == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"


# RFC 3261 §19.1.4, the equivalent and non-equivalent examples
EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ("sip:bob@[2001:db8::1]", "sip:bob@[2001:DB8:0::1]"),
]
DIFFERENT = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
    ("sip:a@h", "sips:a@h"),
    ("sip:a:x@h", "sip:a:y@h"),
    ("sip:a@h", "tel:123"),
    ("sip:%00@h", "sip:%00%00@h"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_rfc3261_equivalent_uris_compare_equal(a, b):
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_rfc3261_different_uris_compare_unequal(a, b):
    assert not uri_equal(parse_uri(a), parse_uri(b))
    assert not uri_equal(parse_uri(b), parse_uri(a))


def test_equality_operator_is_structural():
    assert parse_uri("sip:%61lice@h") == parse_uri("sip:alice@h")  # unescaped form
    assert parse_uri("sip:alice@h") != parse_uri("sip:alice@H")
    assert hash(parse_uri("sip:%61lice@h;lr")) == hash(parse_uri("sip:alice@h;lr"))


def test_tel_and_other_uris_compare_by_their_rules():
    assert uri_equal(parse_uri("tel:+1-201-555-0123"), parse_uri("tel:+1.201.5550123"))
    assert not uri_equal(parse_uri("tel:+1-201-555-0123"), parse_uri("tel:+1-201-555-0124"))
    assert uri_equal(parse_uri("HTTP://x"), parse_uri("http://x"))


def test_pathological_input_is_refused_quickly():
    start = time.perf_counter()
    for text in ("sip:" + "a" * 50000 + "!", "sip:a@h" + ";a" * 20000 + ";",
                 "sip:" + "%41" * 20000 + "%4", "sip:a@h?" + "a=b&" * 10000):
        with pytest.raises(URIError):
            parse_uri(text)
    assert time.perf_counter() - start < 2


# ------------------------------------------------------------- properties
text_chars = st.characters(blacklist_categories=("Cs",)) | st.sampled_from(["\udcff", "\udc80", "\x00", "%"])
nonempty = st.text(text_chars, min_size=1, max_size=12)
hostnames = st.from_regex(r"[a-z0-9][a-z0-9\-]{0,10}(\.[a-z0-9][a-z0-9\-]{0,10}){0,3}", fullmatch=True)
ipv6 = st.ip_addresses(v=6).map(str)
ipv4 = st.ip_addresses(v=4).map(str)
params = st.lists(st.tuples(nonempty, st.none() | st.text(text_chars, max_size=10)), max_size=4).map(tuple)


@st.composite
def sip_uris(draw):
    user = draw(st.none() | nonempty)
    return SIPURI(
        draw(st.sampled_from(["sip", "sips"])),
        user,
        None if user is None else draw(st.none() | st.text(text_chars, max_size=8)),
        draw(hostnames | ipv4 | ipv6),
        draw(st.none() | st.integers(0, 65535)),
        draw(params),
        draw(st.lists(st.tuples(nonempty, st.text(text_chars, max_size=10)), max_size=3).map(tuple)),
    )


@given(sip_uris())
def test_any_sip_uri_round_trips_through_its_text(uri):
    text = str(uri)
    assert parse_uri(text) == uri
    assert uri_equal(parse_uri(text), uri)


@given(st.from_regex(r"\+?[0-9A-F*#][0-9A-F*#\-.()]{0,15}", fullmatch=True), params)
def test_any_tel_uri_round_trips(number, parameters):
    uri = TelURI(number, parameters)
    assert parse_uri(str(uri)) == uri


@given(st.text(max_size=60))
def test_parse_uri_on_any_text_raises_only_uri_error(text):
    try:
        uri = parse_uri(text)
    except URIError:
        return
    assert parse_uri(str(uri)) == uri
