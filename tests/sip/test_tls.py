"""
Client TLS for outgoing SIP: the settings checked and their files read,
the options built from them, and what a real TLS handshake (in memory,
through twisted.test.iosim) makes of them -- the chain is checked against
the platform store plus TLSCAFile, the name checked is the one asked for
(the SIP domain), TLSVerify=NO accepts anything, and the client
certificate is presented to a server that asks.
"""

import pytest
from twisted.internet import ssl
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from zope.interface import implementer

from communigate.sip.message import parse_message
from communigate.sip.tls import ClientTLS, OutgoingTLS, load_client_tls, tls_settings
from communigate.sip.transport import Flow, SIPTransport
from communigate.testing import make_certificates


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_certificates(str(tmp_path_factory.mktemp("pki")), server_names=("secure.test",))


@implementer(IHandshakeListener)
class Peer(Protocol):
    def __init__(self):
        self.handshake_done = False
        self.peer_certificate = None
        self.lost = None

    def handshakeCompleted(self):
        self.handshake_done = True
        self.peer_certificate = self.transport.getPeerCertificate()

    def connectionLost(self, reason):
        self.lost = reason


def handshake(client_options, server_options):
    """
    Run a TLS handshake in memory; return (client, server) application
    protocols.
    """
    client_app, server_app = Peer(), Peer()
    server = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(lambda: server_app)).buildProtocol(None)
    client = TLSMemoryBIOFactory(client_options, True, Factory.forProtocol(lambda: client_app)).buildProtocol(None)
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
    pump.flush()
    return client_app, server_app


def server_options(pki, require_client=False):
    server = ssl.PrivateCertificate.loadPEM(open(pki.server, "rb").read())
    if require_client:
        return server.options(ssl.Certificate.loadPEM(open(pki.ca, "rb").read()))
    return server.options()


def settings(**values):
    return {"TLSVerify": "YES", "TLSCAFile": "", "TLSClientCertificate": "", **values}


# -- settings -------------------------------------------------------------------


def test_tls_settings_default_to_verifying_with_no_files():
    checked = tls_settings({})
    assert (checked.verify, checked.ca_file, checked.certificate_file) == (True, "", "")
    assert tls_settings(settings(TLSVerify="no")).verify is False


