"""
Outgoing links and streams: C{one.test} sends to C{remote.test}, whose
server is scripted here over a StringTransport (we read what the link
wrote and answer as the remote server would), with the Clock for every
timer.
"""

import pytest
from prometheus_client import generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError

from communigate.testing import TLSStringTransport
from communigate.xmpp.parser import ElementReceived, StreamOpened, StreamParser
from communigate.xmpp.s2s_link import MAX_QUEUED, LinkState

REMOTE = [("192.0.2.50", 5269), ("192.0.2.51", 5270)]

HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
    "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
    "from='remote.test' to='one.test' id='{id}' version='1.0'>"
)
STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
DIALBACK = "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"


class Remote:
    """
    The remote server's end of one connection our link made.
    """

    def __init__(self, stream, host, port):
        self.stream = stream
        self.transport = TLSStringTransport(peerAddress=IPv4Address("TCP", host, port))
        stream.makeConnection(self.transport)
        self.reader = StreamParser(10_000_000)
        self.headers = []

    def send(self, text):
        self.stream.dataReceived(text.encode())

    def elements(self):
        data = self.transport.value()
        self.transport.clear()
        found = []
        for event in self.reader.feed(data):
            if isinstance(event, StreamOpened):
                self.headers.append(event)
            elif isinstance(event, ElementReceived):
                found.append(event.element)
        return found

    def answer_header(self, stream_id, features):
        self.send(HEADER.format(id=stream_id) + f"<stream:features>{features}</stream:features>")

    def negotiate(self):
        """
        STARTTLS, then the dialback request; returns the db:result (the
        last element: verifications go first).
        """
        self.answer_header("plain-1", STARTTLS + DIALBACK)
        (starttls,) = self.elements()
        assert starttls.name == "starttls"
        self.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert self.transport.tls_context is not None
        self.reader = StreamParser(10_000_000)
        self.answer_header("secure-1", DIALBACK)
        *_verifications, request = self.elements()
        return request


class Dialer:
    """
    Connects links to L{Remote}s; addresses in C{refuse} refuse, and with
    C{hold} connections never complete.
    """

    def __init__(self):
        self.remotes = []
        self.refuse = set()
        self.hold = False
        self.attempts = []

    def connect(self, host, port, build):
        self.attempts.append((host, port))
        if (host, port) in self.refuse:
            return fail(ConnectionRefusedError(f"{host}:{port}"))
        if self.hold:
            return Deferred()
        remote = Remote(build(), host, port)
        self.remotes.append(remote)
        return succeed(remote.stream)


@pytest.fixture
def dialer():
    return Dialer()


@pytest.fixture
def server(tmp_path, dialer, clock, server_class):
    addresses = {"remote.test": REMOTE, "one.test": ("192.0.2.1", 5269)}
    server = server_class(tmp_path / "one", "one.test", dialer, clock, addresses)
    yield server
    server.stop()


def send(server, session_jid, to, body="hi", kind="message", **attributes):
    from twisted.words.xish import domish

    element = domish.Element(("jabber:client", kind))
    element["from"] = session_jid
    element["to"] = to
    for name, value in attributes.items():
        element[name] = value
    if body is not None and kind == "message":
        element.addElement("body", content=body)
    server.xmpp.route_remote(element)
    return element


def errors_of(session):
    found = []
    for element in session.received:
        if element.getAttribute("type") == "error":
            error = element.error
            found.append(next(c.name for c in error.elements() if c.name != "text"))
    return found


def link_of(server):
    (link,) = server.s2s.links.values()
    return link


def test_the_stream_opens_from_our_domain_with_the_dialback_namespace(server, dialer):
    server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.elements()
    (header,) = remote.headers
    assert (header.attributes["from"], header.attributes["to"], header.attributes["version"]) == (
        "one.test",
        "remote.test",
        "1.0",
    )
    assert header.content_namespace == "jabber:server"
    assert dialer.attempts == [REMOTE[0]] and server.located == ["remote.test"]


