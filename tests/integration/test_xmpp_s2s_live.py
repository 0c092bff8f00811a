"""
Two real C{twistd communigate} servers, C{one.test} and C{two.test}, on
127.0.0.1 with their own data directories, find each other through DNS
(SRV records of C{_xmpp-server._tcp} served by twisted.names from this
process) and talk server-to-server: STARTTLS, then Server Dialback, each
server checking the other's key by connecting back.  slixmpp clients
logged in on each side exchange messages and directed presence.

Each client runs in a thread with its own asyncio loop; the test waits on
queues with timeouts and never sleeps blindly.
"""

import asyncio
import os
import queue
import threading
from urllib.request import urlopen

import pytest
import pytest_twisted
from twisted.internet import threads
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.testing import served_records, start_server, stop_server

slixmpp = pytest.importorskip("slixmpp")

TIMEOUT = 30


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


class Client:
    """
    One slixmpp client in its own thread and event loop; what it receives
    lands in C{messages} and C{presences}.
    """

    def __init__(self, server, jid, password):
        self.server = server
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
        xmpp.ca_certs = os.path.join(self.server.data_dir, "xmpp-cert.pem")
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


def exchange(one, two):
    """
    What the clients do, in a thread: returns what each one received.
    """
    alice = Client(one, "alice@one.test/laptop", "wonderland")
    bob = Client(two, "bob@two.test/phone", "builder")
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


@pytest_twisted.inlineCallbacks
def test_two_servers_exchange_messages_and_directed_presence(tmp_path):
    one = start_server(tmp_path / "one", domain="one.test")
    two = None
    dns_port = None
    try:
        two = start_server(tmp_path / "two", domain="two.test")
        records = {}
        for domain, server in ((b"one.test", one), (b"two.test", two)):
            host = b"xmpp." + domain
            records[(b"_xmpp-server._tcp." + domain, tdns.SRV)] = [
                tdns.Record_SRV(0, 5, server.xmpp_s2s_port, host)
            ]
            records[(host, tdns.A)] = [tdns.Record_A("127.0.0.1")]
        zone, dns_port = served_records(records)
        dns = f"127.0.0.1:{dns_port.getHost().port}"
        for server, account in ((one, "alice@one.test"), (two, "bob@two.test")):
            password = "wonderland" if account.startswith("alice") else "builder"
            for line in (
                f'UPDATEXMPPSETTINGS {{DNSServers = "{dns}";}}',
                f'CREATEACCOUNT {account} {{Password = "{password}";}}',
            ):
                code, text = cli(server, line)
                assert code == 200, text
        received = yield threads.deferToThread(exchange, one, two)
        got_by_bob, got_by_alice, presence_at_bob, presence_at_alice, bounced = received
        listed_one = cli(one, "LISTXMPPS2S")
        listed_two = cli(two, "LISTXMPPS2S")
        metrics_one, metrics_two = metrics(one), metrics(two)
    finally:
        if dns_port is not None:
            yield dns_port.stopListening()
        stop_server(one)
        if two is not None:
            stop_server(two)

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
