"""
Tests for the server-wide network settings: address lists (parsing,
errors with line numbers, lookups that agree with the ipaddress module),
the settings dictionary, and their configuration over a store, which the
admin tool may change under a running server.
"""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from communigate.formats.cgdata import dumps
from communigate.network import (
    PRIVATE_RANGES,
    AddressList,
    AddressListError,
    AddressRange,
    DebugPeers,
    NetworkConfiguration,
    NetworkSettings,
    NetworkSettingsError,
    OncePerInterval,
)
from communigate.storage import MemoryStore

# -- address lists --------------------------------------------------------------------


def test_a_list_holds_addresses_ranges_and_networks_of_both_versions():
    found = AddressList.parse(
        "10.0.0.0/8 ; office\n"
        "\n"
        "; only a comment\n"
        "192.0.2.1-192.0.2.9\n"
        "[2001:db8::1]\n"
        "fc00::/7\n"
        "  198.51.100.7  ;  the gateway\n"
    )
    inside = ["10.1.2.3", "192.0.2.1", "192.0.2.9", "2001:db8::1", "fd00::5", "198.51.100.7"]
    outside = ["11.0.0.1", "192.0.2.10", "2001:db8::2", "fe80::1", "198.51.100.8"]
    assert all(found.contains(address) for address in inside)
    assert not any(found.contains(address) for address in outside)
    assert [entry.comment for entry in found.entries] == ["office", "", "", "", "the gateway"]


def test_a_list_keeps_its_text_as_given():
    text = "10.0.0.0/8 ; office\r\n; a comment\r\n192.0.2.1"
    assert AddressList.parse(text).text == text


def test_ipv4_mapped_and_bracketed_addresses_are_understood():
    found = AddressList.parse("192.0.2.0/24\n2001:db8::/32")
    assert found.contains("::ffff:192.0.2.7")
    assert found.contains("[2001:db8::7]")
    assert found.contains("2001:db8::7%eth0")


def test_text_that_is_no_address_is_not_in_any_list():
    everything = AddressList.parse("0.0.0.0/0\n::/0")
    for text in ["", "example.com", "1.2.3", "300.1.1.1", "::g", None, 5]:
        assert not everything.contains(text)


def test_an_empty_list_contains_nothing():
    assert not AddressList.parse("")
    assert not AddressList.parse("; nothing\n\n").contains("10.0.0.1")


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("10.0.0.1\n10.0.0.300", 2, "'10.0.0.300' is not an IPv4 or IPv6 address"),
        ("10.0.0.9-10.0.0.1", 1, "starts after it ends"),
        ("10.0.0.1-2001:db8::1", 1, "cannot mix IPv4 and IPv6"),
        ("; ok\n10.0.0.0/33", 2, "is not a network"),
        ("10.0.0.1\n\n10.0.0.1 10.0.0.2", 3, "one address, range (a-b) or network (a/n) per line"),
        ("example.com", 1, "is not an IPv4 or IPv6 address"),
        ("10.0.0.1-", 1, "'' is not an IPv4 or IPv6 address"),
    ],
)
def test_a_bad_line_is_named_by_its_number(text, line, says):
    with pytest.raises(AddressListError) as caught:
        AddressList.parse(text)
    assert caught.value.line_number == line
    assert says in str(caught.value)
    assert str(caught.value).startswith(f"line {line} ")


def test_entries_are_written_as_address_network_or_range():
    assert str(AddressRange(4, 0, 2**32 - 1)) == "0.0.0.0/0"
    assert str(AddressRange(6, 1, 1, "loopback")) == "::1 ; loopback"
    low = int(ipaddress.ip_address("192.0.2.1"))
    assert str(AddressRange(4, low, low + 8)) == "192.0.2.1-192.0.2.9"
    assert str(AddressRange(4, low - 1, low + 254)) == "192.0.2.0/24"


def test_the_private_ranges_are_rfc1918_rfc4193_and_loopback():
    for address in ["10.9.9.9", "172.31.0.1", "192.168.1.1", "127.0.0.1", "::1", "fd12::1"]:
        assert PRIVATE_RANGES.contains(address)
    for address in ["172.32.0.1", "8.8.8.8", "100.64.0.1", "2001:db8::1", "fe80::1"]:
        assert not PRIVATE_RANGES.contains(address)


# -- properties ------------------------------------------------------------------------

V4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
V6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
# Lists near the addresses looked up, so that hits are common.
V4_NEAR = st.integers(0, 2**12 - 1).map(lambda n: ipaddress.IPv4Address(0xC0000200 + n))
ADDRESSES = st.one_of(V4, V6, V4_NEAR)


