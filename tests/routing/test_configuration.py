"""
Tests for the Router's stored configuration: the Router table and settings
in the store, parsed once per change (also a change made by another
process), validated whole before anything is stored; and L{EnumRouting},
the ENUM lookups the settings ask for, over a fake UDP reactor.
"""

import dns.message
import dns.rrset
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from communigate.directory import Directory
from communigate.routing.configuration import EnumRouting, RouterConfiguration, enum_settings
from communigate.routing.e164 import E164Settings
from communigate.routing.route import AddressKind, Module, Route
from communigate.routing.router import Router
from communigate.routing.table import RouterTableError
from communigate.storage import MemoryStore
from communigate.storage.sqlite import SQLiteStore

E164_PLAN = {
    "E164Conversion": "YES",
    "E164CountryCode": "1",
    "E164AreaCode": "555",
    "E164NationalPrefix": "0",
    "E164InternationalPrefix": "00",
    "E164LocalNumberLength": "7",
}


class CountingStore(MemoryStore):
    """
    A MemoryStore that counts reads, to see what the configuration caches.
    """

    def __init__(self):
        super().__init__()
        self.reads = 0

    def get(self, kind, key):
        self.reads += 1
        return super().get(kind, key)


@pytest.fixture
def store():
    return CountingStore()


@pytest.fixture
def configuration(store):
    return RouterConfiguration(store)


# -- the table ------------------------------------------------------------------------


def test_an_empty_store_has_an_empty_table_and_no_settings(configuration):
    assert configuration.table.text == ""
    assert configuration.table.records == ()
    assert configuration.settings == {}
    assert configuration.e164 == E164Settings()


def test_a_stored_table_is_read_back_as_written(configuration):
    text = "; comment\n<a> = b   ; why\r\nS:<*@pstn> = gatewaycaller{*}#pbx\n"
    configuration.set_table(text)
    assert configuration.table.text == text
    assert [record.line for record in configuration.table.records] == [2, 3]


def test_the_table_is_not_read_again_while_the_store_is_unchanged(store, configuration):
    configuration.set_table("<a> = b")
    first = configuration.table
    reads = store.reads
    for _ in range(5):
        assert configuration.table is first
        configuration.settings
        configuration.e164
    assert store.reads == reads


def test_another_change_in_the_store_rereads_but_keeps_the_parsed_table(store, configuration):
    configuration.set_table("<a> = b")
    first = configuration.table
    reads = store.reads
    store.put("unrelated", "key", "value")
    assert configuration.table is first
    assert store.reads > reads


def test_a_new_table_replaces_the_cached_one(configuration):
    configuration.set_table("<a> = b")
    first = configuration.table
    configuration.set_table("<a> = c")
    assert configuration.table is not first
    assert configuration.table.records[0].target == "c"


def test_set_table_returns_the_parsed_table(configuration):
    table = configuration.set_table("<a> = b\n<c> = NULL")
    assert len(table.records) == 2


def test_a_bad_table_is_refused_whole_naming_the_line_and_nothing_is_stored(store, configuration):
    configuration.set_table("<a> = b")
    with pytest.raises(RouterTableError) as caught:
        configuration.set_table("<x> = y\n\n<ok> = fine\nX:<a> = b\n<z> = NULL")
    assert caught.value.line == 4
    assert "unknown record type 'X'" in str(caught.value)
    assert str(caught.value).startswith("line 4: ")
    assert configuration.table.text == "<a> = b"
    fresh = RouterConfiguration(store)
    assert fresh.table.text == "<a> = b"


def test_a_bad_first_table_stores_nothing(store, configuration):
    with pytest.raises(RouterTableError):
        configuration.set_table("<a> = b\n<broken")
    assert store.get("server", "router-table") is None
    assert configuration.table.text == ""


def test_a_change_by_another_process_is_seen(tmp_path):
    path = str(tmp_path / "data.sqlite")
    ours, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        configuration = RouterConfiguration(ours)
        other = RouterConfiguration(theirs)
        assert configuration.table.text == ""
        other.set_table("<a> = b")
        assert configuration.table.text == "<a> = b"
        other.set_settings(E164_PLAN)
        assert configuration.settings == E164_PLAN
        assert configuration.e164.country_code == "1"
        other.set_table("<a> = c")
        assert configuration.table.records[0].target == "c"
    finally:
        ours.close()
        theirs.close()


