"""
The stateful proxy's pure rules: request checks (with RFC 4475 torture
cases), loop detection, request -> Signal -> outgoing request, CANCEL and
ACK, responses both ways, Record-Route and relay policy.
"""

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from communigate.signal.model import Response as SignalResponse, Signal, Submitter, response
from communigate.sip.headers import Via, parse_name_addr
from communigate.sip.message import parse_message, serialize
from communigate.sip.proxy_rules import (
    RELAY_DENIED,
    Relay,
    ack_for_failure,
    branch_for,
    cancel_for,
    caller_is_local,
    check_request,
    is_looping,
    needs_record_route,
    next_hop,
    outgoing_request,
    preprocess_route,
    refuse,
    relay_verdict,
    server_to_tag,
    signal_response,
    sip_response,
    to_signal,
)
from communigate.sip.uri import parse_uri

TORTURE = Path(__file__).resolve().parents[3] / "shared" / "rfc4475-torture"
if not TORTURE.exists():  # pragma: no cover - the checkout lives elsewhere
    TORTURE = Path("/work/shared/rfc4475-torture")

US = frozenset({("proxy.example.com", 5060), ("192.0.2.10", 5060)})
DOMAINS = frozenset({"example.com"})
ID = "node-1-secret"
SUBMITTER = Submitter("sip", None, ("198.51.100.7", 5060))


def torture(name):
    return parse_message((TORTURE / f"{name}.dat").read_bytes())


def msg(text: str, body: bytes = b""):
    head = text.strip("\n").replace("\n", "\r\n")
    return parse_message(f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)


def invite(extra="", uri="sip:bob@example.com", to="<sip:bob@example.com>", method="INVITE"):
    return msg(
        f"""{method} {uri} SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKabc1;received=198.51.100.7
From: "Alice" <sip:alice@atlanta.net>;tag=a1
To: {to}
Call-ID: call-1@atlanta.net
CSeq: 7 {method}
Max-Forwards: 70
{extra}X-Custom: ;;,,;;,;
Content-Type: application/sdp""".replace("\n\n", "\n"),
        b"v=0\r\n",
    )


def our_via(request, index=0, host="proxy.example.com"):
    return Via("UDP", host, 5060, (("branch", branch_for(request, ID, index)),))


def forward(request, **kw):
    signal = to_signal(request, submitter=SUBMITTER, local_hosts=US, local_domains=DOMAINS)
    target = kw.pop("target_uri", signal.targets[0])
    return outgoing_request(signal, target_uri=target, via=our_via(request), **kw)


def back_to_us(forwarded, uri=None):
    """The forwarded request as it reaches us again through another hop."""
    hop_via = "SIP/2.0/UDP hop.example.org;branch=z9hG4bKhop"
    hop = forwarded.headers.with_added("Via", hop_via, first=True)
    request = forwarded.with_headers(hop)
    if uri is not None:
        request = request.with_uri(parse_uri(uri))
    return parse_message(serialize(request))


# ------------------------------------------------------------ check_request
def test_max_forwards_zero_gets_483_unless_the_request_is_for_us():
    request = torture("zeromf")
    answer = check_request(request, local_hosts=US, our_id=ID)
    assert (answer.status, answer.reason) == (483, "Too Many Hops")
    assert answer.to().tag == server_to_tag(request)
    assert check_request(request, local_hosts=US, our_id=ID, for_us=True) is None


@pytest.mark.parametrize("name", ["unkscm", "novelsc"])
def test_request_uri_of_another_scheme_gets_416(name):
    answer = check_request(torture(name), local_hosts=US, our_id=ID)
    assert (answer.status, answer.reason) == (416, "Unsupported URI Scheme")


def test_proxy_require_gets_420_listing_its_tags_and_require_passes_through():
    request = torture("bext01")
    answer = check_request(request, local_hosts=US, our_id=ID)
    assert answer.status == 420
    assert answer.headers.get("Unsupported") == "noProxiesSupportThis, norDoAnyProxiesSupportThis"
    tags = {"noproxiessupportthis", "nordoanyproxiessupportthis"}
    assert check_request(request, local_hosts=US, our_id=ID, supported=tags) is None


