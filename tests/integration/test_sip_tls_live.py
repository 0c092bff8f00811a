"""
Outgoing SIP over TLS from a real `twistd communigate`: requests for
bob@secure.test go to the SIP server that secure.test's DNS names (NAPTR
SIPS+D2T -> SRV _sips._tcp -> host.secure.test -> 127.0.0.1, served by
twisted.names), a TLS listener in this test whose certificate, issued by a
throw-away CA, names secure.test (the SIP domain, not the SRV target) and
which demands a client certificate from the same CA.  Two kinds of request
go there: a new MESSAGE to a local forwarder whose target is
bob@secure.test (through the Signal service), and a MESSAGE inside a dialog
(To tag, our Route) whose Request-URI is sip:bob@secure.test (forwarded
straight to its next hop).

Without TLSCAFile the platform's trust store does not know that CA: the
connection is refused at once.  The in-dialog MESSAGE gets that 503; the
new MESSAGE gets 500, since a proxy passes no 503 of a branch upstream
(RFC 3261 §16.7 step 6: it would tell the caller that this server is
overloaded).  With TLSCAFile and TLSClientCertificate set, both arrive over
TLS and their 200s come back.
"""

import os
import socket
import time

import pytest_twisted
from twisted.internet import reactor, ssl, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.names import dns as tdns

from communigate.admin.client import CLIClient
from communigate.sip.framing import Message, StreamFramer
from communigate.sip.message import make_response, parse_message, serialize
from communigate.testing import make_certificates, served_records, start_server, stop_server


class SIPOverTLS(Protocol):
    """
    A SIP server on one TLS connection: every request is kept and answered
    200.
    """

    def __init__(self, received):
        self._framer = StreamFramer(65536)
        self._received = received

    def dataReceived(self, data):
        for event in self._framer.feed(data):
            if isinstance(event, Message):
                request = parse_message(event.data)
                self._received.append(request)
                self.transport.write(serialize(make_response(request, 200, to_tag="tls-uas")))


def zone_records(tls_port):
    return {
        (b"secure.test", tdns.NAPTR): [
            tdns.Record_NAPTR(10, 10, b"s", b"SIPS+D2T", b"", b"_sips._tcp.secure.test")
        ],
        (b"_sips._tcp.secure.test", tdns.SRV): [tdns.Record_SRV(0, 0, tls_port, b"host.secure.test")],
        (b"host.secure.test", tdns.A): [tdns.Record_A("127.0.0.1")],
    }


def send_message(sip_port, call_id, in_dialog=False, timeout=15.0):
    """
    A MESSAGE from outside over UDP -- to tlsbob@example.com, or inside a
    dialog to sip:bob@secure.test through our Route -- and the final
    response's status line with the seconds it took.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        body = "hello over TLS"
        if in_dialog:
            uri, to, route = "sip:bob@secure.test", "<sip:bob@secure.test>;tag=b1", f"<sip:127.0.0.1:{sip_port};lr>"
        else:
            uri, to, route = "sip:tlsbob@example.com", "<sip:tlsbob@example.com>", None
        message = "".join([
            f"MESSAGE {uri} SIP/2.0\r\n",
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id};rport\r\n",
            f"Route: {route}\r\n" if route else "",
            "From: <sip:carol@outside.test>;tag=c1\r\n",
            f"To: {to}\r\n",
            f"Call-ID: {call_id}\r\n",
            "CSeq: 1 MESSAGE\r\n",
            "Max-Forwards: 70\r\n",
            "Content-Type: text/plain\r\n",
            f"Content-Length: {len(body)}\r\n\r\n{body}",
        ]).encode()
        started = time.monotonic()
        s.sendto(message, ("127.0.0.1", sip_port))
        while time.monotonic() - started < timeout:
            s.settimeout(max(0.1, timeout - (time.monotonic() - started)))
            try:
                data, _ = s.recvfrom(65536)
            except socket.timeout:
                break
            status_line = data.split(b"\r\n", 1)[0].decode()
            if not status_line.startswith("SIP/2.0 1"):
                return status_line, time.monotonic() - started
    return None, timeout


def send_both(sip_port, tag):
    return [send_message(sip_port, f"{tag}-new"), send_message(sip_port, f"{tag}-dialog", in_dialog=True)]


def cli(live, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{live.cli_port}") as client:
        client.login("postmaster", live.postmaster_password)
        return [client.command(line) for line in lines]


@pytest_twisted.inlineCallbacks
def test_a_message_forwarded_over_tls_is_verified_against_the_sip_domain(tmp_path):
    pki = make_certificates(str(tmp_path), server_names=("secure.test",))
    received = []
    server_cert = ssl.PrivateCertificate.loadPEM(open(pki.server, "rb").read())
    ca = ssl.Certificate.loadPEM(open(pki.ca, "rb").read())
    tls_port = reactor.listenSSL(
        0, Factory.forProtocol(lambda: SIPOverTLS(received)), server_cert.options(ca), interface="127.0.0.1"
    )
    zone, dns_port = served_records(zone_records(tls_port.getHost().port))
    live = start_server(tmp_path / "data")
    try:
        replies = yield threads.deferToThread(
            cli, live,
            f'UPDATESIPSETTINGS {{DNSServers = "127.0.0.1:{dns_port.getHost().port}";}}',
            "CREATEFORWARDER tlsbob TO bob@secure.test",
        )
        assert [code for code, _ in replies] == [200, 200], replies
        refused = yield threads.deferToThread(send_both, live.sip_port, "no-ca")
        replies = yield threads.deferToThread(
            cli, live, f'UPDATESIPSETTINGS {{TLSCAFile = "{pki.ca}"; TLSClientCertificate = "{pki.client}";}}'
        )
        assert replies[0][0] == 200, replies
        accepted = yield threads.deferToThread(send_both, live.sip_port, "with-ca")
    finally:
        stop_server(live)
        yield dns_port.stopListening()
        yield tls_port.stopListening()
    log = live.output()
    (new_status, new_seconds), (dialog_status, dialog_seconds) = refused
    assert new_status == "SIP/2.0 500 Server Internal Error", log[-3000:]
    assert dialog_status == "SIP/2.0 503 Service Unavailable", log[-3000:]
    # Refused at once, not after Timer F (32 s).
    assert new_seconds < 10 and dialog_seconds < 10
    assert "certificate verify failed" in log
    assert [status for status, _ in accepted] == ["SIP/2.0 200 OK", "SIP/2.0 200 OK"], log[-3000:]
    # Nothing arrived over the refused connections.
    assert [m.headers.get("Call-ID") for m in received] == ["with-ca-new", "with-ca-dialog"]
    for message in received:
        assert str(message.uri) == "sip:bob@secure.test"
        assert message.top_via().transport.upper() == "TLS"
        assert message.body == b"hello over TLS"
    assert zone.asked(b"secure.test", tdns.NAPTR) and zone.asked(b"host.secure.test", tdns.A)
