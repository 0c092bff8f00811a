"""
The RFC 4475 torture messages (../shared/rfc4475-torture/, byte-exact) against
the sans-IO message layer, driven by MANIFEST.tsv.

Per group:

- parser-valid: every message parses, and serialize -> parse gives an equal
  object; the facts each case is about are checked in FACTS.
- parser-invalid: rejected with SIPParseError and the status the manifest
  names, or tolerated where it says "reject (or tolerate)"; DECISIONS records
  which, per case.  The two responses (scalarlg, bigcode) fail to parse, which
  callers turn into a silent drop.
- transaction / application / backward-compat: the verdict belongs to the
  transaction layer, proxy, registrar or UAS; the parser accepts the message
  and FACTS records what those layers need (Max-Forwards 0, the unknown scheme,
  the Require tags...).  Three of them carry faults that already make the
  message unanswerable by any layer, and the parser rejects those with the
  manifest's 400: insuf (missing Call-ID/From/To), multi01 (repeated
  single-value headers) and mcl01 (two Content-Lengths).
"""

import csv
from pathlib import Path

import pytest

from communigate.sip.headers import parse_auth_params
from communigate.sip.message import (
    Request,
    Response,
    SIPParseError,
    make_response,
    parse_message,
    serialize,
)
from communigate.sip.uri import AbsoluteURI, SIPURI, parse_uri, uri_equal

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "rfc4475-torture"
if not TORTURE.exists():  # pragma: no cover - the checkout lives elsewhere
    TORTURE = Path("/work/shared/rfc4475-torture")


def manifest():
    with open(TORTURE / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = manifest()

# What the parser does with each message that it does not accept as is:
# (status, words the reason phrase must contain).  A case absent here parses.
DECISIONS = {
    # parser-invalid, "reject"
    "badinv01.dat": (400, "Via"),
    "clerr.dat": (400, "Content-Length"),
    "ncl.dat": (400, "Content-Length"),
    "scalar02.dat": (400, "CSeq"),
    "scalarlg.dat": (400, "CSeq"),  # a response: callers drop it
    "quotbal.dat": (400, "To"),
    "ltgtruri.dat": (400, "Request-URI"),
    "lwsruri.dat": (400, "Request-Line"),
    "lwsstart.dat": (400, "Request-Line"),
    "trws.dat": (400, "Request-Line"),
    "badvers.dat": (505, "Version"),
    "mismatch01.dat": (400, "CSeq"),
    "mismatch02.dat": (400, "CSeq"),  # 400 is acceptable; 501 would need the method table
    "bigcode.dat": (400, "Status-Code"),  # a response: callers drop it
    # parser-invalid, "reject (or tolerate)": rejected
    "escruri.dat": (400, "Request-URI"),  # a proxy must neither keep nor use the headers
    "baddn.dat": (400, "From"),  # a proxy must not forward the error
    # application group, rejected already by the parser with the manifest's 400
    "insuf.dat": (400, "Missing"),
    "multi01.dat": (400, "Multiple"),
    "mcl01.dat": (400, "Content-Length"),
}
# parser-invalid, "reject (or tolerate)": tolerated
TOLERATED = {
    "baddate.dat": "Date is opaque text; a proxy forwards it unchanged",
    "regbadct.dat": "the unambiguous addr-spec is read as if in <>, written with <>",
    "badaspec.dat": "the spaces inside <> are dropped",
}


def load(name: str) -> bytes:
    return (TORTURE / name).read_bytes()


def test_the_manifest_lists_all_49_files_and_each_has_a_decision():
    files = {row["file"] for row in ROWS}
    assert len(ROWS) == 49
    assert files == {p.name for p in TORTURE.glob("*.dat")}
    for row in ROWS:
        if row["group"] == "parser-invalid":
            assert row["file"] in DECISIONS or row["file"] in TOLERATED
            if row["verdict"] in ("reject", "drop"):
                assert row["file"] in DECISIONS


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_torture_message(row):
    data = load(row["file"])
    name = row["file"]
    if name in DECISIONS:
        status, words = DECISIONS[name]
        with pytest.raises(SIPParseError) as info:
            parse_message(data)
        error = info.value
        assert error.status == status
        assert words in error.reason
        if row["expected"].startswith("discard"):
            assert error.is_request is False
        else:
            assert error.is_request is True
            assert str(status) in row["expected"] or "400" in row["expected"]
            # a transport can still answer: the partial carries the headers
            response = make_response(error.partial, error.status, error.reason)
            wire = serialize(response)
            assert wire.startswith(f"SIP/2.0 {status} {error.reason}\r\n".encode())
        return
    message = parse_message(data)
    again = parse_message(serialize(message))
    assert again == message
    assert serialize(again) == serialize(message)
    check = FACTS.get(name)
    assert check is not None, f"no facts recorded for {name}"
    check(message)


# --------------------------------------------------------------- the facts
def wsinv(m: Request):
    assert m.method == "INVITE"
    assert m.uri.parameters == (("unknownparam", None),)
    assert m.to().tag == "1918181833n"
    assert m.from_().display_name == 'J Rosenberg \\"'
    assert m.from_().tag == "98asjd8"
    assert m.max_forwards() == 68
    assert (m.cseq().number, m.cseq().method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.vias()] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    (contact,) = m.contacts()
    assert contact.display_name == 'Quoted string ""'
    assert contact.parameters == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert contact.q == 0.33
    (route,) = m.routes()
    assert route.uri.lr and route.uri.parameter("unknownwith") == "value"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")
    wire = serialize(m)
    assert b"\r\nMax-Forwards: 0068\r\n" in wire and b"\r\nContent-Length: 150\r\n\r\nv=0" in wire


def intmeth(m: Request):
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == method and m.cseq().method == method
    assert m.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.top_via().branch == "z9hG4bK-.!%66*_+`'~"
    assert m.to().display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.to().uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.from_().display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_().parameter("fromParam''~+*_!.-%") == '"работающий"'
    assert m.from_().tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def esc01(m: Request):
    assert m.uri.user == "sips:user@example.com"
    assert uri_equal(m.uri, SIPURI("sip", "sips:user@example.com", None, "example.net"))
    assert m.to().uri.user == "user"
    assert uri_equal(m.to().uri, parse_uri("sip:user@example.com"))
    assert m.from_().uri.user == "I have spaces"
    (contact,) = m.contacts()
    assert contact.uri.user == "caller"
    assert contact.uri.lr
    assert contact.uri.parameter("name") == "value%41"
    assert uri_equal(contact.uri, parse_uri("sip:caller@host5.example.net;lr;name=value%2541"))


def escnull(m: Request):
    assert m.to().uri.user == "null-\x00-null"
    assert m.from_().uri.user == "null-\x00-null"
    first, second = m.contacts()
    assert (first.uri.user, second.uri.user) == ("\x00", "\x00\x00")
    assert not uri_equal(first.uri, second.uri)
    assert "%00%00@" in str(second.uri)


def esc02(m: Request):
    assert m.method == "RE%47IST%45R" and m.method != "REGISTER"
    assert m.to().display_name == "%Z%45"
    assert m.top_via().branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.host for c in m.contacts()] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def lwsdisp(m: Request):
    assert m.from_().display_name == "caller"
    assert m.from_().tag == "323"