def test_a_request_for_us_checks_require_instead_of_proxy_require():
    answer = check_request(torture("bext01"), local_hosts=US, our_id=ID, for_us=True)
    assert answer.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"


def test_ordinary_sip_and_tel_requests_may_proceed():
    assert check_request(invite(), local_hosts=US, our_id=ID) is None
    assert check_request(invite(uri="tel:+15551234"), local_hosts=US, our_id=ID) is None


def test_a_request_coming_back_unchanged_gets_482():
    looped = back_to_us(forward(invite()))
    assert check_request(looped, local_hosts=US, our_id=ID).status == 482


# ---------------------------------------------------------- loop detection
def test_branch_is_rfc3261_stable_and_distinct_per_index():
    request = invite()
    branch = branch_for(request, ID)
    assert branch.startswith("z9hG4bK") and branch.endswith(".0")
    assert branch_for(parse_message(serialize(request)), ID) == branch
    assert branch_for(request, ID, 1) != branch
    assert branch_for(request, "another-node") != branch
    assert branch_for(invite(to="<sip:bob@example.com>;tag=b2"), ID) != branch


def test_a_spiral_through_us_is_not_a_loop():
    forwarded = forward(invite())
    assert is_looping(back_to_us(forwarded), US, ID)
    assert not is_looping(back_to_us(forwarded, uri="sip:bob@pc33.example.com"), US, ID)


def test_our_hash_under_someone_elses_sent_by_is_not_our_loop():
    request = invite()
    signal = to_signal(request, submitter=SUBMITTER, local_hosts=US)
    other = Via("UDP", "elsewhere.example.net", 5060, (("branch", branch_for(request, ID)),))
    forwarded = outgoing_request(signal, target_uri=signal.targets[0], via=other)
    assert not is_looping(back_to_us(forwarded), US, ID)
    assert not is_looping(invite(), US, ID)


# ------------------------------------------------------------ to_signal
def test_a_signal_carries_the_request_with_content_type_apart():
    request = invite()
    signal = to_signal(request, submitter=SUBMITTER, local_hosts=US, lifetime=10.0)
    assert signal.method == "INVITE" and signal.targets == ("sip:bob@example.com",)
    assert (signal.from_address, signal.to_address) == ("alice@atlanta.net", "bob@example.com")
    assert signal.call_id == "call-1@atlanta.net" and signal.lifetime == 10.0
    assert signal.body == b"v=0\r\n" and signal.content_type == "application/sdp"
    assert [n for n, _ in signal.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "X-Custom"
    ]
    assert signal.header("Max-Forwards") == "70" and signal.header("X-Custom") == ";;,,;;,;"
    assert not signal.in_dialog and signal.submitter == SUBMITTER


def test_a_request_with_a_to_tag_is_in_dialog():
    signal = to_signal(invite(to="<sip:bob@example.com>;tag=b2"), submitter=SUBMITTER)
    assert signal.in_dialog


def test_our_routes_are_popped_and_a_remaining_route_makes_it_pre_routed():
    request = invite(
        "Route: <sip:proxy.example.com;lr>, <sip:example.com:5070;lr>\n"
        "Route: <sip:p2.example.net;lr>\n",
        uri="sip:bob@pc33.example.net",
    )
    signal = to_signal(request, submitter=SUBMITTER, local_hosts=US, local_domains=DOMAINS)
    assert signal.targets == ("sip:bob@pc33.example.net",) and signal.in_dialog
    assert [v for n, v in signal.headers if n == "Route"] == ["<sip:p2.example.net;lr>"]
    assert next_hop(signal) == parse_uri("sip:p2.example.net;lr")


def test_when_only_our_route_was_there_the_request_uri_is_the_next_hop():
    request = invite("Route: <sip:192.0.2.10;lr>\n", uri="sip:bob@pc33.example.net:5070")
    signal = to_signal(request, submitter=SUBMITTER, local_hosts=US)
    assert signal.header("Route") is None and not signal.in_dialog
    assert next_hop(signal) == parse_uri("sip:bob@pc33.example.net:5070")


