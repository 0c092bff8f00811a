"""
ENUM: the pure NAPTR rules, and the resolver driven by a fake UDP reactor
whose clock the tests advance.

Twisted's MemoryReactorClock has no listenUDP, so the fake here is a Clock
plus a listenUDP that hands the protocol a port recording what it sends.
"""

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet.defer import CancelledError
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from communigate.routing.enum import (
    DEFAULT_NEGATIVE_TTL,
    EnumAnswer,
    MAX_CACHE_TTL,
    EnumError,
    EnumResolver,
    Naptr,
    apply_naptr,
    build_query,
    enum_domain,
    parse_answer,
    parse_naptr_answer,
    parse_resolv_conf,
    parse_server_address,
    select_uri,
    servers_from_resolv_conf,
)

NUMBER = "+15553837461"
NAME = "1.6.4.7.3.8.3.5.5.5.1.e164.arpa"
SERVER = ("192.0.2.53", 53)
SECOND = ("192.0.2.54", 5353)


def naptr(regexp, order=100, preference=10, flags="u", services="E2U+sip", replacement=""):
    return Naptr(order, preference, flags, services, regexp, replacement)


def response_to(query_wire, records=(), ttl=300, rcode=dns.rcode.NOERROR, soa=None, cname=None):
    """
    An answer to C{query_wire}: C{records} are NAPTR texts for the question
    name (or for C{cname}'s target when given); C{soa} is (ttl, minimum).
    """
    query = dns.message.from_wire(query_wire)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    owner = query.question[0].name
    if cname is not None:
        response.answer.append(dns.rrset.from_text(owner, cname[1], "IN", "CNAME", cname[0]))
        owner = cname[0]
    if records:
        response.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", "NAPTR", list(records)))
    if soa is not None:
        response.authority.append(
            dns.rrset.from_text(
                "e164.arpa.", soa[0], "IN", "SOA",
                f"ns.e164.arpa. hostmaster.e164.arpa. 1 3600 600 86400 {soa[1]}",
            )
        )
    return response.to_wire()


SIP_RECORD = '100 10 "u" "E2U+sip" "!^.*$!sip:info@example.com!" .'


# --- the pure half -----------------------------------------------------


def test_enum_domain_reverses_the_digits_under_the_suffix():
    assert enum_domain(NUMBER) == NAME
    assert enum_domain("+4930123", "e164.example.net.") == "3.2.1.0.3.9.4.e164.example.net"


@pytest.mark.parametrize("bad", ["15553837461", "+", "+1555abc", "+1234567890123456", "", "+1 555"])
def test_enum_domain_refuses_what_is_not_an_e164_number(bad):
    with pytest.raises(ValueError, match="E.164"):
        enum_domain(bad)


def test_build_query_asks_a_recursive_naptr_question_with_the_id():
    query = dns.message.from_wire(build_query(NAME, 4711))
    assert query.id == 4711
    assert query.flags & dns.flags.RD
    assert not query.flags & dns.flags.QR
    assert query.question[0].name.to_text(omit_final_dot=True) == NAME
    assert query.question[0].rdtype == dns.rdatatype.NAPTR


def test_parse_answer_takes_the_records_sorted_and_their_ttl():
    wire = response_to(
        build_query(NAME, 7),
        ['200 10 "u" "E2U+sip" "!^.*$!sip:b@example.com!" .', SIP_RECORD],
        ttl=120,
    )
    answer = parse_answer(wire, 7, NAME)
    assert answer.ttl == 120
    assert [r.order for r in answer.records] == [100, 200]
    assert answer.records[0] == naptr("!^.*$!sip:info@example.com!")
    assert parse_naptr_answer(wire, 7, NAME) == list(answer.records)


def test_parse_answer_follows_a_cname_and_takes_the_smaller_ttl():
    wire = response_to(
        build_query(NAME, 7), [SIP_RECORD], ttl=600, cname=("alias.example.com.", 30)
    )
    answer = parse_answer(wire, 7, NAME)
    assert answer.ttl == 30
    assert len(answer.records) == 1


