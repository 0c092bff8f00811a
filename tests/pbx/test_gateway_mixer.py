"""
C{gatewayincoming{DEST,mixer}} on the memory reactor: the caller and the
called party meet in a two-party mixer room the ingress task owns; each
hears the other; either side's hang-up ends both calls and closes the room.
"""

from communigate.media.offer_answer import streams
from communigate.media.sdp import parse_sdp
from communigate.pbx.gateway import GatewayIncoming
from communigate.sip.message import make_response, serialize

from .conftest import TICK, PeerMedia, frequency_of, offer, tone

DESTINATION, DESTINATION_MEDIA = ("127.0.0.1", 5099), ("127.0.0.1", 42000)


def test_gatewayincoming_with_mixer_joins_caller_and_callee_in_a_room_of_its_own(pbx):
    destination, destination_media = DESTINATION, DESTINATION_MEDIA
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,mixer}#postmaster")
    pbx.invite("sip:incoming@example.com")
    (invite,) = [r for r in pbx.requests_to(destination) if r.method == "INVITE"]
    assert invite.from_().uri.user == "caller"
    pbx.port.receive(serialize(make_response(invite, 180, to_tag="far")), destination)
    pbx.turn()
    assert [r.status for r in pbx.responses() if r.status > 100] == [180]
    ok = make_response(invite, 200, to_tag="far", headers=[("Contact", "<sip:5551234@127.0.0.1:5099>")])
    pbx.port.receive(serialize(ok.with_body(offer(port=destination_media[1], formats="8 101"), "application/sdp")),
                     destination)
    pbx.turn()
    answer = pbx.final()
    assert answer.status == 200
    pbx.ack(answer)
    ingress = next(t for t in pbx.pbx.tasks.values() if t.program == "gatewayincoming")
    leg = next(t for t in pbx.pbx.tasks.values() if t.program == "gatewaymixerleg")
    room = f"gatewayincoming-{ingress.id}"
    assert ingress.bridge is None and leg.bridge is None
    assert ingress.mixer_room() == room and leg.mixer_room() == room
    assert ingress.mixer_attached() is leg.mixer_attached()
    assert len(ingress.mixer_attached().parties) == 2
    # each hears the other (PCMU caller, PCMA callee), through the mixer
    caller = pbx.peer(answer)
    info = [s for s in streams(parse_sdp(invite.body)) if s.media == "audio"][0]
    port = next(p for p in pbx.reactor.udp_ports if p.getHost().port == info.port and p.listening)
    callee = PeerMedia(pbx, port, payload_type=8, codec="PCMA")
    callee.source = destination_media
    a, b = tone(440, 1.0), tone(1000, 1.0)
    for start in range(0, len(a), 320):
        caller.send_audio(a[start:start + 320], advance=False)
        callee.send_audio(b[start:start + 320], advance=False)
        pbx.reactor.advance(TICK)
    pbx.reactor.advance(0.2)
    assert abs(frequency_of(caller.heard()[-3200:]) - 1000) < 10
    assert abs(frequency_of(callee.heard()[-3200:]) - 440) < 10
    # the callee hangs up: the caller gets a BYE, both tasks end, the room closes
    bye = pbx.request("BYE", "sip:127.0.0.1:5060", user="5551234", call_id=invite.call_id, cseq=1,
                      from_tag="far", to_tag=invite.from_().tag, source=destination)
    pbx.port.receive(bye, destination)
    pbx.turn(10)
    assert [r.method for r in pbx.requests_to()] == ["BYE"]
    assert pbx.pbx.tasks == {}
    assert pbx.pbx.rooms.rooms == {}


def test_gatewayincoming_with_mixer_answers_the_callees_refusal(pbx):
    destination = DESTINATION
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,mixer}#postmaster")
    pbx.invite("sip:incoming@example.com")
    (invite,) = [r for r in pbx.requests_to(destination) if r.method == "INVITE"]
    pbx.port.receive(serialize(make_response(invite, 486, to_tag="far")), destination)
    pbx.turn(10)
    assert pbx.final().status == 486
    pbx.turn(10)
    assert pbx.pbx.tasks == {}


def test_the_callers_bye_ends_the_mixed_call_on_both_sides(pbx):
    pbx.pbx.applications["gatewayincoming"] = GatewayIncoming()
    pbx.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,mixer}#postmaster")
    pbx.invite("sip:incoming@example.com")
    (invite,) = [r for r in pbx.requests_to(DESTINATION) if r.method == "INVITE"]
    ok = make_response(invite, 200, to_tag="far", headers=[("Contact", "<sip:5551234@127.0.0.1:5099>")])
    pbx.port.receive(serialize(ok.with_body(offer(port=DESTINATION_MEDIA[1]), "application/sdp")), DESTINATION)
    pbx.turn()
    answer = pbx.final()
    pbx.ack(answer)
    assert len(pbx.pbx.rooms.rooms) == 1
    pbx.in_dialog("BYE", answer, cseq=2)
    pbx.turn(10)
    assert [r.method for r in pbx.requests_to(DESTINATION) if r.method != "ACK"] == ["BYE"]
    assert pbx.pbx.tasks == {}
    assert pbx.pbx.rooms.rooms == {}
