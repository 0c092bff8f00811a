"""
An XMPP service over a memory store with a Clock, and a scripted client
speaking to one of its streams through a StringTransport.
"""

import base64

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from communigate.config import Config
from communigate.server import build_core
from communigate.storage import MemoryStore
from communigate.testing import ScramClient, TLSStringTransport
from communigate.xmpp.parser import ElementReceived, StreamOpened, StreamParser
from communigate.plugins.xmpp import xmpp_module

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
)


class ScriptedClient:
    """
    One client connection: send text, read the server's output as events.
    """

    def __init__(self, service, host="192.0.2.7", port=40000):
        self.service = service
        self.transport = TLSStringTransport(peerAddress=IPv4Address("TCP", host, port))
        self.stream = service.factory.buildProtocol(self.transport.getPeer())
        self.stream.makeConnection(self.transport)
        self._reader = StreamParser(10_000_000)
        self.header = None

    def send(self, text):
        self.stream.dataReceived(text.encode() if isinstance(text, str) else text)

    def events(self):
        data = self.transport.value()
        self.transport.clear()
        found = self._reader.feed(data)
        for event in found:
            if isinstance(event, StreamOpened):
                self.header = event
        return found

    def elements(self):
        return [e.element for e in self.events() if isinstance(e, ElementReceived)]

    def restart_reader(self):
        self._reader = StreamParser(10_000_000)

    def open(self, to="example.com"):
        self.send(HEADER.format(to=to))
        return self.elements()

    def starttls(self):
        features = self.open()
        assert features[0].starttls is not None
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        (proceed,) = self.elements()
        assert proceed.name == "proceed"
        assert self.transport.tls_context is not None
        self.restart_reader()
        return self.open()

    def auth_plain(self, user, password):
        payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>")
        return self.elements()

    def auth_scram(self, user, password, hash_name="sha256"):
        client = ScramClient(hash_name, user, password)
        mechanism = {"sha256": "SCRAM-SHA-256", "sha1": "SCRAM-SHA-1"}[hash_name]
        first = base64.b64encode(client.first()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{first}</auth>")
        (challenge,) = self.elements()
        assert challenge.name == "challenge", challenge.toXml()
        final = client.final(base64.b64decode(str(challenge)))
        self.send(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{base64.b64encode(final).decode()}</response>")
        (outcome,) = self.elements()
        if outcome.name == "success":
            assert client.verify(base64.b64decode(str(outcome)))
        return outcome

    def login(self, user="alice", password="wonderland"):
        self.starttls()
        outcome = self.auth_scram(user, password)
        assert outcome.name == "success", outcome.toXml()
        self.restart_reader()
        return self.open()

    def bind(self, resource=None, iq_id="b1"):
        inner = f"<resource>{resource}</resource>" if resource is not None else ""
        self.send(f"<iq type='set' id='{iq_id}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")
        return self.elements()

    def bound(self, resource="phone", user="alice", password="wonderland"):
        self.login(user, password)
        (result,) = self.bind(resource)
        assert result["type"] == "result", result.toXml()
        return self

    def available(self, presence="<presence/>"):
        """
        Send initial (or any) presence; what came back.
        """
        self.send(presence)
        return self.elements()

    def roster(self):
        """
        Ask for the roster; the result's items as (jid, attributes) pairs.
        """
        self.send("<iq type='get' id='roster-get'><query xmlns='jabber:iq:roster'/></iq>")
        (result,) = [e for e in self.elements() if e.getAttribute("id") == "roster-get"]
        assert result["type"] == "result", result.toXml()
        return result

    def lose_connection(self):
        """
        The TCP connection drops without a closing tag.
        """
        self.stream.connectionLost(None)

    def closed_with(self):
        """
        The stream error condition the server closed with, or None.
        """
        for element in self.elements():
            if element.name == "error" and element.uri == "http://etherx.jabber.org/streams":
                assert self.transport.disconnecting
                return next(element.elements()).name
        return None


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def context(tmp_path, clock):
    config = Config(data_dir=str(tmp_path), domain="example.com")
    core = build_core(config, MemoryStore(), clock)
    directory = core.directory
    directory.create_domain("example.com")
    directory.create_domain("example.org")
    directory.create_account("alice@example.com", {"Password": "wonderland"})
    directory.create_account("bob@example.com", {"Password": "builder"})
    directory.create_account("carol@example.org", {"Password": "carol-pw"})
    directory.create_account("postmaster@example.com", {"Password": "pm-pw"})
    return core


@pytest.fixture
def service(context):
    service = xmpp_module.build_service(context, [])
    service.startService()
    yield service
    service.stopService()


@pytest.fixture
def connect(service):
    def connect(**kwargs):
        return ScriptedClient(service, **kwargs)

    return connect