def test_nxdomain_is_an_empty_answer_cached_by_the_soa_minimum():
    wire = response_to(build_query(NAME, 7), rcode=dns.rcode.NXDOMAIN, soa=(900, 45))
    assert parse_answer(wire, 7, NAME).records == ()
    assert parse_answer(wire, 7, NAME).ttl == 45
    assert parse_naptr_answer(wire, 7, NAME) == []


def test_a_cname_to_a_missing_name_is_an_empty_answer():
    wire = response_to(
        build_query(NAME, 7), rcode=dns.rcode.NXDOMAIN, cname=("gone.example.com.", 10)
    )
    assert parse_answer(wire, 7, NAME) == EnumAnswer((), 10)


def test_nxdomain_without_soa_is_cached_for_the_default_time():
    wire = response_to(build_query(NAME, 7), rcode=dns.rcode.NXDOMAIN)
    assert parse_answer(wire, 7, NAME).ttl == DEFAULT_NEGATIVE_TTL


def test_no_data_is_an_empty_answer_with_a_negative_ttl():
    wire = response_to(build_query(NAME, 7), soa=(20, 3600))
    assert parse_answer(wire, 7, NAME) == EnumAnswer((), 20)


@pytest.mark.parametrize(
    "wire, reason",
    [
        (lambda: response_to(build_query(NAME, 8), [SIP_RECORD]), "id"),
        (lambda: build_query(NAME, 7), "query"),
        (lambda: response_to(build_query(NAME, 7), rcode=dns.rcode.SERVFAIL), "SERVFAIL"),
        (lambda: response_to(build_query(NAME, 7), rcode=dns.rcode.REFUSED), "REFUSED"),
        (lambda: response_to(build_query("2." + NAME, 7), [SIP_RECORD]), "question"),
        (lambda: b"\x00\x07garbage", "malformed"),
        (lambda: b"", "malformed"),
    ],
)
def test_unusable_answers_raise_enum_error_saying_why(wire, reason):
    with pytest.raises(EnumError, match=reason):
        parse_answer(wire(), 7, NAME)


def test_a_truncated_answer_is_an_error():
    response = dns.message.from_wire(response_to(build_query(NAME, 7), [SIP_RECORD]))
    response.flags |= dns.flags.TC
    with pytest.raises(EnumError, match="truncated"):
        parse_answer(response.to_wire(), 7, NAME)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_parse_or_raise_enum_error_only(wire):
    try:
        parse_answer(wire, int.from_bytes(wire[:2] or b"\0\0", "big"), NAME)
    except EnumError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_answers_parse_or_raise_enum_error_only(damage):
    wire = bytearray(response_to(build_query(NAME, 7), [SIP_RECORD], soa=(60, 60)))
    for position, value in damage:
        wire[position % len(wire)] = value
    try:
        parse_answer(bytes(wire), 7, NAME)
    except EnumError:
        pass


def test_rfc_6116_example_rewrites_any_number_to_the_uri():
    assert apply_naptr([naptr("!^.*$!sip:info@example.com!")], NUMBER) == "sip:info@example.com"


def test_backreferences_copy_part_of_the_number():
    record = naptr(r"!^\+1(.*)$!sip:\1@gw.example.com!")
    assert apply_naptr([record], NUMBER) == "sip:5553837461@gw.example.com"


def test_the_result_is_the_substitution_not_a_replacement_inside_the_number():
    assert apply_naptr([naptr(r"!5(55)!sip:\1@example.com!")], NUMBER) == "sip:55@example.com"


def test_records_are_tried_by_order_then_preference():
    records = [
        naptr("!^.*$!sip:c@example.com!", order=20, preference=1),
        naptr("!^.*$!sip:b@example.com!", order=10, preference=20),
        naptr("!^.*$!sip:a@example.com!", order=10, preference=10),
    ]
    assert apply_naptr(records, NUMBER) == "sip:a@example.com"


