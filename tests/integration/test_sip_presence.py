"""
SIP presence against a running server: a raw-UDP watcher subscribes (with
digest) to alice's presence and gets NOTIFYs; a sipp phone publishes
"busy" and the watcher sees it; an unauthorised watcher waits until the
CLI authorises it; alice's sipp phone, subscribed to presence.winfo,
learns that bob's sipp phone asks to watch her; message-summary follows the CLI's counts; dialog
NOTIFYs follow a sipp call through the proxy; bad input gets its error.
"""

import os
import re
import socket
import subprocess
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.auth.credentials import digest_ha1, digest_response
from communigate.formats import dialoginfo, pidf, watcherinfo
from communigate.sip.message import Request, Response, make_response, parse_message
from communigate.testing import free_port

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]
PASSWORDS = {"alice": "apw", "bob": "bpw", "carol": "cpw"}


def cli(server, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        results = [client.command(line) for line in lines]
    for line, (code, text) in zip(lines, results):
        assert code in (200, 201), f"{line}: {code} {text}"
    return results


class UA:
    """A SIP user agent on a raw UDP socket that answers the NOTIFYs it gets."""

    def __init__(self, server, user):
        self.server = ("127.0.0.1", server.sip_port)
        self.user = user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.notifies = []

    def close(self):
        self.sock.close()

    def _receive(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return None
        message = parse_message(data)
        if isinstance(message, Request) and message.method == "NOTIFY":
            self.sock.sendto(bytes(make_response(message, 200, to_tag="x")), self.server)
            self.notifies.append(message)
        return message

    def response(self, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._receive(max(0.05, deadline - time.monotonic()))
            if isinstance(message, Response) and message.status >= 200:
                return message
        raise AssertionError("no final response")

    def notify(self, timeout=5):
        deadline = time.monotonic() + timeout
        while not self.notifies and time.monotonic() < deadline:
            self._receive(max(0.05, deadline - time.monotonic()))
        assert self.notifies, "no NOTIFY arrived"
        return self.notifies.pop(0)

    def send(self, method, uri, headers=(), body=b"", content_type=None, call_id=None, to_tag=None,
             authorization=None):
        self.cseq += 1
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{os.urandom(6).hex()};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@example.com>;tag={self.user}-tag",
            f"To: <{self.to or uri}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
            *[f"{n}: {v}" for n, v in headers],
        ]
        if authorization:
            lines.append(f"Proxy-Authorization: {authorization}")
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.server)

    to = None
    call_id = None

    def request(self, method, uri, headers=(), body=b"", content_type=None, call_id=None):
        """Send, answer a 407 with digest, return the final response."""
        self.call_id = call_id or f"{os.urandom(6).hex()}@127.0.0.1"
        self.to = uri
        self.send(method, uri, headers, body, content_type)
        response = self.response()
        if response.status != 407:
            return response
        nonce = re.search(r'nonce="([^"]+)"', response.headers.get("Proxy-Authenticate")).group(1)
        answer = digest_response(
            ha1=digest_ha1("MD5", self.user, "example.com", PASSWORDS[self.user]), nonce=nonce, method=method,
            uri=uri, algorithm="MD5", qop="auth", nc="00000001", cnonce="feed",
        )
        credentials = (
            f'Digest username="{self.user}", realm="example.com", nonce="{nonce}", uri="{uri}", '
            f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="feed"'
        )
        self.send(method, uri, headers, body, content_type, authorization=credentials)
        return self.response()

    def subscribe(self, target, event="presence", expires=600, call_id=None):
        return self.request("SUBSCRIBE", target, [("Event", event), ("Expires", str(expires))], call_id=call_id)


@pytest.fixture
def server(live_server):
    cli(
        live_server,
        "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
        *(f"CREATEACCOUNT {user} {{Password = {password};}}" for user, password in PASSWORDS.items()),
    )
    return live_server


@pytest.fixture
def ua(server):
    agents = []

    def make(user):
        agent = UA(server, user)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()


def sipp_publish(server, workdir, user="alice"):
    (workdir / "publish.csv").write_text(
        f"SEQUENTIAL\n{user};example.com;[authentication username={user} password={PASSWORDS[user]}]\n"
    )
    return subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "publish_busy.xml"), "-inf", "publish.csv", "-m", "1", "-p", "0",
         *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=30,
    )


