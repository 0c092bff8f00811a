"""
The bridgeBreak signal option and INFO both ways (send_call_info,
CallInfo events), on the memory reactor.
"""

from communigate.pbx.events import BridgeMode, CallError, Event

from .conftest import CALLER, offer
from .test_transparent import (  # noqa: F401  (made is a fixture)
    BOB,
    answer_request,
    bob_sdp,
    bye_from_bob,
    connect_both,
    made,
    requests_at,
)


def bridged(log, option=None, mode=BridgeMode.SIMPLE, breaks=False):
    """front answers the caller and bridges with back, which has called bob."""
    back_id = []

    async def front(task):
        if option is not None:
            task.signal_option("bridgeBreak", option)
        await task.accept_call()
        await task.read_input(0.5)
        await task.start_bridge(back_id[0], mode)
        log.append(("front", "bridged"))
        while True:
            item = await task.read_input(None)
            log.append(("front", item.what))
            if item.is_disconnect:
                return

    async def back(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_start_bridge:
                await task.accept_bridge(item)
                if breaks:
                    await task.read_input(1)
                    await task.break_bridge()
            elif isinstance(item, Event) and item.is_disconnect:
                return

    return back_id, {"front": front, "back": back}


def bridge_up(harness, back_id):
    backing, bob_invite, answer = connect_both(harness, back_id)
    harness.reactor.advance(0.6)
    harness.turn()
    return backing, bob_invite, answer


def sent_to_caller(harness):
    return [r.method for r in harness.requests_to()]


def test_with_bridge_break_disconnect_the_callers_call_ends_when_bobs_does(made):  # noqa: F811
    log = []
    back_id, programs = bridged(log, "disconnect")
    harness = made(**programs)
    backing, bob_invite, _ = bridge_up(harness, back_id)
    assert log == [("front", "bridged")]
    bye_from_bob(harness, bob_invite)
    assert sent_to_caller(harness) == ["BYE"]
    assert log == [("front", "bridged"), ("front", "BreakBridge"), ("front", "Disconnect")]


def test_by_default_the_callers_call_stays_when_bobs_ends(made):  # noqa: F811
    log = []
    back_id, programs = bridged(log)
    harness = made(**programs)
    _, bob_invite, _ = bridge_up(harness, back_id)
    bye_from_bob(harness, bob_invite)
    assert sent_to_caller(harness) == []
    assert log == [("front", "bridged"), ("front", "BreakBridge")]
    (front,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert front.is_connected()


def test_a_transparent_bridge_with_disconnect_sends_a_bye_and_no_media_back_re_invite(made):  # noqa: F811
    log = []
    back_id, programs = bridged(log, "disconnect", BridgeMode.TRANSPARENT)
    harness = made(**programs)
    _, bob_invite, _ = bridge_up(harness, back_id)
    (reinvite,) = [r for r in harness.requests_to() if r.method == "INVITE"]
    answer_request(harness, reinvite, 200, body=offer(port=40200), source=CALLER, tag="ft1")
    (to_bob,) = requests_at(harness, BOB, "INVITE")
    answer_request(harness, to_bob, 200, body=bob_sdp(42200))
    requests_at(harness, BOB)
    harness.requests_to()
    bye_from_bob(harness, bob_invite, cseq=9)
    assert sent_to_caller(harness) == ["BYE"]
    assert ("front", "Disconnect") in log


def test_a_bridge_the_other_task_breaks_on_purpose_keeps_the_call_even_with_disconnect(made):  # noqa: F811
    log = []
    back_id, programs = bridged(log, "disconnect", breaks=True)
    harness = made(**programs)
    bridge_up(harness, back_id)
    harness.reactor.advance(1.1)
    harness.turn()
    assert log == [("front", "bridged"), ("front", "BreakBridge")]
    assert sent_to_caller(harness) == []


# -- INFO ------------------------------------------------------------------------------


def test_the_peers_info_is_a_call_info_event_and_the_task_sends_its_own(made):  # noqa: F811
    seen = []

    async def talker(task):
        await task.accept_call()
        item = await task.read_input(5)
        while item is not None and not isinstance(item, Event):
            item = await task.read_input(5)
        seen.append((item.what, item.parameter, item.is_call_info))
        seen.append(await task.send_call_info("application/media_control+xml", "<media_control/>"))
        try:
            await task.send_call_info("application/x-refused", b"x")
        except CallError as error:
            seen.append(str(error))
        for bad in ("not a type", "a/b\r\nX-Injected: 1"):
            try:
                await task.send_call_info(bad, b"")
            except ValueError:
                seen.append("refused")
        await task.read_input(None)

    harness = made(talker=talker)
    harness.route("S:<talk> = talker#postmaster")
    harness.invite("sip:talk@example.com")
    answer = harness.final()
    harness.ack(answer)
    harness.in_dialog("INFO", answer, cseq=2, body=b"Signal=5\r\nDuration=100\r\n",
                      content_type="application/dtmf-relay")
    harness.in_dialog("INFO", answer, cseq=3, body=b"<picture_fast_update/>",
                      content_type="application/media_control+xml")
    assert [r.status for r in harness.responses()] == [200, 200]
    assert seen == [("CallInfo", {"Content-Type": "application", "Content-Subtype": "media_control+xml",
                                  "": "<picture_fast_update/>"}, True)]
    (info,) = [r for r in harness.requests_to() if r.method == "INFO"]
    assert info.headers.get("Content-Type") == "application/media_control+xml" and info.body == b"<media_control/>"
    answer_request(harness, info, 200, source=CALLER, tag=answer.to().tag)
    (refused,) = [r for r in harness.requests_to() if r.method == "INFO"]
    answer_request(harness, refused, 415, source=CALLER, tag=answer.to().tag)
    assert seen[1:] == [None, "415 Unsupported Media Type", "refused", "refused"]


def test_bridged_provision_relay_off_keeps_the_callees_ringing_from_the_caller(made):  # noqa: F811
    from communigate.sip.message import make_response

    async def leg(task):
        item = await task.read_input(None)
        await task.start_bridged_call("bob@example.com", item)
        while not getattr(await task.read_input(None), "is_disconnect", False):
            pass

    def incoming(relay):
        async def run(task):
            task.signal_option("bridgedProvisionRelay", relay)
            await task.start_bridge(task.start_task("leg"))
            await task.read_input(None)

        return run

    for relay, expected in ((True, [100, 180]), (False, [100])):
        harness = made(leg=leg, incoming=incoming(relay))
        harness.route("S:<gw> = incoming#postmaster")
        harness.invite("sip:gw@example.com")
        (invite,) = requests_at(harness, BOB, "INVITE")
        harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
        harness.turn()
        assert [r.status for r in harness.responses()] == expected


def test_send_call_options_asks_a_destination_what_it_supports(made):  # noqa: F811
    from communigate.sip.message import make_response

    seen = []

    async def asker(task):
        seen.append(await task.send_call_options("bob@example.com"))
        try:
            await task.send_call_options("nobody@example.com")
        except CallError as error:
            seen.append(str(error))

    harness = made(asker=asker)
    harness.pbx.start_task("asker", "postmaster@example.com", ())
    harness.turn()
    (options,) = requests_at(harness, BOB, "OPTIONS")
    assert options.headers.get("Accept") == "application/sdp" and options.to().tag is None
    harness.port.receive(bytes(make_response(options, 200, headers=[("Allow", "INVITE, ACK, BYE"),
                                                                    ("Supported", "100rel")])), BOB)
    harness.turn()
    assert seen[0]["Allow"] == "INVITE, ACK, BYE" and seen[0]["Supported"] == "100rel"
    assert seen[1].startswith("404")