def test_only_records_offering_the_service_are_used():
    records = [
        naptr("!^.*$!mailto:info@example.com!", services="E2U+email", order=1),
        naptr("!^.*$!sip:info@example.com!", services="E2U+sip", order=2),
    ]
    assert apply_naptr(records, NUMBER) == "sip:info@example.com"
    assert apply_naptr(records, NUMBER, service="E2U+email") == "mailto:info@example.com"
    assert apply_naptr(records, NUMBER, service="E2U+h323") is None


@pytest.mark.parametrize("services", ["sip+E2U", "e2u+SIP", "E2U+sip+voice:tel"])
def test_old_and_mixed_case_service_forms_match(services):
    assert apply_naptr([naptr("!^.*$!sip:x@example.com!", services=services)], NUMBER)


def test_the_terminal_flag_is_case_insensitive_and_other_flags_are_passed_over():
    assert apply_naptr([naptr("!^.*$!sip:x@example.com!", flags="U")], NUMBER)
    assert apply_naptr([naptr("!^.*$!sip:x@example.com!", flags="s")], NUMBER) is None


def test_non_terminal_records_are_ignored():
    records = [naptr("", flags="", replacement="other.e164.arpa", order=1)]
    assert apply_naptr(records, NUMBER) is None


def test_a_regexp_that_does_not_match_passes_to_the_next_record():
    records = [
        naptr(r"!^\+44(.*)$!sip:\1@uk.example!", order=1),
        naptr("!^.*$!sip:fallback@example.com!", order=2),
    ]
    assert apply_naptr(records, NUMBER) == "sip:fallback@example.com"


@pytest.mark.parametrize(
    "regexp",
    ["", "!^.*$!sip:x@example.com", "!(!sip:x!", "!^.*$!sip:x!g", r"!^.*$!sip:\2@x!",
     r"!^.*$!sip:x\!", "1^.*1sip:x1", "!a!b!c!d!"],
)
def test_malformed_regexps_are_skipped_and_reported(regexp):
    records = [naptr(regexp, order=1), naptr("!^.*$!sip:ok@example.com!", order=2)]
    rewrite = select_uri(records, NUMBER)
    assert rewrite.uri == "sip:ok@example.com"
    assert [record for record, _ in rewrite.skipped] == [records[0]]


def test_regexp_details_delimiter_escapes_case_flag_and_posix_classes():
    assert apply_naptr([naptr(r"#^\+1([[:digit:]]{3})#sip:\1\#x@example.com#")], NUMBER) == (
        "sip:555#x@example.com"
    )
    assert apply_naptr([naptr(r"/^\+1(5)(X)?/sip:\1\2\\@example.com/")], NUMBER) == (
        "sip:5\\@example.com"
    )
    record = naptr("!^[+]1555(A?)3837461$!sip:a@example.com!i")
    assert apply_naptr([record], NUMBER) == "sip:a@example.com"
    assert apply_naptr([naptr("!^.*X$!sip:a!")], "+1x") is None
    assert apply_naptr([naptr("!^.*X$!sip:a!i")], "+1x") == "sip:a"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_any_regexp_text_rewrites_or_is_skipped(regexp):
    rewrite = select_uri([naptr(regexp)], NUMBER)
    assert rewrite.uri is not None or len(rewrite.skipped) <= 1


def test_resolv_conf_nameservers_are_read_with_port_53(tmp_path):
    text = "# comment\nsearch example.com\nnameserver 192.0.2.1\nnameserver ::1\nnameserver bogus\n"
    assert parse_resolv_conf(text) == [("192.0.2.1", 53), ("::1", 53)]
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    assert servers_from_resolv_conf(str(path)) == [("192.0.2.1", 53), ("::1", 53)]
    assert servers_from_resolv_conf(str(tmp_path / "missing")) == []


@pytest.mark.parametrize(
    "text, expected",
    [("192.0.2.1", ("192.0.2.1", 53)), ("192.0.2.1:5353", ("192.0.2.1", 5353)),
     ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353)), ("[2001:db8::1]", ("2001:db8::1", 53))],
)
def test_enum_server_entries_parse(text, expected):
    assert parse_server_address(text) == expected


