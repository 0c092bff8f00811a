"""
Transparent bridging on a memory reactor: the bridged call placed with
the caller's own offer, two connected calls joined by re-INVITEs, a
peer's later offers relayed, refusals and glare, a hang-up during the
exchange, and the media coming back to the channels after the bridge.
"""

import pytest

from communigate.media.offer_answer import streams
from communigate.media.sdp import parse_sdp
from communigate.pbx.events import BridgeMode, CallError, Event
from communigate.pbx.transparent import SDPOrigin, glare_delay
from communigate.sip.message import Request, make_response

from .conftest import CALLER, CALLER_MEDIA, TICK, PBXHarness, offer
from .test_task import Program

BOB = ("127.0.0.1", 5090)
BOB_MEDIA = ("127.0.0.1", 42000)
SDP = "application/sdp"


@pytest.fixture
def made():
    harnesses = []

    def make(**programs):
        harness = PBXHarness(applications={name: Program(name, run) for name, run in programs.items()})
        harnesses.append(harness)
        harness.register("bob", BOB)
        return harness

    yield make
    for harness in harnesses:
        harness.pbx.stopService()
        harness.stop()


def media_port_of(body: bytes) -> int:
    return [s for s in streams(parse_sdp(body)) if s.accepted][0].port


def origin_of(body: bytes) -> str:
    return next(line for line in body.decode().split("\r\n") if line.startswith("o="))


def requests_at(harness, source, method=None):
    found = [m for m in harness.take(source) if isinstance(m, Request)]
    return [m for m in found if method is None or m.method == method]


def answer_request(harness, request, status=200, body=None, source=BOB, tag="bobtag"):
    headers = [("Contact", f"<sip:peer@{source[0]}:{source[1]}>")]
    rr = request.headers.get("Record-Route")
    if rr:
        headers.append(("Record-Route", rr))
    response = make_response(request, status, to_tag=tag, headers=headers)
    if body is not None:
        response = response.with_body(body, SDP)
    harness.port.receive(bytes(response), source)
    harness.turn()


def bye_from_bob(harness, invite, cseq=5):
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=cseq,
                          from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
    harness.port.receive(bye, BOB)
    harness.turn()


def channel_ports(harness):
    return {p.getHost().port for p in harness.reactor.udp_ports if p.listening} - {harness.port.getHost().port}


def bob_sdp(port=BOB_MEDIA[1], **kwargs):
    return offer(port=port, **{"formats": "0 101", **kwargs}).replace(b"o=- 1 1 ", b"o=bob 9 9 ")


BOB_SDP = bob_sdp()


def b2bua(log, after_break=None, mode=BridgeMode.TRANSPARENT):
    """A front task (the caller's) that bridges with a leg task calling bob."""

    async def leg(task):
        item = await task.read_input(None)
        try:
            await task.start_bridged_call("bob@example.com", item)
        except CallError:
            return
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event):
                log.append(("leg", item.what))
                if item.is_disconnect or item.is_break_bridge:
                    if task.call is not None:
                        await task.disconnect()
                    return

    async def front(task):
        helper = task.start_task("leg")
        try:
            log.append(("front", await task.start_bridge(helper, mode)))
        except CallError as error:
            log.append(("front", str(error)))
            return
        item = await task.read_input(None)
        log.append(("front", item.what))
        if after_break is not None and item.is_break_bridge:
            await after_break(task)
        elif task.call is not None:
            await task.disconnect()

    return {"leg": leg, "front": front}


# -- pure helpers ---------------------------------------------------------------------


def test_sdp_origin_keeps_the_first_o_line_and_raises_its_version_for_foreign_sdp():
    origin = SDPOrigin()
    first = offer()
    assert origin.ours(first) == first  # o=- 1 1
    foreign = first.replace(b"o=- 1 1 IN IP4 127.0.0.1", b"o=bob 777 9 IN IP4 10.0.0.9")
    stamped = origin.ours(foreign)
    assert origin_of(stamped) == "o=- 1 2 IN IP4 127.0.0.1"
    assert stamped.replace(b"o=- 1 2 IN IP4 127.0.0.1", b"") == foreign.replace(b"o=bob 777 9 IN IP4 10.0.0.9", b"")
    # the same SDP of ours again keeps its version; our own newer one passes
    assert origin.ours(stamped) == stamped
    newer = first.replace(b"o=- 1 1 ", b"o=- 1 5 ")
    assert origin.ours(newer) == newer
    assert origin_of(origin.ours(foreign)) == "o=- 1 6 IN IP4 127.0.0.1"