def test_stanzas_wait_for_dialback_then_go_out_in_order_in_the_server_namespace(server, dialer):
    server.session("alice", "laptop")
    for n in range(3):
        send(server, "alice@one.test/laptop", "bob@remote.test", body=f"m{n}")
    (remote,) = dialer.remotes
    request = remote.negotiate()
    assert (request.uri, request.name, request["from"], request["to"]) == (
        "jabber:server:dialback",
        "result",
        "one.test",
        "remote.test",
    )
    expected = server.s2s.dialback_key(receiving="remote.test", originating="one.test", stream_id="secure-1")
    assert str(request) == expected
    assert link_of(server).state is LinkState.NEGOTIATING
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    sent = remote.elements()
    assert [str(m.body) for m in sent] == ["m0", "m1", "m2"]
    assert all(m.uri == "jabber:server" and m.body.uri == "jabber:server" for m in sent)
    assert link_of(server).state is LinkState.READY
    send(server, "alice@one.test/laptop", "bob@remote.test", body="later")
    assert [str(m.body) for m in remote.elements()] == ["later"]


def test_an_invalid_key_answer_bounces_what_waits_with_remote_server_not_found(server, dialer):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send("<db:result from='remote.test' to='one.test' type='invalid'/>")
    assert errors_of(alice) == ["remote-server-not-found"]
    (bounced,) = alice.received
    assert bounced["from"] == "bob@remote.test" and bounced["to"] == "alice@one.test/laptop"
    assert remote.transport.disconnecting
    assert server.s2s.links == {}


def test_a_dialback_error_answer_passes_on_a_timeout_condition(server, dialer):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send(
        "<db:result from='remote.test' to='one.test' type='error'><error type='cancel'>"
        "<remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"
    )
    assert errors_of(alice) == ["remote-server-timeout"]


def test_a_refused_address_moves_on_to_the_next(server, dialer):
    dialer.refuse.add(REMOTE[0])
    server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    assert dialer.attempts == REMOTE
    (remote,) = dialer.remotes
    assert link_of(server).address == REMOTE[1]
    remote.negotiate()


def test_when_no_address_answers_the_sender_gets_remote_server_not_found(server, dialer):
    dialer.refuse.update(REMOTE)
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    assert errors_of(alice) == ["remote-server-not-found"]
    assert server.s2s.links == {}


def test_iq_requests_are_bounced_too_but_presence_is_not(server, dialer):
    from twisted.words.xish import domish

    dialer.refuse.update(REMOTE)
    alice = server.session("alice", "laptop")
    iq = domish.Element(("jabber:client", "iq"))
    iq["from"], iq["to"], iq["type"], iq["id"] = "alice@one.test/laptop", "bob@remote.test", "get", "q1"
    iq.addElement(("urn:xmpp:ping", "ping"))
    server.xmpp.route_remote(iq)
    send(server, "alice@one.test/laptop", "bob@remote.test", kind="presence", body=None)
    send(server, "alice@one.test/laptop", "bob@remote.test", body=None, type="error")
    assert [(e.name, e["id"]) for e in alice.received] == [("iq", "q1")]
    assert errors_of(alice) == ["remote-server-not-found"]


def test_a_domain_dns_does_not_know_is_remote_server_not_found(server):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@unknown.test")
    assert errors_of(alice) == ["remote-server-not-found"]
    text = generate_latest(server.context.metrics).decode()
    assert 'communigate_xmpp_s2s_bounced_total{condition="remote-server-not-found"} 1.0' in text


def test_a_server_that_never_completes_is_remote_server_timeout(server, dialer, clock):
    dialer.hold = True
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    clock.advance(29)
    assert alice.received == []
    clock.advance(2)
    assert errors_of(alice) == ["remote-server-timeout"]
    assert server.s2s.links == {}


def test_a_peer_that_stops_mid_negotiation_times_out_and_is_disconnected(server, dialer, clock):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    clock.advance(31)
    assert errors_of(alice) == ["remote-server-timeout"]
    assert remote.transport.disconnecting


def test_a_peer_without_starttls_is_refused_when_tls_is_required(server, dialer):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.answer_header("plain", DIALBACK)
    assert errors_of(alice) == ["remote-server-not-found"]
    *_, error = remote.elements()
    assert error.name == "error" and next(error.elements()).name == "policy-violation"