@pytest.mark.parametrize("text", ["dns.example.com", "192.0.2.1:0", "192.0.2.1:x", "[::1]:70000"])
def test_bad_enum_server_entries_name_the_setting(text):
    with pytest.raises(ValueError, match="ENUMServers"):
        parse_server_address(text)


# --- the resolver over a fake UDP reactor -------------------------------


class FakeUDPPort:
    def __init__(self, protocol, interface):
        self.protocol = protocol
        self.interface = interface
        self.written = []
        self.listening = True

    def write(self, packet, addr):
        self.written.append((packet, addr))

    def stopListening(self):
        self.listening = False
        self.protocol.doStop()


class FakeUDPReactor(Clock):
    """
    A Clock whose listenUDP records ports; C{refuse} makes it fail.
    """

    def __init__(self):
        super().__init__()
        self.ports = []
        self.refuse = False

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if self.refuse:
            raise CannotListenError(interface, port, OSError("no"))
        udp = FakeUDPPort(protocol, interface)
        self.ports.append(udp)
        protocol.makeConnection(udp)
        return udp

    def sent(self):
        """
        Every datagram sent so far, as (port, wire, address).
        """
        return [(p, wire, addr) for p in self.ports for wire, addr in p.written]

    def answer(self, records=(), source=None, **kwargs):
        """
        Answer the latest query from the server it went to (or C{source}).
        """
        port, wire, addr = self.sent()[-1]
        port.protocol.datagramReceived(response_to(wire, records, **kwargs), source or addr)

    def assert_idle(self):
        assert self.getDelayedCalls() == []
        assert not [p for p in self.ports if p.listening]


def make_resolver(servers=(SERVER,), **kwargs):
    reactor = FakeUDPReactor()
    registry = CollectorRegistry()
    resolver = EnumResolver(reactor, list(servers), registry=registry, **kwargs)
    return reactor, resolver, registry


def outcomes(registry):
    return {
        outcome: registry.get_sample_value(
            "communigate_enum_lookups_total", {"outcome": outcome}
        ) or 0
        for outcome in ("found", "not_found", "timeout", "error")
    }


def results(d):
    got = []
    d.addBoth(got.append)
    return got


def test_a_lookup_sends_one_naptr_query_and_fires_with_the_uri():
    reactor, resolver, registry = make_resolver()
    got = results(resolver.lookup(NUMBER))
    [(port, wire, addr)] = reactor.sent()
    assert addr == SERVER and port.interface == ""
    assert dns.message.from_wire(wire).question[0].name.to_text() == NAME + "."
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]
    assert outcomes(registry)["found"] == 1
    reactor.assert_idle()


def test_nxdomain_fires_none_and_counts_not_found():
    reactor, resolver, registry = make_resolver()
    got = results(resolver.lookup(NUMBER))
    reactor.answer(rcode=dns.rcode.NXDOMAIN)
    assert got == [None]
    assert outcomes(registry)["not_found"] == 1
    reactor.assert_idle()


def test_a_timeout_fires_none_and_counts_it_without_leaking():
    reactor, resolver, registry = make_resolver(timeout=2.0, retries=0)
    got = results(resolver.lookup(NUMBER))
    reactor.advance(1.9)
    assert got == []
    reactor.advance(0.1)
    assert got == [None]
    assert outcomes(registry)["timeout"] == 1
    reactor.assert_idle()


def test_after_a_timeout_the_next_server_is_asked():
    reactor, resolver, _ = make_resolver(servers=(SERVER, SECOND), retries=0)
    got = results(resolver.lookup(NUMBER))
    reactor.advance(2.0)
    assert [addr for _, _, addr in reactor.sent()] == [SERVER, SECOND]
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]
    reactor.assert_idle()


