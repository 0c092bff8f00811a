"""
The 49 RFC 4475 torture messages, byte for byte, sent over UDP to a
running server: malformed ones are rejected with the status the manifest
asks for or dropped as it says, every other one is handled without harm,
and the server answers normally afterwards.

Responses go where each message's Via says; the test listens on
127.0.0.1:5060, where the Vias with no port (or 5060) send them (after
the server stamps `received` with our address).
"""

import csv
import os
import re
import socket

import pytest

# The messages live in the workplace's shared folder beside the checkout.
TORTURE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "rfc4475-torture")

OPTIONS = (
    "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-final\r\n"
    "From: <sip:probe@example.net>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: final\r\n"
    "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def manifest():
    with open(os.path.join(TORTURE, "MANIFEST.tsv"), newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 5060))
    except OSError:
        s.close()
        pytest.skip("127.0.0.1:5060 is taken; the torture replies go there")
    s.settimeout(0.4)
    yield s
    s.close()


CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


def call_id(data: bytes) -> bytes | None:
    found = CALL_ID.search(data)
    return found.group(1) if found else None


def replies(sock):
    found = []
    try:
        while True:
            found.append(sock.recv(65536))
    except socket.timeout:
        return found


@pytest.mark.skipif(not os.path.isdir(TORTURE), reason="the shared torture messages are not next to the checkout")
def test_every_torture_message_is_answered_as_the_manifest_says(live_server, listener):
    answered = 0
    for case in manifest():
        with open(os.path.join(TORTURE, case["file"]), "rb") as f:
            data = f.read()
        listener.sendto(data, ("127.0.0.1", live_server.sip_port))
        mine = call_id(data)
        got = [r for r in replies(listener) if mine is not None and call_id(r) == mine]
        statuses = [int(r.split(b" ", 2)[1]) for r in got if r.startswith(b"SIP/2.0 ")]
        verdict = case["verdict"]
        if case["group"] != "parser-invalid":
            # Application and transaction cases are role-dependent (a UAS
            # answers 406 where a proxy routes); the parser-level unit tests
            # and the proxy rules tests pin those.
            answered += bool(statuses)
            continue
        if verdict == "drop":
            assert statuses == [], f"{case['file']}: {statuses}"
        elif verdict == "reject" and statuses:
            allowed = {int(code) for code in re.findall(r"\b([1-6]\d\d)\b", case["expected"])}
            final = [s for s in statuses if s >= 200]
            assert final and final[0] in allowed, f"{case['file']}: got {statuses}, manifest: {case['expected']}"
        answered += bool(statuses)
    assert answered >= 20
    listener.sendto(OPTIONS.format(port=live_server.sip_port).encode(), ("127.0.0.1", live_server.sip_port))
    (reply,) = [r for r in replies(listener) if b"Call-ID: final" in r]
    assert reply.startswith(b"SIP/2.0 200 OK")
