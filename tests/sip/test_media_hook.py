"""
The proxy's SDP hook (communigate.sip.media_hook): which calls go through
the media relay, their SDP rewritten both ways, re-INVITEs and late offers
followed, release on BYE, CANCEL and failures, 488 for SDP it cannot read,
500 when no relay can be had.  Driven through the real SIP service on a
memory reactor (the `sip` harness): UDP played in, relay ports included.
"""

import pytest

from communigate.media.latch import Drop
from communigate.media.rtp import RTPPacket
from communigate.media.sdp import parse_sdp
from communigate.network import NetworkSettings
from communigate.media.relay_policy import Party, relay_reason
from communigate.sip.message import Request, Response, make_response, parse_message
from communigate.sip.proxy_rules import cancel_for

CALLER = ("127.0.0.1", 5070)  # the caller's NAT as packets show it
BOB = ("127.0.0.1", 5080)
NATTED_VIA = "10.0.0.5:5070"


def sdp(address, port, extra=""):
    return (
        f"v=0\r\no=- 1 1 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    ).encode()


def invite(sip, *, via=NATTED_VIA, body=None, call_id="relay-1@10.0.0.5", cseq=1, method="INVITE",
           to_tag=None, from_tag="ft1", uri="sip:bob@example.com", content_type="application/sdp", contact=None):
    """A request from carol@example.net (no authentication to a local user), Via as given."""
    body = sdp("10.0.0.5", 4000) if body is None else body
    data = sip.request(
        method, uri, user="carol", domain="example.net", call_id=call_id, cseq=cseq, from_tag=from_tag,
        to_tag=to_tag, body=body, content_type=content_type if body else None, source=CALLER,
        to="sip:bob@example.com",
        headers=[("Contact", contact or f"<sip:carol@{via.split(':')[0]}:5070>")],
    )
    return data.replace(f"UDP {CALLER[0]}:{CALLER[1]};".encode(), f"UDP {via};".encode(), 1)


def forwarded(sip, to=BOB):
    requests = [m for m in sip.take(to) if isinstance(m, Request)]
    assert requests, "nothing forwarded"
    return requests[-1]


def responses(sip, to=CALLER):
    return [m for m in sip.take(to) if isinstance(m, Response)]


def media_of(message):
    description = parse_sdp(message.body)
    return description.connection.host, description.media[0].port


def relays(sip):
    return sip.core.media_relay.sessions()


def port(sip, number):
    (found,) = [p for p in sip.reactor.udp_ports if p.getHost().port == number and p.listening]
    return found


@pytest.fixture
def call(sip):
    """bob registered (not behind NAT) at 127.0.0.1:5080."""
    assert sip.register("bob", BOB).status == 200
    sip.take()
    return sip


def answer(sip, request, status=200, body=None, to_tag="bobtag"):
    response = make_response(request, status, to_tag=to_tag,
                             headers=[("Contact", f"<sip:bob@{BOB[0]}:{BOB[1]}>")]
                             + [("Record-Route", v) for v in request.headers.raw_values("Record-Route")])
    if body is not None:
        response = response.with_body(body, "application/sdp")
    sip.port.receive(bytes(response), BOB)


# -- the decision --------------------------------------------------------------------

LAN = NetworkSettings()  # empty LAN IPs: the private ranges


@pytest.mark.parametrize(
    "caller, callee, requested, reason",
    [
        (Party("192.168.1.5"), Party("192.168.1.6"), False, None),
        (Party("203.0.113.5", nat=True), Party("192.168.1.6"), False, "nat"),
        (Party("192.168.1.5"), Party("203.0.113.5", nat=True), False, "nat"),
        (Party("203.0.113.5", nat=True), Party("203.0.113.5", nat=True), False, None),  # the same NAT
        (Party("203.0.113.5", nat=True), Party("198.51.100.9", nat=True), False, "nat"),
        (Party("192.168.1.5"), Party("203.0.113.5"), False, "lan-wan"),
        (Party("203.0.113.5"), Party("198.51.100.9"), False, None),
        (Party("2001:db8::5"), Party("203.0.113.5"), False, "ipv4-ipv6"),
        (Party("203.0.113.5", media="2001:db8::5"), Party("198.51.100.9"), False, "ipv4-ipv6"),
        (Party("192.168.1.5"), Party("192.168.1.6"), True, "requested"),
        (Party("192.168.1.5"), Party("192.168.1.6"), lambda: True, "requested"),
    ],
)
def test_calls_are_relayed_for_nat_lan_wan_ip_versions_and_on_request(caller, callee, requested, reason):
    assert relay_reason(caller, callee, LAN, requested) == reason


def test_whether_it_was_requested_is_asked_only_when_nothing_else_decides():
    def asked():
        raise AssertionError("asked")

    assert relay_reason(Party("203.0.113.5", nat=True), Party("192.168.1.6"), LAN, asked) == "nat"


# -- a NATed caller ----------------------------------------------------------------------


def test_a_natted_callers_call_goes_through_the_relay_both_ways(call):
    call.send(invite(call).decode())
    outgoing = forwarded(call)
    (session,) = relays(call)
    assert session.reason == "nat"
    caller_leg, callee_leg = session.ports(0, 0), session.ports(1, 0)
    assert media_of(outgoing) == ("127.0.0.1", callee_leg)  # bob is told to send to the relay
    assert "Record-Route" in outgoing.headers

    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    (ok,) = [r for r in responses(call) if r.status == 200]
    assert media_of(ok) == ("127.0.0.1", caller_leg)  # and so is carol
    assert session.is_established

    # Media: carol (latched from wherever she sends) <-> bob (at his SDP address).
    packet = RTPPacket(0, 1, 160, 7, b"\xff" * 160).serialize()
    port(call, caller_leg).receive(packet, ("127.0.0.1", 40000))
    assert port(call, callee_leg).written == [(packet, ("127.0.0.1", 6000))]
    port(call, callee_leg).receive(packet, ("127.0.0.1", 6000))
    assert port(call, caller_leg).written == [(packet, ("127.0.0.1", 40000))]
    port(call, caller_leg).receive(packet, ("127.0.0.1", 40002))
    assert call.core.media_relay.drops[Drop.WRONG_SOURCE] == 1

    call.send(invite(call, method="BYE", cseq=2, to_tag="bobtag", body=b"",
                     uri=f"sip:bob@{BOB[0]}:{BOB[1]}",
                     ).decode().replace("Content-Length", f"Route: <sip:127.0.0.1:5060;lr>\r\nContent-Length", 1))
    assert forwarded(call).method == "BYE"
    assert relays(call) == [] and call.core.media_relay.released == {"bye": 1}
    assert not [p for p in call.reactor.udp_ports if p.getHost().port in (caller_leg, callee_leg) and p.listening]


def test_a_call_without_nat_on_the_lan_is_not_relayed(call):
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    outgoing = forwarded(call)
    assert media_of(outgoing) == ("127.0.0.1", 4000)
    assert relays(call) == []


def test_a_busy_callee_releases_the_relay(call):
    call.send(invite(call).decode())
    answer(call, forwarded(call), 486)
    assert [r.status for r in responses(call)][-1] == 486
    assert relays(call) == [] and call.core.media_relay.released == {"failure": 1}


def test_cancel_releases_the_relay(call):
    request = invite(call)
    call.send(request.decode())
    outgoing = forwarded(call)
    answer(call, outgoing, 180)
    call.send_message(cancel_for(parse_message(request)), CALLER)
    cancel = forwarded(call)
    assert cancel.method == "CANCEL"
    call.port.receive(bytes(make_response(cancel, 200, to_tag="bobtag")), BOB)
    answer(call, outgoing, 487)
    assert 487 in [r.status for r in responses(call)]
    assert relays(call) == [] and call.core.media_relay.released == {"cancel": 1}


def test_a_reinvite_from_the_callee_moves_its_media_and_keeps_the_ports(call):
    call.send(invite(call).decode())
    outgoing = forwarded(call)
    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    responses(call)
    (session,) = relays(call)
    caller_leg, callee_leg = session.ports(0, 0), session.ports(1, 0)
    # bob re-INVITEs carol (through our Record-Route) with a new address.
    reinvite = (
        f"INVITE sip:carol@10.0.0.5:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {BOB[0]}:{BOB[1]};branch=z9hG4bK-re1;rport\r\n"
        "Route: <sip:127.0.0.1:5060;lr>\r\nMax-Forwards: 70\r\n"
        "From: <sip:bob@example.com>;tag=bobtag\r\nTo: <sip:carol@example.net>;tag=ft1\r\n"
        f"Call-ID: relay-1@10.0.0.5\r\nCSeq: 7 INVITE\r\nContact: <sip:bob@{BOB[0]}:{BOB[1]}>\r\n"
        "Content-Type: application/sdp\r\n"
    )
    body = sdp("127.0.0.1", 7000)
    call.port.receive((reinvite + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, BOB)
    # The Contact of carol is 10.0.0.5 (behind her NAT): the re-INVITE goes there.
    (to_carol,) = [m for m in call.take(("10.0.0.5", 5070)) if isinstance(m, Request)]
    assert media_of(to_carol) == ("127.0.0.1", caller_leg)
    assert session.summary()["Callee"]["Expected"] == ["127.0.0.1:7000"]
    # carol's answer comes back pointed at bob's leg, the same port as before.
    response = make_response(to_carol, 200).with_body(sdp("10.0.0.5", 4000), "application/sdp")
    call.port.receive(bytes(response), CALLER)
    (ok,) = [r for r in call.take(BOB) if isinstance(r, Response) and r.status == 200]
    assert media_of(ok) == ("127.0.0.1", callee_leg)
    assert len(relays(call)) == 1


def test_a_late_offer_is_relayed_in_the_2xx_and_the_ack(call):
    call.send(invite(call, body=b"").decode())
    outgoing = forwarded(call)
    assert not outgoing.body
    (session,) = relays(call)
    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    (ok,) = [r for r in responses(call) if r.status == 200]
    assert media_of(ok) == ("127.0.0.1", session.ports(0, 0))
    ack = invite(call, method="ACK", to_tag="bobtag", body=sdp("10.0.0.5", 4000), uri=f"sip:bob@{BOB[0]}:{BOB[1]}")
    call.send(ack.decode().replace("Content-Type", "Route: <sip:127.0.0.1:5060;lr>\r\nContent-Type", 1))
    ack_out = forwarded(call)
    assert ack_out.method == "ACK" and media_of(ack_out) == ("127.0.0.1", session.ports(1, 0))
    assert session.summary()["Caller"]["NAT"] == "YES"


def test_a_2xx_retransmitted_after_its_transaction_is_rewritten_too(call):
    call.send(invite(call).decode())
    outgoing = forwarded(call)
    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    responses(call)
    (session,) = relays(call)
    call.reactor.advance(40)  # the client transaction is gone
    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    (again,) = responses(call)
    assert media_of(again) == ("127.0.0.1", session.ports(0, 0))


# -- bad SDP and no relay ------------------------------------------------------------------


def test_an_offer_that_does_not_parse_gets_488_when_it_must_be_relayed(call):
    call.send(invite(call, body=b"v=0\r\nthis is not SDP\r\n").decode())
    final = [r for r in responses(call) if r.status >= 200]
    assert final[-1].status == 488 and final[-1].reason.startswith("Bad SDP")
    assert call.take(BOB) == [] and relays(call) == []


def test_sdp_without_a_stream_the_relay_can_carry_passes_unchanged(call):
    body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=message 7394 TCP/MSRP *\r\n"
    call.send(invite(call, body=body).decode())
    assert forwarded(call).body == body
    no_address = b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    call.send(invite(call, body=no_address, call_id="relay-2@10.0.0.5").decode())
    assert forwarded(call).body == no_address
    assert relays(call) == [] and call.core.media_relay.released == {"no-media": 2}


def test_no_relay_to_be_had_answers_500_with_the_reason(call):
    call.cli("UPDATEMEDIASERVERSETTINGS {MaxRelays = 0;}")
    call.send(invite(call).decode())
    final = [r for r in responses(call) if r.status >= 200][-1]
    assert (final.status, final.reason) == (
        500, "Media relay unavailable: media relay limit of 0 sessions reached (MaxRelays)"
    )
    assert call.take(BOB) == []


# -- other reasons ----------------------------------------------------------------------------


def test_an_account_with_mediarelay_yes_is_always_relayed(call):
    call.cli("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    outgoing = forwarded(call)
    (session,) = relays(call)
    assert session.reason == "requested"
    assert media_of(outgoing) == ("127.0.0.1", session.ports(1, 0))
    assert session.summary()["Caller"]["NAT"] == "NO"


def test_a_call_from_the_lan_to_a_phone_outside_it_is_relayed_and_shown_the_wan_address(call):
    call.cli('SETLANIPS "127.0.0.1"')
    call.cli("UPDATENETWORK {WANAddress = 192.0.2.1;}")
    outside = ("127.0.0.2", 5090)
    assert call.register("bob", outside).status == 200
    call.take()
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    outgoing = forwarded(call, to=outside)
    (session,) = relays(call)
    assert session.reason == "lan-wan"
    # bob, outside the LAN, is shown the WAN address; carol the LAN one.
    assert media_of(outgoing) == ("192.0.2.1", session.ports(1, 0))
    assert session.address(0) == "127.0.0.1"


def test_a_callee_behind_nat_is_relayed_and_latched_from_wherever_it_sends(sip):
    behind = register_natted_phone(sip)  # bob's NAT; his Via and SDP say 10.0.0.9
    sip.send(invite(sip, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    outgoing = forwarded(sip, to=behind)  # over the flow bob registered from
    (session,) = relays(sip)
    assert session.reason == "nat"
    sip.port.receive(bytes(make_response(outgoing, 200, to_tag="bobtag").with_body(
        sdp("10.0.0.9", 6000), "application/sdp")), behind)
    (ok,) = [r for r in responses(sip) if r.status == 200]
    caller_leg, callee_leg = session.ports(0, 0), session.ports(1, 0)
    assert media_of(ok) == ("127.0.0.1", caller_leg)
    assert session.summary()["Callee"]["NAT"] == "YES" and session.summary()["Caller"]["NAT"] == "NO"
    packet = RTPPacket(0, 1, 160, 7, b"\xff" * 160).serialize()
    port(sip, caller_leg).receive(packet, ("127.0.0.1", 4000))  # bob has not sent: nowhere to go
    assert sip.core.media_relay.drops[Drop.NO_DESTINATION] == 1
    port(sip, callee_leg).receive(packet, ("127.0.0.1", 61000))  # bob's NAT mapping
    assert port(sip, caller_leg).written == [(packet, ("127.0.0.1", 4000))]
    port(sip, caller_leg).receive(packet, ("127.0.0.1", 4000))
    assert port(sip, callee_leg).written == [(packet, ("127.0.0.1", 61000))]


def test_an_ipv6_caller_gets_an_ipv6_leg_and_the_ipv4_callee_an_ipv4_one(call):
    call.cli('UPDATEMEDIASERVERSETTINGS {IPv6Address = "::1";}')
    body = (b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\n")
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=body).decode())
    outgoing = forwarded(call)
    (session,) = relays(call)
    assert session.reason == "ipv4-ipv6"
    assert media_of(outgoing) == ("127.0.0.1", session.ports(1, 0))
    answer(call, outgoing, 200, sdp("127.0.0.1", 6000))
    (ok,) = [r for r in responses(call) if r.status == 200]
    assert b"c=IN IP6 ::1\r\n" in ok.body
    assert media_of(ok) == ("::1", session.ports(0, 0))
    assert port(call, session.ports(0, 0)).getHost().host == "::1"


def register_natted_phone(sip, behind=("127.0.0.1", 5090)):
    """bob's second phone, behind NAT: its Via and Contact say 10.0.0.9."""
    request = sip.request
    sip.request = lambda *a, **k: request(*a, **k).replace(b"UDP 127.0.0.1:5090;", b"UDP 10.0.0.9:5060;", 1)
    assert sip.register("bob", behind, contact="<sip:bob@10.0.0.9:5060>").status == 200
    sip.request = request
    sip.take()
    return behind


def test_each_forked_branch_is_judged_and_the_answering_one_becomes_the_callee(call):
    behind = register_natted_phone(call)
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    lan_phone, natted_phone = forwarded(call, to=BOB), forwarded(call, to=behind)
    (session,) = relays(call)
    assert media_of(lan_phone) == ("127.0.0.1", 4000)  # on the LAN with the caller: direct
    assert media_of(natted_phone) == ("127.0.0.1", session.ports(1, 0))
    call.port.receive(bytes(make_response(natted_phone, 200, to_tag="phone2").with_body(
        sdp("10.0.0.9", 6000), "application/sdp")), behind)
    (ok,) = [r for r in responses(call) if r.status == 200]
    assert media_of(ok) == ("127.0.0.1", session.ports(0, 0))
    assert session.summary()["Callee"]["NAT"] == "YES" and session.notes.callee.nat
    assert relays(call) == [session]


def test_an_unrelayed_branch_answering_releases_the_relay(call):
    behind = register_natted_phone(call)
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    lan_phone, _ = forwarded(call, to=BOB), forwarded(call, to=behind)
    answer(call, lan_phone, 200, sdp("127.0.0.1", 6000))
    (ok,) = [r for r in responses(call) if r.status == 200]
    assert media_of(ok) == ("127.0.0.1", 6000)
    assert relays(call) == [] and call.core.media_relay.released == {"unused": 1}


def test_a_call_spiralling_back_through_the_server_is_relayed_once_and_kept(call):
    call.cli("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
    call.send(invite(call, via=f"{CALLER[0]}:{CALLER[1]}", body=sdp("127.0.0.1", 4000)).decode())
    outer = forwarded(call)
    (session,) = relays(call)
    callee_leg = session.ports(1, 0)
    # The INVITE comes back (a forwarding rule out to a name that is this
    # server): same Call-ID and tag, SDP already naming the relay.
    again = bytes(outer).replace(b"INVITE sip:bob@127.0.0.1:5080 ", b"INVITE sip:bob@example.com ", 1)
    call.port.receive(again, ("127.0.0.1", 5062))
    inner = forwarded(call)
    assert inner.call_id == outer.call_id and len(inner.headers.raw_values("Via")) == 3
    assert media_of(inner) == ("127.0.0.1", callee_leg)  # not relayed into itself
    assert relays(call) == [session] and call.core.media_relay.loops == 1
    # bob answers the inner pass; its ending does not release the call's relay.
    answer(call, inner, 200, sdp("127.0.0.1", 6000))
    assert relays(call) == [session]
