"""
RFC 3263 location against a real DNS server: twisted.names answering
NAPTR, SRV, A and AAAA questions for example.test on an ephemeral UDP port
of 127.0.0.1, and the Locator over a DNSClient on the real reactor.

The cache is observed through the questions the server counts: a second
location within the TTLs asks again only for the record set served with
TTL 0.
"""

import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import defer, reactor
from twisted.names import dns as tdns
from twisted.names import error, server
from twisted.names.common import ResolverBase

from communigate.dnsclient import DNSClient
from communigate.sip.locate import Locator, Target

#: Ceiling for each location, so a broken exchange fails the test instead
#: of hanging it.
DEADLINE = 10.0


def rr(name, payload, ttl=300):
    return tdns.RRHeader(name, payload.TYPE, tdns.IN, ttl, payload, auth=True)


class SipZone(ResolverBase):
    """
    Answers from a dict of (name, type) -> (answers, additional) and
    counts the questions; a name with no entry at all does not exist.
    """

    def __init__(self, records):
        super().__init__()
        self.records = records
        self.names = {name for name, _ in records}
        self.queries = []

    def _lookup(self, name, cls, type, timeout):
        name = name.lower()
        self.queries.append((name.decode(), tdns.QUERY_TYPES.get(type, type)))
        if name not in self.names:
            return defer.fail(error.DomainError(name))
        answers, additional = self.records.get((name, type), ([], []))
        return defer.succeed((answers, [], additional))


ZONE = {
    (b"example.test", tdns.NAPTR): ([
        rr(b"example.test", tdns.Record_NAPTR(order, pref, b"s", service, b"", replacement))
        for order, pref, service, replacement in [
            (10, 20, b"SIP+D2U", b"_sip._udp.example.test"),
            (10, 10, b"SIP+D2T", b"_sip._tcp.example.test"),
            (10, 30, b"SIPS+D2T", b"_sips._tcp.example.test"),
            # SCTP is not ours: passed over
            (10, 5, b"SIP+D2S", b"_sip._sctp.example.test"),
        ]
    ], []),
    (b"_sip._tcp.example.test", tdns.SRV): ([
        rr(b"_sip._tcp.example.test", tdns.Record_SRV(20, 0, 5080, b"b.example.test")),
        rr(b"_sip._tcp.example.test", tdns.Record_SRV(10, 0, 5070, b"a.example.test")),
    ], []),
    (b"_sip._udp.example.test", tdns.SRV): (
        [rr(b"_sip._udp.example.test", tdns.Record_SRV(10, 0, 5060, b"a.example.test"))],
        [rr(b"a.example.test", tdns.Record_A("127.0.0.2"))],
    ),
    (b"_sips._tcp.example.test", tdns.SRV): (
        [rr(b"_sips._tcp.example.test", tdns.Record_SRV(10, 0, 5061, b"c.example.test"), ttl=0)],
        [],
    ),
    (b"a.example.test", tdns.A): ([rr(b"a.example.test", tdns.Record_A("127.0.0.2"))], []),
    (b"a.example.test", tdns.AAAA): ([rr(b"a.example.test", tdns.Record_AAAA("::1"))], []),
    (b"b.example.test", tdns.A): ([rr(b"b.example.test", tdns.Record_A("127.0.0.3"))], []),
    (b"c.example.test", tdns.A): ([rr(b"c.example.test", tdns.Record_A("127.0.0.4"))], []),
}

EXPECTED = [
    Target("tcp", "127.0.0.2", 5070),
    Target("tcp", "::1", 5070),
    Target("tcp", "127.0.0.3", 5080),
    Target("udp", "127.0.0.2", 5060),
    Target("udp", "::1", 5060),
    Target("tls", "127.0.0.4", 5061),
]


def serve(records):
    zone = SipZone(records)
    factory = server.DNSServerFactory(authorities=[zone])
    port = reactor.listenUDP(0, tdns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    return zone, port


def locator_for(port, registry=None, **kwargs):
    client = DNSClient(
        reactor, [("127.0.0.1", port.getHost().port)], timeout=2.0, registry=registry, **kwargs
    )
    return Locator(client)


def with_deadline(d):
    return d.addTimeout(DEADLINE, reactor)


@pytest_twisted.inlineCallbacks
def test_live_location_follows_naptr_srv_and_addresses_and_caches_by_ttl():
    zone, port = serve(ZONE)
    registry = CollectorRegistry()
    locator = locator_for(port, registry)
    try:
        targets = yield with_deadline(locator.locate("example.test"))
        assert targets == EXPECTED
        # a.example.test's A came with the UDP SRV answer, but the TCP
        # branch asks for it; its AAAA is asked once, by whichever branch
        # comes first, the other joining that question or finding it cached
        assert sorted(zone.queries) == sorted([
            ("example.test", "NAPTR"),
            ("_sip._tcp.example.test", "SRV"),
            ("_sip._udp.example.test", "SRV"),
            ("_sips._tcp.example.test", "SRV"),
            ("a.example.test", "A"), ("a.example.test", "AAAA"),
            ("b.example.test", "A"), ("b.example.test", "AAAA"),
            ("c.example.test", "A"), ("c.example.test", "AAAA"),
        ])

        del zone.queries[:]
        again = yield with_deadline(locator.locate("example.test"))
        assert again == EXPECTED
        # everything else is within its TTL (nodata AAAA for its negative TTL)
        assert zone.queries == [("_sips._tcp.example.test", "SRV")]
        assert registry.get_sample_value(
            "communigate_dns_queries_total", {"rdtype": "NAPTR", "outcome": "cached"}
        ) == 1
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_location_uses_srv_glue_and_skips_naptr_for_a_transport_param():
    zone, port = serve(ZONE)
    locator = locator_for(port)
    try:
        targets = yield with_deadline(locator.locate("example.test", transport="udp"))
        assert targets == [Target("udp", "127.0.0.2", 5060), Target("udp", "::1", 5060)]
        # the A record came in the additional section; only AAAA is asked
        assert zone.queries == [("_sip._udp.example.test", "SRV"), ("a.example.test", "AAAA")]
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_location_of_an_unknown_domain_is_empty_after_one_question():
    zone, port = serve(ZONE)
    locator = locator_for(port)
    try:
        targets = yield with_deadline(locator.locate("nowhere.test"))
        assert targets == []
        assert zone.queries == [("nowhere.test", "NAPTR")]
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_location_with_an_explicit_port_asks_only_for_addresses():
    zone, port = serve(ZONE)
    locator = locator_for(port)
    try:
        targets = yield with_deadline(locator.locate("A.Example.Test", port=5099, transport="tcp"))
        assert targets == [Target("tcp", "127.0.0.2", 5099), Target("tcp", "::1", 5099)]
        assert sorted(zone.queries) == [("a.example.test", "A"), ("a.example.test", "AAAA")]
    finally:
        yield port.stopListening()
