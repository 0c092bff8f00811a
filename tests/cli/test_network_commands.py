"""
Tests for the network CLI commands (GET/SETLANIPS and the other address
lists, GETNETWORK, UPDATENETWORK) run through the interpreter over the core
that build_core assembles, as the CLI/PWD protocol and the admin tool run
them.
"""

import pytest
from twisted.internet.task import Clock

from communigate.admin.pwd import format_result
from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")
LISTS = ["LANIPS", "CLIENTIPS", "NATEDIPS", "DEBUGIPS", "BLACKLISTEDIPS"]


@pytest.fixture
def core():
    built = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), Clock())
    create_initial_objects(built.directory, "example.com")
    return built


def reply(core, line, context=POSTMASTER) -> str:
    result = core.interpreter.run(context, line)
    return format_result(result, inline=True).decode("utf-8").rstrip("\r\n")


@pytest.mark.parametrize("name", LISTS)
def test_each_list_is_empty_at_first_and_set_as_one_string(core, name):
    assert reply(core, f"GET{name}") == '201 ""'
    assert reply(core, f'SET{name} "192.0.2.0/24 ; office\\e2001:db8::1"') == "200 OK"
    assert reply(core, f"GET{name}") == '201 "192.0.2.0/24 ; office\\n2001:db8::1"'


def test_setting_a_list_puts_it_in_force(core):
    reply(core, 'SETBLACKLISTEDIPS "203.0.113.0/24"')
    assert core.network.current.blacklisted.contains("203.0.113.9")
    reply(core, 'SETLANIPS ""')
    assert core.network.current.is_lan("10.0.0.1")


@pytest.mark.parametrize("name", LISTS)
def test_a_bad_list_is_refused_with_its_line_and_nothing_is_saved(core, name):
    reply(core, f"SET{name} 192.0.2.1")
    answer = reply(core, f'SET{name} "192.0.2.2\\e192.0.2.300"')
    assert answer.startswith("501 network settings not changed: ")
    assert "line 2" in answer and "192.0.2.300" in answer
    assert reply(core, f"GET{name}") == "201 192.0.2.1"


def test_getnetwork_shows_every_setting(core):
    reply(core, "SETCLIENTIPS 192.0.2.5")
    assert reply(core, "GETNETWORK") == (
        '201 {WANAddress = ""; WANIPv6Address = ""; LANIPs = ""; ClientIPs = 192.0.2.5; '
        'NATedIPs = ""; DebugIPs = ""; BlacklistedIPs = "";}'
    )


def test_updatenetwork_merges_and_default_restores(core):
    assert reply(core, 'UPDATENETWORK {WANAddress = 198.51.100.7; NATedIPs = "100.64.0.0/10";}') == "200 OK"
    assert reply(core, "UPDATENETWORK {DebugIPs = 192.0.2.9;}") == "200 OK"
    current = core.network.current
    assert current.wan_address == "198.51.100.7" and current.nated.contains("100.64.0.1")
    assert current.debug.contains("192.0.2.9")
    reply(core, "UPDATENETWORK {WANAddress = default;}")
    assert core.network.settings()["WANAddress"] == ""
    assert core.network.settings()["NATedIPs"] == "100.64.0.0/10"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("UPDATENETWORK {WANAddress = 2001:db8::1;}", "WANAddress must be one IPv4 address"),
        ("UPDATENETWORK {Lan = x;}", "unknown network settings ['Lan']"),
        ('UPDATENETWORK {ClientIPs = "a-b";}', "ClientIPs: line 1"),
        ("UPDATENETWORK (x)", "network settings"),
        ("SETLANIPS (10.0.0.1)", "must be a string"),
        ("SETLANIPS", "missing"),
        ("GETLANIPS extra", ""),
    ],
)
def test_bad_network_commands_are_clear_errors(core, line, says):
    before = reply(core, "GETNETWORK")
    answer = reply(core, line)
    assert answer.startswith("501 ") and says in answer
    assert reply(core, "GETNETWORK") == before


def test_only_server_administrators_may_see_or_change_the_network(core):
    reply(core, "CREATEACCOUNT alice")
    alice = CommandContext.for_account("alice@example.com")
    assert reply(core, "GETLANIPS", alice).startswith("501 access denied")
    assert reply(core, "SETBLACKLISTEDIPS 192.0.2.1", alice).startswith("501 access denied")
    assert reply(core, "GETBLACKLISTEDIPS") == '201 ""'


def test_the_commands_are_listed(core):
    listed = reply(core, "LISTCLICOMMANDS")
    for name in LISTS:
        assert f"GET{name}" in listed and f"SET{name}" in listed
    assert "GETNETWORK" in listed and "UPDATENETWORK" in listed


def test_a_core_without_a_reactor_shares_the_settings_through_the_store():
    store = MemoryStore()
    running = build_core(Config(data_dir="", domain="example.com"), store, Clock())
    admin_tool = build_core(Config(data_dir="", domain="example.com"), store, None)
    create_initial_objects(admin_tool.directory, "example.com")
    trusted = CommandContext("postmaster@example.com", "example.com", trusted=True)
    assert reply(admin_tool, "SETDEBUGIPS 192.0.2.1", trusted) == "200 OK"
    running.reactor.advance(1)
    assert running.network.current.debug.contains("192.0.2.1")
