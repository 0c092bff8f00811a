"""
Cost of the sans-IO SIP message layer on a typical authenticated REGISTER
(RFC 5626 Contact with +sip.instance, digest Authorization): parse,
parse + the accessors a registrar calls, the 200 OK built and serialized,
and stream framing.  Prints microseconds per message and messages per
second (best of several runs, one core).

    python benchmarks/sip_parse.py [MESSAGES]
"""

import sys
import timeit

from communigate.sip.framing import StreamFramer
from communigate.sip.headers import parse_auth_params
from communigate.sip.message import make_response, parse_message, serialize

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=456248\r\n'
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600"
    b';+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1\r\n'
    b'Authorization: Digest username="alice", realm="example.com", '
    b'nonce="ea9c8e88df84f1cec4341ae6cbe5a359", uri="sip:example.com", '
    b'response="dfe56131d1958046689d83306477ecc", algorithm=MD5, cnonce="0a4f113b", '
    b"qop=auth, nc=00000001\r\n"
    b"User-Agent: Example/1.0\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def registrar_view(data: bytes) -> bytes:
    """What a registrar does with the message layer for one REGISTER."""
    request = parse_message(data)
    request.to()
    request.contacts()
    request.expires()
    parse_auth_params(request.headers.get("Authorization"))
    response = make_response(
        request, 200, to_tag="8321234356",
        headers=[("Contact", request.headers.get("Contact")), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")],
    )
    return serialize(response)


def framed(data: bytes) -> None:
    StreamFramer().feed(data)


def varied(count: int) -> list[bytes]:
    """``count`` REGISTERs from distinct users, each with its own Call-ID,
    tag, branch and nonce: the URI cache sees new user URIs every time."""
    out = []
    for i in range(count):
        data = (
            REGISTER.replace(b"alice", b"user%d" % i)
            .replace(b"843817637684230", b"%015d" % (i * 7919))
            .replace(b"456248", b"%06d" % i)
            .replace(b"776asdhds", b"%09d" % i)
            .replace(b"192.0.2.10", b"10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255))
        )
        out.append(data)
    return out


def per_message(run, messages) -> float:
    def loop():
        for data in messages:
            run(data)

    loop()
    return min(timeit.repeat(loop, number=1, repeat=7)) / len(messages)


def main(count: int) -> None:
    cases = [
        ("parse_message", lambda: parse_message(REGISTER)),
        ("parse + serialize", lambda: serialize(parse_message(REGISTER))),
        ("registrar view (parse, To, Contact, Expires, auth, 200 OK, serialize)", lambda: registrar_view(REGISTER)),
        ("stream framing only", lambda: framed(REGISTER)),
    ]
    print(f"one typical REGISTER, {len(REGISTER)} octets, again and again; best of 7 runs of {count}")
    for label, run in cases:
        run()
        best = min(timeit.repeat(run, number=count, repeat=7)) / count
        print(f"  {label:72} {best * 1e6:7.1f} us  {1 / best:9,.0f}/s")
    messages = varied(max(count, 10_000))
    print(f"{len(messages)} REGISTERs from distinct users (URI cache misses), best of 7 passes")
    for label, run in (("parse_message", parse_message), ("registrar view", registrar_view)):
        best = per_message(run, messages)
        print(f"  {label:72} {best * 1e6:7.1f} us  {1 / best:9,.0f}/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
