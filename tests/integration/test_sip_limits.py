"""
What the SIP listener does with too much, or bad, input: per-source rate
limits with 503 and Retry-After, 400 for malformed requests, silence for
oversized datagrams and malformed responses; the server goes on.
"""

import socket

from communigate.admin.client import CLIClient

OPTIONS = (
    "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{n};rport\r\n"
    "From: <sip:probe@example.net>;tag=p{n}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
    "Call-ID: probe-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def cli(server, line):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return client.command(line)


def exchange(server, payloads, wait=2.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(wait)
        local = s.getsockname()[1]
        for n, payload in enumerate(payloads):
            data = payload.format(port=server.sip_port, local=local, n=n) if isinstance(payload, str) else payload
            s.sendto(data if isinstance(data, bytes) else data.encode(), ("127.0.0.1", server.sip_port))
        replies = []
        try:
            while True:
                replies.append(s.recv(65536).decode())
        except socket.timeout:
            return replies


def test_options_to_the_server_is_answered_with_allow(live_server):
    (reply,) = exchange(live_server, [OPTIONS])
    assert reply.startswith("SIP/2.0 200 OK") and "Allow: INVITE" in reply


def test_a_source_over_its_rate_gets_503_with_retry_after(live_server):
    assert cli(live_server, "UPDATESIPSETTINGS {RequestRate = 1; RequestBurst = 2;}")[0] == 200
    replies = exchange(live_server, [OPTIONS] * 6, wait=1.0)
    statuses = [r.split(" ", 2)[1] for r in replies]
    assert statuses.count("200") == 2 and statuses.count("503") == 4
    assert all("Retry-After:" in r for r in replies if " 503 " in r.split("\r\n")[0])


def test_bad_sip_settings_are_refused_and_change_nothing(live_server):
    code, text = cli(live_server, "UPDATESIPSETTINGS {RequestRate = fast;}")
    assert code == 501 and "RequestRate" in text
    assert cli(live_server, "GETSIPSETTINGS") == (
        201,
        '{RequestRate = 50; RequestBurst = 200; KeepAliveInterval = 25; DNSServers = ""; '
        'TLSVerify = YES; TLSCAFile = ""; TLSClientCertificate = "";}',
    )


def test_malformed_requests_get_400_and_the_rest_is_dropped(live_server):
    bad_cseq = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS")
    bad_response = b"SIP/2.0 99999 Huge\r\nVia: x\r\n\r\n"
    oversized = b"OPTIONS sip:x SIP/2.0\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n"
    replies = exchange(live_server, [bad_cseq, bad_response, b"\xff\xfe garbage", OPTIONS], wait=1.5)
    assert replies[0].startswith("SIP/2.0 400 ") and "CSeq" in replies[0].split("\r\n")[0]
    assert replies[-1].startswith("SIP/2.0 200 OK")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(oversized, ("127.0.0.1", live_server.sip_port))
        except OSError:
            pass  # the kernel may refuse a datagram this large itself
    assert exchange(live_server, [OPTIONS])[0].startswith("SIP/2.0 200 OK")
