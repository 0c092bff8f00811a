"""
Transfers of a transparently bridged call on the memory reactor: an
INVITE with Replaces naming the leg's dialog and a REFER from the leg's
peer (the B2BUA's callee transfers the caller); the new party takes the
old peer's place in the bridge, its SDP exchanged with the far peer (the
caller) by re-INVITE; the fallbacks when a peer refuses; glare.  Simple
and mixer bridges keep handing the channel over.
"""

from communigate.pbx.events import CallError, Event
from communigate.sip.message import Request

from .conftest import CALLER, CALLER_MEDIA, offer
from .test_transparent import (  # noqa: F401  (made: a fixture)
    BOB,
    BOB_SDP,
    answer_request,
    b2bua,
    bob_sdp,
    made,
    media_port_of,
    origin_of,
    requests_at,
)

CAROL = ("127.0.0.1", 5100)
CAROL_MEDIA = ("127.0.0.1", 44000)
SDP = "application/sdp"


def carol_sdp(port=CAROL_MEDIA[1], **kwargs):
    return offer(port=port, **{"formats": "0 101", **kwargs}).replace(b"o=- 1 1 ", b"o=carol 5 5 ")


def bridged(made, log=None, **options):  # noqa: F811
    """The caller through front and leg to bob, transparently bridged and acknowledged."""
    log = [] if log is None else log
    programs = b2bua(log, **options)
    harness = made(**programs)
    harness.register("carol", CAROL)
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    requests_at(harness, BOB)  # the ACK
    tasks = {t.program: t for t in harness.pbx.tasks.values()}
    return harness, invite, answer, tasks


def replacing_invite(harness, bob_invite, body=None, source=CAROL):
    """carol's INVITE with Replaces naming the leg's dialog with bob (bob referred her)."""
    value = f"{bob_invite.call_id};to-tag={bob_invite.from_().tag};from-tag=bobtag"
    message = harness.request(
        "INVITE", "sip:127.0.0.1:5060", user="carol", domain="example.net", call_id="carolcall@127.0.0.1",
        from_tag="ct1", source=source,
        headers=[("Contact", f"<sip:carol@{source[0]}:{source[1]}>"), ("Replaces", value),
                 ("Referred-By", "<sip:bob@example.com>")],
        body=carol_sdp() if body is None else body, content_type=SDP if body != b"" else None,
    )
    harness.port.receive(message, source)
    harness.turn()


def finals_at(harness, source):
    return [m for m in harness.take(source) if not isinstance(m, Request) and m.status >= 200]


# -- Replaces --------------------------------------------------------------------------


