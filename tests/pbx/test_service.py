"""
The PBX as a module of the server: its option, how it is built, how it
finds applications and answers routes it cannot serve.
"""

import pytest
from twisted.python import usage
from zope.interface.verify import verifyObject

from communigate.config import Config
from communigate.interfaces import ICallApplication, IProtocolModule, IRouteHandler
from communigate.pbx.service import (
    ApplicationRoutes,
    MediaSettings,
    installed_applications,
    parse_media_description,
    split_program,
)
from communigate.plugins.pbx import pbx_module
from communigate.routing.route import Module, Route
from communigate.server import build_server
from communigate.signal.model import Signal, Submitter
from communigate.storage import MemoryStore
from communigate.tap import Options
from communigate.testing import MemoryUDPReactor


def test_the_media_description_names_a_port_range_an_interface_and_an_address():
    assert parse_media_description("rtp:20000-20999") == MediaSettings(20000, 20999, "", None)
    assert parse_media_description("rtp:30000-30100:interface=127.0.0.1:address=192.0.2.7") == MediaSettings(
        30000, 30100, "127.0.0.1", "192.0.2.7"
    )


@pytest.mark.parametrize(
    "text, error",
    [
        ("udp:5000", "is not rtp:LOW-HIGH"),
        ("rtp:20000", "is not a port range"),
        ("rtp:100-200", "within 1024-65535"),
        ("rtp:3000-2000", "low below high"),
        ("rtp:20000-20100:color=red", "unknown option"),
        ("rtp:20000-20100:interface=here", "is not an IP address"),
    ],
)
def test_a_bad_media_description_is_refused_with_the_reason(text, error):
    with pytest.raises(ValueError, match=error):
        parse_media_description(text)


def test_a_bad_pbx_option_stops_twistd_with_a_usage_error():
    options = Options()
    with pytest.raises(usage.UsageError, match="--pbx 'rtp:9-8'"):
        options.parseOptions(["--pbx", "rtp:9-8"])


def test_the_pbx_module_and_the_stock_applications_are_plugins():
    verifyObject(IProtocolModule, pbx_module)
    applications = installed_applications()
    assert {"echo", "dtmftest", "callqueue", "queueagent"} <= set(applications)
    for application in applications.values():
        verifyObject(ICallApplication, application)


def test_program_calls_split_into_name_and_parameters():
    assert split_program("echo") == ("echo", ())
    assert split_program("gatewaycaller{0301234567}") == ("gatewaycaller", ("0301234567",))
    assert split_program("menu{a, b}") == ("menu", ("a", "b"))


def test_an_embedded_server_with_the_pbx_module_routes_applications_to_it():
    reactor = MemoryUDPReactor()
    server = build_server(
        Config(data_dir="", domain="example.com", listen={"pbx": ("rtp:30000-30099",)}),
        reactor, store=MemoryStore(), modules=[pbx_module], hooks=[],
    )
    server.startService()
    try:
        handler = server.context.signals.route_handler(Module.PBX)
        verifyObject(IRouteHandler, handler)
        assert isinstance(handler, ApplicationRoutes)
        assert "STARTPBXTASK" in server.context.interpreter.command_names()
        signal = Signal("INVITE", ("x",), "a@example.com", "b@example.com", "c1", Submitter("sip"))
        refusal = handler.endpoint(Route(Module.PBX, "postmaster@example.com", "missing{1}"), signal)
        answers = []

        class Responder:
            provisional = answers.append
            final = answers.append

        refusal.deliver(signal, Responder())
        assert [(a.code, a.reason) for a in answers] == [(404, "No application missing")]
    finally:
        server.stopService()


def test_without_the_pbx_module_application_routes_answer_502():
    reactor = MemoryUDPReactor()
    server = build_server(
        Config(data_dir="", domain="example.com"), reactor, store=MemoryStore(), modules=[], hooks=[]
    )
    signal = Signal("INVITE", ("echo#postmaster",), "a@example.com", "b@example.com", "c1", Submitter("sip"))
    finals = []
    server.context.signals.submit(signal).final.addCallback(finals.append)
    reactor.advance(0)
    assert [f.code for f in finals] == [502]
