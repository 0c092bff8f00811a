"""Tests for communigate.routing.addresses: every address form, parsed and written."""

import pickle

import pytest
from hypothesis import example, given, strategies as st

from communigate.routing.addresses import (
    TELNUM_DOMAIN, Address, AddressError, ApplicationAddress, is_phone_number,
    parse_address, sip_uri, tel_uri,
)

# --- plain e-mail form -------------------------------------------------------


def test_user_at_domain_lowercases_the_domain_and_keeps_the_user_case():
    assert parse_address("Alice@Example.COM") == Address("Alice", "example.com")


@pytest.mark.parametrize("text", ["alice", "201", "+15553837461", "3837461", "*51", "NULL"])
def test_a_bare_name_or_number_has_no_domain(text):
    assert parse_address(text) == Address(text, None)


def test_surrounding_white_space_is_ignored():
    assert parse_address("  bob@example.com\n") == Address("bob", "example.com")


def test_key_compares_user_parts_without_regard_to_case():
    assert parse_address("Alice@example.com").key() == parse_address("alice@EXAMPLE.com").key()


def test_email_writes_user_at_domain_or_the_bare_name():
    assert Address("bob", "example.com").email() == "bob@example.com"
    assert Address("201").email() == "201"


def test_an_ipv4_host_takes_the_bracketed_literal_form():
    assert parse_address("bob@192.0.2.1") == Address("bob", "[192.0.2.1]")
    assert parse_address("bob@[192.0.2.1]").domain == "[192.0.2.1]"


def test_an_ipv6_literal_is_compressed():
    assert parse_address("bob@[2001:DB8:0::1]").domain == "[2001:db8::1]"


def test_a_relay_may_be_an_ip_literal():
    address = parse_address("<@relay.net:bob@[192.0.2.1]>")
    assert address == Address("bob%[192.0.2.1]", "relay.net")
    assert address.relayed() == Address("bob", "[192.0.2.1]")


def test_an_account_name_may_not_hold_a_percent_path():
    with pytest.raises(AddressError, match="'%' is not allowed in the account name"):
        parse_address("prog#a%b.com")


def test_non_ascii_letters_are_allowed_in_the_user_part():
    assert parse_address("jürgen@example.de").local == "jürgen"


# --- relay paths -------------------------------------------------------------


def test_percent_path_is_relay_first_then_user_at_domain():
    address = parse_address("user%domain.com@relay.net")
    assert address == Address("user%domain.com", "relay.net")
    assert address.relayed() == Address("user", "domain.com")


def test_the_rightmost_percent_is_the_next_hop():
    address = parse_address("u%d.com%r2.net@r1.net")
    assert address.relayed() == Address("u%d.com", "r2.net")
    assert address.relayed().relayed() == Address("u", "d.com")


def test_an_address_without_a_percent_path_is_not_relayed():
    assert Address("bob", "example.com").relayed() is None
    assert Address("bob").relayed() is None


@pytest.mark.parametrize("text", [
    "<@relay.net:user@dom.com>", "@relay.net:user@dom.com",
    "relay.net!dom.com!user", "user%dom.com@relay.net",
])
def test_the_three_path_forms_mean_the_same(text):
    assert parse_address(text) == Address("user%dom.com", "relay.net")


def test_a_source_route_through_two_relays():
    address = parse_address("<@r1.net,@r2.net:user@dom.com>")
    assert address == Address("user%dom.com%r2.net", "r1.net")
    assert address.relayed().relayed() == Address("user", "dom.com")


def test_a_bang_path_through_two_relays_matches_the_source_route():
    assert parse_address("r1.net!r2.net!dom.com!user") == parse_address(
        "<@r1.net,@r2.net:user@dom.com>"
    )


def test_a_one_hop_bang_path_is_user_at_host():
    assert parse_address("example.com!bob") == Address("bob", "example.com")


# --- URIs --------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "sip:bob@example.com", "SIP:bob@Example.com", "sips:bob@example.com",
    "sip:bob@example.com:5061", "sip:bob:secret@example.com",
    "sip:bob@example.com;transport=tcp;lr", "sip:bob@example.com?subject=hi",
    "sip:bob@example.com:5060;transport=udp?x=y", "<sip:bob@example.com>",
    '"Bob" <sip:bob@example.com>', '"Smith, \\"Bob\\"" <sip:bob@example.com>',
    "Bob Smith <sip:bob@example.com;transport=tls>", "Bob <bob@example.com>",
    "xmpp:bob@example.com", "xmpp:bob@example.com/balcony",
    "xmpp:bob@example.com?message;body=hi", "xmpp://guest@example.org/bob@example.com",
    "sip:b%6Fb@example.com",
])
def test_uris_and_display_names_map_to_the_email_form(text):
    assert parse_address(text) == Address("bob", "example.com")