def test_replaces_toward_a_bridged_call_offers_the_newcomers_sdp_to_the_far_peer_and_byes_the_old(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    leg = tasks["leg"]
    replacing_invite(harness, bob_invite)
    # the caller (the far peer) is re-INVITEd with carol's SDP, under the o= line it knows
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(reinvite.body) == CAROL_MEDIA[1]
    assert origin_of(reinvite.body).split()[1] == origin_of(answer.body).split()[1]
    assert finals_at(harness, CAROL) == []  # carol waits for the caller's answer
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    assert [r.method for r in harness.requests_to()] == ["ACK"]
    # carol's 200 carries the caller's answer; bob gets a BYE
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == CALLER_MEDIA[1]
    assert [r.method for r in requests_at(harness, BOB)] == ["BYE"]
    assert leg.call.leg.call_id == "carolcall@127.0.0.1" and leg.call.transparent
    assert leg.call.channel is None and tasks["front"].call.channel is None
    assert leg.bridge is tasks["front"]
    # carol's later hold offer reaches the caller through the bridge
    ack = harness.request("ACK", "sip:127.0.0.1:5060", user="carol", domain="example.net",
                          call_id="carolcall@127.0.0.1", to_tag=taken.to().tag, from_tag="ct1", source=CAROL)
    harness.port.receive(ack, CAROL)
    harness.turn()
    hold = harness.request("INVITE", "sip:127.0.0.1:5060", user="carol", domain="example.net",
                           call_id="carolcall@127.0.0.1", cseq=2, to_tag=taken.to().tag, from_tag="ct1",
                           source=CAROL, headers=[("Contact", "<sip:carol@127.0.0.1:5100>")],
                           body=carol_sdp(direction="sendonly"), content_type=SDP)
    harness.port.receive(hold, CAROL)
    harness.turn()
    (held,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert b"a=sendonly" in held.body and media_port_of(held.body) == CAROL_MEDIA[1]


def test_replaces_without_sdp_gets_the_far_peers_offer_and_its_ack_answer_goes_back(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    replacing_invite(harness, bob_invite, body=b"")
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert not reinvite.body
    answer_request(harness, reinvite, 200, body=offer(port=40900), source=CALLER, tag="ft1")
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == 40900
    assert [r.method for r in requests_at(harness, BOB)] == ["BYE"]
    assert [r for r in harness.requests_to() if r.method == "ACK"] == []  # the answer comes from carol
    ack = harness.request("ACK", "sip:127.0.0.1:5060", user="carol", domain="example.net",
                          call_id="carolcall@127.0.0.1", to_tag=taken.to().tag, from_tag="ct1", source=CAROL,
                          body=carol_sdp(), content_type=SDP)
    harness.port.receive(ack, CAROL)
    harness.turn()
    (to_caller,) = [r for r in harness.requests_to() if r.method == "ACK"]
    assert media_port_of(to_caller.body) == CAROL_MEDIA[1]


def test_replaces_the_far_peer_refuses_is_answered_by_a_channel_and_the_bridge_turns_simple(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    leg, front = tasks["leg"], tasks["front"]
    replacing_invite(harness, bob_invite)
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 488, source=CALLER, tag="ft1")
    # carol is answered by the leg's own channel; bob gets his BYE
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == leg.call.channel.port
    assert [r.method for r in requests_at(harness, BOB)] == ["BYE"]
    assert leg.call.leg.call_id == "carolcall@127.0.0.1" and not leg.call.transparent
    # the caller gets the front task's channel back, bridged with the leg's
    invites = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert [media_port_of(r.body) for r in invites] == [front.call.channel.port]
    assert front.call.channel.bridge is leg.call.channel and not front.call.transparent
    answer_request(harness, invites[0], 200, body=offer(), source=CALLER, tag="ft1")
    assert front.call.is_live and harness.pbx.bridges.get("fallback") == 1


def test_replaces_while_the_old_peers_offer_is_relayed_gets_491(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    hold = harness.request("INVITE", "sip:127.0.0.1:5060", user="bob", call_id=bob_invite.call_id, cseq=5,
                           from_tag="bobtag", to_tag=bob_invite.from_().tag, source=BOB,
                           body=bob_sdp(direction="sendonly"), content_type=SDP)
    harness.port.receive(hold, BOB)
    harness.turn()
    replacing_invite(harness, bob_invite)
    assert [m.status for m in finals_at(harness, CAROL)] == [491]


# -- REFER (self) ------------------------------------------------------------------------


def refer_from_bob(harness, bob_invite, target="<sip:carol@example.com>", cseq=5):
    refer = harness.request("REFER", "sip:127.0.0.1:5060", user="bob", call_id=bob_invite.call_id, cseq=cseq,
                            from_tag="bobtag", to_tag=bob_invite.from_().tag, source=BOB,
                            headers=[("Refer-To", target), ("Contact", "<sip:bob@127.0.0.1:5090>")])
    harness.port.receive(refer, BOB)
    harness.turn()


def bye_from(harness, source, call_id, from_tag, to_tag, user="bob", cseq=6):
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user=user, call_id=call_id, cseq=cseq,
                          from_tag=from_tag, to_tag=to_tag, source=source)
    harness.port.receive(bye, source)
    harness.turn()


def notify_bodies(requests):
    seen, bodies = set(), []
    for r in requests:
        if r.method == "NOTIFY" and r.cseq().number not in seen:
            seen.add(r.cseq().number)
            bodies.append((r.body.decode().strip(), r.headers.get("Subscription-State").split(";")[0]))
    return bodies


def test_refer_on_a_bridged_call_calls_the_target_with_the_far_peers_sdp_and_the_bridge_goes_on(made):  # noqa: F811
    log = []
    harness, bob_invite, answer, tasks = bridged(made, log)
    leg, front = tasks["leg"], tasks["front"]
    refer_from_bob(harness, bob_invite)
    to_bob = harness.take(BOB)
    assert [m.status for m in to_bob if not isinstance(m, Request)] == [202]
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    # carol is offered the caller's own media, no channel opened
    assert media_port_of(carol_invite.body) == CALLER_MEDIA[1]
    assert leg.call.leg.call_id == bob_invite.call_id
    answer_request(harness, carol_invite, 180, source=CAROL, tag="carol1")
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    assert [r.method for r in requests_at(harness, CAROL)] == ["ACK"]
    # the caller is re-INVITEd with carol's answer; bob is still connected meanwhile
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(reinvite.body) == CAROL_MEDIA[1]
    meanwhile = requests_at(harness, BOB)
    assert "BYE" not in [r.method for r in meanwhile]
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    sent = requests_at(harness, BOB)
    assert notify_bodies([r for r in to_bob if isinstance(r, Request)] + meanwhile + sent) == [
        ("SIP/2.0 100 Trying", "active"), ("SIP/2.0 180 Ringing", "active"), ("SIP/2.0 200 OK", "terminated")]
    assert [r.method for r in sent if r.method != "NOTIFY"] == ["BYE"]
    assert leg.call.leg.call_id == carol_invite.call_id and leg.call.transparent and leg.call.channel is None
    assert leg.bridge is front and front.call.channel is None
    assert ("leg", "Disconnect") not in log and ("front", "BreakBridge") not in log
    # carol hangs up: the bridge ends and the caller is hung up on by the B2BUA
    bye_from(harness, CAROL, carol_invite.call_id, "carol1", carol_invite.from_().tag, user="carol")
    harness.turn()
    assert ("front", "BreakBridge") in log
    assert "BYE" in [r.method for r in harness.requests_to()]


def test_refer_on_a_bridged_call_the_target_refuses_is_notified_and_bob_keeps_the_call(made):  # noqa: F811
    log = []
    harness, bob_invite, answer, tasks = bridged(made, log)
    leg = tasks["leg"]
    refer_from_bob(harness, bob_invite)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 488, source=CAROL, tag="carol1")
    # no second try with a channel: the transfer failed
    assert [r.method for r in requests_at(harness, CAROL)] == ["ACK"]
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert notify_bodies(sent)[-1] == ("SIP/2.0 488 Not Acceptable Here", "terminated")
    assert "BYE" not in [r.method for r in sent]
    assert leg.call.leg.call_id == bob_invite.call_id and leg.call.transparent
    assert [r for r in harness.requests_to() if r.method == "INVITE"] == []
    assert not log or ("front", "BreakBridge") not in log


def test_refer_on_a_bridged_call_the_far_peer_refuses_byes_the_target_and_bob_keeps_the_call(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    leg = tasks["leg"]
    refer_from_bob(harness, bob_invite)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 488, source=CALLER, tag="ft1")
    assert [r.method for r in requests_at(harness, CAROL)] == ["ACK", "BYE"]
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert notify_bodies(sent)[-1] == ("SIP/2.0 488 Not Acceptable Here", "terminated")
    assert "BYE" not in [r.method for r in sent]
    assert leg.call.leg.call_id == bob_invite.call_id and leg.call.is_live


def test_refer_on_a_bridged_call_whose_referrer_left_ends_the_bridge_when_it_fails(made):  # noqa: F811
    log = []
    harness, bob_invite, answer, tasks = bridged(made, log)
    refer_from_bob(harness, bob_invite)
    bye_from(harness, BOB, bob_invite.call_id, "bobtag", bob_invite.from_().tag)
    assert ("front", "BreakBridge") not in log  # the transfer goes on
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 486, source=CAROL, tag="carol1")
    harness.turn()
    assert ("front", "BreakBridge") in log


def test_refer_on_a_bridged_call_whose_referrer_left_still_connects_the_target(made):  # noqa: F811
    log = []
    harness, bob_invite, answer, tasks = bridged(made, log)
    leg = tasks["leg"]
    refer_from_bob(harness, bob_invite)
    bye_from(harness, BOB, bob_invite.call_id, "bobtag", bob_invite.from_().tag)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(reinvite.body) == CAROL_MEDIA[1]
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    assert leg.call.leg.call_id == carol_invite.call_id and leg.bridge is tasks["front"]
    assert ("front", "BreakBridge") not in log


# -- simple bridges keep their channels ----------------------------------------------------


def test_replaces_toward_a_simply_bridged_call_hands_the_channel_and_its_bridge_to_the_newcomer(made):  # noqa: F811
    from communigate.pbx.events import BridgeMode

    harness, bob_invite, answer, tasks = bridged(made, mode=BridgeMode.SIMPLE)
    leg, front = tasks["leg"], tasks["front"]
    channel = leg.call.channel
    assert channel is not None and front.call.channel.bridge is channel
    replacing_invite(harness, bob_invite)
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == channel.port
    assert [r.method for r in requests_at(harness, BOB)] == ["BYE"]
    assert [r.method for r in harness.requests_to()] == []  # the caller sees nothing
    assert leg.call.channel is channel and front.call.channel.bridge is channel


def test_refer_on_a_simply_bridged_call_offers_the_legs_channel_and_keeps_the_bridge(made):  # noqa: F811
    from communigate.pbx.events import BridgeMode

    harness, bob_invite, answer, tasks = bridged(made, mode=BridgeMode.SIMPLE)
    leg, front = tasks["leg"], tasks["front"]
    channel = leg.call.channel
    refer_from_bob(harness, bob_invite)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    assert media_port_of(carol_invite.body) == channel.port
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert notify_bodies(sent)[-1] == ("SIP/2.0 200 OK", "terminated") and "BYE" in [r.method for r in sent]
    assert [r.method for r in harness.requests_to()] == []
    assert leg.call.leg.call_id == carol_invite.call_id and leg.call.channel is channel
    assert front.call.channel.bridge is channel


# -- the task's own verbs on a transparent call --------------------------------------------


def test_a_transparently_bridged_tasks_verbs_fail_with_call_errors_or_work_without_a_channel(made):  # noqa: F811
    results = []

    async def leg(task):
        item = await task.read_input(None)
        await task.start_bridged_call("bob@example.com", item)
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_call_completed:
                break
        for verb in (task.hold, task.unhold, lambda: task.play_tone(500, 100), lambda: task.record(1),
                     lambda: task.attach_mixer("room")):
            try:
                await verb()
            except CallError as error:
                results.append(str(error))
        await task.transfer_call("carol@example.com")  # a REFER needs no channel
        results.append("referred")
        await task.read_input(None)

    async def front(task):
        helper = task.start_task("leg")
        await task.start_bridge(helper, "transparent")
        await task.read_input(None)

    harness = made(leg=leg, front=front)
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    (refer,) = requests_at(harness, BOB, "REFER")
    assert refer.headers.get("Refer-To") == "<sip:carol@example.com>"
    answer_request(harness, refer, 202)
    assert results == ["bridged", "bridged", "no media channel", "no media channel", "bridged", "referred"]


def test_start_transfer_between_transparently_bridged_tasks_sends_the_refer_with_replaces(made):  # noqa: F811
    from communigate.pbx.transfer import is_start_transfer

    results = []

    async def leg(task):
        item = await task.read_input(None)
        await task.start_bridged_call("bob@example.com", item)
        while True:
            item = await task.read_input(None)
            if is_start_transfer(item):
                await task.accept_transfer(item)
                results.append("accepted")

    async def front(task):
        helper = task.start_task("leg")
        await task.start_bridge(helper, "transparent")
        await task.read_input(0.5)
        await task.start_transfer(helper)
        results.append("transferred")
        await task.read_input(None)

    harness = made(leg=leg, front=front)
    harness.route("S:<gw> = front#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, invite, 200, body=BOB_SDP)
    answer = harness.final()
    harness.ack(answer)
    harness.reactor.advance(0.6)
    harness.turn()
    (refer,) = [r for r in harness.requests_to() if r.method == "REFER"]
    refer_to = refer.headers.get("Refer-To")
    assert "Replaces=" in refer_to and invite.call_id.split("@")[0] in refer_to
    answer_request(harness, refer, 202, source=CALLER, tag="ft1")
    assert results == ["accepted", "transferred"]


# -- glare on the far peer's re-INVITE -----------------------------------------------------


def test_a_491_from_the_far_peer_on_a_replaces_is_tried_again_after_the_glare_delay(made, monkeypatch):  # noqa: F811
    # A draw of 0 would retry at once: the draw is fixed (1 s of the 0-2 s).
    monkeypatch.setattr("communigate.pbx.transparent_transfers.random.random", lambda: 0.5)
    harness, bob_invite, answer, tasks = bridged(made)
    replacing_invite(harness, bob_invite)
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 491, source=CALLER, tag="ft1")
    assert [r.method for r in harness.requests_to()] == ["ACK"] and finals_at(harness, CAROL) == []
    harness.reactor.advance(2.01)  # we did not choose the caller's Call-ID: 0-2 s
    harness.turn()
    (again,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(again.body) == CAROL_MEDIA[1]
    answer_request(harness, again, 200, body=offer(), source=CALLER, tag="ft1")
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == CALLER_MEDIA[1]
    assert tasks["leg"].call.transparent


def test_a_491_from_the_far_peer_on_a_refer_is_tried_again_and_the_transfer_completes(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    refer_from_bob(harness, bob_invite)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 491, source=CALLER, tag="ft1")
    harness.reactor.advance(2.01)
    harness.turn()
    (again,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, again, 200, body=offer(), source=CALLER, tag="ft1")
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert notify_bodies(sent)[-1] == ("SIP/2.0 200 OK", "terminated") and "BYE" in [r.method for r in sent]
    assert tasks["leg"].call.leg.call_id == carol_invite.call_id


def test_replaces_toward_a_mixed_gateway_leg_hands_the_channel_and_its_mixer_party_to_the_newcomer(made):  # noqa: F811
    from communigate.pbx.gateway import GatewayIncoming
    from communigate.sip.message import make_response, serialize

    from .conftest import TICK, PeerMedia, frequency_of, tone

    far, far_media = ("127.0.0.1", 5099), ("127.0.0.1", 42000)
    harness = made()
    harness.pbx.applications["gatewayincoming"] = GatewayIncoming()
    harness.route("S:<incoming> = gatewayincoming{sip:5551234@127.0.0.1:5099,mixer}#postmaster")
    harness.invite("sip:incoming@example.com")
    (invite,) = [r for r in harness.requests_to(far) if r.method == "INVITE"]
    ok = make_response(invite, 200, to_tag="far", headers=[("Contact", "<sip:5551234@127.0.0.1:5099>")])
    harness.port.receive(serialize(ok.with_body(offer(port=far_media[1]), SDP)), far)
    harness.turn()
    answer = harness.final()
    harness.ack(answer)
    leg = next(t for t in harness.pbx.tasks.values() if t.program == "gatewaymixerleg")
    channel, mixer = leg.call.channel, leg.mixer_attached()
    value = f"{invite.call_id};to-tag={invite.from_().tag};from-tag=far"
    message = harness.request(
        "INVITE", "sip:127.0.0.1:5060", user="carol", domain="example.net", call_id="carolcall@127.0.0.1",
        from_tag="ct1", source=CAROL,
        headers=[("Contact", "<sip:carol@127.0.0.1:5100>"), ("Replaces", value),
                 ("Referred-By", "<sip:5551234@127.0.0.1>")],
        body=carol_sdp(), content_type=SDP,
    )
    harness.port.receive(message, CAROL)
    harness.turn()
    (taken,) = finals_at(harness, CAROL)
    assert taken.status == 200 and media_port_of(taken.body) == channel.port
    assert [r.method for r in harness.requests_to(far) if r.method != "ACK"] == ["BYE"]
    assert [r.method for r in harness.requests_to()] == []
    assert leg.call.channel is channel and leg.mixer_attached() is mixer
    # carol's 700 Hz reaches the caller through the room
    caller = harness.peer(answer)
    port = next(p for p in harness.reactor.udp_ports if p.getHost().port == channel.port and p.listening)
    carol = PeerMedia(harness, port)
    carol.source = CAROL_MEDIA
    a, b = tone(440, 1.0), tone(700, 1.0)
    for start in range(0, len(a), 320):
        caller.send_audio(a[start:start + 320], advance=False)
        carol.send_audio(b[start:start + 320], advance=False)
        harness.reactor.advance(TICK)
    harness.reactor.advance(0.2)
    assert abs(frequency_of(caller.heard()[-3200:]) - 700) < 10
    assert abs(frequency_of(carol.heard()[-3200:]) - 440) < 10


# -- hang-ups during the far peer's re-INVITE ----------------------------------------------


def test_the_old_peer_hanging_up_while_the_far_peer_answers_a_replaces_gets_the_newcomer_603(made):  # noqa: F811
    log = []
    harness, bob_invite, answer, tasks = bridged(made, log)
    replacing_invite(harness, bob_invite)
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    bye_from(harness, BOB, bob_invite.call_id, "bobtag", bob_invite.from_().tag)
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    assert [m.status for m in finals_at(harness, CAROL)] == [603]
    assert ("front", "BreakBridge") in log


def test_the_target_hanging_up_while_the_far_peer_answers_a_refer_gives_the_media_back_to_bob(made):  # noqa: F811
    harness, bob_invite, answer, tasks = bridged(made)
    leg = tasks["leg"]
    refer_from_bob(harness, bob_invite)
    (carol_invite,) = requests_at(harness, CAROL, "INVITE")
    answer_request(harness, carol_invite, 200, body=carol_sdp(), source=CAROL, tag="carol1")
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    bye_from(harness, CAROL, carol_invite.call_id, "carol1", carol_invite.from_().tag, user="carol")
    sent = [m for m in harness.take(BOB) if isinstance(m, Request)]
    assert notify_bodies(sent)[-1][1] == "terminated" and "BYE" not in [r.method for r in sent]
    answer_request(harness, reinvite, 200, body=offer(), source=CALLER, tag="ft1")
    # the caller had taken carol's media: it is re-INVITEd with bob's again
    (back,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    assert media_port_of(back.body) == media_port_of(BOB_SDP)
    assert leg.call.leg.call_id == bob_invite.call_id and leg.call.is_live