@pytest.mark.parametrize(
    "values, message",
    [
        ({"TLSVerify": "maybe"}, "TLSVerify must be YES or NO, not 'maybe'"),
        ({"TLSCAFile": "ca.pem"}, "TLSCAFile must be an absolute path, not 'ca.pem'"),
        ({"TLSClientCertificate": ["/a"]}, "TLSClientCertificate must be the path of a PEM file"),
    ],
)
def test_bad_tls_settings_name_the_setting(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        tls_settings(settings(**values))


def test_unusable_files_are_refused_naming_setting_and_file(pki, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    cert_only = tmp_path / "cert-only.pem"
    cert_only.write_bytes(open(pki.ca, "rb").read())
    mismatched = tmp_path / "mismatched.pem"
    client = open(pki.client, "rb").read()
    server = open(pki.server, "rb").read()
    # The client's certificate with the server's key.
    mismatched.write_bytes(client[: client.index(b"-----BEGIN PRIVATE KEY")] + server[server.index(b"-----BEGIN PRIVATE KEY"):])
    cases = [
        (settings(TLSCAFile=str(tmp_path / "missing.pem")), f"TLSCAFile: cannot read {tmp_path / 'missing.pem'}"),
        (settings(TLSCAFile=str(empty)), f"TLSCAFile: {empty} holds no PEM certificate"),
        (settings(TLSClientCertificate=str(cert_only)), f"TLSClientCertificate: {cert_only} holds no PEM private key"),
        (settings(TLSClientCertificate=str(mismatched)), "does not hold a certificate and its matching private key"),
    ]
    for values, message in cases:
        with pytest.raises(ValueError) as raised:
            load_client_tls(values)
        assert message in str(raised.value)


def test_good_files_are_loaded_once(pki):
    client = load_client_tls(settings(TLSCAFile=pki.ca, TLSClientCertificate=pki.client))
    assert client.verify and len(client.authorities) == 1
    assert client.certificate.original.to_cryptography().subject.rfc4514_string() == "CN=communigate test client"


# -- handshakes -------------------------------------------------------------------


def test_a_server_whose_ca_is_in_the_ca_file_and_whose_name_matches_is_accepted(pki):
    client = load_client_tls(settings(TLSCAFile=pki.ca))
    client_app, server_app = handshake(client.options_for("secure.test"), server_options(pki))
    assert client_app.handshake_done and server_app.handshake_done


def test_without_the_ca_file_the_platform_store_does_not_trust_a_private_ca(pki):
    client = load_client_tls(settings())
    client_app, _ = handshake(client.options_for("secure.test"), server_options(pki))
    assert not client_app.handshake_done and client_app.lost is not None


@pytest.mark.parametrize("name", ["host.secure.test", "127.0.0.1", "other.test"])
def test_the_certificate_must_name_what_was_asked_for_not_an_srv_target_or_address(pki, name):
    client = load_client_tls(settings(TLSCAFile=pki.ca))
    client_app, _ = handshake(client.options_for(name), server_options(pki))
    assert not client_app.handshake_done


def test_names_are_compared_without_case_or_a_final_dot(pki):
    client = load_client_tls(settings(TLSCAFile=pki.ca))
    client_app, _ = handshake(client.options_for("Secure.Test."), server_options(pki))
    assert client_app.handshake_done
    assert client.options_for("SECURE.test") is client.options_for("secure.test")


def test_tls_verify_no_accepts_any_certificate(pki):
    client = load_client_tls(settings(TLSVerify="NO"))
    client_app, _ = handshake(client.options_for("whatever.test"), server_options(pki))
    assert client_app.handshake_done


def test_the_client_certificate_is_presented_to_a_server_that_asks(pki):
    with_cert = load_client_tls(settings(TLSCAFile=pki.ca, TLSClientCertificate=pki.client))
    client_app, server_app = handshake(with_cert.options_for("secure.test"), server_options(pki, require_client=True))
    assert client_app.handshake_done and server_app.handshake_done
    subject = server_app.peer_certificate.to_cryptography().subject.rfc4514_string()
    assert subject == "CN=communigate test client"
    without = load_client_tls(settings(TLSCAFile=pki.ca))
    client_app, server_app = handshake(without.options_for("secure.test"), server_options(pki, require_client=True))
    assert not server_app.handshake_done


# -- in force ------------------------------------------------------------------------


def test_outgoing_tls_verifies_with_the_platform_store_before_any_setting():
    outgoing = OutgoingTLS()
    assert outgoing.client.verify and outgoing.client.authorities == ()
    assert outgoing.options_for("example.net") is not None


def test_a_file_gone_bad_turns_outgoing_tls_off_with_an_error_and_a_fix_turns_it_on(pki, tmp_path):
    outgoing = OutgoingTLS()
    with capturedLogs() as events:
        outgoing.apply(settings(TLSCAFile=str(tmp_path / "gone.pem")))
    assert [e["log_level"] for e in events] == [LogLevel.error]
    with pytest.raises(OSError, match="outgoing SIP over TLS is off: TLSCAFile: cannot read"):
        outgoing.options_for("secure.test")
    outgoing.apply(settings(TLSCAFile=pki.ca))
    assert outgoing.options_for("secure.test") is not None


def test_tls_verify_no_is_logged_as_a_warning_when_put_in_force():
    outgoing = OutgoingTLS()
    with capturedLogs() as events:
        outgoing.apply(settings(TLSVerify="NO"))
    assert [e["log_level"] for e in events] == [LogLevel.warn]
    assert "TLSVerify is NO" in events[0]["log_format"]


# -- the transport asks for the flow's name -------------------------------------------


class Receiver:
    def flow_closed(self, flow):
        pass


MESSAGE = parse_message(
    b"MESSAGE sip:bob@secure.test SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.10:5060;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@secure.test>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def test_a_new_tls_connection_verifies_the_flows_server_name_else_its_address():
    asked = []
    reactor = MemoryReactor()
    transport = SIPTransport(reactor, Receiver(), client_tls_options=lambda name: asked.append(name) or object())
    transport.send(MESSAGE, Flow("tls", ("192.0.2.10", 5060), ("203.0.113.5", 5061), server_name="secure.test"))
    transport.send(MESSAGE, Flow("tls", ("192.0.2.10", 5060), ("203.0.113.6", 5061)))
    assert asked == ["secure.test", "203.0.113.6"]
    assert [(host, port) for host, port, *_ in reactor.sslClients] == [("203.0.113.5", 5061), ("203.0.113.6", 5061)]


def test_the_server_name_is_not_part_of_a_flows_identity():
    a = Flow("tls", ("192.0.2.10", 5060), ("203.0.113.5", 5061), server_name="secure.test")
    b = Flow("tls", ("192.0.2.10", 5060), ("203.0.113.5", 5061))
    assert a == b and hash(a) == hash(b)


def test_outgoing_tls_off_makes_sending_a_transport_error():
    outgoing = OutgoingTLS()
    outgoing.apply(settings(TLSCAFile="/nonexistent/ca.pem"))
    transport = SIPTransport(MemoryReactor(), Receiver(), client_tls_options=outgoing.options_for)
    with pytest.raises(OSError, match="outgoing SIP over TLS is off"):
        transport.send(MESSAGE, Flow("tls", ("192.0.2.10", 5060), ("203.0.113.5", 5061), server_name="secure.test"))