def test_percent_escapes_in_the_user_part_are_decoded_as_utf8():
    assert parse_address("sip:j%C3%BCrgen@example.de").local == "jürgen"
    assert parse_address("sip:a%25b.com@relay.net") == Address("a%b.com", "relay.net")


def test_sip_ipv6_host_with_port():
    assert parse_address("sip:bob@[2001:db8::1]:5060") == Address("bob", "[2001:db8::1]")


def test_sip_ipv4_host_takes_the_literal_form():
    assert parse_address("sip:bob@192.0.2.1:5060").domain == "[192.0.2.1]"


def test_tel_uri_goes_to_telnum_without_visual_separators_or_parameters():
    assert parse_address("tel:+1-555-383-7461") == Address("+15553837461", TELNUM_DOMAIN)
    assert parse_address("tel:+1(555)383.7461;ext=12") == Address("+15553837461", "telnum")


def test_a_local_tel_number_stays_as_dialled():
    assert parse_address("tel:383-7461;phone-context=example.com") == Address(
        "3837461", "telnum"
    )


def test_sip_user_phone_is_read_as_a_telephone_number():
    assert parse_address("sip:+1-555-383-7461;isub=12@gw.example.com;user=phone") == Address(
        "+15553837461", "gw.example.com"
    )


@pytest.mark.parametrize("text, reason", [
    ("sip:example.com", "no user part"),
    ("sips:example.com;transport=tls", "no user part"),
    ("xmpp:example.com", "no user part"),
    ("xmpp://guest@example.org", "only the account"),
    ("sip:@example.com", "user part is empty"),
    ("sip:bob@example.com:50x0", "not a port"),
    ("sip:bob@example.com:", "without a port"),
    ("sip:bob@[2001:db8::1", "IPv6"),
    ("sip:bob@a@b.com", "more than one '@'"),
    ("sip:bob%zz@example.com", "two hex digits"),
    ("sip:bob%ff@example.com", "not UTF-8"),
    ("sip:bob%20smith@example.com", "white space"),
    ("tel:+1-555-CALL-NOW", "digits"),
    ("tel:", "digits"),
    ("mailto:bob@example.com", "mailto: is not a supported URI scheme"),
    ("sip:bob@exa_mple.com", "not a domain name"),
])
def test_bad_uris_are_refused_with_the_reason(text, reason):
    with pytest.raises(AddressError, match=reason) as caught:
        parse_address(text)
    assert caught.value.text == text


# --- applications ------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("ivrmenu#pbx", ApplicationAddress("ivrmenu", (), "pbx")),
    ("gatewaycaller{004930123456}#postmaster",
     ApplicationAddress("gatewaycaller", ("004930123456",), "postmaster")),
    ("prog{a,b}#acct@Example.com", ApplicationAddress("prog", ("a", "b"), "acct", "example.com")),
    ("#conference", ApplicationAddress("conference")),
    ("#conference{room1}", ApplicationAddress("conference", ("room1",))),
    ("my-app_2.0#pbx", ApplicationAddress("my-app_2.0", (), "pbx")),
    ("forward{sip:bob@x.com, two words }#pbx",
     ApplicationAddress("forward", ("sip:bob@x.com", "two words"), "pbx")),
    ("prog{}#pbx", ApplicationAddress("prog", ("",), "pbx")),
    ("prog{a,}#pbx", ApplicationAddress("prog", ("a", ""), "pbx")),
    ('"IVR" <ivrmenu{main}#pbx>', ApplicationAddress("ivrmenu", ("main",), "pbx")),
])
def test_application_addresses(text, expected):
    assert parse_address(text) == expected


def test_call_is_what_route_shows_as_the_third_element():
    address = parse_address("gatewaycaller{004930123456}#postmaster@example.com")
    assert address.call() == "gatewaycaller{004930123456}"
    assert ApplicationAddress("ivrmenu", (), "pbx").call() == "ivrmenu"


