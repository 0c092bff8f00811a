"""
Bad input to the XMPP listener of a running server, over raw sockets:
malformed XML, an oversized stanza, billion laughs, stanzas before
authentication, and more resources than an account may bind.  Each gets
its stream error, and the server goes on serving the next client.
"""

import base64
import socket
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.testing import ScramClient
from communigate.xmpp.parser import ElementReceived, StreamClosed, StreamFault, StreamOpened, StreamParser

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10 if n > 1 else "&lol;" * 10}">\n' for n in range(1, 10)
    )
    + "]>\n<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    "to='example.com' version='1.0'><message><body>&lol9;</body></message>"
)


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


class RawClient:
    """
    A socket speaking XMPP by hand; the server's output is read with the
    server's own stream parser (it is a stream too).
    """

    def __init__(self, server):
        self.socket = socket.create_connection(("127.0.0.1", server.xmpp_port), timeout=10)
        self.reader = StreamParser(10_000_000)
        self.closed = False

    def send(self, text):
        self.socket.sendall(text.encode() if isinstance(text, str) else text)

    def read_elements(self, count=1, deadline=10.0):
        found = []
        end = time.monotonic() + deadline
        while len(found) < count and not self.closed and time.monotonic() < end:
            data = self.socket.recv(65536)
            if not data:
                self.closed = True
                break
            for event in self.reader.feed(data):
                if isinstance(event, ElementReceived):
                    found.append(event.element)
                elif isinstance(event, StreamClosed):
                    self.closed = True
        return found

    def stream_error(self):
        """
        The condition of the stream error the server ends with, after which
        it must close the connection.
        """
        for element in self.read_elements(count=10):
            if element.name == "error" and element.uri == "http://etherx.jabber.org/streams":
                self.read_elements(count=1)  # up to the close
                assert self.closed
                return next(element.elements()).name
        return None

    def restart(self):
        self.reader = StreamParser(10_000_000)
        self.send(HEADER)
        return self.read_elements()

    def close(self):
        self.socket.close()


@pytest.fixture
def raw(live_server):
    opened = []

    def connect():
        client = RawClient(live_server)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def still_serving(server):
    client = RawClient(server)
    try:
        client.send(HEADER)
        (features,) = client.read_elements()
        assert features.name == "features" and features.starttls is not None
    finally:
        client.close()


def test_malformed_xml_is_not_well_formed(live_server, raw):
    client = raw()
    client.send(HEADER + "<message><body>oops</message>")
    assert client.stream_error() == "not-well-formed"
    still_serving(live_server)


def test_billion_laughs_is_restricted_xml_and_never_expanded(live_server, raw):
    client = raw()
    client.send(BILLION_LAUGHS)
    assert client.stream_error() == "restricted-xml"
    still_serving(live_server)


def test_an_oversized_stanza_is_a_policy_violation(live_server, raw):
    assert cli(live_server, "UPDATEXMPPSETTINGS {MaxStanzaSize = 4096;}")[0] == 200
    client = raw()
    client.send(HEADER)
    client.read_elements()
    client.send("<message><body>" + "x" * 20000 + "</body></message>")
    assert client.stream_error() == "policy-violation"
    still_serving(live_server)


@pytest.mark.parametrize("stanza", ["<message to='alice@example.com'><body>hi</body></message>", "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"])
def test_a_stanza_before_authentication_is_not_authorized(live_server, raw, stanza):
    client = raw()
    client.send(HEADER)
    client.read_elements()
    client.send(stanza)
    assert client.stream_error() == "not-authorized"
    still_serving(live_server)


def test_an_unknown_domain_is_host_unknown(live_server, raw):
    client = raw()
    client.send(HEADER.replace("example.com", "elsewhere.test"))
    assert client.stream_error() == "host-unknown"


def scram_login(client, user, password):
    scram = ScramClient("sha256", user, password, nonce=base64.b64encode(user.encode()).decode().rstrip("="))
    client.send(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
        + base64.b64encode(scram.first()).decode() + "</auth>"
    )
    (challenge,) = client.read_elements()
    final = scram.final(base64.b64decode(str(challenge)))
    client.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final).decode() + "</response>")
    (outcome,) = client.read_elements()
    return outcome


def test_resources_beyond_the_limit_are_refused_and_the_server_goes_on(live_server, raw):
    assert cli(live_server, 'CREATEACCOUNT alice@example.com {Password = "wonderland";}')[0] == 200
    assert cli(live_server, "UPDATEXMPPSETTINGS {MaxResources = 3; RequireTLS = NO;}")[0] == 200
    answers = []
    for n in range(5):
        client = raw()
        client.send(HEADER)
        (features,) = client.read_elements()
        assert features.mechanisms is not None
        outcome = scram_login(client, "alice", "wonderland")
        assert outcome.name == "success", outcome.toXml()
        client.restart()
        client.send(f"<iq type='set' id='b{n}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r{n}</resource></bind></iq>")
        (answer,) = client.read_elements()
        answers.append(answer["type"] if answer["type"] == "result" else answer.error.firstChildElement().name)
    assert answers == ["result"] * 3 + ["resource-constraint"] * 2
    code, listed = cli(live_server, "LISTXMPPSESSIONS alice")
    assert listed.count("alice@example.com/r") == 3


def test_the_parser_used_here_reads_the_server_faithfully():
    # The raw client reads the server with the server's parser; make sure
    # it does not hide a fault of its own.
    with pytest.raises(StreamFault):
        StreamParser().feed(b"<a></b>")
    assert isinstance(StreamParser().feed(HEADER.encode())[0], StreamOpened)
