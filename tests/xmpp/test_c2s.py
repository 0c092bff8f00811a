"""
One client stream end to end over a StringTransport: header checks,
STARTTLS, SASL (SCRAM and PLAIN through the portal), binding, conflicts,
limits, and stanzas before authentication.
"""

import base64

import pytest
from zope.interface.verify import verifyObject

from communigate.interfaces import IXMPPSession
from communigate.xmpp.c2s import StreamState
from communigate.xmpp.namespaces import NS_SASL, NS_TLS


def mechanisms(features):
    (found,) = [f for f in features if True][0].elements(NS_SASL, "mechanisms")
    return [str(m) for m in found.elements()]


def test_the_first_features_require_starttls(connect):
    client = connect()
    (features,) = client.open()
    assert client.header.attributes["from"] == "example.com"
    assert client.header.attributes["version"] == "1.0"
    starttls = features.starttls
    assert starttls.uri == NS_TLS and starttls.required is not None
    assert features.mechanisms is None


def test_after_starttls_scram_and_plain_are_offered(connect):
    client = connect()
    (features,) = client.starttls()
    assert client.stream.tls
    assert mechanisms([features]) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    assert features.starttls is None


def test_without_required_tls_plain_is_not_offered_and_refused(connect, service):
    service.apply_settings({"RequireTLS": "NO"})
    client = connect()
    (features,) = client.open()
    assert features.starttls is not None and features.starttls.required is None
    assert mechanisms([features]) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    (failure,) = client.auth_plain("alice", "wonderland")
    assert failure.name == "failure" and failure.firstChildElement().name == "encryption-required"


def test_without_required_tls_scram_works_in_the_clear(connect, service):
    service.apply_settings({"RequireTLS": "NO"})
    client = connect()
    client.open()
    assert client.auth_scram("alice", "wonderland").name == "success"


@pytest.mark.parametrize(
    "header, condition",
    [
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='nowhere.test' version='1.0'>", "host-unknown"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>", "host-unknown"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>", "unsupported-version"),
        ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='0.9'>", "unsupported-version"),
        ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>", "invalid-namespace"),
        ("<stream xmlns='jabber:client' to='example.com' version='1.0'>", "invalid-namespace"),
    ],
)
def test_bad_stream_headers_get_a_header_then_the_stream_error(connect, header, condition):
    client = connect()
    client.send(header)
    assert client.closed_with() == condition
    assert client.header is not None
    assert client.stream.state is StreamState.CLOSED


def test_a_domain_alias_and_a_second_domain_are_served(connect, context):
    context.directory.set_domain_aliases("example.com", ["chat.example.com"])
    (features,) = connect().open(to="chat.example.com")
    assert features.starttls is not None
    client = connect()
    client.open(to="example.org")
    assert client.header.attributes["from"] == "example.org"


def test_a_newer_minor_version_is_accepted(connect):
    client = connect()
    client.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.5'>")
    (features,) = client.elements()
    assert features.name == "features"


@pytest.mark.parametrize("hash_name", ["sha256", "sha1"])
def test_scram_login_succeeds_with_the_server_signature_and_restarts(connect, hash_name):
    client = connect()
    client.starttls()
    assert client.auth_scram("alice", "wonderland", hash_name).name == "success"
    client.restart_reader()
    (features,) = client.open()
    assert features.bind is not None and features.session is not None
    assert client.stream.account == "alice@example.com"
    assert client.stream.mechanism == {"sha256": "SCRAM-SHA-256", "sha1": "SCRAM-SHA-1"}[hash_name]


def test_plain_login_over_tls_succeeds(connect):
    client = connect()
    client.starttls()
    (success,) = client.auth_plain("alice@example.com", "wonderland")
    assert success.name == "success"


def test_a_bare_user_name_is_in_the_domain_of_the_stream(connect):
    client = connect()
    client.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>")
    client.elements()
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    client.elements()
    client.restart_reader()
    client.open(to="example.org")
    (success,) = client.auth_plain("carol", "carol-pw")
    assert success.name == "success"
    assert client.stream.account == "carol@example.org"


