"""
The media server CLI commands (GET/SET/UPDATEMEDIASERVERSETTINGS,
LISTMEDIARELAYS, RELEASEMEDIARELAY) through the interpreter of the core
that build_core assembles, on a memory reactor that can open UDP ports.
"""

import pytest

from communigate.admin.pwd import format_result
from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.media.relay import LegAddress, Side
from communigate.media.relay_settings import RelayConfiguration, RelaySettings
from communigate.server import build_core
from communigate.storage import MemoryStore
from communigate.testing import MemoryUDPReactor

POSTMASTER = CommandContext.for_account("postmaster@example.com")
LEG = LegAddress("127.0.0.1", "127.0.0.1")


@pytest.fixture
def core():
    built = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), MemoryUDPReactor())
    create_initial_objects(built.directory, "example.com")
    return built


def reply(core, line) -> str:
    result = core.interpreter.run(POSTMASTER, line)
    return format_result(result, inline=True).decode("utf-8").rstrip("\r\n")


def test_the_settings_start_at_their_built_in_values(core):
    assert reply(core, "GETMEDIASERVERSETTINGS") == (
        '201 {PortRange = "30000-39999"; IdleTimeout = 60; MaxRelays = 1000; Address = ""; IPv6Address = ""; InBandDTMF = Auto;}'
    )
    assert core.media_relay.settings == RelaySettings()


def test_update_merges_and_puts_the_change_in_force_at_once(core):
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {PortRange = 31000-31099; IdleTimeout = 30;}") == "200 OK"
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {MaxRelays = 5;}") == "200 OK"
    settings = core.media_relay.settings
    assert (settings.port_low, settings.port_high, settings.idle_timeout, settings.max_relays) == (
        31000, 31099, 30.0, 5
    )
    assert 'PortRange = "31000-31099"' in reply(core, "GETMEDIASERVERSETTINGS")
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {IdleTimeout = default;}") == "200 OK"
    assert core.media_relay.settings.idle_timeout == 60.0


def test_in_band_dtmf_is_auto_or_no_in_any_case(core):
    assert core.media_settings.current.inband_dtmf is True
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {InBandDTMF = no;}") == "200 OK"
    assert core.media_settings.current.inband_dtmf is False
    assert "InBandDTMF = no" in reply(core, "GETMEDIASERVERSETTINGS")
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {InBandDTMF = AUTO;}") == "200 OK"
    assert core.media_settings.current.inband_dtmf is True


def test_set_replaces_every_setting(core):
    reply(core, "UPDATEMEDIASERVERSETTINGS {PortRange = 31000-31099; IdleTimeout = 30;}")
    assert reply(core, "SETMEDIASERVERSETTINGS {MaxRelays = 7;}") == "200 OK"
    settings = core.media_relay.settings
    assert (settings.port_low, settings.idle_timeout, settings.max_relays) == (30000, 60.0, 7)


@pytest.mark.parametrize(
    "changes, message",
    [
        ("{PortRange = 30000;}", "PortRange must be low-high within 1024-65535"),
        ("{PortRange = 40000-30000;}", "PortRange must be low-high"),
        ("{PortRange = 30001-30003;}", "at least two even/odd port pairs"),
        ("{PortRange = 80-1000;}", "within 1024-65535"),
        ("{IdleTimeout = 1;}", "IdleTimeout must be a whole number from 5 to 86400, not '1'"),
        ("{IdleTimeout = soon;}", "IdleTimeout must be a whole number"),
        ("{MaxRelays = -1;}", "MaxRelays must be a whole number from 0 to 100000"),
        ("{Address = 2001:db8::1;}", "Address must be one IPv4 address or empty"),
        ("{IPv6Address = 192.0.2.1;}", "IPv6Address must be one IPv6 address or empty"),
        ("{Address = (a, b);}", "Address must be one IPv4 address"),
        ("{InBandDTMF = Yes;}", "InBandDTMF must be Auto or No, not 'Yes'"),
        ("{Colour = red;}", "unknown media server settings ['Colour']"),
    ],
)
def test_a_bad_setting_is_refused_naming_it_and_nothing_changes(core, changes, message):
    before = reply(core, "GETMEDIASERVERSETTINGS")
    answer = reply(core, f"UPDATEMEDIASERVERSETTINGS {changes}")
    assert answer.startswith("501 media server settings not changed: ")
    assert message in answer
    assert reply(core, "GETMEDIASERVERSETTINGS") == before
    assert core.media_relay.settings == RelaySettings()


def test_a_change_by_another_process_is_seen_within_a_second():
    store = MemoryStore()
    clock = MemoryUDPReactor()
    running = RelayConfiguration(store, clock=clock)
    assert running.current.max_relays == 1000
    RelayConfiguration(store).replace({"MaxRelays": "3"}, merge=True)  # the admin tool
    assert running.current.max_relays == 1000  # checked at most once a second
    clock.advance(1)
    assert running.current.max_relays == 3


def test_listmediarelays_shows_open_sessions_and_releasemediarelay_ends_one(core):
    assert reply(core, "LISTMEDIARELAYS") == "201 ()"
    session = core.media_relay.open("abc@host;1234", LEG, LEG, "nat", "alice -> bob")
    session.ports(Side.CALLER, 0)
    listed = reply(core, "LISTMEDIARELAYS")
    assert listed.startswith('201 ({Key = "abc@host;1234"; Reason = nat; State = setup;')
    assert 'Caller = {Address = 127.0.0.1; Ports = ("30000/30001");' in listed
    assert 'Callee = {Address = 127.0.0.1; Ports = ("30002/30003");' in listed
    assert reply(core, 'RELEASEMEDIARELAY "abc@host;1234"') == "200 OK"
    assert session.closed and core.media_relay.released == {"operator": 1}
    assert reply(core, "LISTMEDIARELAYS") == "201 ()"
    assert reply(core, 'RELEASEMEDIARELAY "abc@host;1234"') == (
        "501 no media relay 'abc@host;1234'; LISTMEDIARELAYS lists them"
    )


def test_without_a_running_server_sessions_cannot_be_listed_but_settings_can_be_changed():
    core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), None)
    create_initial_objects(core.directory, "example.com")
    assert core.media_relay is None
    assert reply(core, "LISTMEDIARELAYS") == (
        "501 media relays exist only in the running server; use --server"
    )
    assert reply(core, "UPDATEMEDIASERVERSETTINGS {MaxRelays = 2;}") == "200 OK"
    assert "MaxRelays = 2" in reply(core, "GETMEDIASERVERSETTINGS")