def test_glare_delay_follows_rfc_3261_section_14_1():
    assert glare_delay(True, 0.0) == pytest.approx(2.1)
    assert glare_delay(True, 0.999999) == pytest.approx(4.0)
    assert glare_delay(False, 0.0) == 0.0
    assert glare_delay(False, 0.999999) == pytest.approx(2.0)
    assert BridgeMode.of(None) is BridgeMode.SIMPLE and BridgeMode.of("Transparent") is BridgeMode.TRANSPARENT
    with pytest.raises(ValueError, match="simple.*transparent"):
        BridgeMode.of("loud")


# -- the bridged call placed with the caller's offer ------------------------------------


def test_start_bridged_call_transparent_sends_the_callers_offer_and_answers_with_the_callees(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    ports_before = channel_ports(harness)
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    # bob is offered the caller's media address, under our own o= line
    assert media_port_of(invite.body) == CALLER_MEDIA[1]
    answer_request(harness, invite, 183, body=BOB_SDP)
    early = [r for r in harness.responses() if r.status == 183]
    assert early and media_port_of(early[0].body) == BOB_MEDIA[1]
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    assert answer.status == 200 and media_port_of(answer.body) == BOB_MEDIA[1]
    assert ("front", None) in log
    # no media channel was opened for either half
    assert channel_ports(harness) == ports_before
    harness.ack(answer)
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert front.call.transparent and front.call.channel is None
    status = harness.cli(f"READNODESTATUS {front.id}")
    assert status["Call"]["Media"] == "transparent" and status["Bridged"]
    from prometheus_client import generate_latest

    text = generate_latest(harness.core.metrics).decode()
    assert 'communigate_pbx_bridges_total{mode="transparent"} 1.0' in text
    assert 'communigate_pbx_bridges_total{mode="simple"} 0.0' in text


def test_a_transparent_peers_re_invite_is_relayed_and_answered_with_the_other_peers_answer(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)  # bob's ACK
    # the caller holds: a=sendonly reaches bob, bob's recvonly comes back
    harness.in_dialog("INVITE", answer, cseq=2, body=offer(direction="sendonly"), content_type=SDP)
    (reinvite,) = requests_at(harness, BOB, "INVITE")
    assert b"a=sendonly" in reinvite.body and media_port_of(reinvite.body) == CALLER_MEDIA[1]
    assert harness.responses() == [] or all(r.status < 200 for r in harness.responses())
    answer_request(harness, reinvite, 200, body=bob_sdp(formats="0", events=False, direction="recvonly"))
    assert [m.method for m in requests_at(harness, BOB)] == ["ACK"]
    held = harness.final()
    assert held.status == 200 and b"a=recvonly" in held.body and media_port_of(held.body) == BOB_MEDIA[1]
    # versions of our o= line towards the caller go up
    assert int(origin_of(held.body).split()[2]) > int(origin_of(answer.body).split()[2])


def test_a_refused_relayed_offer_is_refused_to_the_peer_with_the_same_code(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)
    harness.in_dialog("INVITE", answer, cseq=2, body=offer(formats="18", events=False), content_type=SDP)
    (reinvite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, reinvite, 488)
    assert harness.final().status == 488


def test_after_the_callee_hangs_up_the_caller_gets_its_tasks_media_back_by_re_invite(made):
    log = []
    played = []

    async def after_break(task):
        played.append(await task.play_tone(1000, 200))
        await task.disconnect()

    harness = made(**b2bua(log, after_break))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)
    bye_from_bob(harness, invite)
    assert ("front", "BreakBridge") in log
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    # the task's channel offers itself, under the o= line the caller knows
    assert origin_of(reinvite.body).split()[1] == origin_of(answer.body).split()[1]
    assert int(origin_of(reinvite.body).split()[2]) > int(origin_of(answer.body).split()[2])
    port = media_port_of(reinvite.body)
    assert port in channel_ports(harness)
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    acks = [r for r in harness.requests_to() if r.method == "ACK"]
    assert acks
    peer = harness.peer(answer.with_body(reinvite.body, SDP))
    for _ in range(15):
        harness.reactor.advance(TICK)
    heard = peer.heard()
    assert len(heard) > 320 * 5 and played == [True]