def test_without_required_tls_dialback_goes_on_in_the_clear(server, dialer):
    server.xmpp.apply_settings({"S2SRequireTLS": "NO"})
    server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.answer_header("plain", DIALBACK)
    (request,) = remote.elements()
    assert request.name == "result" and remote.transport.tls_context is None


@pytest.mark.parametrize(
    "answer, condition",
    [
        (HEADER.format(id="x").replace("jabber:server'", "jabber:client'"), "invalid-namespace"),
        (HEADER.format(id="x").replace("id='x' version='1.0'", "id='x'"), "unsupported-version"),
        (HEADER.replace(" id='{id}'", ""), "bad-format"),
        (
            HEADER.format(id="x") + "<stream:features/><db:result from='remote.test' to='one.test'>k</db:result>",
            "unsupported-stanza-type",
        ),
        (HEADER.format(id="x") + "<bogus/>", "unsupported-stanza-type"),
        (HEADER.format(id="x") + "<a></b>", "not-well-formed"),
    ],
)
def test_a_misbehaving_peer_gets_a_stream_error_and_senders_a_bounce(server, dialer, answer, condition):
    server.xmpp.apply_settings({"S2SRequireTLS": "NO"})
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.send(answer)
    errors = [e for e in remote.elements() if e.name == "error"]
    assert [next(e.elements()).name for e in errors] == [condition]
    assert errors_of(alice) == ["remote-server-not-found"]


def test_a_stream_error_from_the_peer_bounces_what_waits(server, dialer):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.send(
        HEADER.format(id="x") + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "</stream:error>"
    )
    assert errors_of(alice) == ["remote-server-not-found"]
    assert "host-unknown" in str(alice.received[0].error.text)


def test_stanzas_received_on_an_outgoing_stream_are_dropped_and_counted(server, dialer):
    server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    remote.send("<message from='bob@remote.test' to='alice@one.test'><body>wrong way</body></message>")
    assert not remote.transport.disconnecting
    text = generate_latest(server.context.metrics).decode()
    assert 'communigate_xmpp_s2s_dropped_total{reason="stanza received on an outgoing stream"} 1.0' in text


def test_an_idle_link_closes_and_the_next_stanza_opens_a_new_one(server, dialer, clock):
    server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    clock.advance(599)
    assert not remote.transport.disconnecting
    clock.advance(2)
    assert remote.transport.disconnecting and remote.transport.value().endswith(b"</stream:stream>")
    assert server.s2s.links == {}
    send(server, "alice@one.test/laptop", "bob@remote.test")
    assert len(dialer.remotes) == 2


def test_the_peer_closing_a_ready_stream_just_ends_the_link(server, dialer):
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    remote.send("</stream:stream>")
    assert server.s2s.links == {} and alice.received[:1] == []


def test_a_full_queue_refuses_with_resource_constraint(server, dialer):
    dialer.hold = True
    alice = server.session("alice", "laptop")
    for _ in range(MAX_QUEUED + 1):
        send(server, "alice@one.test/laptop", "bob@remote.test")
    assert errors_of(alice) == ["resource-constraint"]


def test_verifications_go_out_before_our_own_dialback_completes(server, dialer):
    got = []
    server.s2s.verify_peer("one.test", "remote.test", "their-stream", "their-key").addBoth(got.append)
    (remote,) = dialer.remotes
    remote.answer_header("plain", STARTTLS)
    remote.elements()
    remote.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    remote.reader = StreamParser(10_000_000)
    remote.answer_header("secure", DIALBACK)
    verify, result = remote.elements()
    assert (verify.name, verify["id"], str(verify), verify["from"], verify["to"]) == (
        "verify",
        "their-stream",
        "their-key",
        "one.test",
        "remote.test",
    )
    assert result.name == "result"
    remote.send("<db:verify from='remote.test' to='one.test' id='unknown' type='valid'/>")
    assert got == []
    remote.send("<db:verify from='remote.test' to='one.test' id='their-stream' type='valid'/>")
    assert got == ["valid"]


def test_a_verification_nobody_answers_fails_with_remote_server_timeout(server, dialer, clock):
    from communigate.xmpp.s2s import S2SFailure

    got = []
    server.s2s.verify_peer("one.test", "remote.test", "their-stream", "their-key").addErrback(got.append)
    (remote,) = dialer.remotes
    remote.negotiate()
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    clock.advance(31)
    (failure,) = got
    assert failure.check(S2SFailure) and failure.value.condition == "remote-server-timeout"


