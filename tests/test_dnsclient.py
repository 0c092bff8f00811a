"""
The DNS client: the pure message half, and the client driven by a fake
UDP reactor whose clock the tests advance.

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

from communigate.dnsclient import (
    DEFAULT_NEGATIVE_TTL,
    EDNS_PAYLOAD,
    MAX_CACHE_TTL,
    DNSClient,
    DNSError,
    DNSTimeout,
    build_query,
    parse_response,
    parse_server_address,
)

SERVER = ("192.0.2.53", 53)
SECOND = ("192.0.2.54", 5353)
NAME = "_sip._udp.example.com"


def response_to(query_wire, records=(), rdtype=None, ttl=300, rcode=dns.rcode.NOERROR,
                soa=None, cname=None, additional=()):
    """
    An answer to C{query_wire}: C{records} are rdata texts of the question
    type (or C{rdtype}) for the question name (or for C{cname}'s target);
    C{soa} is (ttl, minimum); C{additional} is (name, ttl, type, text).
    """
    query = dns.message.from_wire(query_wire)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    owner = query.question[0].name
    rdtype = rdtype or dns.rdatatype.to_text(query.question[0].rdtype)
    if cname is not None:
        response.answer.append(dns.rrset.from_text(owner, cname[1], "IN", "CNAME", cname[0]))
        owner = cname[0]
    if records:
        response.answer.append(dns.rrset.from_text_list(owner, ttl, "IN", rdtype, list(records)))
    if soa is not None:
        response.authority.append(
            dns.rrset.from_text(
                "example.com.", soa[0], "IN", "SOA",
                f"ns.example.com. hostmaster.example.com. 1 3600 600 86400 {soa[1]}",
            )
        )
    for name, rr_ttl, rr_type, text in additional:
        response.additional.append(dns.rrset.from_text(name, rr_ttl, "IN", rr_type, text))
    return response.to_wire()


SRV = "10 60 5060 a.example.com."


# --- the pure half -----------------------------------------------------


def test_build_query_asks_a_recursive_question_of_the_type_with_edns():
    query = dns.message.from_wire(build_query(NAME, "SRV", 4711))
    assert query.id == 4711
    assert query.flags & dns.flags.RD and not query.flags & dns.flags.QR
    assert query.question[0].name.to_text() == NAME + "."
    assert query.question[0].rdtype == dns.rdatatype.SRV
    assert query.payload == EDNS_PAYLOAD


def test_parse_response_gives_the_rdata_rcode_ttl_and_lower_case_name():
    wire = response_to(build_query("_SIP._udp.Example.COM", "SRV", 7), [SRV], ttl=120)
    answer = parse_response(wire, 7, "_SIP._udp.Example.COM", "SRV")
    assert answer.name == NAME
    assert answer.rdtype == dns.rdatatype.SRV
    assert answer.rcode == dns.rcode.NOERROR and not answer.nxdomain
    assert answer.ttl == 120
    [record] = answer.records
    assert (record.priority, record.weight, record.port) == (10, 60, 5060)
    assert record.target.to_text() == "a.example.com."
    assert not answer.cached


def test_parse_response_keeps_the_additional_section_by_name_and_type():
    wire = response_to(
        build_query(NAME, "SRV", 7), [SRV],
        additional=[("A.example.com.", 30, "A", "192.0.2.10"),
                    ("a.example.com.", 40, "AAAA", "2001:db8::10")],
    )
    answer = parse_response(wire, 7, NAME, "SRV")
    assert [r.address for r in answer.additional_records("a.example.com.", "A")] == ["192.0.2.10"]
    assert [r.address for r in answer.additional_records("A.EXAMPLE.COM", dns.rdatatype.AAAA)] == [
        "2001:db8::10"
    ]
    assert answer.additional_records("b.example.com", "A") == ()
    assert {(rrset.name, rrset.ttl) for rrset in answer.additional} == {
        ("a.example.com", 30), ("a.example.com", 40)
    }


def test_parse_response_follows_a_cname_and_takes_the_smaller_ttl():
    wire = response_to(
        build_query("sip.example.com", "A", 7), ["192.0.2.1"], ttl=600,
        cname=("host.example.net.", 30),
    )
    answer = parse_response(wire, 7, "sip.example.com", "A")
    assert answer.ttl == 30
    assert [r.address for r in answer.records] == ["192.0.2.1"]


def test_nxdomain_is_an_answer_with_no_records_and_the_soa_minimum_as_ttl():
    wire = response_to(build_query(NAME, "SRV", 7), rcode=dns.rcode.NXDOMAIN, soa=(900, 45))
    answer = parse_response(wire, 7, NAME, "SRV")
    assert answer.nxdomain and answer.records == () and answer.ttl == 45


def test_no_data_without_soa_is_cached_for_the_default_time():
    answer = parse_response(response_to(build_query(NAME, "SRV", 7)), 7, NAME, "SRV")
    assert not answer.nxdomain and answer.records == ()
    assert answer.ttl == DEFAULT_NEGATIVE_TTL


@pytest.mark.parametrize(
    "wire, reason",
    [
        (lambda: response_to(build_query(NAME, "SRV", 8), [SRV]), "id"),
        (lambda: build_query(NAME, "SRV", 7), "query"),
        (lambda: response_to(build_query(NAME, "SRV", 7), rcode=dns.rcode.SERVFAIL), "SERVFAIL"),
        (lambda: response_to(build_query(NAME, "SRV", 7), rcode=dns.rcode.REFUSED), "REFUSED"),
        (lambda: response_to(build_query("x." + NAME, "SRV", 7), [SRV]), "question"),
        (lambda: response_to(build_query(NAME, "A", 7), ["192.0.2.1"]), "question"),
        (lambda: b"\x00\x07garbage", "malformed"),
    ],
)
def test_unusable_answers_raise_dns_error_saying_why(wire, reason):
    with pytest.raises(DNSError, match=reason):
        parse_response(wire(), 7, NAME, "SRV")


def test_a_truncated_answer_is_an_error():
    response = dns.message.from_wire(response_to(build_query(NAME, "SRV", 7), [SRV]))
    response.flags |= dns.flags.TC
    with pytest.raises(DNSError, match="truncated"):
        parse_response(response.to_wire(), 7, NAME, "SRV")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_answers_parse_or_raise_dns_error_only(damage):
    wire = bytearray(response_to(
        build_query(NAME, "SRV", 7), [SRV], soa=(60, 60),
        additional=[("a.example.com.", 30, "A", "192.0.2.10")],
    ))
    for position, value in damage:
        wire[position % len(wire)] = value
    try:
        parse_response(bytes(wire), 7, NAME, "SRV")
    except DNSError:
        pass


@pytest.mark.parametrize("name", ["", ".", "a..b", "x" * 64 + ".example", ("a" * 60 + ".") * 5])
def test_names_dns_cannot_ask_are_refused_before_sending(name):
    with pytest.raises(DNSError, match="not a DNS name"):
        build_query(name, "A", 1)


def test_server_entries_name_the_setting_they_came_from():
    assert parse_server_address("[::1]:5353") == ("::1", 5353)
    with pytest.raises(ValueError, match="SIPDNSServers entry 'dns.example'"):
        parse_server_address("dns.example", "SIPDNSServers")


# --- the client over a fake UDP reactor --------------------------------


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
    """A Clock whose listenUDP records ports; C{refuse} makes it fail."""

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
        """Every datagram sent so far, as (port, wire, address)."""
        return [(p, wire, addr) for p in self.ports for wire, addr in p.written]

    def question(self, index=-1):
        _, wire, addr = self.sent()[index]
        question = dns.message.from_wire(wire).question[0]
        return question.name.to_text(), dns.rdatatype.to_text(question.rdtype), addr

    def answer(self, records=(), source=None, **kwargs):
        """Answer the latest query from the server it went to (or C{source})."""
        port, wire, addr = self.sent()[-1]
        port.protocol.datagramReceived(response_to(wire, records, **kwargs), source or addr)

    def assert_idle(self):
        assert self.getDelayedCalls() == []
        assert not [p for p in self.ports if p.listening]


def make_client(servers=(SERVER,), **kwargs):
    reactor = FakeUDPReactor()
    registry = CollectorRegistry()
    client = DNSClient(reactor, list(servers), registry=registry, **kwargs)
    return reactor, client, registry


def results(d):
    got = []
    d.addBoth(got.append)
    return got


def queries(registry, rdtype="SRV"):
    return {
        outcome: registry.get_sample_value(
            "communigate_dns_queries_total", {"rdtype": rdtype, "outcome": outcome}
        ) or 0
        for outcome in ("answer", "nodata", "nxdomain", "cached", "joined", "timeout", "error")
    }


def test_a_query_sends_one_question_and_fires_with_the_answer():
    reactor, client, registry = make_client()
    got = results(client.query(NAME, "SRV"))
    assert reactor.question() == (NAME + ".", "SRV", SERVER)
    reactor.answer([SRV])
    [answer] = got
    assert [r.port for r in answer.records] == [5060]
    assert queries(registry)["answer"] == 1
    reactor.assert_idle()


def test_nxdomain_and_no_data_are_answers_counted_apart():
    reactor, client, registry = make_client()
    missing = results(client.query(NAME, "SRV"))
    reactor.answer(rcode=dns.rcode.NXDOMAIN)
    empty = results(client.query("other.example.com", "SRV"))
    reactor.answer()
    assert [a.nxdomain for a in missing + empty] == [True, False]
    assert queries(registry)["nxdomain"] == 1 and queries(registry)["nodata"] == 1


def test_a_timeout_fails_with_dns_timeout_after_every_attempt_without_leaking():
    reactor, client, registry = make_client(servers=(SERVER, SECOND), timeout=2.0, retries=1)
    got = results(client.query(NAME, "SRV"))
    reactor.pump([2.0] * 3 + [1.9])
    assert got == []
    reactor.advance(0.1)
    [failure] = got
    assert failure.check(DNSTimeout)
    assert [addr for _, _, addr in reactor.sent()] == [SERVER, SECOND, SERVER, SECOND]
    assert len({id(port) for port, _, _ in reactor.sent()}) == 4
    assert queries(registry)["timeout"] == 1
    reactor.assert_idle()


def test_a_server_failure_moves_on_to_the_next_server_at_once():
    reactor, client, _ = make_client(servers=(SERVER, SECOND), retries=0)
    got = results(client.query(NAME, "SRV"))
    reactor.answer(rcode=dns.rcode.SERVFAIL)
    assert reactor.question()[2] == SECOND
    reactor.answer([SRV])
    assert len(got[0].records) == 1
    reactor.assert_idle()


def test_the_server_that_answered_is_asked_first_next_time():
    reactor, client, _ = make_client(servers=(SERVER, SECOND), retries=0)
    results(client.query(NAME, "SRV"))
    reactor.advance(2.0)
    reactor.answer([SRV])
    results(client.query("b.example.com", "A"))
    assert reactor.question()[2] == SECOND


def test_new_servers_are_checked_and_asked_from_the_first():
    reactor, client, _ = make_client(servers=(SERVER, SECOND), retries=0)
    results(client.query(NAME, "SRV"))
    reactor.advance(2.0)
    reactor.answer([SRV])
    client.servers = [SERVER, SECOND]
    results(client.query("b.example.com", "A"))
    assert reactor.question()[2] == SERVER
    with pytest.raises(ValueError, match="DNS servers entry 'ns.example:53'"):
        client.servers = [("ns.example", 53)]
    with pytest.raises(ValueError, match="at least one"):
        client.servers = []


def test_a_malformed_answer_or_unopenable_port_is_an_error_not_an_exception():
    reactor, client, registry = make_client(retries=0)
    got = results(client.query(NAME, "SRV"))
    port, wire, _ = reactor.sent()[-1]
    port.protocol.datagramReceived(wire[:2] + b"\x80\x00broken", SERVER)
    reactor.refuse = True
    got += results(client.query(NAME, "SRV"))
    assert [f.check(DNSError) for f in got] == [DNSError, DNSError]
    assert queries(registry)["error"] == 2
    reactor.assert_idle()


def test_datagrams_from_elsewhere_with_another_id_or_late_are_counted_and_dropped():
    strays = []
    reactor, client, registry = make_client(on_stray=lambda addr, why: strays.append(why))
    got = results(client.query(NAME, "SRV"))
    reactor.answer([SRV], source=("192.0.2.99", 53))
    reactor.answer([SRV], source=(SERVER[0], 54))
    port, wire, _ = reactor.sent()[-1]
    query = dns.message.from_wire(wire)
    query.id ^= 1
    port.protocol.datagramReceived(response_to(query.to_wire(), [SRV]), SERVER)
    assert got == []
    reactor.answer([SRV])
    assert len(got) == 1
    port.protocol.datagramReceived(b"late", SERVER)
    assert registry.get_sample_value("communigate_dns_stray_datagrams_total") == 4
    assert strays == ["not from the server asked"] * 2 + [
        "id does not match the query", "after the exchange ended"
    ]
    reactor.assert_idle()


def test_an_ipv6_server_is_asked_from_an_ipv6_port():
    reactor, client, _ = make_client(servers=(("2001:db8::53", 53),))
    got = results(client.query(NAME, "SRV"))
    [(port, _, _)] = reactor.sent()
    assert port.interface == "::"
    reactor.answer([SRV], source=("2001:db8:0::53", 53, 0, 0))
    assert len(got[0].records) == 1


def test_cancelling_a_query_closes_its_port_and_timer():
    reactor, client, _ = make_client()
    d = client.query(NAME, "SRV")
    got = results(d)
    d.cancel()
    assert got[0].check(CancelledError)
    reactor.assert_idle()


def test_a_name_that_cannot_be_asked_fails_without_sending():
    reactor, client, registry = make_client()
    [failure] = results(client.query("a..b", "A"))
    assert failure.check(DNSError)
    assert reactor.sent() == []
    assert queries(registry, "A")["error"] == 1


# --- the cache -----------------------------------------------------------


def test_answers_are_cached_for_their_ttl_counting_down():
    reactor, client, registry = make_client()
    results(client.query(NAME, "SRV"))
    reactor.answer([SRV], ttl=300)
    reactor.advance(299.5)
    [cached] = results(client.query(NAME.upper() + ".", "SRV"))
    assert cached.cached and cached.ttl == 1 and len(cached.records) == 1
    assert len(reactor.sent()) == 1
    assert queries(registry)["cached"] == 1
    reactor.advance(0.5)
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 2


def test_the_cache_is_per_type():
    reactor, client, _ = make_client()
    results(client.query("sip.example.com", "A"))
    reactor.answer(["192.0.2.1"])
    results(client.query("sip.example.com", "AAAA"))
    assert reactor.question() == ("sip.example.com.", "AAAA", SERVER)


def test_cached_additional_records_expire_by_their_own_ttl():
    reactor, client, _ = make_client()
    results(client.query(NAME, "SRV"))
    reactor.answer([SRV], ttl=300, additional=[("a.example.com.", 30, "A", "192.0.2.10")])
    reactor.advance(29)
    [answer] = results(client.query(NAME, "SRV"))
    assert [rrset.ttl for rrset in answer.additional] == [1]
    reactor.advance(1)
    [answer] = results(client.query(NAME, "SRV"))
    assert answer.additional == () and len(answer.records) == 1


def test_negative_answers_are_cached_by_the_soa_minimum():
    reactor, client, _ = make_client()
    results(client.query(NAME, "SRV"))
    reactor.answer(rcode=dns.rcode.NXDOMAIN, soa=(3600, 30))
    reactor.advance(29)
    [answer] = results(client.query(NAME, "SRV"))
    assert answer.nxdomain and answer.cached
    reactor.advance(1)
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 2


def test_timeouts_errors_and_zero_ttls_are_not_cached():
    reactor, client, _ = make_client(retries=0)
    results(client.query(NAME, "SRV"))
    reactor.advance(2)
    results(client.query(NAME, "SRV"))
    reactor.answer(rcode=dns.rcode.SERVFAIL)
    results(client.query(NAME, "SRV"))
    reactor.answer([SRV], ttl=0)
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 4


def test_huge_ttls_are_cached_for_a_day_at_most():
    reactor, client, _ = make_client()
    results(client.query(NAME, "SRV"))
    reactor.answer([SRV], ttl=2**31 - 1)
    reactor.advance(MAX_CACHE_TTL)
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 2


def test_the_cache_is_bounded_and_evicts_the_least_recently_used():
    reactor, client, _ = make_client(cache_size=2)
    for name in ("a.example", "b.example", "c.example"):
        results(client.query(name, "A"))
        reactor.answer(["192.0.2.1"])
    results(client.query("b.example", "A"))
    results(client.query("d.example", "A"))
    reactor.answer(["192.0.2.1"])
    assert len(reactor.sent()) == 4
    results(client.query("b.example", "A"))
    assert len(reactor.sent()) == 4
    results(client.query("c.example", "A"))
    assert len(reactor.sent()) == 5


def test_a_zero_cache_size_caches_nothing():
    reactor, client, _ = make_client(cache_size=0)
    results(client.query(NAME, "SRV"))
    reactor.answer([SRV])
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 2


def test_clients_sharing_a_registry_share_its_counters():
    registry = CollectorRegistry()
    reactor = FakeUDPReactor()
    first = DNSClient(reactor, [SERVER], registry=registry)
    second = DNSClient(reactor, [SECOND], registry=registry)
    results(first.query(NAME, "SRV"))
    reactor.answer([SRV])
    results(second.query(NAME, "SRV"))
    reactor.answer([SRV])
    assert queries(registry)["answer"] == 2


# --- questions on their way ------------------------------------------------


def test_a_question_asked_while_the_same_is_on_its_way_joins_it():
    reactor, client, registry = make_client()
    first = results(client.query(NAME, "SRV"))
    second = results(client.query(NAME.upper(), "SRV"))
    assert len(reactor.sent()) == 1
    reactor.answer([SRV])
    assert first == second and len(first[0].records) == 1
    assert queries(registry)["joined"] == 1 and queries(registry)["answer"] == 1
    reactor.assert_idle()


def test_a_failure_reaches_every_asker():
    reactor, client, _ = make_client(retries=0)
    asked = [results(client.query(NAME, "SRV")) for _ in range(3)]
    reactor.advance(2.0)
    assert [got[0].check(DNSTimeout) for got in asked] == [DNSTimeout] * 3


def test_cancelling_one_asker_leaves_the_others_waiting_and_the_last_ends_the_exchange():
    reactor, client, _ = make_client()
    first_d, second_d, third_d = (client.query(NAME, "SRV") for _ in range(3))
    first, second, third = results(first_d), results(second_d), results(third_d)
    first_d.cancel()
    assert first[0].check(CancelledError) and [p for p in reactor.ports if p.listening]
    second_d.cancel()
    reactor.answer([SRV])
    assert second[0].check(CancelledError) and len(third[0].records) == 1
    d = client.query("b.example.com", "A")
    d.cancel()
    reactor.assert_idle()
    results(client.query("b.example.com", "A"))
    assert len(reactor.sent()) == 3


def test_without_joining_each_question_is_sent():
    reactor, client, registry = make_client(join=False)
    results(client.query(NAME, "SRV"))
    results(client.query(NAME, "SRV"))
    assert len(reactor.sent()) == 2
    assert queries(registry)["joined"] == 0


def test_a_message_with_another_opcode_is_not_an_answer():
    import dns.message
    import dns.opcode

    from communigate.dnsclient import DNSError, build_query, parse_response

    wire = bytearray(build_query("example.test", "A", 7))
    wire[2] = (wire[2] | 0x80) | (dns.opcode.NOTIFY << 3)  # QR set, opcode NOTIFY
    with pytest.raises(DNSError, match="opcode NOTIFY"):
        parse_response(bytes(wire), 7, "example.test", "A")