def test_a_caller_hanging_up_on_break_bridge_gets_no_re_invite_first(made):
    log = []
    harness = made(**b2bua(log))  # front hangs up on BreakBridge
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)
    bye_from_bob(harness, invite)
    assert [r.method for r in harness.requests_to()] == ["BYE"]


# -- joining two connected calls -----------------------------------------------------------


def joined(log, mode=BridgeMode.TRANSPARENT, after=None):
    """front answers the caller, back has called bob; front bridges with back."""
    back_id = []

    async def front(task):
        await task.accept_call()
        await task.read_input(0.5)  # the caller's ACK comes first
        try:
            log.append(("front", await task.start_bridge(back_id[0], mode)))
        except CallError as error:
            log.append(("front", str(error)))
            return
        if after is not None:
            await after(task)
        item = await task.read_input(None)
        log.append(("front", item.what))

    async def back(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_start_bridge:
                await task.accept_bridge(item)
            elif isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                log.append(("back", item.what))
                if item.is_disconnect:
                    return

    return back_id, {"front": front, "back": back}


def connect_both(harness, back_id):
    backing = harness.pbx.start_task("back", "postmaster@example.com", ())
    harness.turn()
    back_id.append(backing.id)
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    requests_at(harness, BOB)  # ACK
    harness.route("S:<fr> = front#postmaster")
    harness.invite("sip:fr@example.com")
    answer = harness.final()
    harness.ack(answer)
    return backing, invite, answer


def test_start_bridge_transparent_joins_connected_calls_by_offerless_re_invite(made):
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    # 1. the caller is asked for an offer
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert not reinvite.body
    caller_offer = offer(port=40200)
    answer_request(harness, reinvite, 200, body=caller_offer, source=CALLER, tag="ft1")
    assert [r for r in harness.requests_to() if r.method == "ACK"] == []  # not yet: bob answers first
    # 2. bob is offered the caller's SDP
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(to_bob.body) == 40200
    answer_request(harness, to_bob, 200, body=bob_sdp(42200))
    assert [m.method for m in requests_at(harness, BOB)] == ["ACK"]
    # 3. the caller's ACK carries bob's answer; both channels are gone
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    assert media_port_of(ack.body) == 42200
    assert ("front", None) in log
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert front.call.transparent and backing.call.transparent
    assert channel_ports(harness) == set()


def test_a_join_refused_by_the_callee_falls_back_to_simple_bridging(made):
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40300), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 488)
    # the caller's offer is answered by the task's channel in the ACK
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert media_port_of(ack.body) == front.call.channel.port
    assert ("front", None) in log
    assert not front.call.transparent and front.call.channel.bridge is backing.call.channel
    assert harness.pbx.bridges == {"fallback": 1}


def test_a_join_the_caller_refuses_falls_back_to_simple_and_491_is_tried_again(made, monkeypatch):
    # The glare delay is drawn at random (0-2 s here); a draw of 0 would
    # send the re-INVITE at once, so the draw is fixed: 1 s.
    monkeypatch.setattr("communigate.pbx.transparent.random.random", lambda: 0.5)
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 491, source=CALLER, tag="ft1")
    assert [r for r in harness.requests_to() if r.method == "INVITE"] == []
    harness.reactor.advance(2.01)  # we did not choose the caller's Call-ID: 0-2 s
    harness.turn()
    (again,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, again, 488, source=CALLER, tag="ft1")
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert ("front", None) in log
    assert front.call.channel.bridge is backing.call.channel
    assert requests_at(harness, BOB, "INVITE") == []