def longreq(m: Request):
    assert len(m.vias()) == 34
    assert [v.host for v in m.vias()[:3]] == ["sip33.example.com", "sip32.example.com", "sip31.example.com"]
    assert m.vias()[-1].received == "192.0.2.5"
    assert m.to().display_name.startswith("I have a user name of extremeextreme")
    assert m.to().uri.port == 6000
    assert len(m.to().uri.parameters) == 3
    assert m.from_().tag.endswith("982424") and len(m.from_().tag) == 155
    assert len(m.call_id) > 100
    assert len(m.body) == 150


def dblreq(m: Request):
    assert m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert b"INVITE" not in serialize(m)


def semiuri(m: Request):
    assert m.uri.user == "user;par=u@example.net"
    assert m.uri.host == "example.com" and m.uri.parameters == ()
    assert str(m.uri) == "sip:user;par=u%40example.net@example.com"
    assert m.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed",
        "multipart/signed", "message/sip", "message/sipfrag",
    ]


def transports(m: Request):
    assert [v.transport for v in m.vias()] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.top_via().host == "t1.example.com"
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def mpart01(m: Request):
    assert m.method == "MESSAGE"
    assert len(m.body) == 553
    assert b"\x00" in m.body and m.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert m.top_via().has_rport and m.top_via().rport is None
    assert m.routes()[0].uri.port == 5080


def unreason(m: Response):
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def noreason(m: Response):
    assert (m.status, m.reason) == (100, "")
    assert serialize(m).startswith(b"SIP/2.0 100 \r\n")