def test_a_strict_routers_rewrite_is_undone():
    request = invite(
        "Route: <sip:p2.example.net;lr>, <sip:bob@pc33.example.net>\n",
        uri="sip:proxy.example.com;lr",
    )
    fixed = preprocess_route(request, local_hosts=US)
    assert fixed.uri == parse_uri("sip:bob@pc33.example.net")
    assert fixed.headers.get_all("Route") == ["<sip:p2.example.net;lr>"]


def test_other_schemes_in_from_and_to_are_kept_as_uri_text():
    signal = to_signal(torture("unksm2"), submitter=SUBMITTER)
    assert (signal.from_address, signal.to_address) == ("http://www.example.com", "isbn:2983792873")
    tel = to_signal(invite(to="<tel:+1-555-123>"), submitter=SUBMITTER)
    assert tel.to_address == "+1555123@telnum"


# ------------------------------------------------------ outgoing_request
def test_forwarded_request_has_our_via_on_top_and_one_hop_less():
    request = invite()
    out = forward(request, target_uri="sip:bob@192.0.2.55:5062")
    assert str(out.uri) == "sip:bob@192.0.2.55:5062"
    vias = [str(v) for v in out.vias()]
    assert vias == [str(our_via(request))] + [str(v) for v in request.vias()]
    assert out.max_forwards() == 69
    assert out.body == b"v=0\r\n" and out.content_type == "application/sdp"
    assert out.headers.get("X-Custom") == ";;,,;;,;"


def test_a_signal_without_max_forwards_or_sip_headers_gets_them():
    signal = Signal("MESSAGE", ("bob@example.com",), "alice@example.com", "bob@example.com",
                    "xmpp-1", Submitter("xmpp"), body=b"hi", content_type="text/plain")
    via = Via("UDP", "proxy.example.com")
    out = outgoing_request(signal, target_uri="sip:bob@192.0.2.55", via=via)
    out = parse_message(serialize(out))
    assert out.max_forwards() == 70 and out.call_id == "xmpp-1"
    assert str(out.from_().uri) == "sip:alice@example.com" and out.from_().tag
    assert str(out.to().uri) == "sip:bob@example.com" and out.to().tag is None
    assert str(out.cseq()) == "1 MESSAGE" and out.content_type == "text/plain"


def test_path_routes_come_first_and_a_strict_next_hop_takes_the_request_uri():
    request = invite("Route: <sip:p2.example.net;lr>\n", uri="sip:bob@example.org")
    out = forward(request, route_set=[parse_name_addr("<sip:edge.example.com;lr>")])
    assert out.headers.get_all("Route") == ["<sip:edge.example.com;lr>", "<sip:p2.example.net;lr>"]
    strict = forward(invite("Route: <sip:strict.example.net>\n", uri="sip:bob@example.org"))
    assert strict.uri == parse_uri("sip:strict.example.net")
    assert strict.headers.get_all("Route") == ["<sip:bob@example.org>"]


def test_record_route_on_top_for_initial_dialog_creating_requests_only():
    rr = "<sip:192.0.2.10:5060>"
    existing = invite("Record-Route: <sip:p0.example.net;lr>\n")
    out = forward(existing, record_route=rr)
    assert out.headers.get_all("Record-Route") == [
        "<sip:192.0.2.10:5060;lr>", "<sip:p0.example.net;lr>"
    ]
    double = forward(invite(), record_route=("<sip:192.0.2.10;transport=tcp>", rr))
    assert [str(r) for r in double.record_routes()] == [
        "<sip:192.0.2.10;transport=tcp;lr>", "<sip:192.0.2.10:5060;lr>"
    ]
    assert "Record-Route" not in forward(invite(method="MESSAGE"), record_route=rr).headers
    reinvite = invite(to="<sip:bob@example.com>;tag=b2")
    assert "Record-Route" not in forward(reinvite, record_route=rr).headers
    assert needs_record_route(invite()) and needs_record_route(invite(method="SUBSCRIBE"))
    assert not needs_record_route(reinvite) and not needs_record_route(invite(method="MESSAGE"))


