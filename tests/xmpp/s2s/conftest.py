"""
Server-to-server fixtures: XMPP services with their S2S services on memory
stores and one Clock, whose outgoing links connect through
L{twisted.test.iosim} to each other (an in-memory network), and a scripted
peer server speaking to one stream through a StringTransport.
"""

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.config import Config
from communigate.interfaces import IPeerCertificateCheck, IS2SCertificates, IXMPPSession
from communigate.plugins.xmpp import xmpp_module
from communigate.server import build_core
from communigate.storage import MemoryStore
from communigate.testing import TLSStringTransport
from communigate.xmpp.parser import ElementReceived, StreamOpened, StreamParser
from communigate.xmpp.s2s import S2SFailure
from communigate.xmpp.s2s_service import S2SService
from communigate.xmpp.s2s_tls import NO_IDENTITY

NS_DB = "jabber:server:dialback"

PEER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "{attributes} version='1.0'>"
)


class FakeTLS:
    """
    A TLS context L{iosim} accepts: the handshake is pretended.
    """

    def iosimVerify(self, other):
        return True


@implementer(IPeerCertificateCheck)
class FakeCheck:
    """
    A STARTTLS whose peer certificate proves what its server's
    L{FakeCertificates} says.
    """

    def __init__(self, certificates, server_name):
        self.certificates = certificates
        self.server_name = server_name
        self.creator = FakeTLS()

    def identity(self, transport):
        return self.certificates.peer_identity


@implementer(IS2SCertificates)
class FakeCertificates:
    """
    What every peer's certificate proves to one server: C{peer_identity}
    (by default nothing: no certificate checked, dialback).
    """

    def __init__(self):
        self.peer_identity = NO_IDENTITY
        self.checks = []

    def client(self, domain):
        self.checks.append(FakeCheck(self, domain))
        return self.checks[-1]

    def server(self):
        self.checks.append(FakeCheck(self, None))
        return self.checks[-1]


@implementer(IXMPPSession)
class FakeSession:
    """
    A bound resource that keeps what it is sent.
    """

    def __init__(self):
        self.jid = None
        self.account = None
        self.priority = 0
        self.available = False
        self.peer = ("192.0.2.1", 1)
        self.started = 0.0
        self.details = {}
        self.received = []
        self.closed_with = None

    def send(self, element):
        self.received.append(element)

    def close(self, condition, text):
        self.closed_with = condition

    def finish_session(self):
        pass


class Network:
    """
    Servers by address; a link connecting to an address gets an iosim
    pump to that server's inbound factory.  Unknown addresses refuse.
    """

    def __init__(self):
        self.servers = {}
        self.pumps = []
        self.connects = []

    def connect(self, host, port, build):
        self.connects.append((host, port))
        target = self.servers.get((host, port))
        if target is None:
            return fail(ConnectionRefusedError(f"{host}:{port}"))
        client = build()
        server = target.factory.buildProtocol(None)
        server_transport = iosim.FakeTransport(
            server, isServer=True, peerAddress=IPv4Address("TCP", "192.0.2.9", 40000)
        )
        client_transport = iosim.FakeTransport(client, isServer=False)
        self.pumps.append(iosim.connect(server, server_transport, client, client_transport, greet=False))
        return succeed(client)

    def flush(self):
        for _ in range(1000):
            moved = False
            for pump in list(self.pumps):
                moved = pump.pump() or moved
            if not moved:
                return
        raise AssertionError("the network never went quiet")