def test_our_own_change_on_sqlite_is_seen_at_once(tmp_path):
    store = SQLiteStore(str(tmp_path / "data.sqlite"))
    try:
        configuration = RouterConfiguration(store)
        configuration.table
        configuration.set_table("<a> = b")
        assert configuration.table.text == "<a> = b"
    finally:
        store.close()


# -- the settings ---------------------------------------------------------------------


def test_settings_are_stored_and_read_back_with_their_dialling_plan(configuration):
    configuration.set_settings({**E164_PLAN, "ENUMRouting": "YES", "Other": "kept"})
    assert configuration.settings == {**E164_PLAN, "ENUMRouting": "YES", "Other": "kept"}
    assert configuration.e164 == E164Settings("1", "555", "0", "00", 7, True)


def test_update_settings_merges_and_default_removes_a_key(configuration):
    configuration.set_settings(E164_PLAN)
    configuration.update_settings({"E164AreaCode": "212", "E164LocalNumberLength": "default"})
    expected = {**E164_PLAN, "E164AreaCode": "212"}
    del expected["E164LocalNumberLength"]
    assert configuration.settings == expected


def test_update_settings_refuses_a_bad_result_and_keeps_the_old(configuration):
    configuration.set_settings(E164_PLAN)
    with pytest.raises(ValueError, match="E164CountryCode is empty"):
        configuration.update_settings({"E164CountryCode": "default"})
    assert configuration.settings == E164_PLAN


def test_update_settings_merges_into_what_another_process_stored(tmp_path):
    path = str(tmp_path / "data.sqlite")
    ours, theirs = SQLiteStore(path), SQLiteStore(path)
    try:
        configuration = RouterConfiguration(ours)
        assert configuration.settings == {}
        RouterConfiguration(theirs).set_settings({"ENUMRouting": "YES"})
        configuration.update_settings({"E164CountryCode": "1"})
        assert RouterConfiguration(theirs).settings == {
            "ENUMRouting": "YES", "E164CountryCode": "1"
        }
    finally:
        ours.close()
        theirs.close()


def test_the_settings_returned_are_a_copy(configuration):
    configuration.set_settings(E164_PLAN)
    configuration.settings["E164CountryCode"] = "44"
    assert configuration.settings["E164CountryCode"] == "1"


BAD_SETTINGS = [
    ({"E164Conversion": "maybe"}, "E164Conversion must be YES or NO"),
    ({"E164Conversion": "YES"}, "E164CountryCode is empty"),
    ({"E164CountryCode": "012"}, "E164CountryCode"),
    ({"E164CountryCode": "1234"}, "E164CountryCode must be up to 3 digits"),
    ({"E164AreaCode": "5a5"}, "E164AreaCode must be up to 12 digits"),
    ({"E164NationalPrefix": "0", "E164InternationalPrefix": "0"}, "must differ"),
    ({"E164LocalNumberLength": "99"}, "E164LocalNumberLength must be a number from 0 to 15"),
    ({"E164LocalNumberLength": "seven"}, "E164LocalNumberLength must be a number"),
    ({"E164CountryCode": ["1"]}, "E164CountryCode must be a string"),
    ({"ENUMRouting": "maybe"}, "ENUMRouting must be YES or NO, not 'maybe'"),
    ({"ENUMRouting": ["YES"]}, "ENUMRouting must be YES or NO"),
    ({"ENUMDomains": "e164.arpa"}, "ENUMDomains must be an array of domain names"),
    ({"ENUMDomains": []}, "ENUMDomains must be an array of domain names"),
    ({"ENUMDomains": ["e164.arpa", "a..b"]}, "ENUMDomains entry 'a..b' is not a domain name"),
    ({"ENUMDomains": ["bad domain"]}, "ENUMDomains entry 'bad domain'"),
    ({"ENUMServers": "192.0.2.1"}, "ENUMServers must be an array of ip:port"),
    ({"ENUMServers": ["dns.example"]}, "ENUMServers entry 'dns.example' is not ip"),
    ({"ENUMServers": ["192.0.2.1:99999"]}, "ENUMServers entry '192.0.2.1:99999'"),
]


