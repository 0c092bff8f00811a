"""
Server authentication by certificate (RFC 6120 13.7.2, XEP-0178): the
TLS check of a peer's certificate (real OpenSSL handshakes in memory),
SASL EXTERNAL offered and judged on incoming streams (a scripted peer),
used on outgoing ones (a scripted remote server), and two servers that
trust each other's certificates talking without dialback.
"""

import base64
import os
import time
import types

import pytest
from OpenSSL import SSL
from prometheus_client import generate_latest
from zope.interface.verify import verifyObject

from communigate.certnames import CertificateNames
from communigate import tls_trust
from communigate.interfaces import IPeerCertificateCheck, IS2SCertificates
from communigate.testing_pki import TestAuthority
from communigate.xmpp.s2s_tls import PeerIdentity, S2SCertificates
from communigate.xmpp.tls import load_context

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NOT_UTF8 = base64.b64encode(b"\xff\xfe").decode()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def proving(*domains):
    return PeerIdentity(True, CertificateNames(dns_ids=domains), "")


def sasl_failure(element):
    assert (element.uri, element.name) == (NS_SASL, "failure"), element.toXml()
    return next(child.name for child in element.elements())


# -- the TLS check, with real handshakes ------------------------------------------


def certificates(tmp_path, name, pem, ca_pem=None, crl_pem=None):
    path = tmp_path / f"{name}.pem"
    path.write_bytes(pem)
    ca_path = crl_path = ""
    if ca_pem is not None:
        ca_path = tmp_path / f"{name}-ca.pem"
        ca_path.write_bytes(ca_pem)
    if crl_pem is not None:
        crl_path = tmp_path / f"{name}-crl.pem"
        crl_path.write_bytes(crl_pem)
    xmpp = types.SimpleNamespace(tls_context=load_context(str(path)) if pem else None)
    return S2SCertificates(xmpp, lambda: str(ca_path), lambda: str(crl_path))


def handshake(client_check, server_check):
    client = client_check.clientConnectionForTLS(None)
    server = server_check.serverConnectionForTLS(None)
    # What twisted.protocols.tls does with the connections it is given.
    client.set_connect_state()
    server.set_accept_state()
    for _ in range(50):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        moved = False
        for source, target in ((client, server), (server, client)):
            try:
                data = source.bio_read(1 << 16)
            except SSL.WantReadError:
                data = b""
            if data:
                target.bio_write(data)
                moved = True
        if not moved:
            break
    as_transport = lambda connection: types.SimpleNamespace(getPeerCertificate=connection.get_peer_certificate)
    return client_check.identity(as_transport(client)), server_check.identity(as_transport(server))


@pytest.fixture(scope="module")
def authority():
    return TestAuthority()


def test_the_checks_provide_their_interfaces(tmp_path, authority):
    made = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem)
    assert verifyObject(IS2SCertificates, made)
    assert verifyObject(IPeerCertificateCheck, made.client("two.test"))


def test_certificates_of_a_trusted_ca_verify_both_ways_and_name_their_domains(tmp_path, authority):
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem)
    two = certificates(tmp_path, "two", authority.issue(["two.test"], xmpp_addrs=["two.test"]), authority.pem)
    seen_by_one, seen_by_two = handshake(one.client("two.test"), two.server())
    assert seen_by_one.proves("two.test") and not seen_by_one.proves("one.test")
    assert seen_by_two.proves("one.test")


def test_an_untrusted_certificate_does_not_fail_the_handshake_but_proves_nothing(tmp_path, authority):
    stranger = TestAuthority("another CA")
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem)
    two = certificates(tmp_path, "two", stranger.issue(["two.test"]), stranger.pem)
    seen_by_one, seen_by_two = handshake(one.client("two.test"), two.server())
    assert not seen_by_one.verified and not seen_by_one.proves("two.test")
    assert "not trusted" in seen_by_one.problem or "issuer" in seen_by_one.problem
    # two.test trusts only the other CA: one.test's certificate proves nothing there.
    assert not seen_by_two.proves("one.test")