def baddate(m: Request):
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def regbadct(m: Request):
    (contact,) = m.contacts()
    assert contact.uri.headers == (("Route", "<sip:sip.example.com>"),)
    assert str(contact) == "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"


def badaspec(m: Request):
    assert m.to().display_name == "Watson, Thomas"
    assert str(m.to().uri) == "sip:t.watson@example.org"
    assert m.from_().display_name == "Bell, Alexander"


def badbranch(m: Request):
    assert m.top_via().branch == "z9hG4bK"
    assert not m.top_via().is_rfc3261_branch  # the transaction layer decides


def unkscm(m: Request):
    assert m.uri == AbsoluteURI("nobodyknowsthisscheme", "totallyopaquecontent")
    assert not isinstance(m.uri, SIPURI)  # the proxy answers 416


def novelsc(m: Request):
    assert m.uri == AbsoluteURI("soap.beep", "//192.0.2.103:3002")


def unksm2(m: Request):
    assert m.to().uri == AbsoluteURI("isbn", "2983792873")
    assert m.from_().uri == AbsoluteURI("http", "//www.example.com")
    assert m.from_().tag == "3234233"
    assert m.contacts()[0].uri == AbsoluteURI("name", "John_Smith")


def bext01(m: Request):
    assert m.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def invut(m: Request):
    assert m.content_type == "application/unknownformat"
    assert m.content_length == 40 and m.body.startswith(b"<audio>")


def regaut01(m: Request):
    assert parse_auth_params(m.headers.get("Authorization")) == (
        "NoOneKnowsThisScheme", {"opaque-data": "here"},
    )


def bcast(m: Response):
    assert m.status == 200
    assert [v.host for v in m.vias()] == ["192.0.2.198", "255.255.255.255"]


def zeromf(m: Request):
    assert m.max_forwards() == 0


def cparam01(m: Request):
    (contact,) = m.contacts()
    assert str(contact.uri) == "sip:+19725552222@gw1.example.net"
    assert contact.parameters == (("unknownparam", None),)


def cparam02(m: Request):
    (contact,) = m.contacts()
    assert contact.uri.parameters == (("unknownparam", None),)
    assert contact.parameters == ()


def regescrt(m: Request):
    (contact,) = m.contacts()
    assert contact.uri.headers == (("Route", "<sip:sip.example.com>"),)


def sdp01(m: Request):
    assert m.headers.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert m.content_type == "application/sdp"


def inv2543(m: Request):
    assert m.top_via().branch is None
    assert m.from_().tag is None
    assert m.max_forwards() is None
    assert m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n") and len(m.body) == 105
    assert m.record_routes()[0].uri.maddr == "ss1.example.com"
    # without <> the ';user=phone' is a header parameter (RFC 3261 §20.10)
    assert m.to().parameter("user") == "phone" and m.to().uri.parameters == ()
    assert m.from_().uri.parameter("user") == "phone"


FACTS = {f"{fn.__name__}.dat": fn for fn in (
    wsinv, intmeth, esc01, escnull, esc02, lwsdisp, longreq, dblreq, semiuri,
    transports, mpart01, unreason, noreason, baddate, regbadct, badaspec,
    badbranch, unkscm, novelsc, unksm2, bext01, invut, regaut01, bcast, zeromf,
    cparam01, cparam02, regescrt, sdp01, inv2543,
)}


def test_the_rejected_application_cases_keep_what_a_400_needs():
    for name in ("insuf.dat", "multi01.dat", "mcl01.dat"):
        with pytest.raises(SIPParseError) as info:
            parse_message(load(name))
        partial = info.value.partial
        assert partial.top_via() is not None
        assert len(partial.headers.raw_values("CSeq")) >= 1
        wire = serialize(make_response(partial, 400, info.value.reason))
        assert wire.count(b"\r\nCSeq: ") == 1  # make_response copies the first


def test_a_rejected_response_has_no_request_to_answer():
    for name in ("scalarlg.dat", "bigcode.dat"):
        with pytest.raises(SIPParseError) as info:
            parse_message(load(name))
        assert info.value.is_request is False
        assert not isinstance(info.value.partial, Request)


def test_the_unknown_version_error_keeps_the_headers_for_the_505():
    with pytest.raises(SIPParseError) as info:
        parse_message(load("badvers.dat"))
    response = make_response(info.value.partial, 505)
    assert isinstance(response, Response)
    assert response.top_via().protocol == "SIP/7.0"
    assert response.call_id == "badvers.31417@c.example.com"