def test_a_bye_during_the_join_leaves_the_other_side_with_its_own_media(made):
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40400), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    # the caller hangs up while bob is being re-INVITEd
    harness.in_dialog("BYE", answer, cseq=3)
    assert ("front", "disconnected") in log
    answer_request(harness, to_bob, 200, body=bob_sdp(42400))
    sent = requests_at(harness, BOB)
    assert [m.method for m in sent] == ["ACK", "INVITE"]
    # bob gets the back task's channel again
    assert media_port_of(sent[1].body) == backing.call.channel.port
    assert ("back", "BreakBridge") in log
    answer_request(harness, sent[1], 200, body=BOB_SDP)
    assert not backing.call.transparent and backing.call.channel.negotiated


def test_break_bridge_gives_both_peers_their_tasks_media_back(made):
    log = []

    async def after(task):
        await task.read_input(1)
        await task.break_bridge()
        log.append(("front", await task.play_tone(500, 100)))

    back_id, programs = joined(log, after=after)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40500), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42500))
    requests_at(harness, BOB, "ACK")
    harness.reactor.advance(1.01)
    harness.turn()
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    (to_caller,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(to_caller.body) == front.call.channel.port
    (bob_again,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(bob_again.body) == backing.call.channel.port
    answer_request(harness, to_caller, 200, body=offer(port=40500), source=CALLER, tag="ft1")
    answer_request(harness, bob_again, 200, body=BOB_SDP)
    for _ in range(10):
        harness.reactor.advance(TICK)
    assert ("front", True) in log and ("back", "BreakBridge") in log


def test_simple_mode_stays_the_default_of_start_bridge(made):
    log = []
    back_id, programs = joined(log, mode=None)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    assert ("front", None) in log
    assert [r for r in harness.requests_to() if r.method == "INVITE"] == []
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert front.call.channel.bridge is backing.call.channel


# -- through the media relay -------------------------------------------------------------


def test_a_transparent_leg_the_sip_side_relays_has_its_sdp_and_later_offers_rewritten_to_the_relay(made):
    log = []
    harness = made(**b2bua(log))
    harness.cli("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    (session,) = harness.core.media_relay.sessions()
    # bob is offered the relay, not the caller's own port
    relay_port = media_port_of(invite.body)
    assert relay_port != CALLER_MEDIA[1]
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    assert media_port_of(answer.body) not in (BOB_MEDIA[1], relay_port)
    harness.ack(answer)
    requests_at(harness, BOB)
    # the caller's hold offer reaches bob pointed at the relay too
    harness.in_dialog("INVITE", answer, cseq=2, body=offer(direction="sendonly"), content_type=SDP)
    (reinvite,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(reinvite.body) == relay_port and b"a=sendonly" in reinvite.body
    answer_request(harness, reinvite, 200, body=bob_sdp(direction="recvonly"))
    held = harness.final()
    assert held.status == 200 and media_port_of(held.body) == media_port_of(answer.body)
    # bob hangs up: the relay is released
    bye_from_bob(harness, invite)
    assert harness.core.media_relay.sessions() == [] or session.closed


def test_a_failed_transparent_leg_releases_the_relay_the_sip_side_opened(made):
    log = []
    harness = made(**b2bua(log))
    harness.cli("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    (session,) = harness.core.media_relay.sessions()
    answer_request(harness, invite, 486)
    assert session.closed
    assert ("front", "486 Busy Here") in log


def test_a_peers_update_is_relayed_and_a_second_offer_meanwhile_gets_500_with_retry_after(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)
    harness.in_dialog("UPDATE", answer, cseq=2, body=offer(direction="sendonly"), content_type=SDP)
    (reinvite,) = requests_at(harness, BOB, "INVITE")
    harness.in_dialog("INVITE", answer, cseq=3, body=offer(direction="inactive"), content_type=SDP)
    (busy,) = [r for r in harness.responses() if r.status >= 200]
    assert busy.status == 500 and busy.headers.get("Retry-After")
    answer_request(harness, reinvite, 200, body=bob_sdp(direction="recvonly"))
    (updated,) = [r for r in harness.responses() if r.status >= 200]
    assert updated.status == 200 and b"a=recvonly" in updated.body


def test_a_callee_refusing_the_callers_offer_gets_the_legs_own_offer_and_the_bridge_is_simple(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    assert media_port_of(invite.body) == CALLER_MEDIA[1]
    answer_request(harness, invite, 488)
    requests = requests_at(harness, BOB)
    assert [r.method for r in requests] == ["ACK", "INVITE"]
    again = requests[1]
    # the same dialog attempt (Call-ID, From tag), the next CSeq, the leg's channel offered
    assert again.call_id == invite.call_id and again.from_().tag == invite.from_().tag
    assert again.cseq().number == invite.cseq().number + 1
    (leg,) = [t for t in harness.pbx.tasks.values() if t.program == "leg"]
    assert media_port_of(again.body) == leg.call.channel.port
    answer_request(harness, again, 200, body=BOB_SDP)
    answer = harness.final()
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert answer.status == 200 and media_port_of(answer.body) == front.call.channel.port
    assert ("front", None) in log
    assert front.call.channel.bridge is leg.call.channel and not front.call.transparent
    assert harness.pbx.bridges == {"fallback": 1}


def test_a_peers_re_invite_without_sdp_gets_the_other_peers_offer_and_its_ack_answer_goes_back(made):
    log = []
    harness = made(**b2bua(log))
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)
    harness.in_dialog("INVITE", answer, cseq=2)
    (reinvite,) = requests_at(harness, BOB, "INVITE")
    assert not reinvite.body
    answer_request(harness, reinvite, 200, body=bob_sdp(42600))
    offered = harness.final()
    assert offered.status == 200 and media_port_of(offered.body) == 42600
    assert requests_at(harness, BOB, "ACK") == []  # bob waits for the caller's answer
    harness.in_dialog("ACK", answer, cseq=2, body=offer(port=40600), content_type=SDP)
    (ack,) = requests_at(harness, BOB, "ACK")
    assert media_port_of(ack.body) == 40600


def test_a_repeated_2xx_to_the_offerless_re_invite_gets_the_same_ack_with_the_answer(made):
    log = []
    back_id, programs = joined(log)
    harness = made(**programs)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40700), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42700))
    (ack,) = [r for r in harness.requests_to() if r.method == "ACK"]
    # the caller did not get our ACK and sends its 200 again
    answer_request(harness, reinvite, 200, body=offer(port=40700), source=CALLER, tag="ft1")
    (again,) = [r for r in harness.requests_to() if r.method == "ACK"]
    assert again.body == ack.body and media_port_of(again.body) == 42700


def test_a_prompt_the_accepting_task_plays_stops_when_its_call_turns_transparent(made):
    log = []
    back_id = []

    async def front(task):
        await task.accept_call()
        await task.read_input(0.5)
        log.append(("front", await task.start_bridge(back_id[0], "transparent")))
        await task.read_input(None)

    async def back(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_start_bridge:
                await task.accept_bridge(item)
                log.append(("back", await task.play_tone(600, -1)))
                try:
                    await task.play_tone(600, 100)
                except CallError as error:
                    log.append(("back", str(error)))
            elif isinstance(item, Event) and item.is_disconnect:
                return

    harness = made(front=front, back=back)
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40800), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42800))
    assert ("back", False) in log and ("back", "no media channel") in log


