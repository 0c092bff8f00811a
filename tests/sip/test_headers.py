"""
Header field values: names and compact forms, list splitting, name-addr,
Via, CSeq and auth parameters.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.sip.headers import (
    WILDCARD,
    CSeq,
    HeaderError,
    NameAddr,
    Via,
    canonical_name,
    format_auth_params,
    is_list_header,
    parse_auth_params,
    parse_contact_list,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_via,
    parse_via_list,
    quote,
    split_list,
    unquote,
)
from communigate.sip.uri import AbsoluteURI, SIPURI, parse_uri


@pytest.mark.parametrize("spelling, canonical", [
    ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
    ("f", "From"), ("t", "To"), ("v", "Via"), ("s", "Subject"), ("k", "Supported"),
    ("c", "Content-Type"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"),
    ("b", "Referred-By"), ("x", "Session-Expires"), ("y", "Identity"), ("V", "Via"),
    ("CALL-ID", "Call-ID"), ("cseq", "CSeq"), ("www-authenticate", "WWW-Authenticate"),
    ("MaX-fOrWaRdS", "Max-Forwards"), ("X-Unknown-Thing", "X-Unknown-Thing"),
])
def test_canonical_names_cover_compact_forms_and_any_case(spelling, canonical):
    assert canonical_name(spelling) == canonical


def test_list_headers_are_known_by_any_spelling():
    for name in ("Via", "v", "ROUTE", "Record-Route", "Path", "Allow", "k", "Require", "m"):
        assert is_list_header(name)
    for name in ("WWW-Authenticate", "Authorization", "Date", "Call-ID", "X-Custom", "Subject"):
        assert not is_list_header(name)


def test_split_list_respects_quotes_and_angle_brackets():
    assert split_list('"Doe, John" <sip:a@h;x=1,2>;p="a,b", <sip:b@h>') == [
        '"Doe, John" <sip:a@h;x=1,2>;p="a,b"', "<sip:b@h>",
    ]
    assert split_list("a, b ,c") == ["a", "b", "c"]
    assert split_list("a,,b") == ["a", "", "b"]
    assert split_list('"a\\"," , b') == ['"a\\","', "b"]
    with pytest.raises(HeaderError):
        split_list('"unterminated, x')
    with pytest.raises(HeaderError):
        split_list("<sip:a@h, x")


def test_quote_and_unquote_are_inverse():
    for text in ["plain", 'with "quotes"', "back\\slash", "BEL\x07 NUL\x00 DEL\x7f", "", "ünï"]:
        assert unquote(quote(text)) == text
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert unquote("token") == "token"
    with pytest.raises(HeaderError):
        quote("line\r\nbreak")


def test_generic_params_allow_lws_and_quoted_values():
    assert parse_params(' ;  tag = 1918181833n ; lr ;+sip.instance="<urn:uuid:1>"; maddr=[::1]') == (
        ("tag", "1918181833n"), ("lr", None), ("+sip.instance", '"<urn:uuid:1>"'), ("maddr", "[::1]"),
    )
    for bad in (";;", ";", ";a=", ";a b", "x", ';a="open'):
        with pytest.raises(HeaderError):
            parse_params(bad)


# ---------------------------------------------------------------- name-addr
def test_name_addr_with_quoted_display_name_and_tag():
    value = parse_name_addr('"J Rosenberg \\\\\\""  <sip:jdrosen@example.com> ;\t tag = 98asjd8')
    assert value.display_name == 'J Rosenberg \\"'
    assert value.uri == parse_uri("sip:jdrosen@example.com")
    assert value.tag == "98asjd8"
    assert str(value) == '"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>;tag=98asjd8'
    assert parse_name_addr(str(value)) == value


def test_name_addr_with_token_display_name_needs_no_space_before_the_bracket():
    value = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert value.display_name == "caller"
    value = parse_name_addr("token1~` token2'+_   token3*%!.- <sip:m@example.com>")
    assert value.display_name == "token1~` token2'+_ token3*%!.-"


def test_addr_spec_parameters_belong_to_the_header():
    value = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
    assert value.uri == SIPURI("sip", "+19725552222", None, "gw1.example.net")
    assert value.parameters == (("unknownparam", None),)
    assert str(value) == "<sip:+19725552222@gw1.example.net>;unknownparam"


def test_parameters_inside_brackets_belong_to_the_uri():
    value = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert value.uri.parameters == (("unknownparam", None),)
    assert value.parameters == ()


def test_addr_spec_ends_at_whitespace():
    value = parse_name_addr(" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert value.uri.host == "chair-dnrc.example.com"
    assert value.tag == "1918181833n"


def test_addr_spec_with_quoted_parameter_holding_angle_brackets():
    value = parse_name_addr('sip:a@h;+sip.instance="<urn:uuid:1>";expires=60')
    assert value.uri == parse_uri("sip:a@h")
    assert value.parameter("+sip.instance") == '"<urn:uuid:1>"'
    assert unquote(value.parameter("+sip.instance")) == "<urn:uuid:1>"
    assert value.expires == 60


def test_non_sip_uris_are_accepted_in_name_addr():
    assert parse_name_addr("isbn:2983792873").uri == AbsoluteURI("isbn", "2983792873")
    assert parse_name_addr("<http://www.example.com>;tag=3").uri == AbsoluteURI("http", "//www.example.com")
    assert parse_name_addr("<tel:+1234>").uri.number == "+1234"


def test_empty_display_name_is_kept_apart_from_none():
    assert parse_name_addr('"" <sip:a@h>').display_name == ""
    assert parse_name_addr("<sip:a@h>").display_name is None
    assert str(parse_name_addr('"" <sip:a@h>')) == '"" <sip:a@h>'


def test_lws_inside_angle_brackets_is_tolerated():
    value = parse_name_addr('"Watson, Thomas" < sip:t.watson@example.org >')
    assert str(value) == '"Watson, Thomas" <sip:t.watson@example.org>'


@pytest.mark.parametrize("text", [
    '"Mr. J. User <sip:j.user@example.com>',  # unterminated quote
    "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # ',' in a token display name
    '"Joe" <sip:joe@example.org>;;;;',
    "<sip:a@h",
    "",
    "<>",
    "<sip:a@h> junk",
    '"x" sip:a@h',
])
def test_malformed_name_addrs_raise(text):
    with pytest.raises(HeaderError):
        parse_name_addr(text, "To")


def test_name_addr_modifiers():
    value = parse_name_addr("<sip:a@h>;expires=30")
    tagged = value.with_tag("abc")
    assert tagged.tag == "abc" and value.tag is None
    assert str(tagged.with_tag("xyz")) == "<sip:a@h>;expires=30;tag=xyz"
    assert str(value.with_uri(parse_uri("sip:b@h"))) == "<sip:b@h>;expires=30"
    assert str(value.without_parameter("EXPIRES")) == "<sip:a@h>"


def test_contact_expires_and_q():
    value = parse_name_addr("<sip:a@h>;expires=280297596632815;q=0.5")
    assert value.expires == 2**32 - 1  # clamped
    assert value.q == 0.5
    for bad in ("<sip:a@h>;q=2", "<sip:a@h>;q=x", "<sip:a@h>;expires=-1", "<sip:a@h>;expires=1x"):
        with pytest.raises(HeaderError):
            value = parse_name_addr(bad)
            value.q if "q=" in bad else value.expires


def test_display_name_with_line_break_cannot_be_built():
    with pytest.raises(HeaderError):
        NameAddr("evil\r\nVia: x", parse_uri("sip:a@h"))


def test_name_addr_lists_and_contact_wildcard():
    values = parse_name_addr_list('"A, B" <sip:a@h>;q=0.1, sip:b@h;q=0.9 ,<sip:c@h;lr>')
    assert [str(v.uri) for v in values] == ["sip:a@h", "sip:b@h", "sip:c@h;lr"]
    assert parse_contact_list(" * ") == (WILDCARD,)
    assert str(WILDCARD) == "*"
    with pytest.raises(HeaderError):
        parse_name_addr_list("<sip:a@h>,,<sip:b@h>")


# --------------------------------------------------------------------- Via
def test_via_with_lws_everywhere():
    via = parse_via("SIP  /   2.0  /UDP     192.0.2.2 : 5070 ;branch = z9hG4bK390;received=192.0.2.9;rport=5071")
    assert via == Via("UDP", "192.0.2.2", 5070, (("branch", "z9hG4bK390"), ("received", "192.0.2.9"), ("rport", "5071")))
    assert via.branch == "z9hG4bK390" and via.received == "192.0.2.9"
    assert via.rport == 5071 and via.has_rport
    assert via.sent_by == ("192.0.2.2", 5070)
    assert str(via) == "SIP/2.0/UDP 192.0.2.2:5070;branch=z9hG4bK390;received=192.0.2.9;rport=5071"


def test_valueless_rport_is_told_apart_from_absent():
    assert parse_via("SIP/2.0/UDP h;rport").has_rport
    assert parse_via("SIP/2.0/UDP h;rport").rport is None
    assert not parse_via("SIP/2.0/UDP h").has_rport


def test_via_modifiers_for_received_and_rport():
    via = parse_via("SIP/2.0/udp h;branch=z9hG4bKx;rport")
    assert via.transport == "UDP"
    filled = via.with_received("192.0.2.1").with_rport(5062)
    assert str(filled) == "SIP/2.0/UDP h;branch=z9hG4bKx;rport=5062;received=192.0.2.1"
    assert str(via.with_branch("z9hG4bKy")) == "SIP/2.0/UDP h;branch=z9hG4bKy;rport"


def test_via_with_ipv6_sent_by_and_received():
    via = parse_via("SIP/2.0/TCP [2001:db8::9]:5061;received=2001:db8::1;branch=z9hG4bKa")
    assert via.host == "2001:db8::9" and via.port == 5061
    assert via.received == "2001:db8::1"
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5061;received=2001:db8::1;branch=z9hG4bKa"


def test_via_magic_cookie_check():
    assert parse_via("SIP/2.0/UDP h;branch=z9hG4bKabc").is_rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h;branch=z9hG4bK").is_rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h;branch=abc").is_rfc3261_branch
    assert not parse_via("SIP/2.0/UDP h").is_rfc3261_branch


def test_via_keeps_another_protocol_version():
    assert parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw").protocol == "SIP/7.0"


def test_via_lists_split_at_commas():
    vias = parse_via_list("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5060 ;branch=z9hG4bK2")
    assert [(v.transport, v.host) for v in vias] == [("UDP", "a"), ("TCP", "b")]


@pytest.mark.parametrize("text", [
    "SIP/2.0/UDP 192.0.2.15;;,;,,", "SIP/2.0/UDP", "SIP/2.0 UDP h", "SIP/2.0/UDP h;", "SIP/2.0/UDP h:99999",
    "SIP/2.0/UDP h extra", "",
])
def test_malformed_vias_raise(text):
    with pytest.raises(HeaderError):
        parse_via_list(text)


# -------------------------------------------------------------------- CSeq
def test_cseq_allows_leading_zeros_and_lws():
    assert parse_cseq("0009\t  INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(9, "INVITE")) == "9 INVITE"
    assert parse_cseq(str(2**32 - 1) + " ACK").number == 2**32 - 1


@pytest.mark.parametrize("text", [
    "36893488147419103232 REGISTER", "4294967296 INVITE", "INVITE", "1", "-1 INVITE", "1 IN VITE", "",
    "9" * 5000 + " INVITE",
])
def test_malformed_cseq_raises(text):
    with pytest.raises(HeaderError):
        parse_cseq(text)


# ------------------------------------------------------------- auth params
def test_digest_credentials_parse_with_quoted_strings_and_tokens():
    scheme, params = parse_auth_params(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        ' uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b",'
        ' response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert scheme == "Digest"
    assert params["username"] == "bob" and params["qop"] == "auth" and params["nc"] == "00000001"
    assert params["uri"] == "sip:bob@biloxi.com"
    assert len(params) == 9


def test_auth_param_names_are_case_insensitive_and_escapes_resolved():
    scheme, params = parse_auth_params('Digest  USERNAME = "a\\"b\\\\c" ,Realm=x')
    assert params == {"username": 'a"b\\c', "realm": "x"}


def test_unknown_auth_schemes_parse_the_same_way():
    assert parse_auth_params("NoOneKnowsThisScheme opaque-data=here") == (
        "NoOneKnowsThisScheme", {"opaque-data": "here"},
    )
    assert parse_auth_params("Digest") == ("Digest", {})


@pytest.mark.parametrize("text", [
    'Digest username="a", username="b"',
    'Digest username="a",, realm="b"',
    'Digest username="a" realm="b"',
    'Digest username="open',
    "Digest username=",
    'Digest username="a",',
    "",
    '"Digest" a=b',
])
def test_malformed_or_duplicated_auth_params_raise(text):
    with pytest.raises(HeaderError):
        parse_auth_params(text)


def test_format_auth_params_quotes_all_but_the_named_tokens():
    text = format_auth_params(
        "Digest", {"realm": "example.com", "nonce": 'n"1', "algorithm": "MD5", "qop": "auth", "stale": "true"},
        tokens={"algorithm", "stale"},
    )
    assert text == 'Digest realm="example.com", nonce="n\\"1", algorithm=MD5, qop="auth", stale=true'
    assert parse_auth_params(text)[1]["nonce"] == 'n"1'
    with pytest.raises(HeaderError):
        format_auth_params("Digest", [("algorithm", "MD5 x")], tokens={"algorithm"})


# ------------------------------------------------------------- properties
token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
qtext = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)


@given(st.dictionaries(token.map(str.lower), qtext, max_size=6), token)
def test_auth_params_round_trip(params, scheme):
    assert parse_auth_params(format_auth_params(scheme, params)) == (scheme, params)


@given(st.none() | qtext, st.lists(st.tuples(token, st.none() | token), max_size=4).map(tuple))
def test_name_addr_round_trips(display, params):
    value = NameAddr(display, parse_uri("sip:a@example.com;lr"), params)
    assert parse_name_addr(str(value)) == value


@given(st.text(max_size=40))
def test_header_parsers_raise_only_header_error(text):
    for parse in (parse_name_addr, parse_via_list, parse_cseq, parse_auth_params, parse_contact_list):
        try:
            parse(text)
        except HeaderError:
            pass