@st.composite
def networks(draw):
    address = draw(ADDRESSES)
    bits = 32 if address.version == 4 else 128
    prefix = draw(st.integers(max(0, bits - 16), bits) | st.integers(0, bits))
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


@st.composite
def ranges(draw):
    version = draw(st.sampled_from([4, 6]))
    top = 2**32 - 1 if version == 4 else 2**128 - 1
    low = draw(st.integers(0, top) | st.integers(0xC0000200, 0xC0000200 + 2**12))
    low = min(low, top)
    high = min(top, low + draw(st.integers(0, 2**10) | st.integers(0, top)))
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return make(low), make(high)


COMMENTS = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12).map(str.strip)


def _expected(address, nets, spans) -> bool:
    candidates = [address]
    if address.version == 6 and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        a in n for a in candidates for n in nets if a.version == n.version
    ) or any(a.version == lo.version and lo <= a <= hi for a in candidates for lo, hi in spans)


@settings(max_examples=300, deadline=None)
@given(
    nets=st.lists(networks(), max_size=8),
    spans=st.lists(ranges(), max_size=8),
    probes=st.lists(ADDRESSES, min_size=1, max_size=20),
)
def test_contains_agrees_with_the_ipaddress_module(nets, spans, probes):
    lines = [str(n) for n in nets] + [f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in spans]
    found = AddressList.parse("\n".join(lines))
    for address in probes + [n.network_address for n in nets] + [n.broadcast_address for n in nets]:
        assert found.contains(str(address)) == _expected(address, nets, spans), address


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(ranges(), COMMENTS), max_size=10))
def test_serialize_then_parse_gives_the_same_entries(spans):
    entries = [AddressRange(lo.version, int(lo), int(hi), comment) for (lo, hi), comment in spans]
    written = AddressList(entries).serialize()
    again = AddressList.parse(written)
    assert again.entries == tuple(entries)
    assert again.serialize() == written


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60))
def test_any_text_parses_or_names_a_line(text):
    try:
        found = AddressList.parse(text)
    except AddressListError as e:
        assert 1 <= e.line_number <= text.count("\n") + text.count("\r") + 1
    else:
        assert AddressList.parse(found.serialize()) == found


# -- the settings ---------------------------------------------------------------------


def test_empty_lan_ips_mean_the_private_ranges():
    built_in = NetworkSettings()
    assert built_in.is_lan("192.168.1.5") and not built_in.is_lan("203.0.113.5")
    own = NetworkSettings.from_data({"LANIPs": "203.0.113.0/24"})
    assert own.is_lan("203.0.113.5") and not own.is_lan("192.168.1.5")


def test_not_routable_addresses_are_the_private_ranges_lan_and_nated_ips():
    found = NetworkSettings.from_data({"LANIPs": "203.0.113.0/24", "NATedIPs": "100.64.0.0/10"})
    for address in ["192.168.1.5", "203.0.113.5", "100.64.1.1", "fd00::1"]:
        assert found.is_not_routable(address)
    assert not found.is_not_routable("198.51.100.1")


def test_the_wan_address_is_for_peers_outside_the_lan_of_its_ip_version():
    found = NetworkSettings.from_data({"WANAddress": "198.51.100.7", "WANIPv6Address": "2001:db8::7"})
    assert found.wan_address_for("203.0.113.9") == "198.51.100.7"
    assert found.wan_address_for("2001:db8:1::9") == "2001:db8::7"
    assert found.wan_address_for("192.168.1.9") is None
    assert NetworkSettings.from_data({"WANAddress": "198.51.100.7"}).wan_address_for("2001:db8::9") is None
    assert NetworkSettings().wan_address_for("203.0.113.9") is None


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"LANIPs": "10.0.0.0/8\nbad"}, "LANIPs: line 2"),
        ({"BlacklistedIPs": ["10.0.0.1"]}, "BlacklistedIPs: line 1"),
        ({"WANAddress": "2001:db8::1"}, "WANAddress must be one IPv4 address"),
        ({"WANIPv6Address": "192.0.2.1"}, "WANIPv6Address must be one IPv6 address"),
        ({"WANAddress": "example.com"}, "WANAddress must be one IPv4 address"),
        ({"LanIPs": ""}, "unknown network settings ['LanIPs']"),
    ],
)
def test_bad_settings_are_named(data, says):
    with pytest.raises(NetworkSettingsError) as caught:
        NetworkSettings.from_data(data)
    assert says in str(caught.value)