@pytest.mark.parametrize("bad, message", BAD_SETTINGS)
def test_bad_settings_are_refused_naming_the_key_and_nothing_is_stored(
    configuration, bad, message
):
    configuration.set_settings({"E164CountryCode": "44"})
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        configuration.set_settings(bad)
    assert configuration.settings == {"E164CountryCode": "44"}


def test_enum_settings_defaults_are_off_with_the_e164_arpa_suffix():
    assert enum_settings({}) == (False, ("e164.arpa",), ())


def test_enum_settings_read_the_switch_suffixes_and_servers():
    assert enum_settings({
        "ENUMRouting": "yes",
        "ENUMDomains": ["e164.arpa.", "e164.org"],
        "ENUMServers": ["192.0.2.1", "192.0.2.2:5353", "[::1]:53"],
    }) == (
        True,
        ("e164.arpa", "e164.org"),
        (("192.0.2.1", 53), ("192.0.2.2", 5353), ("::1", 53)),
    )


# -- ENUM lookups as the settings say --------------------------------------------------

SERVER = ("192.0.2.53", 53)
OTHER_SERVER = ("192.0.2.54", 5353)


class FakeUDPPort:
    def __init__(self, reactor, protocol):
        self.reactor = reactor
        self.protocol = protocol
        self.listening = True

    def write(self, packet, addr):
        self.reactor.sent.append((packet, addr, self))

    def stopListening(self):
        self.listening = False


class FakeUDPReactor(Clock):
    """
    A Clock with listenUDP: what is sent is recorded; answers are handed
    to the sending protocol.
    """

    def __init__(self):
        super().__init__()
        self.sent = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        transport = FakeUDPPort(self, protocol)
        protocol.makeConnection(transport)
        return transport

    def question(self, index=-1):
        packet, addr, _ = self.sent[index]
        return str(dns.message.from_wire(packet).question[0].name), addr

    def answer(self, regexp, index=-1):
        packet, addr, port = self.sent[index]
        query = dns.message.from_wire(packet)
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text(
            query.question[0].name, 300, "IN", "NAPTR", f'100 10 "u" "E2U+sip" "{regexp}" .'
        ))
        port.protocol.datagramReceived(response.to_wire(), addr)


class DefaultServers:
    """
    The system's servers, counting how often they are read.
    """

    def __init__(self, servers=(SERVER,)):
        self.servers = list(servers)
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return list(self.servers)


def fired(d):
    results = []
    d.addBoth(results.append)
    assert results, "the lookup has not finished"
    return results[0]


@pytest.fixture
def reactor():
    return FakeUDPReactor()


@pytest.fixture
def registry():
    return CollectorRegistry()


def enum_routing(reactor, configuration, registry, defaults=None):
    return EnumRouting(reactor, configuration, registry,
                       default_servers=defaults or DefaultServers())


def test_enum_routing_off_answers_none_without_touching_the_network(
    reactor, configuration, registry
):
    defaults = DefaultServers()
    enum = enum_routing(reactor, configuration, registry, defaults)
    configuration.set_settings({"ENUMRouting": "NO", "ENUMServers": ["192.0.2.53"]})
    assert fired(enum.lookup("+15553837461")) is None
    assert fired(enum.lookup("+15553837462")) is None
    assert reactor.sent == []
    assert defaults.reads == 0


def test_enum_routing_is_off_by_default_and_then_reads_no_system_servers(
    reactor, configuration, registry
):
    defaults = DefaultServers()
    enum = enum_routing(reactor, configuration, registry, defaults)
    assert fired(enum.lookup("+15553837461")) is None
    assert reactor.sent == []
    assert defaults.reads == 0


def test_enum_routing_on_asks_the_configured_server_and_gives_its_uri(
    reactor, configuration, registry
):
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    d = enum.lookup("+15553837461")
    assert reactor.question() == ("1.6.4.7.3.8.3.5.5.5.1.e164.arpa.", SERVER)
    reactor.answer("!^.*$!sip:info@example.net!")
    assert fired(d) == "sip:info@example.net"


def test_enum_routing_builds_one_resolver_for_all_lookups(reactor, configuration, registry):
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    first = enum.lookup("+15553837461")
    reactor.answer("!^.*$!sip:a@example.net!")
    second = enum.lookup("+15553837461")
    assert fired(first) == fired(second) == "sip:a@example.net"
    # the second answer came from the first lookup's cache: one resolver
    assert len(reactor.sent) == 1
    assert registry.get_sample_value("communigate_enum_cache_hits_total") == 1


