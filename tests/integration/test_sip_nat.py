"""
A client behind NAT: its REGISTER names a private address it cannot be
reached at; the server keeps the address the packets really came from and
keeps the mapping open with OPTIONS pings over the same flow.
"""

import re
import socket
import time

from communigate.admin.client import CLIClient
from communigate.auth.credentials import digest_ha1, digest_response

REGISTER = (
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-nat-{cseq};rport\r\n"
    "From: <sip:carol@example.com>;tag=natted\r\nTo: <sip:carol@example.com>\r\n"
    "Call-ID: nat-client@10.1.2.3\r\nCSeq: {cseq} REGISTER\r\n"
    "Contact: <sip:carol@10.1.2.3:5060>\r\nExpires: 600\r\nMax-Forwards: 70\r\n"
    "{authorization}Content-Length: 0\r\n\r\n"
)


def cli(server, *lines):
    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        return [client.command(line) for line in lines]


def receive(sock, wanted, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            data = sock.recv(65536).decode()
        except socket.timeout:
            break
        if wanted(data):
            return data
    raise AssertionError("nothing wanted arrived")


def test_a_natted_client_is_reached_and_pinged_over_its_observed_flow(live_server):
    cli(
        live_server,
        "CREATEACCOUNT carol {Password = cpw;}",
        "UPDATESIPSETTINGS {KeepAliveInterval = 5;}",
    )
    server = ("127.0.0.1", live_server.sip_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
        phone.bind(("127.0.0.1", 0))
        phone.sendto(REGISTER.format(cseq=1, authorization="").encode(), server)
        challenge = receive(phone, lambda d: d.startswith("SIP/2.0 401"), 5)
        nonce = re.search(r'nonce="([^"]+)".*algorithm=MD5', challenge).group(1)
        response = digest_response(
            ha1=digest_ha1("MD5", "carol", "example.com", "cpw"), nonce=nonce, method="REGISTER",
            uri="sip:example.com", algorithm="MD5", qop="auth", nc="00000001", cnonce="c0ffee",
        )
        authorization = (
            f'Authorization: Digest username="carol", realm="example.com", nonce="{nonce}", '
            f'uri="sip:example.com", response="{response}", algorithm=MD5, qop=auth, '
            f'nc=00000001, cnonce="c0ffee"\r\n'
        )
        phone.sendto(REGISTER.format(cseq=2, authorization=authorization).encode(), server)
        receive(phone, lambda d: d.startswith("SIP/2.0 200"), 5)

        (code, text), = cli(live_server, "GETACCOUNTREGISTRATIONS carol")
        assert code == 201 and "NAT = YES" in text
        assert f"Source = \"udp:127.0.0.1:{phone.getsockname()[1]}\"" in text

        ping = receive(phone, lambda d: d.startswith("OPTIONS "), 8)
        via = re.search(r"^Via: (.*)$", ping, re.MULTILINE).group(1)
        headers = {name: re.search(rf"^{name}: (.*)$", ping, re.MULTILINE).group(1)
                   for name in ("From", "To", "Call-ID", "CSeq")}
        phone.sendto(
            (f"SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {headers['From']}\r\nTo: {headers['To']};tag=p\r\n"
             f"Call-ID: {headers['Call-ID']}\r\nCSeq: {headers['CSeq']}\r\nContent-Length: 0\r\n\r\n").encode(),
            server,
        )
    (code, text), = cli(live_server, "GETACCOUNTREGISTRATIONS carol")
    assert "carol@10.1.2.3" in text