def test_a_peer_without_a_certificate_is_served_and_proves_nothing(tmp_path, authority):
    one = certificates(tmp_path, "one", b"", authority.pem)
    two = certificates(tmp_path, "two", authority.issue(["two.test"]), authority.pem)
    seen_by_one, seen_by_two = handshake(one.client("two.test"), two.server())
    assert seen_by_one.proves("two.test")
    assert seen_by_two == PeerIdentity(False, None, "the peer presented no certificate")


def test_a_ca_file_that_cannot_be_read_leaves_the_platform_store(tmp_path, authority):
    made = S2SCertificates(types.SimpleNamespace(tls_context=None), lambda: str(tmp_path / "missing.pem"))
    two = certificates(tmp_path, "two", authority.issue(["two.test"]), authority.pem)
    seen_by_one, _ = handshake(made.client("two.test"), two.server())
    assert not seen_by_one.verified


def test_a_revoked_certificate_proves_nothing_and_one_the_list_does_not_name_still_does(tmp_path, authority):
    revoked, kept = authority.issue(["two.test"]), authority.issue(["three.test"])
    revocations = authority.revocation_list(revoked)
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem, revocations)
    seen, _ = handshake(one.client("two.test"), certificates(tmp_path, "two", revoked, authority.pem).server())
    assert not seen.verified and seen.problem.endswith("(it has been revoked at depth 0)")
    seen, _ = handshake(one.client("three.test"), certificates(tmp_path, "three", kept, authority.pem).server())
    assert seen.proves("three.test")
    # the peer checks us too: our own list does not stop two.test's server from trusting one.test
    _, seen_by_two = handshake(one.client("two.test"), certificates(tmp_path, "two", revoked, authority.pem).server())
    assert seen_by_two.proves("one.test")


def test_a_ca_without_a_list_here_is_not_checked_and_a_stale_list_still_counts(tmp_path, authority):
    other = TestAuthority("a CA without a list here")
    bundle = authority.pem + other.pem
    revoked = authority.issue(["two.test"])
    stale = authority.revocation_list(revoked, days=7, issued_days_ago=30)
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), bundle, stale)
    seen, _ = handshake(one.client("four.test"),
                        certificates(tmp_path, "four", other.issue(["four.test"]), bundle).server())
    assert seen.proves("four.test")
    seen, _ = handshake(one.client("two.test"), certificates(tmp_path, "two", revoked, bundle).server())
    assert not seen.verified and "revoked" in seen.problem


