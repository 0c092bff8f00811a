"""
ENUM against a real DNS server: twisted.names serving NAPTR records on an
ephemeral UDP port of 127.0.0.1, and the EnumResolver on the real reactor.
"""

import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns as tdns

from communigate.routing.enum import EnumResolver
from communigate.testing import served_zone

NUMBER = "+15553837461"
NAME = b"1.6.4.7.3.8.3.5.5.5.1.e164.arpa"

#: Ceiling for each lookup, so a broken exchange fails the test instead
#: of hanging it.
DEADLINE = 10.0


def with_deadline(d):
    return d.addTimeout(DEADLINE, reactor)


@pytest_twisted.inlineCallbacks
def test_live_lookups_resolve_miss_and_come_from_the_cache_the_second_time():
    zone, port = served_zone(
        {
            NAME: [
                tdns.Record_NAPTR(
                    100, 20, b"u", b"E2U+email", b"!^.*$!mailto:info@example.com!", b""
                ),
                tdns.Record_NAPTR(
                    100, 10, b"u", b"E2U+sip", b"!^\\+1(.*)$!sip:\\1@gw.example.com!", b""
                ),
            ]
        }
    )
    registry = CollectorRegistry()
    resolver = EnumResolver(
        reactor, [("127.0.0.1", port.getHost().port)], timeout=2.0, registry=registry
    )
    try:
        uri = yield with_deadline(resolver.lookup(NUMBER))
        assert uri == "sip:5553837461@gw.example.com"

        missing = yield with_deadline(resolver.lookup("+4930123456"))
        assert missing is None

        again = yield with_deadline(resolver.lookup(NUMBER))
        assert again == uri
        assert zone.queries == [NAME, b"6.5.4.3.2.1.0.3.9.4.e164.arpa"]
        assert registry.get_sample_value("communigate_enum_cache_hits_total") == 1
        assert registry.get_sample_value(
            "communigate_enum_lookups_total", {"outcome": "found"}
        ) == 2
        assert registry.get_sample_value(
            "communigate_enum_lookups_total", {"outcome": "not_found"}
        ) == 1
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_live_lookup_of_a_silent_server_ends_in_none_after_the_timeout():
    silent = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
    resolver = EnumResolver(
        reactor, [("127.0.0.1", silent.getHost().port)], timeout=0.2, retries=0
    )
    try:
        result = yield with_deadline(resolver.lookup(NUMBER))
        assert result is None
    finally:
        yield silent.stopListening()
