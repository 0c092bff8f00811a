"""
Two real C{twistd communigate} servers, C{one.test} and C{two.test}, on
127.0.0.1 with their own data directories, find each other through DNS
(SRV records of C{_xmpp-server._tcp} served by twisted.names from this
process) and talk server-to-server: STARTTLS, then Server Dialback, each
server checking the other's key by connecting back.  slixmpp clients
logged in on each side exchange messages and directed presence.  A fake
server on a raw socket then sends two.test bad input (malformed XML, an
unknown domain, a stanza before dialback, a wrong key, a stanza from a
domain it did not prove): a stream error each, and two.test goes on.

Each client runs in a thread with its own asyncio loop; the test waits on
queues with timeouts and never sleeps blindly.
"""

import asyncio
import os
import queue
import socket
import ssl
import threading
from urllib.request import urlopen

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.testing import served_records, start_server, stop_server
from communigate.xmpp.dialback import dialback_key
from communigate.xmpp.parser import ElementReceived, StreamClosed, StreamOpened, StreamParser

slixmpp = pytest.importorskip("slixmpp")

TIMEOUT = 30
NS_STREAMS = "http://etherx.jabber.org/streams"


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


class Client:
    """
    One slixmpp client in its own thread and event loop; what it receives
    lands in C{messages} and C{presences}.
    """

    def __init__(self, server, jid, password, ca_certs=None, check_hostname=True):
        self.server = server
        self.ca_certs = ca_certs or os.path.join(server.data_dir, "xmpp-cert.pem")
        self.check_hostname = check_hostname
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.outcome = None
        self.messages = queue.Queue()
        self.presences = queue.Queue()
        self.xmpp = None
        self._args = (jid, password)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        jid, password = self._args
        xmpp = slixmpp.ClientXMPP(jid, password)
        xmpp.ca_certs = self.ca_certs
        xmpp.ssl_context.check_hostname = self.check_hostname
        xmpp.add_event_handler("session_start", lambda event: self._done("session"))
        xmpp.add_event_handler("failed_all_auth", lambda event: self._done("auth-failed"))
        xmpp.add_event_handler("disconnected", lambda event: (self._done("disconnected"), self.ended.set()))
        xmpp.add_event_handler("message", self._message)
        xmpp.add_event_handler(
            "presence_available", lambda p: self.presences.put((str(p["from"]), str(p["to"]), p["status"]))
        )
        self.xmpp = xmpp
        xmpp.connect("127.0.0.1", self.server.xmpp_port)
        self.loop.run_forever()
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def _message(self, msg):
        condition = msg["error"]["condition"] if msg["type"] == "error" else ""
        self.messages.put((str(msg["from"]), msg["type"], msg["body"], condition))

    def _done(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
        self.ready.set()

    def wait_ready(self):
        assert self.ready.wait(TIMEOUT), "the client neither logged in nor failed in time"
        return self.outcome

    def run(self, function):
        """
        Call C{function(xmpp)} in the client's loop and wait for it.
        """

        async def call():
            return function(self.xmpp)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(TIMEOUT)

    def stop(self):
        if not self.ended.is_set():
            self.loop.call_soon_threadsafe(lambda: self.xmpp.disconnect(wait=0))
            self.ended.wait(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)


def metrics(server):
    return urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=TIMEOUT).read().decode()


def exchange(one, two, ca_certs=None, bob_checks_name=True):
    """
    What the clients do, in a thread: returns what each one received.
    C{ca_certs}: what the clients trust (default: each server's generated
    certificate); C{bob_checks_name}: whether bob's client checks that
    two.test's certificate names two.test.
    """
    alice = Client(one, "alice@one.test/laptop", "wonderland", ca_certs)
    bob = Client(two, "bob@two.test/phone", "builder", ca_certs, check_hostname=bob_checks_name)
    try:
        assert alice.wait_ready() == "session"
        assert bob.wait_ready() == "session"
        # Bob is available, so a message to his bare JID reaches his resource.
        bob.run(lambda xmpp: xmpp.send_presence())
        alice.run(lambda xmpp: xmpp.send_presence())
        alice.run(lambda xmpp: xmpp.send_message(mto="bob@two.test", mbody="hello from one", mtype="chat"))
        got_by_bob = bob.messages.get(timeout=TIMEOUT)
        bob.run(lambda xmpp: xmpp.send_message(mto=got_by_bob[0], mbody="hello back from two", mtype="chat"))
        got_by_alice = alice.messages.get(timeout=TIMEOUT)
        alice.run(lambda xmpp: xmpp.send_presence(pto="bob@two.test", pstatus="directed from one"))
        presence_at_bob = _first(bob.presences, lambda p: p[0].startswith("alice@one.test"))
        bob.run(lambda xmpp: xmpp.send_presence(pto="alice@one.test/laptop", pstatus="directed from two"))
        presence_at_alice = _first(alice.presences, lambda p: p[0].startswith("bob@two.test"))
        # Nobody by that name on two.test: the error comes back from there.
        alice.run(lambda xmpp: xmpp.send_message(mto="nobody@two.test", mbody="anyone?", mtype="chat"))
        bounced = alice.messages.get(timeout=TIMEOUT)
        return got_by_bob, got_by_alice, presence_at_bob, presence_at_alice, bounced
    finally:
        alice.stop()
        bob.stop()


