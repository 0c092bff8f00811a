"""
Real slixmpp clients against a running C{twistd communigate}: STARTTLS with
the generated certificate (verified, as the CA), SCRAM-SHA-256,
SCRAM-SHA-1 and PLAIN, binding, ping, disco and version, a wrong password,
and a second login with the same resource taking over.

Each client runs in a thread with its own asyncio loop; the test talks to
it through L{Client}, which waits with timeouts and never sleeps blindly.
"""

import asyncio
import os
import threading
from urllib.request import urlopen

import pytest

from communigate.admin.client import CLIClient

slixmpp = pytest.importorskip("slixmpp")

TIMEOUT = 20


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


@pytest.fixture
def xmpp_server(live_server):
    for name, password in (("alice", "wonderland"), ("bob", "builder")):
        code, text = cli(live_server, f'CREATEACCOUNT {name}@example.com {{Password = "{password}";}}')
        assert code == 200, text
    return live_server


class Client:
    """
    One slixmpp client in its own thread and event loop.
    """

    def __init__(self, server, jid, password, mechanism=None):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.outcome = None
        self.stream_errors = []
        self.xmpp = None
        self._args = (jid, password, mechanism)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        jid, password, mechanism = self._args
        xmpp = slixmpp.ClientXMPP(jid, password, sasl_mech=mechanism)
        for plugin in ("xep_0030", "xep_0092", "xep_0199"):
            xmpp.register_plugin(plugin)
        # Trust the server's generated certificate as the CA: the handshake
        # is fully verified, host name included.
        xmpp.ca_certs = os.path.join(self.server.data_dir, "xmpp-cert.pem")
        xmpp.add_event_handler("session_start", lambda event: self._done("session"))
        xmpp.add_event_handler("failed_all_auth", lambda event: self._done("auth-failed"))
        xmpp.add_event_handler("stream_error", lambda error: self.stream_errors.append(error["condition"]))
        xmpp.add_event_handler("disconnected", lambda event: (self._done("disconnected"), self.ended.set()))
        self.xmpp = xmpp
        xmpp.connect("127.0.0.1", self.server.xmpp_port)
        self.loop.run_forever()
        # Let slixmpp's own tasks finish their cancellation before the loop
        # goes, so nothing runs on a closed loop later.
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def _done(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
        self.ready.set()

    def wait_ready(self):
        assert self.ready.wait(TIMEOUT), "the client neither logged in nor failed in time"
        return self.outcome

    def call(self, coroutine_function):
        """
        Run C{coroutine_function(xmpp)} in the client's loop; its result.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine_function(self.xmpp), self.loop)
        return future.result(TIMEOUT)

    def stop(self):
        if not self.ended.is_set():
            self.loop.call_soon_threadsafe(lambda: self.xmpp.disconnect(wait=0))
            self.ended.wait(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)


@pytest.fixture
def clients():
    started = []

    def start(server, jid, password, mechanism=None):
        client = Client(server, jid, password, mechanism)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
def test_a_client_logs_in_over_starttls_binds_and_pings(xmpp_server, clients, mechanism):
    alice = clients(xmpp_server, "alice@example.com/laptop", "wonderland", mechanism)
    assert alice.wait_ready() == "session"
    assert alice.xmpp.boundjid.full == "alice@example.com/laptop"

    async def ping(xmpp):
        return await xmpp.plugin["xep_0199"].ping(jid="example.com", timeout=TIMEOUT)

    assert alice.call(ping) is not None
    code, listed = cli(xmpp_server, "LISTXMPPSESSIONS alice")
    assert code == 201 and "alice@example.com/laptop" in listed and mechanism in listed
    assert "TLS = YES" in listed
    metrics = urlopen(f"http://127.0.0.1:{xmpp_server.http_port}/metrics", timeout=TIMEOUT).read().decode()
    assert f'communigate_xmpp_logins_total{{mechanism="{mechanism}",outcome="ok"}} 1.0' in metrics
    assert "communigate_xmpp_sessions 1.0" in metrics
    assert 'communigate_xmpp_stanzas_total{direction="in",kind="iq"}' in metrics


def test_disco_and_version_of_the_server(xmpp_server, clients):
    alice = clients(xmpp_server, "alice@example.com", "wonderland")
    assert alice.wait_ready() == "session"
    assert alice.xmpp.boundjid.resource  # generated by the server

    async def disco(xmpp):
        info = await xmpp.plugin["xep_0030"].get_info(jid="example.com", timeout=TIMEOUT)
        return info["disco_info"]

    info = alice.call(disco)
    assert ("server", "im", None, "communigate") in info["identities"]
    assert {"urn:xmpp:ping", "jabber:iq:version", "http://jabber.org/protocol/disco#info"} <= set(info["features"])

    async def version(xmpp):
        answer = await xmpp.plugin["xep_0092"].get_version("example.com", timeout=TIMEOUT)
        return answer["software_version"]

    software = alice.call(version)
    assert software["name"] == "communigate" and software["version"]


def test_a_wrong_password_is_refused(xmpp_server, clients):
    mallory = clients(xmpp_server, "alice@example.com/x", "not-the-password", "SCRAM-SHA-256")
    assert mallory.wait_ready() == "auth-failed"
    code, listed = cli(xmpp_server, "LISTXMPPSESSIONS")
    assert code == 201 and "alice@example.com/x" not in listed


def test_a_second_login_with_the_same_resource_takes_over(xmpp_server, clients):
    first = clients(xmpp_server, "alice@example.com/same", "wonderland")
    assert first.wait_ready() == "session"
    second = clients(xmpp_server, "alice@example.com/same", "wonderland")
    assert second.wait_ready() == "session"
    assert first.ended.wait(TIMEOUT), "the first session was not closed"
    assert first.stream_errors == ["conflict"]

    async def ping(xmpp):
        return await xmpp.plugin["xep_0199"].ping(jid="example.com", timeout=TIMEOUT)

    assert second.call(ping) is not None
    code, listed = cli(xmpp_server, "LISTXMPPSESSIONS alice")
    assert listed.count("alice@example.com/same") == 1


def test_an_administrator_kills_a_session(xmpp_server, clients):
    bob = clients(xmpp_server, "bob@example.com/desk", "builder")
    assert bob.wait_ready() == "session"
    code, text = cli(xmpp_server, 'KILLXMPPSESSION "bob@example.com/desk"')
    assert code == 200, text
    assert bob.ended.wait(TIMEOUT)
    assert bob.stream_errors == ["policy-violation"]