def test_a_revocation_list_replaced_in_place_is_read_again(tmp_path, authority):
    revoked = authority.issue(["two.test"])
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem, authority.revocation_list())
    two = certificates(tmp_path, "two", revoked, authority.pem)
    seen, _ = handshake(one.client("two.test"), two.server())
    assert seen.proves("two.test")
    crl_path = tmp_path / "one-crl.pem"
    crl_path.write_bytes(authority.revocation_list(revoked))
    os.utime(crl_path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    seen, _ = handshake(one.client("two.test"), two.server())
    assert not seen.verified


def test_revocation_list_files_that_are_not_lists_are_refused_by_name(tmp_path, authority):
    path = tmp_path / "not-a-crl.pem"
    path.write_bytes(authority.pem)
    with pytest.raises(ValueError, match="S2SCRLFile: .* holds no PEM certificate revocation list"):
        tls_trust.load_revocation_lists(str(path), "S2SCRLFile")
    path.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
    with pytest.raises(ValueError, match="does not parse"):
        tls_trust.load_revocation_lists(str(path), "S2SCRLFile")
    with pytest.raises(ValueError, match="cannot read"):
        tls_trust.load_revocation_lists(str(tmp_path / "missing.pem"), "S2SCRLFile")
    # an unreadable list at run time: logged, revocation not checked, the peer still verifies
    one = certificates(tmp_path, "one", authority.issue(["one.test"]), authority.pem, b"garbage")
    seen, _ = handshake(one.client("two.test"),
                        certificates(tmp_path, "two", authority.issue(["two.test"]), authority.pem).server())
    assert seen.proves("two.test")


# -- incoming: EXTERNAL offered and judged ------------------------------------------


def secured(peer, two, identity, sender="one.test"):
    two.certificates.peer_identity = identity
    remote = peer(two.s2s)
    (features,) = remote.starttls(sender=sender)
    return remote, features


def mechanisms_of(features):
    return [str(m) for child in features.elements(NS_SASL, "mechanisms") for m in child.elements()]


def test_a_certificate_that_proves_the_from_domain_gets_external_offered_beside_dialback(peer, two):
    _remote, features = secured(peer, two, proving("one.test"))
    assert mechanisms_of(features) == ["EXTERNAL"]
    assert features.dialback is not None


@pytest.mark.parametrize(
    "identity", [proving("other.test"), PeerIdentity(False, CertificateNames(dns_ids=("one.test",)), "untrusted")]
)
def test_a_certificate_that_does_not_prove_the_domain_gets_only_dialback(peer, two, identity):
    _remote, features = secured(peer, two, identity)
    assert mechanisms_of(features) == [] and features.dialback is not None


@pytest.mark.parametrize("response", [b64("one.test"), "="])
def test_external_succeeds_and_stanzas_flow_without_dialback(peer, two, response):
    bob = two.session("bob", "phone")
    remote, _features = secured(peer, two, proving("one.test"))
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{response}</auth>")
    (success,) = remote.elements()
    assert (success.uri, success.name) == (NS_SASL, "success")
    remote.restart()
    (features,) = remote.open(sender="one.test")
    assert mechanisms_of(features) == []
    remote.send("<message from='alice@one.test/laptop' to='bob@two.test'><body>by certificate</body></message>")
    (delivered,) = bob.received
    assert str(delivered.body) == "by certificate"
    assert remote.stream.details["Auth"] == "certificate"
    assert remote.stream.details["State"] == "established"
    text = generate_latest(two.context.metrics).decode()
    assert 'communigate_xmpp_s2s_auth_total{direction="in",method="certificate",outcome="ok"} 1.0' in text
    assert "communigate_xmpp_s2s_dialback_total{" not in text


def test_an_auth_without_initial_response_gets_an_empty_challenge(peer, two):
    remote, _features = secured(peer, two, proving("one.test"))
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'/>")
    (challenge,) = remote.elements()
    assert challenge.name == "challenge" and str(challenge) == ""
    remote.send(f"<response xmlns='{NS_SASL}'/>")
    (success,) = remote.elements()
    assert success.name == "success"


def test_external_for_a_domain_the_certificate_does_not_name_is_not_authorized_and_dialback_still_works(
    peer, one, two, network
):
    remote, _features = secured(peer, two, proving("one.test"))
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{b64('evil.test')}</auth>")
    (failure,) = remote.elements()
    assert sasl_failure(failure) == "not-authorized"
    key = one.s2s.dialback_key(receiving="two.test", originating="one.test", stream_id=remote.stream_id)
    remote.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    network.flush()
    (answer,) = remote.elements()
    assert answer["type"] == "valid"
    assert remote.stream.details["Auth"] == "dialback"


def test_external_without_a_certificate_is_not_authorized(peer, two):
    remote, _features = secured(peer, two, PeerIdentity(False, None, "the peer presented no certificate"))
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    assert sasl_failure(remote.elements()[0]) == "not-authorized"
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{b64('two.test')}</auth>")
    assert sasl_failure(remote.elements()[0]) == "not-authorized"


@pytest.mark.parametrize(
    "auth, condition",
    [
        (f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>not*base64!</auth>", "incorrect-encoding"),
        (f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{NOT_UTF8}</auth>", "incorrect-encoding"),
        (f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>AGEAYg==</auth>", "invalid-mechanism"),
        (f"<auth xmlns='{NS_SASL}'>=</auth>", "invalid-mechanism"),
        (f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'><x/></auth>", "malformed-request"),
        (f"<response xmlns='{NS_SASL}'>=</response>", "malformed-request"),
        (f"<abort xmlns='{NS_SASL}'/>", "aborted"),
    ],
)
def test_bad_sasl_gets_its_failure_and_the_stream_goes_on(peer, two, auth, condition):
    remote, _features = secured(peer, two, proving("one.test"))
    remote.send(auth)
    assert sasl_failure(remote.elements()[0]) == condition
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    (success,) = remote.elements()
    assert success.name == "success"


def test_sasl_while_a_dialback_request_is_checked_is_refused(peer, one, two, network):
    remote, _features = secured(peer, two, proving("one.test"))
    key = one.s2s.dialback_key(receiving="two.test", originating="one.test", stream_id=remote.stream_id)
    remote.send(f"<db:result from='one.test' to='two.test'>{key}</db:result>")
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    assert sasl_failure(remote.elements()[0]) == "malformed-request"
    network.flush()
    (answer,) = remote.elements()
    assert answer["type"] == "valid"


def test_repeated_sasl_failures_end_the_stream(peer, two):
    remote, _features = secured(peer, two, proving("one.test"))
    for _ in range(3):
        remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{b64('evil.test')}</auth>")
    assert remote.closed_with() == "policy-violation"


def test_sasl_before_the_required_starttls_is_a_policy_violation(peer, two):
    remote = peer(two.s2s)
    remote.open(sender="one.test")
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    assert remote.closed_with() == "policy-violation"


def test_a_second_sasl_after_success_ends_the_stream(peer, two):
    remote, _features = secured(peer, two, proving("one.test"))
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    remote.elements()
    remote.restart()
    remote.open(sender="one.test")
    remote.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>")
    assert remote.closed_with() == "policy-violation"


# -- two servers ---------------------------------------------------------------------


def test_servers_whose_certificates_verify_authenticate_by_certificate_both_ways(one, two, network):
    one.certificates.peer_identity = proving("two.test")
    two.certificates.peer_identity = proving("one.test")
    bob, alice = two.session("bob", "phone"), one.session("alice", "laptop")
    one.xmpp.route_remote(_message("alice@one.test/laptop", "bob@two.test", "hi two"))
    network.flush()
    two.xmpp.route_remote(_message("bob@two.test/phone", "alice@one.test", "hi one"))
    network.flush()
    assert [str(m.body) for m in bob.received] == ["hi two"]
    assert [str(m.body) for m in alice.received] == ["hi one"]
    for server in (one, two):
        auths = {entry["Direction"]: entry["Auth"] for entry in server.s2s.streams()}
        assert auths == {"out": "certificate", "in": "certificate"}
        text = generate_latest(server.context.metrics).decode()
        assert "communigate_xmpp_s2s_dialback_total{" not in text
        assert 'communigate_xmpp_s2s_auth_total{direction="out",method="certificate",outcome="ok"} 1.0' in text


def test_a_server_whose_certificate_does_not_verify_is_reached_by_dialback(one, two, network):
    one.certificates.peer_identity = PeerIdentity(False, CertificateNames(dns_ids=("two.test",)), "self-signed")
    two.certificates.peer_identity = proving("one.test")
    bob = two.session("bob", "phone")
    one.xmpp.route_remote(_message("alice@one.test/laptop", "bob@two.test", "hi"))
    network.flush()
    assert [str(m.body) for m in bob.received] == ["hi"]
    (out,) = [entry for entry in one.s2s.streams() if entry["Direction"] == "out"]
    assert out["Auth"] == "dialback"
    text = generate_latest(one.context.metrics).decode()
    assert 'communigate_xmpp_s2s_dialback_total{outcome="valid",role="outgoing"} 1.0' in text


def test_a_refused_external_falls_back_to_dialback(one, two, network):
    # one.test believes two.test's certificate, but two.test does not
    # believe one.test's: it offers no EXTERNAL, and dialback is used.
    one.certificates.peer_identity = proving("two.test")
    two.certificates.peer_identity = proving("elsewhere.test")
    bob = two.session("bob", "phone")
    one.xmpp.route_remote(_message("alice@one.test/laptop", "bob@two.test", "hi"))
    network.flush()
    assert [str(m.body) for m in bob.received] == ["hi"]
    (out,) = [entry for entry in one.s2s.streams() if entry["Direction"] == "out"]
    assert out["Auth"] == "dialback"


def _message(sender, recipient, body):
    from twisted.words.xish import domish

    element = domish.Element(("jabber:client", "message"))
    element["from"], element["to"], element["type"] = sender, recipient, "chat"
    element.addElement("body", content=body)
    return element