def errors(workdir):
    return "".join(p.read_text() for p in workdir.glob("*_errors.log"))


def test_a_watcher_sees_the_busy_alices_phone_publishes(server, ua, tmp_path):
    cli(server, "ROSTER alice {what = Update; peer = bob@example.com; subscription = from;}")
    bob = ua("bob")
    response = bob.subscribe("sip:alice@example.com")
    assert response.status == 200 and response.headers.get("Expires") == "600"
    first = bob.notify()
    assert first.headers.get("Subscription-State") == "active;expires=600"
    assert pidf.state_of(pidf.parse(first.body)).available is False

    done = sipp_publish(server, tmp_path)
    assert done.returncode == 0, errors(tmp_path) + done.stderr
    busy = bob.notify()
    state = pidf.state_of(pidf.parse(busy.body))
    assert (state.show, state.status, state.activity) == ("dnd", "On the phone", "on-the-phone")
    ((_, text),) = cli(server, "GETACCOUNTPRESENCE alice")
    assert text == '(busy, "On the phone")'


def test_an_unauthorised_watcher_waits_until_the_cli_authorises_it(server, ua):
    carol = ua("carol")
    assert carol.subscribe("sip:alice@example.com").status == 200
    pending = carol.notify()
    assert pending.headers.get("Subscription-State") == "pending;expires=600" and pending.body == b""
    ((_, roster),) = cli(server, "ROSTER alice {what = List;}")
    assert "carol@example.com" in roster and "request = pending" in roster
    cli(server, "ROSTER alice {what = Update; peer = carol@example.com; subscription = both;}")
    active = carol.notify()
    assert active.headers.get("Subscription-State").startswith("active;")
    assert active.headers.get("Content-Type") == pidf.CONTENT_TYPE


def _watcherinfo_documents(log):
    """The watcherinfo bodies of the NOTIFYs a sipp message log shows, in order."""
    return [
        watcherinfo.parse(body.encode())
        for body in re.findall(r"<\?xml[^>]*>\s*<watcherinfo .*?</watcherinfo>", log, re.S)
    ]


def test_the_owner_learns_over_presence_winfo_that_bob_asks_to_watch_her(server, tmp_path):
    (tmp_path / "alice.csv").write_text("SEQUENTIAL\nalice;example.com;[authentication username=alice password=apw]\n")
    owner = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "subscribe_winfo.xml"), "-inf", "alice.csv", "-m", "1", "-p", "0",
         *SIPP, "-trace_msg", "-message_file", "alice_messages.log", "-timeout", "20s", "-timeout_error",
         f"127.0.0.1:{server.sip_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    log = tmp_path / "alice_messages.log"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "watcherinfo" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    (tmp_path / "bob.csv").write_text(
        "SEQUENTIAL\nbob;example.com;alice;[authentication username=bob password=bpw];presence\n"
    )
    watcher = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "subscribe.xml"), "-inf", "bob.csv", "-m", "1", "-p", "0", *SIPP,
         "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=30,
    )
    assert watcher.returncode == 0, errors(tmp_path) + watcher.stderr
    assert owner.wait(timeout=30) == 0, errors(tmp_path) + owner.stderr.read()
    owner.stderr.close()

    documents = _watcherinfo_documents(log.read_text())
    assert (documents[0].version, documents[0].state) == (0, "full")
    for version, document in enumerate(documents):
        assert document.version == version
        assert document.state == ("full" if version == 0 else "partial")
        assert [(w.resource, w.package) for w in document.lists] == [("sip:alice@example.com", "presence")]
    watchers = {(w.uri, w.status, w.event) for w in documents[-1].lists[0].watchers}
    assert ("sip:bob@example.com", "pending", "subscribe") in watchers
    assert ("xmpp:bob@example.com", "pending", "subscribe") in watchers