def test_a_link_closes_at_shutdown_bouncing_what_waits(server, dialer):
    dialer.hold = True
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test")
    server.s2s.stopService()
    assert errors_of(alice) == ["remote-server-not-found"]
    assert server.xmpp.remote is None


# -- SASL EXTERNAL (our certificate) -------------------------------------------------

EXTERNAL = (
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
)


def secured_with(server, dialer, identity, features):
    """
    A stanza waits; the remote server secured the stream and sent
    C{features}; its certificate proves C{identity} to us.
    """
    from communigate.certnames import CertificateNames
    from communigate.xmpp.s2s_tls import PeerIdentity

    server.certificates.peer_identity = PeerIdentity(identity is not None, CertificateNames(dns_ids=(identity or "x.test",)), "")
    alice = server.session("alice", "laptop")
    send(server, "alice@one.test/laptop", "bob@remote.test", body="by certificate")
    (remote,) = dialer.remotes
    remote.answer_header("plain-1", STARTTLS + DIALBACK)
    remote.elements()
    remote.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert server.certificates.checks[-1].server_name == "remote.test"
    remote.reader = StreamParser(10_000_000)
    remote.answer_header("secure-1", features)
    return alice, remote


def test_a_peer_whose_certificate_proves_it_and_offers_external_gets_our_certificate_not_dialback(server, dialer):
    _alice, remote = secured_with(server, dialer, "remote.test", EXTERNAL + DIALBACK)
    (auth,) = remote.elements()
    assert (auth.uri, auth.name, auth["mechanism"], str(auth)) == (
        "urn:ietf:params:xml:ns:xmpp-sasl",
        "auth",
        "EXTERNAL",
        "b25lLnRlc3Q=",  # base64 of one.test, XEP-0178's authorization identity
    )
    remote.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    remote.reader = StreamParser(10_000_000)
    assert remote.elements() == [] and len(remote.headers) == 3  # a new stream
    remote.answer_header("secure-2", DIALBACK)
    (message,) = remote.elements()
    assert str(message.body) == "by certificate"
    assert link_of(server).state is LinkState.READY and link_of(server).details["Auth"] == "certificate"
    text = generate_latest(server.context.metrics).decode()
    assert 'communigate_xmpp_s2s_auth_total{direction="out",method="certificate",outcome="ok"} 1.0' in text


@pytest.mark.parametrize(
    "identity, features",
    [("remote.test", DIALBACK), ("other.test", EXTERNAL + DIALBACK), (None, EXTERNAL + DIALBACK)],
    ids=["no EXTERNAL offered", "certificate for another name", "certificate not verified"],
)
def test_without_a_certificate_that_proves_the_peer_or_without_external_dialback_is_used(
    server, dialer, identity, features
):
    _alice, remote = secured_with(server, dialer, identity, features)
    (request,) = remote.elements()
    assert (request.uri, request.name) == ("jabber:server:dialback", "result")


def test_a_sasl_failure_falls_back_to_dialback_on_the_same_stream(server, dialer):
    _alice, remote = secured_with(server, dialer, "remote.test", EXTERNAL + DIALBACK)
    remote.elements()
    remote.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
    (request,) = remote.elements()
    assert request.name == "result"
    remote.send("<db:result from='remote.test' to='one.test' type='valid'/>")
    (message,) = remote.elements()
    assert str(message.body) == "by certificate" and link_of(server).details["Auth"] == "dialback"
    text = generate_latest(server.context.metrics).decode()
    assert 'communigate_xmpp_s2s_auth_total{direction="out",method="certificate",outcome="failed"} 1.0' in text
    assert 'communigate_xmpp_s2s_auth_total{direction="out",method="dialback",outcome="ok"} 1.0' in text


def test_a_challenge_to_our_external_ends_the_stream_and_bounces(server, dialer):
    alice, remote = secured_with(server, dialer, "remote.test", EXTERNAL + DIALBACK)
    remote.elements()
    remote.send("<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>abcd</challenge>")
    assert errors_of(alice) == ["remote-server-not-found"]
    assert remote.transport.disconnecting