def test_cancel_and_failure_ack_follow_the_sent_invite():
    sent = parse_message(serialize(forward(invite("Route: <sip:p2.example.net;lr>\n"))))
    cancel = cancel_for(sent)
    assert cancel.method == "CANCEL" and cancel.uri == sent.uri
    assert cancel.vias() == (sent.top_via(),) and str(cancel.cseq()) == "7 CANCEL"
    assert cancel.headers.get_all("Route") == sent.headers.get_all("Route")
    assert (cancel.call_id, cancel.from_(), cancel.to()) == (sent.call_id, sent.from_(), sent.to())
    failure = msg(
        "SIP/2.0 486 Busy Here\n"
        + "".join(f"{n}: {v}\n" for n, v in sent.headers if n in ("Via", "From", "Call-ID", "CSeq"))
        + "To: <sip:bob@example.com>;tag=busy9"
    )
    ack = ack_for_failure(sent, failure)
    assert ack.method == "ACK" and ack.vias() == (sent.top_via(),) and str(ack.cseq()) == "7 ACK"
    assert ack.to().tag == "busy9" and ack.headers.get_all("Route") == sent.headers.get_all("Route")
    parse_message(serialize(ack))


# -------------------------------------------------------------- responses
def downstream(forwarded: object, status="180 Ringing", extra="", body=b""):
    vias = "".join(f"Via: {v}\n" for v in forwarded.headers.raw_values("Via"))
    return msg(
        f"""SIP/2.0 {status}
{vias}From: "Alice" <sip:alice@atlanta.net>;tag=a1
To: <sip:bob@example.com>;tag=b-tag
Call-ID: call-1@atlanta.net
CSeq: 7 INVITE
Contact: <sip:bob@192.0.2.55>
Record-Route: <sip:192.0.2.10;lr>
{extra}WWW-Authenticate: Digest realm="x", nonce="y\"""",
        body,
    )


def test_a_downstream_response_goes_upstream_with_the_original_vias():
    request = invite()
    reply = downstream(forward(request), "200 OK", "Content-Type: application/sdp\n", b"v=0\r\n")
    answer = signal_response(reply, origin="sip:bob@192.0.2.55")
    assert [n for n, _ in answer.headers].count("Via") == 1  # ours popped
    assert answer.code == 200 and answer.content_type == "application/sdp" and not answer.contacts
    up = parse_message(serialize(sip_response(request, answer)))
    assert up.headers.raw_values("Via") == request.headers.raw_values("Via")
    assert (up.status, up.reason, up.body) == (200, "OK", b"v=0\r\n")
    assert up.to().tag == "b-tag" and up.headers.get("Contact") == "<sip:bob@192.0.2.55>"
    assert up.headers.get("Record-Route") and up.headers.get("WWW-Authenticate")
    assert up.cseq() == request.cseq() and up.content_type == "application/sdp"


def test_responses_we_make_carry_one_stable_to_tag():
    request = invite()
    again = parse_message(serialize(request))
    made = [sip_response(request, response(c)) for c in (404, 480, 487, 408)]
    assert made[0].status == 404 and made[0].reason == "Not Found"
    assert {r.to().tag for r in made} == {server_to_tag(again)}
    assert server_to_tag(invite(method="MESSAGE")) != server_to_tag(request)
    assert sip_response(request, response(100)).to().tag is None
    denied = refuse(request, 403, RELAY_DENIED)
    assert (denied.reason, denied.to().tag) == ("Relaying denied", server_to_tag(request))


def test_redirect_contacts_are_given_best_first_and_written_back():
    request = invite()
    reply = downstream(forward(request), "302 Moved Temporarily",
                       "Contact: <sip:b@x.example>;q=0.2, <sip:c@y.example>;q=0.9\n")
    # no q is 1.0
    best_first = ("sip:bob@192.0.2.55", "sip:c@y.example", "sip:b@x.example")
    assert signal_response(reply).contacts == best_first
    made = sip_response(request, SignalResponse(302, contacts=("carol@example.org",)))
    assert made.reason == "Moved Temporarily"
    assert made.headers.get("Contact") == "<sip:carol@example.org>"