def test_an_unanswered_starter_joining_a_connected_call_waits_for_its_callers_ack_before_the_re_invite(made):
    log = []
    back_id = []

    async def front(task):  # does not answer first: start_bridge answers
        log.append(("front", await task.start_bridge(back_id[0], "transparent")))
        await task.read_input(None)

    async def back(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_start_bridge:
                await task.accept_bridge(item)
            elif isinstance(item, Event) and item.is_disconnect:
                return

    harness = made(front=front, back=back)
    backing = harness.pbx.start_task("back", "postmaster@example.com", ())
    harness.turn()
    back_id.append(backing.id)
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    requests_at(harness, BOB)
    harness.route("S:<fr> = front#postmaster")
    harness.invite("sip:fr@example.com")
    answer = harness.final()
    harness.reactor.advance(0.2)
    harness.turn()
    assert [r for r in harness.requests_to() if r.method == "INVITE"] == []
    harness.ack(answer)
    harness.reactor.advance(0.06)
    harness.turn()
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert not reinvite.body


def test_a_cancelled_transparent_leg_releases_its_relay_session_at_once(made):
    log = []
    harness = made(**b2bua(log))
    harness.cli("UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    (session,) = harness.core.media_relay.sessions()
    answer_request(harness, invite, 180)
    harness.cancel()
    assert session.closed
