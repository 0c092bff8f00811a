"""
The incoming server stream: a scripted peer claiming C{one.test} talks to
C{two.test}; dialback keys are checked by C{two.test} connecting back to
the real C{one.test} service over the in-memory network.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from communigate.xmpp.s2s_in import InboundState

NS_STREAMS = "http://etherx.jabber.org/streams"


def error_condition(element):
    for child in element.elements():
        if child.name == "error":
            return next(c.name for c in child.elements() if c.name != "text")
    return None


def authenticated(peer_class, one, two, network):
    """
    A scripted peer, secured, that proved one.test to two.test.
    """
    peer = peer_class(two.s2s)
    peer.starttls(sender="one.test")
    key = one.s2s.dialback_key(receiving="two.test", originating="one.test", stream_id=peer.stream_id)
    peer.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    network.flush()
    (answer,) = peer.elements()
    assert (answer.name, answer["type"]) == ("result", "valid"), answer.toXml()
    return peer


def test_the_header_is_answered_with_an_id_and_starttls_required(peer, two):
    remote = peer(two.s2s)
    (features,) = remote.open(sender="one.test")
    assert remote.header.attributes["from"] == "two.test"
    assert remote.header.attributes["to"] == "one.test"
    assert len(remote.stream_id) == 32
    assert remote.header.content_namespace == "jabber:server"
    assert [(c.name, [g.name for g in c.elements()]) for c in features.elements()] == [("starttls", ["required"])]


def test_after_starttls_dialback_with_errors_is_offered_under_a_new_stream_id(peer, two):
    remote = peer(two.s2s)
    (features,) = remote.starttls(sender="one.test")
    # TLS through a fresh certificate check, which asks for the peer's certificate.
    assert remote.transport.tls_context is two.certificates.checks[-1].creator
    first, second = (header.attributes["id"] for header in remote.headers)
    assert first != second == remote.stream_id
    assert [(c.uri, c.name) for c in features.elements()] == [("urn:xmpp:features:dialback", "dialback")]
    assert remote.stream.tls and remote.stream.state is InboundState.OPEN


def test_a_valid_key_is_checked_with_the_authoritative_server_and_stanzas_are_delivered(peer, one, two, network):
    bob = two.session("bob", "phone")
    remote = authenticated(peer, one, two, network)
    remote.send(
        "<message from='alice@one.test/laptop' to='bob@two.test' type='chat'><body>hi</body>"
        "<x xmlns='urn:example'><y/></x></message>"
    )
    (delivered,) = bob.received
    assert delivered.uri == "jabber:client" and delivered.body.uri == "jabber:client"
    assert delivered.x.uri == "urn:example" and delivered.x.y.uri == "urn:example"
    assert delivered["from"] == "alice@one.test/laptop"
    assert remote.stream.details["Remote"] == ["one.test"] and remote.stream.details["State"] == "established"
    # Our verify connection to one.test went through DNS (here: the fake locate).
    assert two.located == ["one.test"]


def test_a_wrong_key_is_answered_invalid_and_the_stream_is_closed(peer, one, two, network):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    remote.send("<db:result from='one.test' to='two.test'>0123456789abcdef</db:result>")
    network.flush()
    answer, error = remote.elements()
    assert (answer.name, answer["type"], answer["from"], answer["to"]) == ("result", "invalid", "two.test", "one.test")
    assert error.uri == NS_STREAMS and next(error.elements()).name == "not-authorized"
    assert remote.transport.disconnecting


def test_a_key_made_for_another_stream_is_invalid(peer, one, two, network):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    key = one.s2s.dialback_key(receiving="two.test", originating="one.test", stream_id="an-older-stream")
    remote.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    network.flush()
    assert remote.elements()[0]["type"] == "invalid"


def test_a_domain_whose_server_cannot_be_found_gets_a_dialback_error(peer, two, network):
    remote = peer(two.s2s)
    remote.starttls(sender="nowhere.test")
    remote.send("<db:result from='nowhere.test' to='two.test'>0123456789abcdef</db:result>")
    network.flush()
    (answer,) = remote.elements()
    assert answer["type"] == "error" and error_condition(answer) == "remote-server-not-found"
    assert not remote.transport.disconnecting


def test_the_authoritative_side_answers_db_verify_for_its_own_keys(peer, two):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    good = two.s2s.dialback_key(receiving="one.test", originating="two.test", stream_id="s-42")
    remote.send(f"<db:verify from='one.test' to='two.test' id='s-42'>{good}</db:verify>")
    remote.send("<db:verify from='one.test' to='two.test' id='s-43'>0123456789abcdef</db:verify>")
    first, second = remote.elements()
    assert (first.name, first["type"], first["id"], first["from"], first["to"]) == (
        "verify",
        "valid",
        "s-42",
        "two.test",
        "one.test",
    )
    assert (second["type"], second["id"]) == ("invalid", "s-43")
    assert not remote.transport.disconnecting


def test_stream_errors_are_counted(peer, two):
    remote = peer(two.s2s)
    remote.open(to="elsewhere.test")
    assert remote.closed_with() == "host-unknown"
    from prometheus_client import generate_latest

    text = generate_latest(two.context.metrics).decode()
    assert 'communigate_xmpp_s2s_stream_errors_total{condition="host-unknown",direction="in"} 1.0' in text


# -- bad input: a clear stream error each, and the service goes on -------------


@pytest.mark.parametrize(
    "header, condition",
    [
        (
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                "xmlns:stream='http://etherx.jabber.org/streams' to='unknown.test' version='1.0'>"
            ),
            "host-unknown",
        ),
        (
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' to='two.test' version='1.0'>"
            ),
            "invalid-namespace",
        ),
        ("<?xml version='1.0'?><stream xmlns='jabber:server' to='two.test' version='1.0'>", "invalid-namespace"),
        (
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                "xmlns:stream='http://etherx.jabber.org/streams' to='two.test'>"
            ),
            "unsupported-version",
        ),
        (
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                "xmlns:stream='http://etherx.jabber.org/streams' to='two.test' version='1.0'><a></b>"
            ),
            "not-well-formed",
        ),
        ("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>", "restricted-xml"),
    ],
)
def test_bad_headers_and_xml_end_the_stream_and_the_server_goes_on(peer, one, two, network, header, condition):
    remote = peer(two.s2s)
    remote.send(header)
    assert remote.closed_with() == condition
    assert remote.stream.closed
    authenticated(peer, one, two, network)


def test_stanzas_before_dialback_are_not_authorized(peer, two):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    remote.send("<message from='alice@one.test' to='bob@two.test'><body>x</body></message>")
    assert remote.closed_with() == "not-authorized"


def test_stanzas_before_starttls_are_not_authorized(peer, two):
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    remote.send("<message from='alice@one.test' to='bob@two.test'><body>x</body></message>")
    assert remote.closed_with() == "not-authorized"


def test_dialback_before_the_required_starttls_is_a_policy_violation(peer, two):
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    remote.send("<db:result from='one.test' to='two.test'>0123456789abcdef</db:result>")
    assert remote.closed_with() == "policy-violation"


def test_dialback_without_tls_is_allowed_when_tls_is_not_required(peer, one, two, network):
    two.xmpp.apply_settings({"S2SRequireTLS": "NO"})
    remote = peer(two.s2s)
    (features,) = remote.open(sender="one.test")
    assert {c.name for c in features.elements()} == {"starttls", "dialback"}
    key = one.s2s.dialback_key(receiving="two.test", originating="one.test", stream_id=remote.stream_id)
    remote.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    network.flush()
    assert remote.elements()[0]["type"] == "valid"


@pytest.mark.parametrize(
    "request_xml, condition",
    [
        ("<db:result from='one.test' to='elsewhere.test'>0123456789abcdef</db:result>", "host-unknown"),
        ("<db:result from='two.test' to='two.test'>0123456789abcdef</db:result>", "invalid-from"),
        ("<db:result to='two.test'>0123456789abcdef</db:result>", "improper-addressing"),
        ("<db:result from='one.test' to='two.test'/>", "bad-format"),
        ("<db:verify from='one.test' to='elsewhere.test' id='x'>0123456789abcdef</db:verify>", "host-unknown"),
        ("<db:result from='one.test' to='two.test' type='valid'/>", "unsupported-stanza-type"),
        ("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", "policy-violation"),
        ("<foo xmlns='urn:example'/>", "unsupported-stanza-type"),
        ("<message xmlns='jabber:client' from='alice@one.test' to='bob@two.test'/>", "unsupported-stanza-type"),
    ],
)
def test_bad_dialback_requests_end_the_stream(peer, two, request_xml, condition):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    remote.send(request_xml)
    assert remote.closed_with() == condition


@pytest.mark.parametrize(
    "stanza, condition",
    [
        ("<message from='mallory@evil.test' to='bob@two.test'><body>x</body></message>", "invalid-from"),
        ("<message from='one.test' to='bob@two.test'/>", None),
        ("<message to='bob@two.test'><body>x</body></message>", "improper-addressing"),
        ("<message from='alice@one.test'><body>x</body></message>", "improper-addressing"),
        ("<message from='alice@one.test' to='b@@two.test'/>", "improper-addressing"),
        ("<message from='alice@one.test' to='bob@elsewhere.test'/>", "host-unknown"),
        ("<presence from='alice@one..test' to='bob@two.test'/>", "improper-addressing"),
        ("<message from='alice@one.test' to='bob@two.test'><a></b></message>", "not-well-formed"),
    ],
)
def test_stanzas_with_bad_addresses_end_the_stream(peer, one, two, network, stanza, condition):
    two.session("bob", "phone")
    remote = authenticated(peer, one, two, network)
    remote.send(stanza)
    assert remote.closed_with() == condition


def test_a_malformed_iq_from_a_server_gets_bad_request_back_over_our_own_link(peer, one, two, network):
    alice = one.session("alice", "laptop")
    remote = authenticated(peer, one, two, network)
    remote.send(
        "<iq type='get' id='q1' from='alice@one.test/laptop' to='bob@two.test'>"
        "<ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    network.flush()
    (error,) = alice.received
    assert (error.name, error["type"], error["id"], error_condition(error)) == ("iq", "error", "q1", "bad-request")
    assert not remote.transport.disconnecting


def test_the_stream_has_the_negotiation_timeout_to_complete_dialback(peer, two, clock):
    remote = peer(two.s2s)
    remote.starttls(sender="one.test")
    clock.advance(59)
    assert not remote.transport.disconnecting
    clock.advance(2)
    assert remote.closed_with() == "connection-timeout"


def test_an_authenticated_stream_idle_for_the_idle_timeout_is_closed(peer, one, two, network, clock):
    two.session("bob", "phone")
    remote = authenticated(peer, one, two, network)
    clock.advance(500)
    remote.send("<message from='alice@one.test' to='bob@two.test'><body>x</body></message>")
    clock.advance(500)
    assert not remote.transport.disconnecting
    clock.advance(101)
    assert remote.transport.disconnecting
    assert remote.transport.value().endswith(b"</stream:stream>")


def test_turned_off_server_to_server_refuses_streams(peer, two):
    two.xmpp.apply_settings({"S2S": "NO"})
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    assert remote.closed_with() == "policy-violation"


def test_a_closed_stream_leaves_the_service_table(peer, two):
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    assert remote.stream in two.s2s.inbound
    remote.send("</stream:stream>")
    assert remote.transport.disconnecting
    remote.stream.connectionLost(None)
    assert remote.stream not in two.s2s.inbound


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(alphabet="<>/='\" abdfimortv:x&;", max_size=200).map(str.encode))
def test_any_bytes_after_the_header_end_in_a_stream_or_a_stream_error_never_an_exception(peer, two, data):
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    remote.stream.dataReceived(data)
    if remote.stream.closed:
        assert remote.transport.disconnecting
