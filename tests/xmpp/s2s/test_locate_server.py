"""
RFC 6120 section 3.2 server location over a fake DNS client: a dict of
(name, type) -> records, answering at once and recording the questions.
"""

import random

import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest
from twisted.internet.defer import fail, succeed

from communigate.dnsclient import Answer, DNSError, DNSTimeout, RecordSet
from communigate.xmpp import s2s_dns
from communigate.xmpp.s2s import S2SFailure

NXDOMAIN = object()
TIMEOUT = object()
SERVFAIL = object()


class FakeDNSClient:
    """
    Answers from C{zone}: (name, type) -> list of rdata texts, or NXDOMAIN,
    TIMEOUT or SERVFAIL; a missing entry is an empty answer.  C{glue}:
    (name, type) -> [(owner, type, text)] for the additional section.
    """

    def __init__(self, zone, glue=None):
        self.zone = zone
        self.glue = glue or {}
        self.asked = []

    def query(self, name, rdtype):
        rdtype = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
        self.asked.append((name, rdtype))
        entry = self.zone.get((name, rdtype), [])
        if entry is TIMEOUT:
            return fail(DNSTimeout("no answer"))
        if entry is SERVFAIL:
            return fail(DNSError("server answered SERVFAIL"))
        if entry is NXDOMAIN:
            return succeed(Answer(name, rdtype, dns.rcode.NXDOMAIN, (), 60))
        additional = tuple(
            RecordSet(owner, dns.rdatatype.from_text(kind), 300, (dns.rdata.from_text("IN", kind, text),))
            for owner, kind, text in self.glue.get((name, rdtype), ())
        )
        records = tuple(dns.rdata.from_text("IN", rdtype, text) for text in entry)
        return succeed(Answer(name, dns.rdatatype.from_text(rdtype), dns.rcode.NOERROR, records, 300, additional))


def locate(zone, domain, glue=None):
    client = FakeDNSClient(zone, glue)
    got = []
    s2s_dns.locate(client, domain, random.Random(1)).addBoth(got.append)
    [result] = got
    return result, client.asked


def failure_of(result):
    assert not isinstance(result, list), result
    result.trap(S2SFailure)
    return result.value.condition


def test_srv_records_are_used_in_priority_order_with_their_ports():
    zone = {
        ("_xmpp-server._tcp.example.test", "SRV"): ["20 0 5270 b.example.test.", "10 0 5269 a.example.test."],
        ("a.example.test", "A"): ["192.0.2.1"],
        ("a.example.test", "AAAA"): ["2001:db8::1"],
        ("b.example.test", "A"): ["192.0.2.2"],
    }
    found, asked = locate(zone, "example.test")
    assert found == [("192.0.2.1", 5269), ("2001:db8::1", 5269), ("192.0.2.2", 5270)]
    assert asked[0] == ("_xmpp-server._tcp.example.test", "SRV")


def test_without_srv_records_the_domain_itself_is_tried_on_5269():
    zone = {("example.test", "A"): ["192.0.2.7"]}
    found, asked = locate(zone, "example.test")
    assert found == [("192.0.2.7", 5269)]
    assert asked == [("_xmpp-server._tcp.example.test", "SRV"), ("example.test", "A"), ("example.test", "AAAA")]


@pytest.mark.parametrize("srv", [NXDOMAIN, SERVFAIL, TIMEOUT])
def test_a_failed_or_missing_srv_lookup_falls_back_to_the_domain(srv):
    zone = {("_xmpp-server._tcp.example.test", "SRV"): srv, ("example.test", "AAAA"): ["2001:db8::7"]}
    found, _asked = locate(zone, "example.test")
    assert found == [("2001:db8::7", 5269)]


def test_a_lone_dot_target_means_no_service_and_no_fallback():
    zone = {("_xmpp-server._tcp.example.test", "SRV"): ["0 0 0 ."], ("example.test", "A"): ["192.0.2.7"]}
    result, asked = locate(zone, "example.test")
    assert failure_of(result) == "remote-server-not-found"
    assert asked == [("_xmpp-server._tcp.example.test", "SRV")]


def test_addresses_in_the_additional_section_are_not_asked_again():
    zone = {("_xmpp-server._tcp.example.test", "SRV"): ["0 0 5269 x.example.test."]}
    glue = {("_xmpp-server._tcp.example.test", "SRV"): [("x.example.test", "A", "192.0.2.9")]}
    found, asked = locate(zone, "example.test", glue)
    assert found == [("192.0.2.9", 5269)]
    assert ("x.example.test", "A") not in asked and ("x.example.test", "AAAA") in asked


def test_a_domain_without_addresses_is_not_found():
    result, _asked = locate({}, "example.test")
    assert failure_of(result) == "remote-server-not-found"


def test_dns_that_never_answers_is_a_timeout():
    zone = {
        ("_xmpp-server._tcp.example.test", "SRV"): TIMEOUT,
        ("example.test", "A"): TIMEOUT,
        ("example.test", "AAAA"): TIMEOUT,
    }
    result, _asked = locate(zone, "example.test")
    assert failure_of(result) == "remote-server-timeout"


def test_an_ip_literal_domain_is_connected_to_directly():
    for domain, address in (("192.0.2.5", "192.0.2.5"), ("[2001:db8::5]", "2001:db8::5")):
        found, asked = locate({}, domain)
        assert found == [(address, 5269)] and asked == []


def test_duplicate_addresses_are_tried_once_and_the_list_is_bounded():
    targets = [f"10 0 5269 t{n}.example.test." for n in range(40)]
    zone = {("_xmpp-server._tcp.example.test", "SRV"): targets}
    for n in range(40):
        zone[(f"t{n}.example.test", "A")] = ["192.0.2.1", f"198.51.100.{n}"]
    found, _asked = locate(zone, "example.test")
    assert len(found) == s2s_dns.MAX_ADDRESSES
    assert len(set(found)) == len(found)
