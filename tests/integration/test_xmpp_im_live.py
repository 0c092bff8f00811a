"""
Instant messaging with real slixmpp clients against a running C{twistd
communigate}: rosters and subscriptions (a request waiting across
logins), presence, messages to bare and full JIDs, an offline message
delivered at the next login, XEP-0198 resumption, XEP-0280 carbons, and
bad input (a forged SM acknowledgement, stanzas to bad JIDs, an
oversized roster) each getting its error while the server keeps serving.

Across protocols, with sipp: a SIP PUBLISH "busy" is XMPP presence dnd
for a slixmpp watcher, a slixmpp message reaches the account's registered
sipp phone as a SIP MESSAGE, and a sipp MESSAGE reaches the slixmpp
client.

Each client runs in its own thread and asyncio loop; L{IMClient}
records what the client receives and lets the test wait for it with a
timeout, never sleeping blindly.
"""

import asyncio
import os
import subprocess
import threading
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.testing import free_port

slixmpp = pytest.importorskip("slixmpp")

TIMEOUT = 20
PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "carol-pw"}


def cli(server, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        results = [client.command(line) for line in lines]
    for line, (code, text) in zip(lines, results):
        assert code in (200, 201), f"{line}: {code} {text}"
    return results


@pytest.fixture
def server(live_server):
    cli(live_server, *(f'CREATEACCOUNT {name} {{Password = "{password}";}}' for name, password in PASSWORDS.items()))
    return live_server


class IMClient:
    """
    One slixmpp client in its own thread, recording what it receives.

    @ivar received: C{(kind, stanza)} pairs in arrival order: C{message},
        C{presence}, C{roster}, C{carbon_received}, C{carbon_sent},
        C{resumed}.
    """

    def __init__(self, server, jid, plugins=(), ready=True):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.ended = threading.Event()
        self.outcome = None
        self.stream_errors = []
        self.received = []
        self._condition = threading.Condition()
        self._jid = jid
        self._plugins = plugins
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if ready:
            assert self.wait_started() == "session", f"{jid} did not log in"

    def _run(self):
        asyncio.set_event_loop(self.loop)
        user = self._jid.split("@", 1)[0]
        xmpp = slixmpp.ClientXMPP(self._jid, PASSWORDS[user])
        for plugin in ("xep_0030", "xep_0199", "xep_0203", *self._plugins):
            xmpp.register_plugin(plugin)
        xmpp.ca_certs = os.path.join(self.server.data_dir, "xmpp-cert.pem")
        # The test answers subscription requests itself.
        xmpp.roster.auto_authorize = None
        xmpp.roster.auto_subscribe = False
        xmpp.add_event_handler("session_start", lambda event: self._done("session"))
        xmpp.add_event_handler("failed_all_auth", lambda event: self._done("auth-failed"))
        xmpp.add_event_handler("stream_error", lambda error: self.stream_errors.append(error["condition"]))
        xmpp.add_event_handler("disconnected", lambda event: self._disconnected())
        xmpp.add_event_handler("message", lambda stanza: self._record("message", stanza))
        xmpp.add_event_handler("message_error", lambda stanza: self._record("message", stanza))
        xmpp.add_event_handler("presence", lambda stanza: self._record("presence", stanza))
        xmpp.add_event_handler("roster_update", lambda stanza: self._record("roster", stanza))
        xmpp.add_event_handler("carbon_received", lambda stanza: self._record("carbon_received", stanza))
        xmpp.add_event_handler("carbon_sent", lambda stanza: self._record("carbon_sent", stanza))
        xmpp.add_event_handler("session_resumed", lambda stanza: self._record("resumed", stanza))
        self.xmpp = xmpp
        xmpp.connect("127.0.0.1", self.server.xmpp_port)
        self.loop.run_forever()
        pending = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    def _done(self, outcome):
        if self.outcome is None:
            self.outcome = outcome
        self.started.set()

    def _disconnected(self):
        self._done("disconnected")
        self.ended.set()

    def _record(self, kind, stanza):
        with self._condition:
            self.received.append((kind, stanza))
            self._condition.notify_all()

    def wait_started(self):
        assert self.started.wait(TIMEOUT), "the client neither logged in nor failed in time"
        return self.outcome

    def wait_for(self, kind, predicate=lambda stanza: True, timeout=TIMEOUT):
        """
        The first recorded C{kind} stanza matching C{predicate} (it is
        taken off the record), waiting for it to arrive.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for index, (got, stanza) in enumerate(self.received):
                    if got == kind and predicate(stanza):
                        del self.received[index]
                        return stanza
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {kind} arrived in time; got {[k for k, _ in self.received]}")
                self._condition.wait(remaining)

    def nothing(self, kind, predicate=lambda stanza: True, wait=1.0):
        """
        Assert that no matching C{kind} stanza arrives within C{wait} seconds.
        """
        with pytest.raises(AssertionError, match="no .* arrived"):
            self.wait_for(kind, predicate, timeout=wait)

    def call(self, coroutine_function):
        future = asyncio.run_coroutine_threadsafe(coroutine_function(self.xmpp), self.loop)
        return future.result(TIMEOUT)

    def do(self, function):
        """
        Run C{function(xmpp)} in the client's loop and wait for it.
        """

        async def run(xmpp):
            return function(xmpp)

        return self.call(run)

    def online(self, **presence):
        """
        Ask for the roster, then send initial presence (RFC 6121 order).
        """

        async def start(xmpp):
            await xmpp.get_roster(timeout=TIMEOUT)
            xmpp.send_presence(**presence)

        self.call(start)

    def stop(self):
        if not self.ended.is_set():
            self.loop.call_soon_threadsafe(lambda: self.xmpp.disconnect(wait=0))
            self.ended.wait(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)


@pytest.fixture
def clients():
    started = []

    def start(server, jid, plugins=(), ready=True):
        client = IMClient(server, jid, plugins, ready)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


def from_(stanza):
    return str(stanza["from"])


def test_roster_and_a_subscription_request_waiting_across_logins(server, clients):
    alice = clients(server, "alice@example.com/laptop")
    alice.online()

    async def add_bob(xmpp):
        await xmpp.update_roster("bob@example.com", name="Bob", groups=["Friends"], timeout=TIMEOUT)

    alice.call(add_bob)
    push = alice.wait_for("roster", lambda iq: "bob@example.com" in iq["roster"]["items"])
    assert push["roster"]["items"]["bob@example.com"]["groups"] == ["Friends"]
    alice.do(lambda xmpp: xmpp.send_presence_subscription("bob@example.com", ptype="subscribe"))
    alice.wait_for("roster", lambda iq: iq["roster"]["items"].get("bob@example.com", {}).get("ask") == "subscribe")

    # Bob was not there; the request waits for his next login, and the one after.
    bob = clients(server, "bob@example.com/desk")
    bob.online()
    bob.wait_for("presence", lambda p: p["type"] == "subscribe" and from_(p) == "alice@example.com")
    bob.stop()
    bob = clients(server, "bob@example.com/phone")
    bob.online(pshow="away", pstatus="out for lunch")
    bob.wait_for("presence", lambda p: p["type"] == "subscribe" and from_(p) == "alice@example.com")
    ((_, listed),) = cli(server, "ROSTER bob {what = List;}")
    assert "alice@example.com" in listed and "request = pending" in listed

    bob.do(lambda xmpp: xmpp.send_presence(pto="alice@example.com", ptype="subscribed"))
    alice.wait_for("presence", lambda p: p["type"] == "subscribed" and from_(p) == "bob@example.com")
    alice.wait_for("roster", lambda iq: iq["roster"]["items"].get("bob@example.com", {}).get("subscription") == "to")
    away = alice.wait_for("presence", lambda p: from_(p) == "bob@example.com/phone")
    assert (away["show"], away["status"]) == ("away", "out for lunch")
    ((_, listed),) = cli(server, "ROSTER alice {what = List;}")
    assert "subscription = to" in listed and "name = Bob" in listed and "groups = (Friends)" in listed


def test_presence_and_messages_to_bare_and_full_jids(server, clients):
    cli(server, "ROSTER alice {what = Update; peer = bob@example.com; subscription = both;}")
    alice = clients(server, "alice@example.com/laptop")
    alice.online(ppriority=5)
    bob = clients(server, "bob@example.com/desk")
    bob.online(pshow="chat")
    alice.wait_for("presence", lambda p: from_(p) == "bob@example.com/desk" and p["show"] == "chat")
    bob.wait_for("presence", lambda p: from_(p) == "alice@example.com/laptop")
    mobile = clients(server, "alice@example.com/mobile")
    mobile.online(ppriority=1)

    bob.do(lambda xmpp: xmpp.send_message(mto="alice@example.com", mbody="to your best resource", mtype="chat"))
    got = alice.wait_for("message", lambda m: m["body"] == "to your best resource")
    assert from_(got) == "bob@example.com/desk"
    mobile.nothing("message", lambda m: m["body"] == "to your best resource")

    bob.do(lambda xmpp: xmpp.send_message(mto="alice@example.com/mobile", mbody="to the mobile", mtype="chat"))
    mobile.wait_for("message", lambda m: m["body"] == "to the mobile")

    bob.do(lambda xmpp: xmpp.send_presence(pshow="dnd", pstatus="concentrating"))
    busy = alice.wait_for("presence", lambda p: from_(p) == "bob@example.com/desk" and p["show"] == "dnd")
    assert busy["status"] == "concentrating"
    ((_, text),) = cli(server, "GETACCOUNTPRESENCE bob")
    assert text == '(busy, concentrating)'

    bob.stop()
    alice.wait_for("presence", lambda p: from_(p) == "bob@example.com/desk" and p["type"] == "unavailable")
    ((_, text),) = cli(server, "GETACCOUNTPRESENCE bob")
    assert text == "#NULL#"


def test_an_offline_message_is_delivered_at_the_next_login(server, clients):
    alice = clients(server, "alice@example.com/laptop")
    alice.online()
    alice.do(lambda xmpp: xmpp.send_message(mto="carol@example.com", mbody="read me later", mtype="chat"))
    alice.nothing("message", wait=0.5)
    carol = clients(server, "carol@example.com/pad")
    carol.nothing("message", wait=0.5)
    carol.online()
    got = carol.wait_for("message", lambda m: m["body"] == "read me later")
    assert from_(got) == "alice@example.com/laptop"
    assert got["delay"]["stamp"] is not None and got["delay"]["text"] == "Offline Storage"


def test_a_message_to_an_unknown_account_is_service_unavailable(server, clients):
    alice = clients(server, "alice@example.com/laptop")
    alice.online()
    alice.do(lambda xmpp: xmpp.send_message(mto="nobody@example.com", mbody="anyone?", mtype="chat"))
    error = alice.wait_for("message", lambda m: m["type"] == "error")
    assert error["error"]["condition"] == "service-unavailable"


def test_stream_management_resumes_a_lost_session(server, clients):
    alice = clients(server, "alice@example.com/laptop", plugins=("xep_0198",))
    alice.online()
    deadline = time.monotonic() + TIMEOUT
    while not alice.xmpp.plugin["xep_0198"].sm_id and time.monotonic() < deadline:
        time.sleep(0.05)
    sm_id = alice.xmpp.plugin["xep_0198"].sm_id
    assert sm_id
    bob = clients(server, "bob@example.com/desk")
    bob.online()

    # The connection drops without a closing tag: the session hibernates.
    alice.do(lambda xmpp: xmpp.abort())
    assert alice.ended.wait(TIMEOUT)
    ((_, listed),) = cli(server, "LISTXMPPSESSIONS alice")
    assert "alice@example.com/laptop" in listed
    bob.do(lambda xmpp: xmpp.send_message(mto="alice@example.com/laptop", mbody="while you were away", mtype="chat"))
    time.sleep(0.3)

    alice.ended.clear()
    alice.do(lambda xmpp: xmpp.connect("127.0.0.1", server.xmpp_port))
    alice.wait_for("resumed")
    got = alice.wait_for("message", lambda m: m["body"] == "while you were away")
    assert from_(got) == "bob@example.com/desk"
    assert alice.xmpp.plugin["xep_0198"].sm_id == sm_id


def test_carbons_copy_a_conversation_to_the_other_resource(server, clients):
    laptop = clients(server, "alice@example.com/laptop", plugins=("xep_0280",))
    laptop.online(ppriority=5)
    mobile = clients(server, "alice@example.com/mobile", plugins=("xep_0280",))
    mobile.online(ppriority=1)

    async def enable(xmpp):
        await xmpp.plugin["xep_0280"].enable(timeout=TIMEOUT)

    mobile.call(enable)
    bob = clients(server, "bob@example.com/desk")
    bob.online()
    bob.do(lambda xmpp: xmpp.send_message(mto="alice@example.com", mbody="to the laptop", mtype="chat"))
    laptop.wait_for("message", lambda m: m["body"] == "to the laptop")
    received = mobile.wait_for("carbon_received")
    assert received["carbon_received"]["body"] == "to the laptop"
    laptop.do(lambda xmpp: xmpp.send_message(mto="bob@example.com", mbody="answered on the laptop", mtype="chat"))
    bob.wait_for("message", lambda m: m["body"] == "answered on the laptop")
    sent = mobile.wait_for("carbon_sent")
    assert sent["carbon_sent"]["body"] == "answered on the laptop"


def test_a_forged_acknowledgement_ends_only_that_stream(server, clients):
    alice = clients(server, "alice@example.com/laptop", plugins=("xep_0198",))
    alice.online()
    alice.do(lambda xmpp: xmpp.send_raw("<a xmlns='urn:xmpp:sm:3' h='1000'/>"))
    assert alice.ended.wait(TIMEOUT)
    assert alice.stream_errors == ["undefined-condition"]
    bob = clients(server, "bob@example.com/desk")
    bob.online()

    async def ping(xmpp):
        return await xmpp.plugin["xep_0199"].ping(jid="example.com", timeout=TIMEOUT)

    assert bob.call(ping) is not None


def test_bad_jids_and_an_oversized_roster_get_stanza_errors(server, clients):
    cli(server, "UPDATEACCOUNTSETTINGS alice {MaxRosterItems = 2;}")
    alice = clients(server, "alice@example.com/laptop")
    alice.online()
    alice.do(lambda xmpp: xmpp.send_raw("<message to='a@@b' type='chat' id='bad1'><body>x</body></message>"))
    error = alice.wait_for("message", lambda m: m["id"] == "bad1")
    assert error["error"]["condition"] == "jid-malformed"

    async def add(xmpp, contact):
        return await xmpp.update_roster(contact, timeout=TIMEOUT)

    for contact in ("u1@example.com", "u2@example.com"):
        alice.call(lambda xmpp, contact=contact: add(xmpp, contact))
    with pytest.raises(slixmpp.exceptions.IqError) as refused:
        alice.call(lambda xmpp: add(xmpp, "u3@example.com"))
    assert refused.value.condition == "resource-constraint"
    ((_, listed),) = cli(server, "ROSTER alice {what = List;}")
    assert "u1@example.com" in listed and "u2@example.com" in listed and "u3@example.com" not in listed

    async def ping(xmpp):
        return await xmpp.plugin["xep_0199"].ping(jid="example.com", timeout=TIMEOUT)

    assert alice.call(ping) is not None


# -- across protocols: one account, SIP and XMPP --------------------------------------

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]


@pytest.fixture
def sip_server(server):
    cli(server, "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}")
    return server


def sipp(server, workdir, scenario, fields, port=0, background=False):
    command = ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *SIPP,
               "-timeout", "20s", "-timeout_error"]
    if fields is not None:
        (workdir / f"{scenario}.csv").write_text("SEQUENTIAL\n" + ";".join(fields) + "\n")
        command += ["-inf", f"{scenario}.csv", f"127.0.0.1:{server.sip_port}"]
    if background:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    return subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=30)


def sipp_errors(workdir):
    return "".join(p.read_text() for p in workdir.glob("*_errors.log"))


def test_a_sip_phone_publishing_busy_is_dnd_for_an_xmpp_watcher(sip_server, clients, tmp_path):
    cli(sip_server, "ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    bob = clients(sip_server, "bob@example.com/desk")
    bob.online()
    bob.nothing("presence", lambda p: from_(p).startswith("alice@example.com"), wait=0.5)
    done = sipp(sip_server, tmp_path, "publish_busy.xml",
                ["alice", "example.com", f"[authentication username=alice password={PASSWORDS['alice']}]"])
    assert done.returncode == 0, sipp_errors(tmp_path) + done.stderr
    busy = bob.wait_for("presence", lambda p: from_(p) == "alice@example.com")
    assert (busy["show"], busy["status"]) == ("dnd", "On the phone")


def test_an_xmpp_message_reaches_the_registered_sip_phone(sip_server, clients, tmp_path):
    phone_port = free_port()
    registered = sipp(sip_server, tmp_path, "register_contact.xml",
                      ["bob", "example.com", f"[authentication username=bob password={PASSWORDS['bob']}]",
                       f"127.0.0.1:{phone_port}"])
    assert registered.returncode == 0, sipp_errors(tmp_path)
    phone = sipp(sip_server, tmp_path, "uas_message_from_xmpp.xml", None, port=phone_port, background=True)
    time.sleep(0.3)
    alice = clients(sip_server, "alice@example.com/laptop")
    alice.online()
    alice.do(lambda xmpp: xmpp.send_message(mto="bob@example.com", mbody="hello phone", mtype="chat"))
    try:
        assert phone.wait(timeout=25) == 0, sipp_errors(tmp_path)
    finally:
        if phone.poll() is None:
            phone.kill()
    alice.nothing("message", wait=0.5)


def test_a_sip_message_reaches_the_xmpp_client(sip_server, clients, tmp_path):
    bob = clients(sip_server, "bob@example.com/desk")
    bob.online()
    done = sipp(sip_server, tmp_path, "uac_message.xml",
                ["alice", "example.com", "bob", f"[authentication username=alice password={PASSWORDS['alice']}]"])
    assert done.returncode == 0, sipp_errors(tmp_path) + done.stderr
    got = bob.wait_for("message", lambda m: m["body"].strip() == "Hello from sipp")
    assert (from_(got), got["type"]) == ("alice@example.com", "chat")