def _first(received, wanted):
    while True:
        item = received.get(timeout=TIMEOUT)
        if wanted(item):
            return item


def start_pair(tmp_path):
    """
    Servers one.test and two.test, each with an account, and the DNS zone
    naming their server-to-server ports; returns (one, two, zone, port).
    """
    one = start_server(tmp_path / "one", domain="one.test")
    try:
        two = start_server(tmp_path / "two", domain="two.test")
    except BaseException:
        stop_server(one)
        raise
    records = {}
    for domain, server in ((b"one.test", one), (b"two.test", two)):
        host = b"xmpp." + domain
        records[(b"_xmpp-server._tcp." + domain, tdns.SRV)] = [tdns.Record_SRV(0, 5, server.xmpp_s2s_port, host)]
        records[(host, tdns.A)] = [tdns.Record_A("127.0.0.1")]
    zone, dns_port = served_records(records)
    dns = f"127.0.0.1:{dns_port.getHost().port}"
    try:
        for server, account, password in ((one, "alice@one.test", "wonderland"), (two, "bob@two.test", "builder")):
            for line in (
                f'UPDATEXMPPSETTINGS {{DNSServers = "{dns}";}}',
                f'CREATEACCOUNT {account} {{Password = "{password}";}}',
            ):
                code, text = cli(server, line)
                assert code == 200, text
    except BaseException:
        stop_pair(one, two)
        dns_port.stopListening()
        raise
    return one, two, zone, dns_port


def stop_pair(*servers):
    for server in servers:
        stop_server(server)


@pytest_twisted.inlineCallbacks
def test_two_servers_exchange_messages_and_directed_presence(tmp_path):
    one, two, zone, dns_port = start_pair(tmp_path)
    try:
        received = yield threads.deferToThread(exchange, one, two)
        got_by_bob, got_by_alice, presence_at_bob, presence_at_alice, bounced = received
        listed_one = cli(one, "LISTXMPPS2S")
        listed_two = cli(two, "LISTXMPPS2S")
        metrics_one, metrics_two = metrics(one), metrics(two)
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)

    assert got_by_bob == ("alice@one.test/laptop", "chat", "hello from one", "")
    assert got_by_alice == ("bob@two.test/phone", "chat", "hello back from two", "")
    assert presence_at_bob == ("alice@one.test/laptop", "bob@two.test", "directed from one")
    assert presence_at_alice == ("bob@two.test/phone", "alice@one.test/laptop", "directed from two")
    assert bounced[0] == "nobody@two.test" and bounced[1] == "error" and bounced[3] == "service-unavailable"
    # Each server found the other through its SRV record.
    assert zone.asked(b"_xmpp-server._tcp.two.test", tdns.SRV)
    assert zone.asked(b"_xmpp-server._tcp.one.test", tdns.SRV)
    for (code, listed), remote in ((listed_one, "two.test"), (listed_two, "one.test")):
        assert code == 201, listed
        assert "Direction = out" in listed and "Direction = in" in listed
        assert remote in listed and "TLS = YES" in listed and "State = ready" in listed
    for text in (metrics_one, metrics_two):
        assert 'communigate_xmpp_s2s_dialback_total{outcome="valid",role="outgoing"} 1.0' in text
        assert 'communigate_xmpp_s2s_dialback_total{outcome="valid",role="incoming"} 1.0' in text
        assert 'communigate_xmpp_s2s_dialback_total{outcome="valid",role="authoritative"} 1.0' in text
        assert 'communigate_xmpp_s2s_stanzas_total{direction="out",kind="message"}' in text