@pytest.mark.parametrize("method", ["plain", "scram"])
def test_a_wrong_password_is_not_authorized(connect, method):
    client = connect()
    client.starttls()
    if method == "plain":
        (failure,) = client.auth_plain("alice", "wrong")
    else:
        failure = client.auth_scram("alice", "wrong")
    assert failure.name == "failure" and failure.firstChildElement().name == "not-authorized"
    assert client.stream.account is None


def test_an_unknown_user_gets_the_same_failure_as_a_wrong_password(connect):
    client = connect()
    client.starttls()
    assert client.auth_scram("nobody", "x").firstChildElement().name == "not-authorized"


def test_repeated_failures_close_the_stream_with_policy_violation(connect):
    client = connect()
    client.starttls()
    client.auth_plain("alice", "wrong1")
    client.auth_plain("alice", "wrong2")
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                + base64.b64encode(b"\0alice\0wrong3").decode() + "</auth>")
    elements = client.elements()
    assert [e.name for e in elements] == ["failure", "error"]
    assert elements[1].firstChildElement().name == "policy-violation"


def test_the_login_throttle_delays_answers_to_a_guessing_source(connect, service, clock):
    for attempt in range(2):
        client = connect()
        client.starttls()
        for _ in range(3):
            client.auth_plain("alice", f"wrong{attempt}")
    client = connect()
    client.starttls()
    # The source has 6 failures: the next answer waits.
    assert client.auth_plain("alice", "wonderland") == []
    clock.advance(10)
    (success,) = client.elements()
    assert success.name == "success"


@pytest.mark.parametrize(
    "auth, condition",
    [
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>", "invalid-mechanism"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!notbase64</auth>", "incorrect-encoding"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + base64.b64encode(b"alice").decode() + "</auth>", "malformed-request"),
        ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>" + base64.b64encode(b"x,,n=a,r=b").decode() + "</auth>", "malformed-request"),
        ("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>AAAA</response>", "malformed-request"),
        ("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", "aborted"),
    ],
)
def test_bad_sasl_gets_the_rfc_failure_condition(connect, auth, condition):
    client = connect()
    client.starttls()
    client.send(auth)
    (failure,) = client.elements()
    assert failure.uri == NS_SASL and failure.name == "failure"
    assert failure.firstChildElement().name == condition


def test_plain_with_an_initial_empty_response_gets_a_challenge(connect):
    client = connect()
    client.starttls()
    client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>")
    (challenge,) = client.elements()
    assert challenge.name == "challenge"
    client.send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(b"\0alice\0wonderland").decode() + "</response>")
    (success,) = client.elements()
    assert success.name == "success"


def test_an_authzid_other_than_oneself_is_refused(connect):
    client = connect()
    client.starttls()
    (failure,) = client.auth_plain("alice", "wonderland")  # sanity: own login works
    assert failure.name == "success"
    other = connect()
    other.starttls()
    payload = base64.b64encode(b"bob@example.com\0alice\0wonderland").decode()
    other.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>")
    (failure,) = other.elements()
    assert failure.firstChildElement().name == "invalid-authzid"
    same = connect()
    same.starttls()
    payload = base64.b64encode(b"alice@example.com\0alice\0wonderland").decode()
    same.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{payload}</auth>")
    assert same.elements()[0].name == "success"


