"""
Retransmitted REGISTERs through the whole SIP service: the completed
transaction answers them with the octets it sent, without asking the
registrar again, until Timer J has passed.
"""

import re

from communigate.auth.credentials import digest_ha1, digest_response


def challenge_and_register(sip, source):
    uri, to = "sip:example.com", "sip:alice@example.com"
    common = dict(to=to, user="alice", source=source, call_id="rr-1@127.0.0.1")
    contact = [("Contact", f"<sip:alice@{source[0]}:{source[1]}>")]
    first = sip.request("REGISTER", uri, cseq=1, headers=contact, **common)
    sip.port.receive(first, source)
    (challenge,) = sip.port.written
    nonce = re.search(rb'nonce="([^"]+)"', challenge[0]).group(1).decode()
    answer = digest_response(ha1=digest_ha1("MD5", "alice", "example.com", sip.passwords["alice"]), nonce=nonce,
                             method="REGISTER", uri=uri, algorithm="MD5", qop="auth", nc="00000001", cnonce="x")
    credentials = (f'Digest username="alice", realm="example.com", nonce="{nonce}", uri="{uri}", '
                   f'response="{answer}", algorithm=MD5, qop=auth, nc=00000001, cnonce="x"')
    second = sip.request("REGISTER", uri, cseq=2, headers=[*contact, ("Authorization", credentials)], **common)
    sip.port.receive(second, source)
    return first, second


def test_retransmitted_registers_get_the_same_octets_until_timer_j(sip):
    source = ("127.0.0.1", 5070)
    first, second = challenge_and_register(sip, source)
    (challenge, _), (ok, _) = sip.port.written
    assert challenge.startswith(b"SIP/2.0 401") and ok.startswith(b"SIP/2.0 200")
    counts = dict(sip.service.registrar.counts)
    sip.reactor.advance(10)  # the Date of a new answer would differ
    sip.port.receive(first, source)
    sip.port.receive(second, source)
    assert [data for data, _ in sip.port.written[2:]] == [challenge, ok]
    assert dict(sip.service.registrar.counts) == counts
    sip.reactor.advance(23)  # Timer J (32 s) is over: the request is new again
    sip.port.receive(second, source)
    assert dict(sip.service.registrar.counts) != counts