def test_retries_go_round_the_server_list_again_with_fresh_ports():
    reactor, resolver, registry = make_resolver(servers=(SERVER, SECOND), retries=1)
    got = results(resolver.lookup(NUMBER))
    reactor.pump([2.0] * 4)
    assert [addr for _, _, addr in reactor.sent()] == [SERVER, SECOND, SERVER, SECOND]
    assert len({id(port) for port, _, _ in reactor.sent()}) == 4
    assert got == [None]
    assert outcomes(registry)["timeout"] == 1
    reactor.assert_idle()


def test_datagrams_from_another_address_or_with_another_id_are_ignored():
    reactor, resolver, registry = make_resolver()
    got = results(resolver.lookup(NUMBER))
    reactor.answer(['1 1 "u" "E2U+sip" "!^.*$!sip:evil@example.com!" .'], source=("192.0.2.99", 53))
    reactor.answer(['1 1 "u" "E2U+sip" "!^.*$!sip:evil@example.com!" .'], source=(SERVER[0], 54))
    port, wire, _ = reactor.sent()[-1]
    query = dns.message.from_wire(wire)
    query.id ^= 1
    port.protocol.datagramReceived(response_to(query.to_wire(), [SIP_RECORD]), SERVER)
    assert got == []
    assert registry.get_sample_value("communigate_enum_stray_datagrams_total") == 3
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]
    port.protocol.datagramReceived(b"late", SERVER)
    assert registry.get_sample_value("communigate_enum_stray_datagrams_total") == 4
    reactor.assert_idle()


def test_a_malformed_answer_is_counted_as_error_and_fires_none():
    reactor, resolver, registry = make_resolver(retries=0)
    got = results(resolver.lookup(NUMBER))
    port, wire, _ = reactor.sent()[-1]
    port.protocol.datagramReceived(wire[:2] + b"\x80\x00broken", SERVER)
    assert got == [None]
    assert outcomes(registry)["error"] == 1
    reactor.assert_idle()


def test_a_server_failure_moves_on_to_the_next_server_at_once():
    reactor, resolver, registry = make_resolver(servers=(SERVER, SECOND), retries=0)
    got = results(resolver.lookup(NUMBER))
    reactor.answer(rcode=dns.rcode.SERVFAIL)
    assert [addr for _, _, addr in reactor.sent()] == [SERVER, SECOND]
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]
    reactor.assert_idle()


def test_a_port_that_cannot_be_opened_is_an_error_not_an_exception():
    reactor, resolver, registry = make_resolver(retries=0)
    reactor.refuse = True
    assert results(resolver.lookup(NUMBER)) == [None]
    assert outcomes(registry)["error"] == 1
    reactor.assert_idle()


def test_answers_are_cached_for_their_ttl_by_the_reactor_clock():
    reactor, resolver, registry = make_resolver()
    results(resolver.lookup(NUMBER))
    reactor.answer([SIP_RECORD], ttl=300)
    reactor.advance(299)
    assert results(resolver.lookup(NUMBER)) == ["sip:info@example.com"]
    assert len(reactor.sent()) == 1
    assert registry.get_sample_value("communigate_enum_cache_hits_total") == 1
    reactor.advance(1)
    got = results(resolver.lookup(NUMBER))
    assert len(reactor.sent()) == 2
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]


def test_cached_records_serve_other_services_too():
    reactor, resolver, _ = make_resolver()
    results(resolver.lookup(NUMBER))
    reactor.answer([SIP_RECORD, '100 20 "u" "E2U+email" "!^.*$!mailto:info@example.com!" .'])
    assert results(resolver.lookup(NUMBER, "E2U+email")) == ["mailto:info@example.com"]
    assert len(reactor.sent()) == 1


def test_nxdomain_is_cached_by_the_soa_minimum():
    reactor, resolver, registry = make_resolver()
    results(resolver.lookup(NUMBER))
    reactor.answer(rcode=dns.rcode.NXDOMAIN, soa=(3600, 30))
    reactor.advance(29)
    assert results(resolver.lookup(NUMBER)) == [None]
    assert len(reactor.sent()) == 1
    assert outcomes(registry)["not_found"] == 2
    reactor.advance(1)
    results(resolver.lookup(NUMBER))
    assert len(reactor.sent()) == 2