def test_text_is_the_canonical_spelling():
    assert parse_address("prog{ a , b }#acct@EXAMPLE.com").text() == "prog{a,b}#acct@example.com"
    assert parse_address("#conference").text() == "#conference"
    assert parse_address("prog{}#pbx").text() == "prog{}#pbx"


@pytest.mark.parametrize("text, reason", [
    ("prog{a#pbx", "unbalanced braces"),
    ("prog}a{#pbx", "unbalanced braces"),
    ("prog{a{b}}#pbx", "not nested"),
    ("prog{a}{b}#pbx", "not nested"),
    ("{a}#pbx", "program name is empty"),
    ("#", "program name is empty"),
    ("prog#", "account after '#' is empty"),
    ("prog{a}", "needs '#account'"),
    ("prog{a}x#pbx", "needs '#account'"),
    ("pr og#pbx", "program name"),
    ("prög#pbx", "program name"),
    ("prog#pb x", "white space"),
    ("prog#pbx@", "nothing after '@'"),
    ("prog#pbx@a@b", "more than one '@'"),
    ("#prog#pbx", "after '#program'"),
    ("#prog@example.com", "program name"),
])
def test_bad_application_addresses_are_refused(text, reason):
    with pytest.raises(AddressError, match=reason):
        parse_address(text)


def test_an_application_without_an_account_has_no_domain():
    with pytest.raises(AddressError, match="without an account"):
        ApplicationAddress("prog", (), None, "example.com")


def test_parameters_must_not_be_one_string():
    with pytest.raises(TypeError):
        ApplicationAddress("prog", "abc", "pbx")


def test_a_parameter_may_not_hold_a_comma_or_brace():
    with pytest.raises(AddressError, match="','"):
        ApplicationAddress("prog", ("a,b",), "pbx")


# --- junk --------------------------------------------------------------------


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("<>", "empty"),
    ("a@b@c.com", "more than one '@'"),
    ("@example.com", "needs ':'"),
    ("bob@", "nothing after '@'"),
    ("alice smith@example.com", "white space"),
    ("bob\x00@example.com", "control character"),
    ("bob\t@example.com", "control character"),
    ("bob@exa mple.com", "not a domain name"),
    ("bob@-bad.com", "not a domain name"),
    ("bob@[1.2.3]", "not an IP address literal"),
    ("bob@..", "not a domain name"),
    ("a!b@c.com", "'!' is not allowed"),
    ("relay!!user", "empty hop"),
    ("!user", "empty hop"),
    ("relay!", "empty hop"),
    ("@r.net,r2.net:u@d.com", "starts with '@'"),
    ("<@r.net:bob>", "ends in user@domain"),
    ("bob>", "'>' without '<'"),
    ('"Bob <bob@x.com>', "not closed"),
    ('Bo"b <bob@x.com>', "display name"),
    ("%d.com@relay.net", "nothing before '%'"),
    ("user%@relay.net", "nothing after '%'"),
    ("user%not_a_domain@relay.net", "not a domain name"),
    ("x" * 256, "longer than 255"),
    ("bob;x@example.com", "';' is not allowed"),
])
def test_junk_is_refused_naming_the_text_and_the_reason(text, reason):
    with pytest.raises(AddressError, match=reason) as caught:
        parse_address(text)
    assert repr(text) in str(caught.value)


def test_address_error_is_a_value_error_and_pickles():
    error = AddressError("x y", "the user part contains white space")
    assert isinstance(error, ValueError)
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_only_text_is_parsed():
    with pytest.raises(TypeError):
        parse_address(b"bob@example.com")


def test_constructing_an_address_directly_validates_it():
    with pytest.raises(AddressError):
        Address("", "example.com")
    with pytest.raises(AddressError):
        Address("bob", "not a domain")
    assert Address("bob", "EXAMPLE.com.").domain == "example.com"


# --- writing URIs ------------------------------------------------------------


def test_sip_uri_of_an_email_address():
    assert sip_uri(Address("bob", "example.com")) == "sip:bob@example.com"
    assert sip_uri(Address("bob", "example.com"), secure=True) == "sips:bob@example.com"


def test_sip_uri_escapes_what_a_user_part_cannot_hold():
    assert sip_uri(Address("a%b.com", "relay.net")) == "sip:a%25b.com@relay.net"
    assert sip_uri(Address("jürgen", "x.de")) == "sip:j%C3%BCrgen@x.de"
    assert sip_uri(Address("a?b/c", "x.de")) == "sip:a%3Fb%2Fc@x.de"


