"""
Two real C{twistd communigate} servers, C{one.test} and C{two.test}, with
certificates of a test CA (C{CertificateFile}) that each trusts
(C{S2STrustedCAFile}): the server streams authenticate with SASL
EXTERNAL and no dialback crosses; slixmpp users exchange messages both
ways.  Then two.test with a certificate for another name, or with one
one.test's revocation list (C{S2SCRLFile}) names: dialback, and messages
still flow.  And a raw-socket peer presenting one.test's
certificate: EXTERNAL for a domain the certificate does not name, bad
base64, an unknown mechanism each get their SASL failure, and the server
goes on.

The SRV zone, the servers and the slixmpp clients are those of
C{test_xmpp_s2s_live.py}.
"""

import base64
import importlib.util
import os
import ssl

import pytest
import pytest_twisted
from twisted.internet import threads

from communigate.testing_pki import TestAuthority

pytest.importorskip("slixmpp")


def _s2s_live():
    path = os.path.join(os.path.dirname(__file__), "test_xmpp_s2s_live.py")
    spec = importlib.util.spec_from_file_location("xmpp_s2s_live_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_live = _s2s_live()
cli, exchange, metrics, start_pair, stop_pair, RawPeer = (
    _live.cli,
    _live.exchange,
    _live.metrics,
    _live.start_pair,
    _live.stop_pair,
    _live.RawPeer,
)

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def install_certificates(tmp_path, one, two, two_names=("two.test",), revoke_two_at_one=False):
    """
    Issue one.test's and two.test's certificates (two.test's for
    C{two_names}) and put them and the CA in force on both servers (with
    C{revoke_two_at_one}, one.test also gets the CA's revocation list
    naming two.test's certificate); return (the CA file, one.test's
    certificate file).
    """
    authority = TestAuthority()
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(authority.pem)
    paths = {}
    for server, domain, names in ((one, "one.test", ("one.test",)), (two, "two.test", two_names)):
        path = tmp_path / f"{domain}-cert.pem"
        path.write_bytes(authority.issue(list(names), xmpp_addrs=list(names)))
        paths[domain] = path
        code, text = cli(server, f'UPDATEXMPPSETTINGS {{CertificateFile = "{path}"; S2STrustedCAFile = "{ca_path}";}}')
        assert code == 200, text
    if revoke_two_at_one:
        crl_path = tmp_path / "revoked.pem"
        crl_path.write_bytes(authority.revocation_list(paths["two.test"].read_bytes()))
        code, text = cli(one, f'UPDATEXMPPSETTINGS {{S2SCRLFile = "{crl_path}";}}')
        assert code == 200, text
    return str(ca_path), str(paths["one.test"])


def s2s_entries(listed):
    """
    The LISTXMPPS2S answer's entries as (Direction, Auth) pairs.
    """
    found = []
    for entry in listed.split("{")[1:]:
        direction = entry.split("Direction = ")[1].split(";")[0]
        auth = entry.split("Auth = ")[1].split(";")[0].strip('"') if "Auth = " in entry else ""
        found.append((direction, auth))
    return sorted(found)


@pytest_twisted.inlineCallbacks
def test_servers_with_trusted_certificates_authenticate_with_external_and_no_dialback(tmp_path):
    one, two, _zone, dns_port = start_pair(tmp_path)
    try:
        ca_path, _one_cert = install_certificates(tmp_path, one, two)
        received = yield threads.deferToThread(exchange, one, two, ca_path)
        listed_one, listed_two = cli(one, "LISTXMPPS2S"), cli(two, "LISTXMPPS2S")
        metrics_one, metrics_two = metrics(one), metrics(two)
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)

    got_by_bob, got_by_alice, _presence_at_bob, _presence_at_alice, bounced = received
    assert got_by_bob == ("alice@one.test/laptop", "chat", "hello from one", "")
    assert got_by_alice == ("bob@two.test/phone", "chat", "hello back from two", "")
    assert bounced[3] == "service-unavailable"
    for code, listed in (listed_one, listed_two):
        assert code == 201, listed
        assert s2s_entries(listed) == [("in", "certificate"), ("out", "certificate")], listed
    for text in (metrics_one, metrics_two):
        # No db:result crossed: no dialback outcome of any role was counted.
        assert "communigate_xmpp_s2s_dialback_total{" not in text
        assert 'communigate_xmpp_s2s_auth_total{direction="out",method="certificate",outcome="ok"} 1.0' in text
        assert 'communigate_xmpp_s2s_auth_total{direction="in",method="certificate",outcome="ok"} 1.0' in text


