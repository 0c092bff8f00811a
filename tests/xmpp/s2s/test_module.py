"""
The server-to-server module as a plugin next to the XMPP one: its listen
option, finding the XMPP service, the settings it adds (the generated
dialback secret), LISTXMPPS2S, and which DNS servers it asks.
"""

import dns.message
import pytest
from twisted.application.service import MultiService
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.interfaces import IProtocolModule, IXMPPRemoteDomains
from communigate.plugins.xmpp import xmpp_module
from communigate.plugins.xmpp_s2s import xmpp_s2s_module
from communigate.server import build_core, protocol_modules
from communigate.storage import MemoryStore
from communigate.testing import MemoryUDPReactor, TLSStringTransport

ADMIN = CommandContext("admin", "one.test", trusted=True)


@pytest.fixture
def reactor():
    return MemoryUDPReactor()


@pytest.fixture
def built(tmp_path, reactor):
    """
    Both modules built by their plugins under one parent, as the server
    does, and started.
    """
    context = build_core(Config(data_dir=str(tmp_path), domain="one.test"), MemoryStore(), reactor)
    context.directory.create_domain("one.test")
    parent = MultiService()
    xmpp = xmpp_module.build_service(context, [])
    xmpp.setServiceParent(parent)
    s2s = xmpp_s2s_module.build_service(context, ["tcp:0:interface=127.0.0.1"])
    s2s.setServiceParent(parent)
    parent.startService()
    yield context, xmpp, s2s
    parent.stopService()


def run(context, line):
    return context.interpreter.run(ADMIN, line)


def test_the_module_is_a_plugin_with_its_listen_option():
    verifyObject(IProtocolModule, xmpp_s2s_module)
    assert IPlugin.providedBy(xmpp_s2s_module)
    assert "xmpp-s2s" in {module.name for module in protocol_modules()}
    assert xmpp_s2s_module.default_listen == ("tcp:5269",)
    with pytest.raises(ValueError, match="allowed forms"):
        xmpp_s2s_module.check_listen("udp:5269")


def test_the_listen_option_is_parsed_by_tap_and_none_turns_it_off():
    from communigate.tap import Options

    options = Options()
    options.parseOptions(["--data", "/tmp/x", "--xmpp-s2s", "tcp:15269"])
    assert options.config().listen["xmpp-s2s"] == ("tcp:15269",)
    disabled = Options()
    disabled.parseOptions(["--data", "/tmp/x", "--xmpp-s2s", "none"])
    assert disabled.config().listen["xmpp-s2s"] == ()


def test_the_service_finds_the_xmpp_service_and_listens(built, reactor):
    _context, xmpp, s2s = built
    verifyObject(IXMPPRemoteDomains, s2s)
    assert xmpp.remote is s2s
    (port,) = reactor.tcpServers
    assert port[0] == 0 and port[3] == "127.0.0.1"


def test_without_the_xmpp_service_it_does_not_listen(tmp_path, reactor):
    context = build_core(Config(data_dir=str(tmp_path), domain="one.test"), MemoryStore(), reactor)
    parent = MultiService()
    xmpp_s2s_module.build_service(context, ["tcp:0"]).setServiceParent(parent)
    parent.startService()
    assert reactor.tcpServers == []
    parent.stopService()


def test_a_dialback_secret_is_generated_stored_and_listed(built):
    context, xmpp, _s2s = built
    secret = xmpp.settings.dialback_secret
    assert len(secret) == 64
    assert secret in context.store.get("server", "xmpp-settings")
    assert run(context, "GETXMPPSETTINGS").data["DialbackSecret"] == secret


def test_the_secret_survives_other_setting_changes_and_can_be_set(built):
    context, xmpp, s2s = built
    secret = xmpp.settings.dialback_secret
    assert run(context, "UPDATEXMPPSETTINGS {S2SIdleTimeout = 60;}").ok
    assert xmpp.settings.dialback_secret == secret and xmpp.settings.s2s_idle_timeout == 60
    key = s2s.dialback_key(receiving="two.test", originating="one.test", stream_id="s1")
    assert run(context, 'UPDATEXMPPSETTINGS {DialbackSecret = "shared-by-the-cluster-1";}').ok
    assert s2s.check_key(key, receiving="two.test", originating="one.test", stream_id="s1") == "invalid"


@pytest.mark.parametrize(
    "line, words",
    [
        ('UPDATEXMPPSETTINGS {DialbackSecret = "short";}', "DialbackSecret"),
        ('UPDATEXMPPSETTINGS {DialbackSecret = "with spaces in the secret";}', "DialbackSecret"),
        ("UPDATEXMPPSETTINGS {S2S = maybe;}", "S2S must"),
        ("UPDATEXMPPSETTINGS {S2SRequireTLS = 1;}", "S2SRequireTLS"),
        ("UPDATEXMPPSETTINGS {S2SIdleTimeout = 1;}", "S2SIdleTimeout"),
        ("UPDATEXMPPSETTINGS {S2SConnectTimeout = 9999;}", "S2SConnectTimeout"),
        ('UPDATEXMPPSETTINGS {DNSServers = "dns.example";}', "DNSServers"),
    ],
)
def test_bad_s2s_settings_are_refused_naming_the_setting(built, line, words):
    context, _xmpp, _s2s = built
    result = run(context, line)
    assert not result.ok and words in result.error


def test_listxmpps2s_lists_links_and_incoming_streams(built, reactor):
    context, _xmpp, s2s = built
    assert run(context, "LISTXMPPS2S").data == []
    s2s.verify_peer("one.test", "two.test", "sid", "key")
    incoming = s2s.factory.buildProtocol(None)
    incoming.makeConnection(TLSStringTransport())
    reactor.advance(3)
    listed = run(context, "LISTXMPPS2S").data
    assert [(entry["Direction"], entry["State"]) for entry in listed] == [("out", "resolving"), ("in", "opening")]
    assert listed[0]["Remote"] == ["two.test"] and listed[0]["Since"] == "3"


@pytest.mark.parametrize(
    "xmpp_setting, sip_setting, expected",
    [
        ("192.0.2.53:5353", "192.0.2.54", ("192.0.2.53", 5353)),
        ("", "192.0.2.54", ("192.0.2.54", 53)),
    ],
)
def test_srv_questions_go_to_the_xmpp_then_the_sip_dns_servers(built, reactor, xmpp_setting, sip_setting, expected):
    context, _xmpp, s2s = built
    # The SIP module is not built here: its settings record as it stores it.
    context.store.put("server", "sip-settings", f'{{DNSServers = "{sip_setting}";}}')
    if xmpp_setting:
        assert run(context, f'UPDATEXMPPSETTINGS {{DNSServers = "{xmpp_setting}";}}').ok
    s2s.verify_peer("one.test", "two.test", "sid", "key")
    (query,) = [written for port in reactor.udp_ports for written in port.written]
    assert query[1] == expected
    assert b"_xmpp-server" in query[0]


def test_locating_asks_the_dns_for_the_srv_record(built, reactor):
    context, _xmpp, s2s = built
    assert run(context, 'UPDATEXMPPSETTINGS {DNSServers = "192.0.2.53";}').ok
    results = []
    s2s.locate("two.test").addBoth(results.append)
    (port,) = reactor.udp_ports
    ((query, address),) = port.written
    assert address == ("192.0.2.53", 53)
    assert dns.message.from_wire(query).question[0].to_text() == "_xmpp-server._tcp.two.test. IN SRV"
    assert results == []  # still waiting for the answer