PEER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "from='{sender}' to='{to}' version='1.0'>"
)


class RawPeer:
    """
    A socket posing as another server; what the server sends is read with
    the server's own stream parser.
    """

    def __init__(self, server):
        self.socket = socket.create_connection(("127.0.0.1", server.xmpp_s2s_port), timeout=TIMEOUT)
        self.reader = StreamParser(10_000_000)
        self.header = None
        self.pending = []
        self.closed = False

    def send(self, text):
        self.socket.sendall(text.encode())

    def read(self, until):
        """
        Elements until C{until(element)} is true or the server closes.
        """
        found = []
        while True:
            while self.pending:
                element = self.pending.pop(0)
                found.append(element)
                if until(element):
                    return found
            if self.closed:
                return found
            data = self.socket.recv(65536)
            if not data:
                self.closed = True
            for event in self.reader.feed(data) if data else ():
                if isinstance(event, StreamOpened):
                    self.header = event
                elif isinstance(event, ElementReceived):
                    self.pending.append(event.element)
                elif isinstance(event, StreamClosed):
                    self.closed = True

    def open(self, sender="one.test", to="two.test"):
        self.send(PEER_HEADER.format(sender=sender, to=to))
        return self.read(lambda element: element.name == "features")

    def starttls(self, sender="one.test"):
        self.open(sender)
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        (proceed,) = self.read(lambda element: element.name == "proceed")
        assert proceed.name == "proceed"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.socket = context.wrap_socket(self.socket)
        self.reader = StreamParser(10_000_000)
        return self.open(sender)

    def stream_error(self):
        for element in self.read(lambda element: element.name == "error" and element.uri == NS_STREAMS):
            if element.name == "error" and element.uri == NS_STREAMS:
                return next(element.elements()).name
        return None

    def close(self):
        self.socket.close()


def peer_server_bad_input(one, two):
    """
    A fake server does what it should not to two.test; returns what each
    attempt got.
    """
    outcomes = {}
    peer = RawPeer(two)
    peer.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' <<<")
    outcomes["malformed"] = peer.stream_error()
    peer.close()

    peer = RawPeer(two)
    peer.send(PEER_HEADER.format(sender="one.test", to="nowhere.test"))
    outcomes["unknown domain"] = peer.stream_error()
    peer.close()

    peer = RawPeer(two)
    peer.open()
    peer.send("<message from='alice@one.test' to='bob@two.test'><body>early</body></message>")
    outcomes["stanza before dialback"] = peer.stream_error()
    peer.close()

    # A wrong key: two.test asks one.test's real server, which says invalid.
    peer = RawPeer(two)
    peer.starttls()
    peer.send("<db:result from='one.test' to='two.test'>00112233445566778899aabbccddeeff</db:result>")
    answer = peer.read(lambda element: element.name == "result")[-1]
    outcomes["wrong key"] = (answer.getAttribute("type"), peer.stream_error())
    peer.close()

    # The right key, made with one.test's secret (what an operator could
    # read with GETXMPPSETTINGS): then a stanza claiming another domain.
    _code, settings = cli(one, "GETXMPPSETTINGS")
    secret = settings.split("DialbackSecret = ")[1].split(";")[0].strip('"')
    peer = RawPeer(two)
    peer.starttls()
    key = dialback_key(secret, "two.test", "one.test", peer.header.attributes["id"])
    peer.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    answer = peer.read(lambda element: element.name == "result")[-1]
    peer.send("<message from='mallory@evil.test' to='bob@two.test'><body>spoofed</body></message>")
    outcomes["other domain in from"] = (answer.getAttribute("type"), peer.stream_error())
    peer.close()

    # The server goes on: a new stream is answered.
    peer = RawPeer(two)
    features = peer.open()
    outcomes["afterwards"] = [child.name for child in features[-1].elements()]
    peer.close()
    return outcomes


@pytest_twisted.inlineCallbacks
def test_bad_input_from_a_peer_server_gets_stream_errors_and_the_server_goes_on(tmp_path):
    one, two, _zone, dns_port = start_pair(tmp_path)
    try:
        outcomes = yield threads.deferToThread(peer_server_bad_input, one, two)
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)
    assert outcomes == {
        "malformed": "not-well-formed",
        "unknown domain": "host-unknown",
        "stanza before dialback": "not-authorized",
        "wrong key": ("invalid", "not-authorized"),
        "other domain in from": ("valid", "invalid-from"),
        "afterwards": ["starttls"],
    }