def test_message_summary_follows_the_counts_the_cli_sets(server, ua):
    alice = ua("alice")
    assert alice.subscribe("sip:alice@example.com", event="message-summary").status == 200
    assert alice.notify().body.startswith(b"Messages-Waiting: no")
    cli(server, "SETACCOUNTMWI alice {new = 3; old = 7;}")
    lamp = alice.notify()
    assert lamp.headers.get("Content-Type") == "application/simple-message-summary"
    assert b"Messages-Waiting: yes" in lamp.body and b"Voice-Message: 3/7 (0/0)" in lamp.body


def test_dialog_notifies_follow_a_call_through_the_proxy(server, ua, tmp_path):
    cli(
        server,
        "UPDATEACCOUNTSETTINGS bob {DialogInfo = YES;}",
        "ROSTER bob {what = Update; peer = carol@example.com; subscription = from;}",
    )
    callee_port = free_port()
    (tmp_path / "register.csv").write_text(
        f"SEQUENTIAL\nbob;example.com;[authentication username=bob password=bpw];127.0.0.1:{callee_port}\n"
    )
    register = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "register_contact.xml"), "-inf", "register.csv", "-m", "1",
         "-p", "0", *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=30,
    )
    assert register.returncode == 0, errors(tmp_path)
    carol = ua("carol")
    assert carol.subscribe("sip:bob@example.com", event="dialog").status == 200
    assert dialoginfo.parse(carol.notify().body).dialogs == ()

    callee = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-m", "1", "-p", str(callee_port), *SIPP,
         "-timeout", "25s", "-timeout_error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    time.sleep(0.3)
    (tmp_path / "call.csv").write_text("SEQUENTIAL\nalice;example.com;bob;[authentication username=alice password=apw]\n")
    call = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, "uac_auth.xml"), "-inf", "call.csv", "-m", "1", "-p", "0", *SIPP,
         "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )
    # Answer every NOTIFY as it comes, as a phone does, while the call runs.
    states = []
    deadline = time.monotonic() + 25
    while (not states or states[-1] != "terminated") and time.monotonic() < deadline:
        carol._receive(0.1)
        while carol.notifies:
            (dialog,) = dialoginfo.parse(carol.notifies.pop(0).body).dialogs
            assert dialog.direction == "recipient" and dialog.remote_identity == "sip:alice@example.com"
            states.append(dialog.state)
    assert call.wait(timeout=25) == 0, errors(tmp_path)
    assert callee.wait(timeout=25) == 0, errors(tmp_path)
    assert states[0] == "trying" and "confirmed" in states and states[-1] == "terminated"
    assert set(states) <= {"trying", "early", "confirmed", "terminated"}


BUSY = pidf.serialize(pidf.PresenceDocument(
    "sip:alice@example.com", (pidf.Tuple("t", "open"),), persons=(pidf.Person("p", ("busy",)),)))