class Server:
    """
    One server: a domain with accounts, its XMPP and S2S services.
    """

    def __init__(self, tmp_path, domain, network, clock, addresses, accounts=("alice", "bob")):
        config = Config(data_dir=str(tmp_path), domain=domain)
        self.context = build_core(config, MemoryStore(), clock)
        self.context.directory.create_domain(domain)
        for name in accounts:
            self.context.directory.create_account(f"{name}@{domain}", {"Password": f"{name}-pw"})
        self.domain = domain
        self.xmpp = xmpp_module.build_service(self.context, [])
        self.xmpp.startService()
        self.xmpp.tls_context = FakeTLS()
        self.located = []

        def locate(name):
            self.located.append(name)
            if name in addresses:
                found = addresses[name]
                return succeed(list(found) if isinstance(found, list) else [found])
            return fail(S2SFailure("remote-server-not-found", f"{name} is not in DNS"))

        self.certificates = FakeCertificates()
        self.s2s = S2SService(
            self.context, [], xmpp=self.xmpp, connect=network.connect, locate=locate, certificates=self.certificates
        )
        self.s2s.startService()

    def session(self, user, resource, available=True, priority=0):
        session = FakeSession()
        session.account = f"{user}@{self.domain}"
        self.xmpp.sessions.bind(session, session.account, resource)
        self.xmpp.sessions.set_presence(session, available, priority)
        return session

    def stop(self):
        self.s2s.stopService()
        self.xmpp.stopService()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server_class():
    return Server


@pytest.fixture
def network():
    return Network()


ADDRESSES = {
    "one.test": ("192.0.2.1", 5269),
    "example.com": ("192.0.2.1", 5269),
    "alias.test": ("192.0.2.1", 5269),
    "two.test": ("192.0.2.2", 5269),
}


@pytest.fixture
def one(tmp_path, network, clock):
    server = Server(tmp_path / "one", "one.test", network, clock, ADDRESSES)
    network.servers[ADDRESSES["one.test"]] = server.s2s
    yield server
    server.stop()


@pytest.fixture
def two(tmp_path, network, clock):
    server = Server(tmp_path / "two", "two.test", network, clock, ADDRESSES)
    network.servers[ADDRESSES["two.test"]] = server.s2s
    yield server
    server.stop()


def stanza(kind, sender, recipient, body=None, **attributes):
    element = domish.Element(("jabber:client", kind))
    element["from"] = sender
    element["to"] = recipient
    for name, value in attributes.items():
        element[name] = value
    if body is not None:
        element.addElement("body", content=body)
    return element


@pytest.fixture
def make_stanza():
    return stanza


class ScriptedPeer:
    """
    Another server, scripted: it opened a connection to C{service} and
    talks to it through a TLSStringTransport; the server's output is read
    back as parser events.
    """

    def __init__(self, service, host="198.51.100.7", port=50000):
        self.transport = TLSStringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.stream = service.factory.buildProtocol(self.transport.getPeer())
        self.stream.makeConnection(self.transport)
        self._reader = StreamParser(10_000_000)
        self.header = None
        self.headers = []
        self.history = []

    def send(self, text):
        self.stream.dataReceived(text.encode() if isinstance(text, str) else text)

    def events(self):
        data = self.transport.value()
        self.transport.clear()
        found = self._reader.feed(data)
        for event in found:
            if isinstance(event, StreamOpened):
                self.header = event
                self.headers.append(event)
        return found

    def elements(self):
        found = [e.element for e in self.events() if isinstance(e, ElementReceived)]
        self.history.extend(found)
        return found

    def open(self, to="two.test", sender="remote.test"):
        attributes = " ".join(
            f"{name}='{value}'" for name, value in (("to", to), ("from", sender)) if value is not None
        )
        self.send(PEER_HEADER.format(attributes=attributes))
        return self.elements()

    def starttls(self, to="two.test", sender="remote.test"):
        (features,) = self.open(to, sender)
        assert features.starttls is not None
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        (proceed,) = self.elements()
        assert proceed.name == "proceed"
        self._reader = StreamParser(10_000_000)
        return self.open(to, sender)

    def restart(self):
        """
        The server starts a new stream (after TLS or SASL): read it afresh.
        """
        self._reader = StreamParser(10_000_000)

    @property
    def stream_id(self):
        return self.header.attributes["id"]

    def closed_with(self):
        """
        The stream error condition the server closed with, or None.
        """
        self.elements()
        for element in self.history:
            if element.name == "error" and element.uri == "http://etherx.jabber.org/streams":
                assert self.transport.disconnecting
                return next(element.elements()).name
        return None


@pytest.fixture
def peer():
    return ScriptedPeer