# ----------------------------------------------------------------- policy
LOCAL = DOMAINS.__contains__


@pytest.mark.parametrize(
    ("sender", "uri", "extra", "to_tag", "authenticated", "verdict"),
    [
        ("alice@atlanta.net", "sip:bob@example.com", "", "", False, Relay.ALLOW),
        ("alice@atlanta.net", "sip:bob@192.0.2.10", "", "", False, Relay.ALLOW),
        ("alice@atlanta.net", "sip:bob@biloxi.net", "", "", False, Relay.DENY),
        ("alice@atlanta.net", "tel:+15551234", "", "", False, Relay.DENY),
        ("carol@example.com", "sip:bob@biloxi.net", "", "", False, Relay.CHALLENGE),
        ("carol@example.com", "sip:bob@example.com", "", "", False, Relay.CHALLENGE),
        ("carol@example.com", "sip:bob@biloxi.net", "", "", True, Relay.ALLOW),
        ("alice@atlanta.net", "sip:bob@10.0.0.5", "Route: <sip:192.0.2.10;lr>\n", ";tag=t", False,
         Relay.ALLOW),
        ("alice@atlanta.net", "sip:bob@10.0.0.5", "Route: <sip:192.0.2.10;lr>\n", "", False,
         Relay.DENY),
        ("alice@atlanta.net", "sip:bob@10.0.0.5", "", ";tag=t", False, Relay.DENY),
    ],
)
def test_relay_policy(sender, uri, extra, to_tag, authenticated, verdict):
    request = invite(extra, uri=uri, to=f"<sip:bob@elsewhere.net>{to_tag}")
    request = request.with_headers(request.headers.with_replaced("From", f"<sip:{sender}>;tag=f"))
    got = relay_verdict(request, is_local_domain=LOCAL, local_hosts=US, authenticated=authenticated)
    assert got is verdict


def test_caller_is_local_by_from_host():
    assert not caller_is_local(invite(), DOMAINS)
    local = invite().headers.with_replaced("From", "<sip:carol@EXAMPLE.com>;tag=f")
    assert caller_is_local(invite().with_headers(local), LOCAL)
    assert not caller_is_local(torture("unksm2"), LOCAL)


# ------------------------------------------------------------- properties
TOKENS = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    call_id=TOKENS, cseq=st.integers(0, 2**32 - 1), from_tag=TOKENS,
    to_tag=st.none() | TOKENS, mf=st.integers(1, 255), body=st.binary(max_size=64),
    unknown=st.lists(st.tuples(TOKENS.map(lambda t: "X-" + t), VALUES), max_size=4),
)
def test_round_trip_keeps_dialog_identity_body_and_unknown_headers(
    call_id, cseq, from_tag, to_tag, mf, body, unknown
):
    tag = "" if to_tag is None else f";tag={to_tag}"
    extra = "".join(f"{n}: {v}\n" for n, v in unknown)
    request = msg(
        f"""MESSAGE sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 198.51.100.7;branch=z9hG4bK{call_id}
From: <sip:alice@atlanta.net>;tag={from_tag}
To: <sip:bob@example.com>{tag}
Call-ID: {call_id}
CSeq: {cseq} MESSAGE
Max-Forwards: {mf}
{extra}Content-Type: text/plain""".replace("\n\n", "\n"),
        body,
    )
    out = parse_message(serialize(forward(request)))
    for name in ("From", "To", "Call-ID", "CSeq"):
        assert out.headers.get(name) == request.headers.get(name)
    assert out.body == body and out.max_forwards() == mf - 1
    assert [(n, v) for n, v in out.headers if n.startswith("X-")] == [
        (n, v.strip()) for n, v in unknown
    ]
    assert is_looping(back_to_us(out), US, ID)
    assert not is_looping(back_to_us(out, uri="sip:bob@other.example.com"), US, ID)
    assert not is_looping(out, US, "not-our-id")