@pytest.mark.parametrize(
    "stanza", ["<message to='bob@example.com'><body>hi</body></message>", "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "<presence/>"]
)
def test_stanzas_before_authentication_are_not_authorized(connect, stanza):
    client = connect()
    client.starttls()
    client.send(stanza)
    assert client.closed_with() == "not-authorized"


def test_stanzas_before_starttls_are_not_authorized_and_auth_is_a_policy_violation(connect):
    client = connect()
    client.open()
    client.send("<presence/>")
    assert client.closed_with() == "not-authorized"
    client = connect()
    client.open()
    client.auth_plain("alice", "wonderland")
    assert client.stream.state is StreamState.CLOSED


def test_data_sent_with_starttls_before_the_handshake_is_discarded(connect):
    client = connect()
    client.open()
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><presence/>")
    (proceed,) = client.elements()
    assert proceed.name == "proceed"
    assert client.stream.state is StreamState.OPENING


def test_bind_with_a_requested_resource(connect):
    client = connect()
    client.login()
    (result,) = client.bind("laptop")
    assert result["type"] == "result" and result["id"] == "b1"
    assert str(result.bind.jid) == "alice@example.com/laptop"
    assert client.stream.state is StreamState.ESTABLISHED
    verifyObject(IXMPPSession, client.stream)


def test_bind_without_a_resource_gets_a_generated_one(connect, service):
    client = connect()
    client.login()
    (result,) = client.bind()
    jid = str(result.bind.jid)
    assert jid.startswith("alice@example.com/cg-")
    assert service.sessions.lookup(jid) is client.stream


def test_a_second_login_with_the_same_resource_replaces_the_first(connect, service):
    first = connect().bound("phone")
    second = connect().bound("phone")
    assert first.closed_with() == "conflict"
    assert service.sessions.lookup("alice@example.com/phone") is second.stream
    first.stream.connectionLost(None)
    assert service.sessions.lookup("alice@example.com/phone") is second.stream


def test_too_many_resources_are_refused_with_resource_constraint(connect, service):
    service.apply_settings({"MaxResources": "2"})
    connect().bound("one")
    connect().bound("two")
    third = connect()
    third.login()
    (error,) = third.bind("three")
    assert error["type"] == "error"
    assert error.error.firstChildElement().name == "resource-constraint"
    assert error.error["type"] == "wait"
    # Replacing an existing resource is still allowed at the limit.
    fourth = connect()
    fourth.login()
    (result,) = fourth.bind("two")
    assert result["type"] == "result"


def test_a_bad_resource_is_a_bad_request(connect):
    client = connect()
    client.login()
    (error,) = client.bind("bad\u202eresource")
    assert error.error.firstChildElement().name == "bad-request"


def test_session_establishment_is_accepted_for_old_clients(connect):
    client = connect().bound("old")
    client.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
    (result,) = client.elements()
    assert result["type"] == "result" and result["id"] == "s1"


def test_stanzas_before_binding_are_not_authorized(connect):
    client = connect()
    client.login()
    client.send("<message to='bob@example.com'><body>x</body></message>")
    assert client.closed_with() == "not-authorized"


def test_a_stream_that_does_not_log_in_in_time_is_closed(connect, clock):
    client = connect()
    client.open()
    clock.advance(61)
    assert client.closed_with() == "connection-timeout"


def test_a_bound_stream_is_not_timed_out(connect, clock):
    client = connect().bound()
    clock.advance(3600)
    assert client.stream.state is StreamState.ESTABLISHED


def test_closing_the_stream_closes_ours_and_unbinds(connect, service):
    client = connect().bound()
    client.send("</stream:stream>")
    assert client.transport.value().endswith(b"</stream:stream>")
    assert client.transport.disconnecting
    client.stream.connectionLost(None)
    assert service.sessions.resources("alice@example.com") == []
    assert client.stream not in service.streams


def test_the_account_logs_out_when_the_connection_ends(connect):
    client = connect().bound()
    logout = client.stream._logout
    assert logout is not None
    client.stream.connectionLost(None)
    assert client.stream._logout is None


def test_shutting_down_closes_streams_with_system_shutdown(connect, service):
    client = connect().bound()
    service.stopService()
    assert client.closed_with() == "system-shutdown"
    service.startService()


def test_an_oversized_stanza_is_a_policy_violation(connect, service):
    service.apply_settings({"MaxStanzaSize": "2048"})
    client = connect().bound()
    client.send("<message to='bob@example.com'><body>" + "x" * 5000 + "</body></message>")
    assert client.closed_with() == "policy-violation"


def test_malformed_xml_is_not_well_formed(connect):
    client = connect().bound()
    client.send("<message><body>unclosed</message>")
    assert client.closed_with() == "not-well-formed"


def test_a_doctype_is_restricted_xml(connect):
    client = connect()
    client.send("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]>")
    assert client.closed_with() == "restricted-xml"


def test_no_tls_context_means_starttls_fails_and_the_stream_closes(connect, service):
    service.tls_context = None
    client = connect()
    client.open()
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    (failure,) = client.elements()
    assert failure.name == "failure" and failure.uri == NS_TLS
    assert client.transport.disconnecting