def test_enum_routing_follows_changed_servers_and_suffixes(reactor, configuration, registry):
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    enum.lookup("+15553837461")
    configuration.set_settings({
        "ENUMRouting": "YES",
        "ENUMServers": ["192.0.2.54:5353"],
        "ENUMDomains": ["e164.example"],
    })
    enum.lookup("+15553837461")
    assert reactor.question() == ("1.6.4.7.3.8.3.5.5.5.1.e164.example.", OTHER_SERVER)


def test_enum_routing_without_configured_servers_reads_the_systems_once(
    reactor, configuration, registry
):
    defaults = DefaultServers([OTHER_SERVER])
    configuration.set_settings({"ENUMRouting": "YES"})
    enum = enum_routing(reactor, configuration, registry, defaults)
    for _ in range(3):
        enum.lookup("+15553837461")
    assert [addr for _, addr, _ in reactor.sent] == [OTHER_SERVER] * 3
    assert defaults.reads == 1


def test_enum_routing_with_no_servers_anywhere_answers_none_and_says_why(
    reactor, configuration, registry
):
    events = []
    configuration.set_settings({"ENUMRouting": "YES"})
    enum = enum_routing(reactor, configuration, registry, DefaultServers([]))
    globalLogPublisher.addObserver(events.append)
    try:
        assert fired(enum.lookup("+15553837461")) is None
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert reactor.sent == []
    assert any(event.get("setting") == "ENUMRouting" for event in events)


def test_enum_routing_turned_off_again_stops_asking(reactor, configuration, registry):
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    enum.lookup("+15553837461")
    configuration.set_settings({"ENUMRouting": "NO", "ENUMServers": ["192.0.2.53"]})
    assert fired(enum.lookup("+15553837462")) is None
    assert len(reactor.sent) == 1


def test_a_timed_out_enum_lookup_gives_none(reactor, configuration, registry):
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    d = enum.lookup("+15553837461")
    for _ in range(4):
        reactor.advance(2)
    assert fired(d) is None
    assert registry.get_sample_value(
        "communigate_enum_lookups_total", {"outcome": "timeout"}
    ) == 1


def test_the_router_routes_the_uri_enum_routing_finds(reactor, store, registry):
    directory = Directory(store)
    directory.create_domain("example.com")
    configuration = RouterConfiguration(store)
    configuration.set_settings({"ENUMRouting": "YES", "ENUMServers": ["192.0.2.53"]})
    enum = enum_routing(reactor, configuration, registry)
    router = Router(directory, configuration, enum.lookup)
    d = router.route("tel:+15553837461", AddressKind.SIGNAL)
    reactor.answer("!^.*$!sip:gateway@gw.example.net!")
    assert fired(d) == Route(Module.SIP, "gw.example.net", "sip:gateway@gw.example.net")


def test_the_router_skips_enum_when_enum_routing_is_off(reactor, store, registry):
    directory = Directory(store)
    directory.create_domain("example.com")
    configuration = RouterConfiguration(store)
    configuration.set_table("<+*@telnum> = NULL")
    router = Router(directory, configuration, enum_routing(reactor, configuration, registry).lookup)
    d = router.route("+15553837461@telnum", AddressKind.SIGNAL)
    assert fired(d) == Route(Module.SYSTEM, "NULL")
    assert reactor.sent == []
    assert isinstance(d, defer.Deferred)


def test_with_a_recheck_time_the_store_is_asked_at_most_that_often_but_own_changes_show_at_once():
    store, now = MemoryStore(), [100.0]
    configuration = RouterConfiguration(store, recheck_after=0.02, clock=lambda: now[0])
    asked = []
    generation = store.generation
    store.generation = lambda: asked.append(1) or generation()
    configuration.table
    configuration.table
    assert len(asked) == 1
    configuration.set_table("S:<x> = y@example.com")
    assert configuration.table.text == "S:<x> = y@example.com"
    # Another process's change (here: written around this object) is seen
    # once the recheck time has passed.
    RouterConfiguration(store).set_table("S:<z> = y@example.com")
    assert configuration.table.text == "S:<x> = y@example.com"
    now[0] += 0.05
    assert configuration.table.text == "S:<z> = y@example.com"