@pytest_twisted.inlineCallbacks
def test_a_server_whose_certificate_names_another_domain_is_authenticated_by_dialback(tmp_path):
    one, two, _zone, dns_port = start_pair(tmp_path)
    try:
        ca_path, _one_cert = install_certificates(tmp_path, one, two, two_names=("elsewhere.test",))
        # two.test's certificate is for elsewhere.test: its own client
        # checks the chain but not the name (the servers' check is the test).
        received = yield threads.deferToThread(exchange, one, two, ca_path, False)
        listed_one, listed_two = cli(one, "LISTXMPPS2S"), cli(two, "LISTXMPPS2S")
        metrics_one = metrics(one)
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)

    got_by_bob, got_by_alice = received[:2]
    assert got_by_bob[2] == "hello from one" and got_by_alice[2] == "hello back from two"
    assert s2s_entries(listed_one[1]) == [("in", "dialback"), ("out", "dialback")], listed_one
    assert s2s_entries(listed_two[1]) == [("in", "dialback"), ("out", "dialback")], listed_two
    assert 'communigate_xmpp_s2s_dialback_total{outcome="valid",role="outgoing"} 1.0' in metrics_one


@pytest_twisted.inlineCallbacks
def test_a_server_whose_certificate_was_revoked_is_authenticated_by_dialback_and_messages_flow(tmp_path):
    one, two, _zone, dns_port = start_pair(tmp_path)
    try:
        ca_path, _one_cert = install_certificates(tmp_path, one, two, revoke_two_at_one=True)
        received = yield threads.deferToThread(exchange, one, two, ca_path)
        listed_one, listed_two = cli(one, "LISTXMPPS2S"), cli(two, "LISTXMPPS2S")
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)

    got_by_bob, got_by_alice = received[:2]
    assert got_by_bob[2] == "hello from one" and got_by_alice[2] == "hello back from two"
    # one.test refuses two.test's revoked certificate both ways: it does not
    # offer two.test EXTERNAL, and does not use its own towards a server
    # whose certificate proves nothing (the streams authenticate mutually)
    assert s2s_entries(listed_one[1]) == [("in", "dialback"), ("out", "dialback")], listed_one
    assert s2s_entries(listed_two[1]) == [("in", "dialback"), ("out", "dialback")], listed_two
    assert "it has been revoked" in one.output()


class CertifiedPeer(RawPeer):
    """
    A raw peer whose TLS presents a certificate.
    """

    def starttls_with(self, certificate_path, sender="one.test"):
        self.open(sender)
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        (proceed,) = self.read(lambda element: element.name == "proceed")
        assert proceed.name == "proceed"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(certificate_path)
        self.socket = context.wrap_socket(self.socket)
        self.reader = _live.StreamParser(10_000_000)
        return self.open(sender)

    def sasl(self, text):
        self.send(text)
        (answer,) = self.read(lambda element: element.uri == NS_SASL)[-1:]
        if answer.name == "failure":
            return next(child.name for child in answer.elements())
        return answer.name


def b64(text):
    return base64.b64encode(text.encode()).decode()


def certified_peer_attempts(two, one_certificate):
    outcomes = {}
    peer = CertifiedPeer(two)
    features = peer.starttls_with(one_certificate)[-1]
    outcomes["offered"] = [str(m) for child in features.elements(NS_SASL, "mechanisms") for m in child.elements()]
    auth = f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{{}}</auth>"
    outcomes["other domain"] = peer.sasl(auth.format(b64("evil.test")))
    outcomes["bad base64"] = peer.sasl(auth.format("%%%not-base64"))
    peer.close()

    peer = CertifiedPeer(two)
    peer.starttls_with(one_certificate)
    outcomes["unknown mechanism"] = peer.sasl(f"<auth xmlns='{NS_SASL}' mechanism='X-UNKNOWN'>=</auth>")
    outcomes["own domain"] = peer.sasl(auth.format(b64("one.test")))
    peer.close()

    # The server goes on.
    peer = RawPeer(two)
    outcomes["afterwards"] = [child.name for child in peer.open()[-1].elements()]
    peer.close()
    return outcomes


@pytest_twisted.inlineCallbacks
def test_external_for_a_domain_the_certificate_does_not_name_is_not_authorized(tmp_path):
    one, two, _zone, dns_port = start_pair(tmp_path)
    try:
        _ca_path, one_certificate = install_certificates(tmp_path, one, two)
        outcomes = yield threads.deferToThread(certified_peer_attempts, two, one_certificate)
    finally:
        yield dns_port.stopListening()
        stop_pair(one, two)
    assert outcomes == {
        "offered": ["EXTERNAL"],
        "other domain": "not-authorized",
        "bad base64": "incorrect-encoding",
        "unknown mechanism": "invalid-mechanism",
        "own domain": "success",
        "afterwards": ["starttls"],
    }