def test_bad_presence_input_gets_its_error(server, ua):
    alice = ua("alice")
    publish = [("Event", "presence"), ("Expires", "600")]
    malformed = alice.request("PUBLISH", "sip:alice@example.com", publish, b"<presence><oops", pidf.CONTENT_TYPE)
    assert malformed.status == 400 and malformed.reason.startswith("Bad PIDF")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;">]>'
              b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&b;"/>')
    entities = alice.request("PUBLISH", "sip:alice@example.com", publish, laughs, pidf.CONTENT_TYPE)
    assert entities.status == 400 and "DTD or entity" in entities.reason
    published = alice.request("PUBLISH", "sip:alice@example.com", publish, BUSY, pidf.CONTENT_TYPE)
    assert published.status == 200
    etag = published.headers.get("SIP-ETag")
    refreshed = alice.request("PUBLISH", "sip:alice@example.com", publish + [("SIP-If-Match", etag)])
    assert refreshed.status == 200
    stale = alice.request("PUBLISH", "sip:alice@example.com", publish + [("SIP-If-Match", etag)])
    assert stale.status == 412
    unknown = alice.subscribe("sip:bob@example.com", event="conference")
    assert unknown.status == 489 and "presence" in unknown.headers.get("Allow-Events")
    wrong_package = alice.request("PUBLISH", "sip:alice@example.com", [("Event", "dialog")], BUSY, pidf.CONTENT_TYPE)
    assert wrong_package.status == 489


def test_subscriptions_to_one_account_are_limited(server, ua):
    dave = UA(server, "dave")
    try:
        statuses = []
        for n in range(101):
            dave.call_id, dave.to = f"limit-{n}@remote", "sip:carol@example.com"
            dave.sock.sendto(
                (f"SUBSCRIBE sip:carol@example.com SIP/2.0\r\n"
                 f"Via: SIP/2.0/UDP 127.0.0.1:{dave.port};branch=z9hG4bKlim{n};rport\r\nMax-Forwards: 70\r\n"
                 f"From: <sip:dave@remote.example>;tag=d{n}\r\nTo: <sip:carol@example.com>\r\n"
                 f"Call-ID: limit-{n}@remote\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:dave@127.0.0.1:{dave.port}>\r\n"
                 f"Event: presence\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n").encode(),
                dave.server,
            )
            statuses.append(dave.response().status)
        assert statuses[:100] == [200] * 100
        assert statuses[100] == 403
    finally:
        dave.close()
    ((_, text),) = cli(server, "GETACCOUNTPRESENCE carol")
    assert text == "#NULL#"


def register(agent):
    uri = "sip:example.com"
    agent.to = f"sip:{agent.user}@example.com"
    agent.call_id = f"reg-{agent.port}@127.0.0.1"
    headers = [("Expires", "600")]
    agent.send("REGISTER", uri, headers)
    challenge = agent.response()
    assert challenge.status == 401
    nonce = re.search(r'nonce="([^"]+)"', challenge.headers.get("WWW-Authenticate")).group(1)
    answer = digest_response(
        ha1=digest_ha1("MD5", agent.user, "example.com", PASSWORDS[agent.user]), nonce=nonce, method="REGISTER",
        uri=uri, algorithm="MD5", qop="auth", nc="00000001", cnonce="feed",
    )
    credentials = (
        f'Digest username="{agent.user}", realm="example.com", nonce="{nonce}", uri="{uri}", '
        f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="feed"'
    )
    agent.send("REGISTER", uri, headers + [("Authorization", credentials)])
    return agent.response()


def test_rosters_and_counts_survive_a_restart_and_registrations_come_back_as_presence(server, ua, tmp_path):
    from communigate.testing import start_server, stop_server

    cli(
        server,
        "ROSTER alice {what = Update; peer = bob@example.com; name = Bob; subscription = both;}",
        "SETACCOUNTMWI alice {new = 1; old = 2;}",
    )
    assert register(ua("bob")).status == 200
    ((_, text),) = cli(server, "GETACCOUNTPRESENCE bob")
    assert text == "online"
    stop_server(server)
    again = start_server(server.data_dir)
    try:
        ((_, roster), (_, counts), (_, presence)) = cli(
            again, "ROSTER alice {what = List;}", "GETACCOUNTMWI alice", "GETACCOUNTPRESENCE bob"
        )
        assert 'bob@example.com = {subscription = both; name = Bob;}' in roster
        assert "new = 1" in counts and "old = 2" in counts
        assert presence == "online"
    finally:
        stop_server(again)