def test_settings_as_data_show_every_key():
    assert NetworkSettings().as_data() == {
        "WANAddress": "",
        "WANIPv6Address": "",
        "LANIPs": "",
        "ClientIPs": "",
        "NATedIPs": "",
        "DebugIPs": "",
        "BlacklistedIPs": "",
    }


# -- the configuration over a store --------------------------------------------------


def test_an_update_is_in_force_at_once_and_stored_without_built_in_values():
    store = MemoryStore()
    configuration = NetworkConfiguration(store, clock=Clock())
    configuration.update({"DebugIPs": "192.0.2.1", "WANAddress": ""})
    assert configuration.current.debug.contains("192.0.2.1")
    assert store.get("server", "network-settings") == dumps({"DebugIPs": "192.0.2.1"})
    configuration.update({"DebugIPs": "default"})
    assert not configuration.current.debug


def test_a_bad_update_stores_nothing():
    store = MemoryStore()
    configuration = NetworkConfiguration(store, clock=Clock())
    configuration.update({"ClientIPs": "192.0.2.1"})
    with pytest.raises(NetworkSettingsError):
        configuration.update({"ClientIPs": "192.0.2.1\n192.0.2.999", "DebugIPs": "192.0.2.2"})
    assert configuration.settings()["ClientIPs"] == "192.0.2.1"
    assert configuration.settings()["DebugIPs"] == ""
    assert NetworkConfiguration(store).settings()["ClientIPs"] == "192.0.2.1"


def test_a_change_by_another_process_is_seen_within_a_second():
    store = MemoryStore()
    clock = Clock()
    running = NetworkConfiguration(store, clock=clock)
    assert not running.current.blacklisted
    NetworkConfiguration(store).update({"BlacklistedIPs": "203.0.113.9"})  # the admin tool
    assert not running.current.blacklisted.contains("203.0.113.9")  # checked less than 1 s ago
    clock.advance(1)
    assert running.current.blacklisted.contains("203.0.113.9")


def test_settings_read_from_the_store_at_start():
    store = MemoryStore()
    store.put("server", "network-settings", dumps({"LANIPs": "203.0.113.0/24"}))
    assert NetworkConfiguration(store, clock=Clock()).current.is_lan("203.0.113.1")


def test_a_hand_edited_bad_record_is_ignored_and_logged():
    store = MemoryStore()
    configuration = NetworkConfiguration(store)
    configuration.update({"LANIPs": "203.0.113.0/24"})
    store.put("server", "network-settings", dumps({"LANIPs": "not an address"}))
    from twisted.logger import capturedLogs, formatEvent

    with capturedLogs() as events:
        assert configuration.current.is_lan("203.0.113.1")
    assert ["LANIPs: line 1" in formatEvent(event) for event in events] == [True]


# -- helpers ---------------------------------------------------------------------------


def test_once_per_interval_says_yes_once_a_minute_per_key():
    clock = Clock()
    once = OncePerInterval(clock, 60)
    assert once("a") and not once("a") and once("b")
    clock.advance(59)
    assert not once("a")
    clock.advance(1)
    assert once("a") and not once("a")


def test_once_per_interval_forgets_the_oldest_keys_beyond_its_limit():
    once = OncePerInterval(Clock(), 60, limit=4)
    for key in "abcd":
        assert once(key)
    assert once("e")  # a and b forgotten
    assert once("a") and not once("d")


class Recorded:
    def __init__(self):
        self.records = []

    def record(self, *args, **fields):
        self.records.append((args, fields))

    def search(self):
        return "searched"


def test_debug_peers_logs_messages_of_debug_ips_in_full_and_passes_all_on():
    from twisted.logger import capturedLogs, formatEvent

    inner = Recorded()
    current = NetworkSettings.from_data({"DebugIPs": "192.0.2.0/24"})
    tap = DebugPeers(inner, lambda: current)
    with capturedLogs() as events:
        tap.record("in", "udp", ("192.0.2.7", 5060), b"OPTIONS sip:x SIP/2.0\r\n\r\n", call_id="c")
        tap.record("out", "udp", ("198.51.100.1", 5060), b"SIP/2.0 200 OK\r\n\r\n")
    assert len(inner.records) == 2 and inner.records[0][1] == {"call_id": "c"}
    (event,) = events
    text = formatEvent(event)
    assert text.startswith("SIP in udp 192.0.2.7:5060 (Debug IP)\nOPTIONS sip:x SIP/2.0")
    assert event["log_level"].name == "info"
    assert tap.search() == "searched"