def test_sip_uri_writes_ip_hosts_as_sip_does():
    assert sip_uri(Address("bob", "[192.0.2.1]")) == "sip:bob@192.0.2.1"
    assert sip_uri(Address("bob", "[2001:db8::1]")) == "sip:bob@[2001:db8::1]"
    assert sip_uri(Address("bob", "[::ffff:192.0.2.1]")) == "sip:bob@[::ffff:c000:201]"


def test_sip_uri_of_a_telnum_address_stays_sip():
    assert sip_uri(Address("+15553837461", "telnum")) == "sip:+15553837461@telnum"


def test_sip_uri_needs_a_domain():
    with pytest.raises(AddressError, match="needs a domain"):
        sip_uri(Address("bob"))


def test_tel_uri_of_a_global_number():
    assert tel_uri(Address("+15553837461", "telnum")) == "tel:+15553837461"
    assert tel_uri(Address("+15553837461")) == "tel:+15553837461"
    assert parse_address(tel_uri(Address("+15553837461"))) == Address("+15553837461", "telnum")


@pytest.mark.parametrize("address", [
    Address("3837461", "telnum"), Address("+15553837461", "example.com"), Address("bob"),
])
def test_tel_uri_only_for_global_numbers_in_telnum(address):
    with pytest.raises(AddressError, match="global number"):
        tel_uri(address)


# --- phone numbers -----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("201", True), ("+15553837461", True), ("0036301234567", True), ("1" * 31, True),
    ("+" + "1" * 31, True), ("1" * 32, False), ("", False), ("+", False), ("12a", False),
    ("++1", False), ("1+2", False), ("١٢٣", False), ("123\n", False), (" 123", False),
])
def test_is_phone_number(text, expected):
    assert is_phone_number(text) is expected


# --- properties --------------------------------------------------------------

_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domains = st.one_of(
    st.lists(_labels, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(lambda ip: f"[{ip}]"),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip.compressed}]"),
)
_user_alphabet = st.sampled_from(
    "abcXYZ019-_.~*'+=$&?/^" + "äßжé"
)
users = st.text(_user_alphabet, min_size=1, max_size=20)


@st.composite
def addresses(draw):
    local = draw(users)
    for relay in draw(st.lists(domains, max_size=2)):
        local = f"{local}%{relay}"
    return Address(local, draw(st.one_of(st.none(), domains)))


_parameter_characters = st.characters(
    blacklist_characters="{},", blacklist_categories=("C", "Zl", "Zp", "Zs")
) | st.just(" ")
parameters = st.lists(st.text(_parameter_characters).map(str.strip), max_size=4).map(tuple)


@st.composite
def applications(draw):
    program = draw(st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True))
    account = draw(st.one_of(st.none(), users))
    domain = draw(st.none() | domains) if account is not None else None
    return ApplicationAddress(program, draw(parameters), account, domain)


@given(addresses())
def test_email_form_round_trips(address):
    assert parse_address(address.email()) == address


@given(addresses().filter(lambda address: address.domain is not None), st.booleans())
def test_sip_uri_round_trips(address, secure):
    assert parse_address(sip_uri(address, secure=secure)).email() == address.email()


@given(applications())
def test_application_text_round_trips(address):
    assert parse_address(address.text()) == address


@given(st.from_regex(r"\+[0-9]{1,31}", fullmatch=True))
def test_tel_uri_round_trips(number):
    address = Address(number, TELNUM_DOMAIN)
    assert parse_address(tel_uri(address)) == address


_structural = st.lists(
    st.sampled_from(list("ab1+@%!#{},:;<>\"' \t/?[].-=") + ["sip:", "tel:", "xmpp:", "%4", "\x00"]),
    max_size=30,
).map("".join)


@given(st.one_of(st.text(max_size=40), _structural))
@example("sip:")
@example("<@:>")
@example("{}")
@example("#{}")
@example("xmpp://")
@example("a@[]")
def test_any_text_parses_or_raises_address_error(text):
    try:
        address = parse_address(text)
    except AddressError as error:
        assert error.text == text
        return
    assert isinstance(address, (Address, ApplicationAddress))
    written = address.email() if isinstance(address, Address) else address.text()
    assert parse_address(written) == address