def test_timeouts_and_errors_are_not_cached():
    reactor, resolver, _ = make_resolver(retries=0)
    results(resolver.lookup(NUMBER))
    reactor.advance(2)
    results(resolver.lookup(NUMBER))
    assert len(reactor.sent()) == 2


def test_huge_ttls_are_cached_for_a_day_at_most():
    reactor, resolver, _ = make_resolver()
    results(resolver.lookup(NUMBER))
    reactor.answer([SIP_RECORD], ttl=2**31 - 1)
    reactor.advance(MAX_CACHE_TTL)
    results(resolver.lookup(NUMBER))
    assert len(reactor.sent()) == 2


def test_a_zero_ttl_answer_is_not_cached():
    reactor, resolver, _ = make_resolver()
    results(resolver.lookup(NUMBER))
    reactor.answer([SIP_RECORD], ttl=0)
    results(resolver.lookup(NUMBER))
    assert len(reactor.sent()) == 2


def test_the_cache_is_bounded_and_evicts_the_oldest_entry():
    reactor, resolver, _ = make_resolver(cache_size=2)
    for number in ("+1", "+2", "+3"):
        results(resolver.lookup(number))
        reactor.answer([SIP_RECORD])
    assert len(reactor.sent()) == 3
    results(resolver.lookup("+3"))
    results(resolver.lookup("+2"))
    assert len(reactor.sent()) == 3
    results(resolver.lookup("+1"))
    assert len(reactor.sent()) == 4


def test_suffixes_are_tried_in_order_until_one_gives_a_uri():
    reactor, resolver, registry = make_resolver(suffixes=("e164.arpa", "e164.example.net"))
    got = results(resolver.lookup(NUMBER))
    reactor.answer(rcode=dns.rcode.NXDOMAIN)
    _, wire, _ = reactor.sent()[-1]
    assert dns.message.from_wire(wire).question[0].name.to_text().endswith("e164.example.net.")
    reactor.answer([SIP_RECORD])
    assert got == ["sip:info@example.com"]
    assert outcomes(registry) == {"found": 1, "not_found": 0, "timeout": 0, "error": 0}


def test_an_ipv6_server_is_asked_from_an_ipv6_port():
    reactor, resolver, _ = make_resolver(servers=(("2001:db8::53", 53),))
    got = results(resolver.lookup(NUMBER))
    [(port, _, addr)] = reactor.sent()
    assert port.interface == "::"
    reactor.answer([SIP_RECORD], source=("2001:db8:0::53", 53, 0, 0))
    assert got == ["sip:info@example.com"]


def test_cancelling_a_lookup_closes_its_port_and_timer():
    reactor, resolver, _ = make_resolver()
    d = resolver.lookup(NUMBER)
    got = results(d)
    d.cancel()
    assert got[0].check(CancelledError)
    reactor.assert_idle()


def test_a_number_that_is_not_e164_fails_the_deferred():
    _, resolver, _ = make_resolver()
    [failure] = results(resolver.lookup("5553837461"))
    assert failure.check(ValueError)


def test_a_malformed_record_is_skipped_and_logged_while_the_next_one_answers():
    reactor, resolver, _ = make_resolver()
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        got = results(resolver.lookup(NUMBER))
        reactor.answer(['1 1 "u" "E2U+sip" "!(!x!" .', SIP_RECORD])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert got == ["sip:info@example.com"]
    [event] = [e for e in events if e.get("log_namespace", "").endswith("EnumResolver")]
    assert event["name"] == NAME and "regular expression" in event["reason"]


@pytest.mark.parametrize(
    "kwargs, setting",
    [({"servers": []}, "ENUMServers"), ({"servers": [("ns.example", 53)]}, "ENUMServers"),
     ({"servers": [SERVER], "suffixes": ()}, "ENUMDomains")],
)
def test_bad_settings_are_refused_naming_the_setting(kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        EnumResolver(FakeUDPReactor(), **kwargs)
