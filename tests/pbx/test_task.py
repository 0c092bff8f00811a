"""
The task API on a memory reactor: modes and verbs, the input queue and
its timers, outgoing calls to SIP phones and to other tasks, bridging,
transfers, hold, prompts, recording, killing, and the CLI.
"""

import re

import pytest
from twisted.plugin import IPlugin
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.interfaces import ICallApplication, IDialogCarrier, ILocalDialogs
from communigate.media.analysis import dominant_frequency
from communigate.media.tones import sine
from communigate.media.wav import Audio, parse_wav, serialize_wav
from communigate.pbx.apps import DTMFTest, Echo
from communigate.pbx.events import CallError, Event, TaskEnded, TaskMode
from communigate.sip.message import Request, make_response

from .conftest import CALLER, TICK, PBXHarness, offer

BOB = ("127.0.0.1", 5090)
BOB_MEDIA = ("127.0.0.1", 42000)


@implementer(IPlugin, ICallApplication)
class Program:
    """An application whose run is a test's coroutine function."""

    def __init__(self, name, run):
        self.name = name
        self.description = f"test program {name}"
        self._run = run

    def run(self, task):
        return self._run(task)


def harness_with(**programs):
    return PBXHarness(applications={name: Program(name, run) for name, run in programs.items()})


@pytest.fixture
def made():
    harnesses = []

    def make(**programs):
        harness = harness_with(**programs)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        harness.pbx.stopService()
        harness.stop()


def start(harness, program, account="postmaster@example.com", parameters=()):
    task = harness.pbx.start_task(program, account, parameters)
    harness.turn()
    return task


def bob_answers(harness, status=200, *, body=None, source=BOB, provisional=()):
    """Answer the INVITE that reached bob's phone; returns it."""
    (invite,) = [m for m in harness.take(source) if isinstance(m, Request) and m.method == "INVITE"]
    for code in provisional:
        harness.port.receive(bytes(make_response(invite, code, to_tag="bobtag")), source)
        harness.turn()
    headers = [("Contact", f"<sip:bob@{source[0]}:{source[1]}>")]
    rr = invite.headers.get("Record-Route")
    if rr:
        headers.append(("Record-Route", rr))
    response = make_response(invite, status, to_tag="bobtag", headers=headers)
    if status == 200:
        response = response.with_body(offer(port=BOB_MEDIA[1], formats="0 101") if body is None else body,
                                      "application/sdp")
    harness.port.receive(bytes(response), source)
    harness.turn()
    return invite


def requests_at(harness, source, method=None):
    found = [m for m in harness.take(source) if isinstance(m, Request)]
    return [m for m in found if method is None or m.method == method]


def wire(harness, rounds=1):
    """Carry what the fake UDP ports wrote to the fake ports they name."""
    ports = {(p.getHost().host, p.getHost().port): p for p in harness.reactor.udp_ports if p.listening}
    for _ in range(rounds):
        for port in list(ports.values()):
            written, port.written[:] = list(port.written), []
            kept = []
            for data, address in written:
                target = ports.get(tuple(address))
                if target is not None and target is not harness.port:
                    target.receive(data, (port.getHost().host, port.getHost().port))
                else:
                    kept.append((data, address))
            port.written[:] = kept


# -- the input queue ----------------------------------------------------------------


def test_read_input_times_out_with_none_on_the_clock(made):
    results = []

    async def run(task):
        results.append(await task.read_input(5))

    harness = made(reader=run)
    start(harness, "reader")
    harness.reactor.advance(4.9)
    assert results == []
    harness.reactor.advance(0.2)
    assert results == [None]
    harness.turn()
    assert harness.pbx.tasks == {}


def test_events_from_the_cli_and_other_tasks_arrive_in_order_with_their_sender(made):
    results = []

    async def reader(task):
        for _ in range(3):
            results.append(await task.read_input(None))

    async def sender(task):
        target = task.parameters[0]
        assert task.send_event(target, "Hello", {"x": "1"})
        assert task.send_event(target, "Again")

    harness = made(reader=reader, sender=sender)
    reading = start(harness, "reader")
    harness.cli(f"SENDTASKEVENT {reading.id} EVENT First PARAM (a, b)")
    sending = start(harness, "sender", parameters=(reading.id,))
    harness.turn()
    assert results == [
        Event("First", None, ["a", "b"]),
        Event("Hello", sending.id, {"x": "1"}),
        Event("Again", sending.id, None),
    ]


def test_events_to_a_dead_task_are_dropped(made):
    async def sender(task):
        assert task.send_event("999", "Hello") is False

    harness = made(sender=sender)
    start(harness, "sender")
    with pytest.raises(AssertionError, match="unknown task"):
        harness.cli("SENDTASKEVENT 999 Hello")


def test_an_event_name_must_start_with_a_letter(made):
    errors = []

    async def sender(task):
        try:
            task.send_event(task.id, "1bad")
        except ValueError as error:
            errors.append(str(error))

    harness = made(sender=sender)
    start(harness, "sender")
    assert errors and "start with a letter" in errors[0]


def test_a_verb_on_a_task_without_a_call_fails_with_call_error(made):
    errors = []

    async def run(task):
        for verb in (task.accept_call, task.reject_call, task.cancel_call, task.transfer_call):
            try:
                await (verb("x") if verb == task.transfer_call else verb())
            except CallError as error:
                errors.append(str(error))

    harness = made(lonely=run)
    start(harness, "lonely")
    assert errors == ["no incoming call", "no incoming call", "no outgoing call to cancel", "not connected"]


def test_one_blocking_verb_at_a_time(made):
    errors = []

    async def run(task):
        first = task.read_input(10)
        try:
            task.read_input(10)
        except RuntimeError as error:
            errors.append(str(error))
        await first

    harness = made(twice=run)
    start(harness, "twice")
    assert errors and "one verb at a time" in errors[0]


# -- killing and ending --------------------------------------------------------------


def test_killnode_cancels_the_program_and_hangs_up_its_call(made):
    ended = []

    async def run(task):
        await task.accept_call()
        try:
            await task.read_input(None)
        except BaseException as error:
            ended.append(type(error).__name__)
            raise

    harness = made(waiter=run)
    harness.route("S:<w> = waiter#postmaster")
    harness.invite("sip:w@example.com")
    answer = harness.final()
    harness.ack(answer)
    (task,) = harness.pbx.tasks.values()
    harness.cli(f"KILLNODE {task.id}")
    assert ended == ["CancelledError"]
    assert [r.method for r in harness.requests_to()] == ["BYE"]
    assert harness.pbx.tasks == {}
    with pytest.raises(AssertionError, match="unknown task"):
        harness.cli(f"KILLNODE {task.id}")


def test_a_program_that_ends_without_answering_rejects_its_call_with_480(made):
    async def run(task):
        return None

    harness = made(quits=run)
    harness.route("S:<q> = quits#postmaster")
    harness.invite("sip:q@example.com")
    assert harness.final().status == 480


def test_verbs_after_the_task_ended_raise_task_ended(made):
    kept = []

    async def run(task):
        kept.append(task)

    harness = made(brief=run)
    start(harness, "brief")
    (task,) = kept
    assert task.ended
    with pytest.raises(TaskEnded):
        task.read_input(1)


# -- answering -------------------------------------------------------------------------


def test_provision_with_media_sends_183_with_sdp_and_plays_before_answering(made):
    async def run(task):
        await task.provision_call(media=True)
        assert task.mode is TaskMode.PROVISIONED
        await task.play_tone(800, 200)
        await task.accept_call()
        assert task.mode is TaskMode.CONNECTED
        await task.read_input(None)

    harness = made(early=run)
    harness.route("S:<e> = early#postmaster")
    harness.invite("sip:e@example.com")
    early = [r for r in harness.responses() if r.status == 183]
    assert early and early[0].content_type == "application/sdp"
    peer = harness.peer(early[0])
    harness.reactor.advance(0.1)
    assert abs(dominant_frequency(peer.heard()[-800:]) - 800) < 10
    for _ in range(12):
        harness.reactor.advance(TICK)
    answer = harness.final()
    assert answer.status == 200 and answer.body == early[0].body
    assert answer.to().tag == early[0].to().tag


def test_reject_and_redirect(made):
    async def rejects(task):
        await task.reject_call(603, "Not today")

    async def redirects(task):
        await task.redirect_call("nobody@example.com")

    harness = made(rejects=rejects, redirects=redirects)
    harness.route("S:<r> = rejects#postmaster", "S:<d> = redirects#postmaster")
    harness.invite("sip:r@example.com")
    final = harness.final()
    assert (final.status, final.reason) == (603, "Not today")
    harness.invite("sip:d@example.com")
    # the Signal service follows the redirection: nobody is unknown
    assert harness.final().status == 404


def test_a_rejection_code_must_be_300_to_699(made):
    errors = []

    async def run(task):
        try:
            await task.reject_call(200)
        except ValueError as error:
            errors.append(str(error))
        await task.reject_call(486)

    harness = made(bad=run)
    harness.route("S:<b> = bad#postmaster")
    harness.invite("sip:b@example.com")
    assert harness.final().status == 486
    assert errors and "300-699" in errors[0]


def test_fork_call_rings_another_target_and_its_answer_wins(made):
    seen = []

    async def run(task):
        await task.provision_call()
        await task.fork_call("bob@example.com")
        seen.append(await task.read_input(None))

    harness = made(forks=run)
    harness.route("S:<f> = forks#postmaster")
    assert harness.register("bob", BOB).status == 200
    harness.invite("sip:f@example.com")
    bob_answers(harness)
    answers = harness.responses()
    assert any(r.status == 200 and r.to().tag == "bobtag" for r in answers)
    assert seen and seen[0].is_disconnect


# -- placing calls ---------------------------------------------------------------------


def test_start_call_reaches_a_registered_phone_and_completes_connected(made):
    events = []

    async def run(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            events.append(item)
            if item.is_call_completed or item.is_disconnect:
                if item.is_disconnect:
                    return
                assert task.mode is TaskMode.CONNECTED

    harness = made(caller=run)
    assert harness.register("bob", BOB).status == 200
    start(harness, "caller")
    invite = bob_answers(harness, provisional=(180,))
    assert invite.from_().tag and invite.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    assert invite.content_type == "application/sdp" and b"m=audio 30000" in invite.body
    (ack,) = requests_at(harness, BOB, "ACK")
    assert ack.to().tag == "bobtag" and ack.cseq().number == invite.cseq().number
    assert [e.what for e in events] == ["CallProvision", "CallCompleted"]
    assert events[0].parameter == 180 and events[1].parameter is None
    # bob hangs up
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=1,
                          from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
    harness.port.receive(bye, BOB)
    harness.turn()
    assert [m.status for m in harness.take(BOB)] == [200]
    assert events[-1].is_disconnect


def test_start_call_to_a_busy_phone_completes_with_the_error(made):
    events = []

    async def run(task):
        await task.start_call("bob@example.com")
        events.append(await task.read_input(None))
        assert task.mode is TaskMode.DISCONNECTED and task.call is None

    harness = made(caller=run)
    harness.register("bob", BOB)
    start(harness, "caller")
    bob_answers(harness, 486)
    assert events == [Event("CallCompleted", None, "486 Busy Here")]


def test_cancel_call_sends_cancel_and_no_completion_event_follows(made):
    events = []

    async def run(task):
        await task.start_call("bob@example.com")
        events.append(await task.read_input(None))
        await task.cancel_call()
        events.append(await task.read_input(2))

    harness = made(caller=run)
    harness.register("bob", BOB)
    start(harness, "caller")
    (invite,) = requests_at(harness, BOB, "INVITE")
    harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
    harness.turn()
    assert [m.method for m in requests_at(harness, BOB)] == ["CANCEL"]
    harness.port.receive(bytes(make_response(invite, 487, to_tag="bobtag")), BOB)
    harness.reactor.advance(3)
    assert [e and e.what for e in events] == ["CallProvision", None]


def test_a_call_between_two_tasks_never_leaves_the_process_and_media_flows(made):
    results = []

    async def caller(task):
        await task.start_call("#echo")
        completed = await task.read_input(None)
        results.append(completed)
        await task.play_tone(523, 400)
        results.append(await task.record(0.3))
        await task.disconnect()

    harness = made(caller=caller)
    harness.pbx.applications["echo"] = Echo()
    start(harness, "caller")
    assert len(harness.pbx.tasks) == 2
    for _ in range(60):
        wire(harness)
        harness.reactor.advance(TICK)
    assert results[0] == Event("CallCompleted", None, None)
    wav = parse_wav(results[1])
    assert abs(dominant_frequency(wav.to_l16()[:3200]) - 523) < 5
    harness.turn()
    assert harness.pbx.tasks == {}
    assert len(harness.core.dialogs) == 0
    assert harness.take(BOB) == [] and all(not isinstance(m, Request) for m in harness.take())


def test_start_call_while_a_call_is_held_is_refused(made):
    errors = []

    async def run(task):
        await task.accept_call()
        try:
            await task.start_call("bob@example.com")
        except CallError as error:
            errors.append(str(error))

    harness = made(twice=run)
    harness.route("S:<t> = twice#postmaster")
    harness.invite("sip:t@example.com")
    assert errors == ["the task already has a call"]


# -- inside the dialog -----------------------------------------------------------------


def test_hold_and_unhold_send_reinvites(made):
    results = []

    async def run(task):
        await task.accept_call()
        await task.read_input(None)
        results.append(await task.hold())
        results.append(await task.unhold())
        await task.read_input(None)

    harness = made(holder=run)
    harness.route("S:<h> = holder#postmaster")
    harness.invite("sip:h@example.com")
    answer = harness.final()
    harness.ack(answer)
    (task,) = harness.pbx.tasks.values()
    task.deliver_event(Event("Go"))
    harness.turn()
    pending = harness.requests_to()
    for direction in ("sendonly", "sendrecv"):
        (reinvite,) = pending
        assert reinvite.method == "INVITE" and reinvite.to().tag == "ft1"
        assert f"a={direction}".encode() in reinvite.body
        reply = make_response(reinvite, 200, headers=[("Contact", "<sip:caller@127.0.0.1:5070>")])
        answer_direction = "recvonly" if direction == "sendonly" else "sendrecv"
        harness.port.receive(bytes(reply.with_body(offer(direction=answer_direction), "application/sdp")), CALLER)
        harness.turn()
        ack, *pending = harness.requests_to()
        assert ack.method == "ACK" and ack.cseq().number == reinvite.cseq().number
    assert results == [None, None]


def test_transfer_call_sends_refer_and_returns_on_202(made):
    results = []

    async def run(task):
        await task.accept_call()
        results.append(await task.transfer_call("bob@example.com"))
        results.append(await task.read_input(None))

    harness = made(transfers=run)
    harness.route("S:<x> = transfers#postmaster")
    harness.invite("sip:x@example.com")
    answer = harness.final()
    harness.ack(answer)
    (refer,) = harness.requests_to()
    assert refer.method == "REFER"
    assert refer.headers.get("Refer-To") == "<sip:bob@example.com>"
    assert refer.headers.get("Referred-By") == "<sip:postmaster@example.com>"
    harness.port.receive(bytes(make_response(refer, 202)), CALLER)
    harness.turn()
    assert results == [None]
    harness.in_dialog("NOTIFY", answer, cseq=2, body=b"SIP/2.0 200 OK\r\n", content_type="message/sipfrag",
                      headers=[("Event", "refer"), ("Subscription-State", "terminated")])
    assert harness.final().status == 200
    assert results[1] == Event("CallTransferred")


def test_a_refer_from_the_peer_is_declined_when_the_refer_option_is_disabled(made):
    async def run(task):
        task.signal_option("refer", "disabled")
        await task.accept_call()
        await task.read_input(None)

    harness = made(stays=run)
    harness.route("S:<s> = stays#postmaster")
    harness.invite("sip:s@example.com")
    answer = harness.final()
    harness.ack(answer)
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    assert harness.final().status == 603


# -- media verbs -----------------------------------------------------------------------


def test_play_file_plays_a_wav_prompt_from_the_prompt_directory(made, tmp_path):
    results = []

    async def run(task):
        await task.accept_call()
        results.append(await task.play_file("hello"))
        try:
            await task.play_file("missing")
        except CallError as error:
            results.append(str(error))
        try:
            await task.play_file("../etc/passwd")
        except CallError as error:
            results.append(str(error))
        await task.read_input(None)

    harness = made(prompter=run)
    (tmp_path / "hello.wav").write_bytes(serialize_wav(Audio("L16", sine((660,), 0.3))))
    harness.pbx.prompts.directory = str(tmp_path)
    harness.route("S:<p> = prompter#postmaster")
    harness.invite("sip:p@example.com")
    answer = harness.final()
    peer = harness.peer(answer)
    for _ in range(20):
        harness.reactor.advance(TICK)
    heard = peer.heard()
    assert abs(dominant_frequency(heard[:3200]) - 660) < 5
    assert results[0] is True
    assert results[1] == "no prompt 'missing'"
    assert "is not a prompt name" in results[2]


def test_a_key_interrupts_playing_and_is_then_read(made):
    results = []

    async def run(task):
        await task.accept_call()
        results.append(await task.play_tone(440, -1))
        results.append(await task.read_input(1))

    harness = made(player=run)
    harness.route("S:<p> = player#postmaster")
    harness.invite("sip:p@example.com")
    answer = harness.final()
    peer = harness.peer(answer)
    harness.reactor.advance(0.2)
    peer.send_key("8")
    assert results == [False, "8"]


def test_record_returns_a_wav_of_what_the_caller_said(made):
    results = []

    async def run(task):
        await task.accept_call()
        results.append(await task.record(0.4))

    harness = made(recorder=run)
    harness.route("S:<r> = recorder#postmaster")
    harness.invite("sip:r@example.com")
    answer = harness.final()
    peer = harness.peer(answer)
    peer.send_audio(sine((350,), 0.8))
    harness.reactor.advance(0.2)
    wav = parse_wav(results[0])
    assert wav.encoding == "L16" and abs(wav.duration - 0.4) < 0.001
    assert abs(dominant_frequency(wav.to_l16()[-3200:]) - 350) < 5


def test_send_dtmf_goes_out_as_telephone_events(made):
    async def run(task):
        await task.accept_call()
        task.send_dtmf("12")
        await task.read_input(None)

    harness = made(dialer=run)
    harness.route("S:<d> = dialer#postmaster")
    harness.invite("sip:d@example.com")
    answer = harness.final()
    peer = harness.peer(answer)
    for _ in range(50):
        harness.reactor.advance(TICK)
    events = [p for p in peer.received() if p.payload_type == 101]
    assert len({p.timestamp for p in events}) == 2


# -- bridging --------------------------------------------------------------------------


def test_start_bridge_and_accept_bridge_join_two_calls_media(made):
    log = []

    async def front(task):
        await task.accept_call()
        log.append(("front", await task.start_bridge(task.service.find(back_id[0]))))
        log.append(("front", (await task.read_input(None)).what))

    async def back(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and item.is_start_bridge:
                await task.accept_bridge(item)
                log.append(("back", "accepted"))
            elif isinstance(item, Event) and item.is_disconnect:
                return

    back_id = []
    harness = made(front=front, back=back)
    harness.register("bob", BOB)
    backing = start(harness, "back")
    back_id.append(backing.id)
    bob_answers(harness)
    harness.take(BOB)
    harness.route("S:<fr> = front#postmaster")
    harness.invite("sip:fr@example.com")
    answer = harness.final()
    harness.ack(answer)
    harness.turn()
    assert log == [("back", "accepted"), ("front", None)]
    (front_task,) = [t for t in harness.pbx.tasks.values() if t.program == "front"]
    assert front_task.bridge is backing and backing.bridge is front_task
    # the caller's 440 Hz reaches bob, bob's 1 kHz reaches the caller
    peer = harness.peer(answer)
    back_channel = backing.call.channel
    back_port = next(p for p in harness.reactor.udp_ports if p.getHost().port == back_channel.port)
    tone_in = sine((440,), 0.5)
    tone_back = sine((1000,), 0.5)
    from communigate.media import g711
    from communigate.media.rtp import RTPPacket, parse_rtp

    for index, start_at in enumerate(range(0, len(tone_in), 320)):
        peer.send_audio(tone_in[start_at:start_at + 320], advance=False)
        back_port.receive(RTPPacket(0, 500 + index, 1000 + 160 * index, 77,
                                    g711.encode("PCMU", tone_back[start_at:start_at + 320])).serialize(), BOB_MEDIA)
        harness.reactor.advance(TICK)
    to_bob = b"".join(g711.decode("PCMU", parse_rtp(d).payload) for d, a in back_port.written if a == BOB_MEDIA)
    to_caller = peer.heard()
    assert abs(dominant_frequency(to_bob[len(to_bob) // 2 - 1600:len(to_bob) // 2 + 1600]) - 440) < 5
    assert abs(dominant_frequency(to_caller[len(to_caller) // 2 - 1600:len(to_caller) // 2 + 1600]) - 1000) < 5
    # the caller hangs up: the back task hears BreakBridge
    harness.in_dialog("BYE", answer, cseq=2)
    harness.turn()
    assert backing.bridge is None


def test_reject_bridge_makes_start_bridge_fail_with_its_error(made):
    log = []

    async def front(task):
        await task.accept_call()
        try:
            await task.start_bridge(back_id[0])
        except CallError as error:
            log.append(str(error))
            assert task.mode is TaskMode.CONNECTED

    async def back(task):
        item = await task.read_input(None)
        await task.reject_bridge(item, "busy here")

    back_id = []
    harness = made(front=front, back=back)
    back_id.append(start(harness, "back").id)
    harness.route("S:<fr> = front#postmaster")
    harness.invite("sip:fr@example.com")
    harness.turn()
    assert log == ["busy here"]


def test_start_bridged_call_relays_ringing_and_bridges_when_answered(made):
    log = []

    async def gateway(task):
        # the B2BUA's outgoing half: started by the incoming half's StartBridge
        item = await task.read_input(None)
        await task.start_bridged_call("bob@example.com", item)
        while True:
            item = await task.read_input(None)
            log.append(item.what if isinstance(item, Event) else item)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                await task.disconnect()
                return

    async def incoming(task):
        helper = task.start_task("gateway")
        log.append(("bridge", await task.start_bridge(helper)))
        log.append((await task.read_input(None)).what)

    harness = made(gateway=gateway, incoming=incoming)
    harness.register("bob", BOB)
    harness.route("S:<gw> = incoming#postmaster")
    harness.invite("sip:gw@example.com")
    (invite,) = requests_at(harness, BOB, "INVITE")
    harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
    harness.turn()
    assert 180 in [r.status for r in harness.responses()]
    response = make_response(invite, 200, to_tag="bobtag", headers=[
        ("Contact", "<sip:bob@127.0.0.1:5090>"), ("Record-Route", invite.headers.get("Record-Route"))])
    harness.port.receive(bytes(response.with_body(offer(port=BOB_MEDIA[1]), "application/sdp")), BOB)
    harness.turn()
    answer = harness.final()
    assert answer.status == 200
    assert ("bridge", None) in log
    assert "CallProvision" in log and "CallCompleted" in log
    harness.ack(answer)
    # bob hangs up: the gateway half breaks the bridge, the caller is hung up
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=1,
                          from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
    harness.port.receive(bye, BOB)
    harness.turn()
    assert "BreakBridge" in log


def test_a_bridged_call_that_fails_makes_start_bridge_fail(made):
    log = []

    async def gateway(task):
        item = await task.read_input(None)
        await task.start_bridged_call("bob@example.com", item)
        await task.read_input(None)

    async def incoming(task):
        helper = task.service.start_task("gateway", task.account)
        try:
            await task.start_bridge(helper)
        except CallError as error:
            log.append(str(error))
            await task.reject_call(error.code or 480)

    harness = made(gateway=gateway, incoming=incoming)
    harness.register("bob", BOB)
    harness.route("S:<gw> = incoming#postmaster")
    harness.invite("sip:gw@example.com")
    bob_answers(harness, 486)
    assert log == ["486 Busy Here"]
    assert harness.final().status == 480


# -- CLI and metrics -----------------------------------------------------------------


def test_startpbxtask_readnodestatus_and_listpbxtasks(made):
    async def run(task):
        task.set_status("waiting for you")
        await task.read_input(None)

    harness = made(idle=run)
    task_id = harness.cli("STARTPBXTASK postmaster PROGRAM idle PARAM (one, two)")
    harness.turn()
    status = harness.cli(f"READNODESTATUS {task_id}")
    assert status["Program"] == "idle" and status["Account"] == "postmaster@example.com"
    assert status["Mode"] == "disconnected" and status["Status"] == "waiting for you"
    assert status["Parameters"] == ["one", "two"]
    assert task_id in harness.cli("LISTPBXTASKS")
    assert "echo" in harness.cli("LISTPBXAPPLICATIONS")
    short = harness.cli("STARTPBXTASK postmaster idle solo")
    assert harness.pbx.find(short).parameters == ("solo",)


def test_startpbxtask_refuses_unknown_programs_and_accounts(made):
    harness = made()
    for line, error in (
        ("STARTPBXTASK postmaster nosuch", "unknown application 'nosuch'"),
        ("STARTPBXTASK nobody echo", "unknown account 'nobody@example.com'"),
        ("READNODESTATUS 12345", "unknown task 12345"),
        ("SENDTASKEVENT 1 9bad", "cannot name an event"),
    ):
        result = harness.core.interpreter.run(_postmaster(), line)
        assert not result.ok and error in result.error, (line, result.error)


def _postmaster():
    from communigate.cli.context import CommandContext

    return CommandContext.for_account("postmaster@example.com")


def test_the_metrics_count_tasks_channels_frames_and_keys(pbx):
    from prometheus_client import generate_latest

    pbx.route("S:<dtmf> = dtmftest#postmaster")
    pbx.invite("sip:dtmf@example.com")
    answer = pbx.final()
    peer = pbx.peer(answer)
    peer.send_audio(bytes(320 * 5))
    peer.send_key("1")
    text = generate_latest(pbx.core.metrics).decode()
    assert 'communigate_pbx_tasks{program="dtmftest"} 1.0' in text
    assert 'communigate_pbx_tasks_started_total{program="dtmftest"} 1.0' in text
    assert "communigate_pbx_channels 1.0" in text
    assert re.search(r'communigate_pbx_frames_total\{direction="sent"\} [1-9]', text)
    assert 'communigate_pbx_frames_total{direction="received"} 5.0' in text
    assert 'communigate_pbx_dtmf_total{method="rfc4733"} 1.0' in text


def test_the_dialog_table_and_the_sip_carrier_provide_their_interfaces(pbx):
    assert verifyObject(ILocalDialogs, pbx.core.dialogs)
    assert verifyObject(IDialogCarrier, pbx.core.dialogs.carrier("sip"))
    for application in (Echo(), DTMFTest()):
        assert verifyObject(ICallApplication, application)


def test_an_outgoing_call_rings_at_most_expires_seconds(made):
    events = []

    async def run(task):
        await task.start_call("bob@example.com", expires=5)
        events.append(await task.read_input(None))
        events.append(await task.read_input(None))

    harness = made(caller=run)
    harness.register("bob", BOB)
    start(harness, "caller")
    (invite,) = requests_at(harness, BOB, "INVITE")
    harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
    harness.turn()
    harness.reactor.advance(4.9)
    assert requests_at(harness, BOB, "CANCEL") == []
    harness.reactor.advance(0.2)
    harness.turn()
    assert len(requests_at(harness, BOB, "CANCEL")) == 1
    assert events == [Event("CallProvision", None, 180), Event("CallCompleted", None, "408 Request Timeout")]


def test_a_repeated_2xx_is_acknowledged_again(made):
    async def run(task):
        await task.start_call("bob@example.com")
        await task.read_input(None)
        await task.read_input(None)

    harness = made(caller=run)
    harness.register("bob", BOB)
    start(harness, "caller")
    invite = bob_answers(harness)
    assert len(requests_at(harness, BOB, "ACK")) == 1
    again = make_response(invite, 200, to_tag="bobtag", headers=[("Contact", "<sip:bob@127.0.0.1:5090>")])
    again = again.with_body(offer(port=BOB_MEDIA[1]), "application/sdp")
    harness.port.receive(bytes(again), BOB)  # within the INVITE transaction's Accepted state
    harness.turn()
    assert len(requests_at(harness, BOB, "ACK")) == 1
    harness.reactor.advance(33)  # Timer M: now a stray response
    harness.port.receive(bytes(again), BOB)
    harness.turn()
    assert len(requests_at(harness, BOB, "ACK")) == 1


def test_hold_inactive_offers_no_media_either_way(made):
    async def run(task):
        await task.accept_call()
        await task.read_input(None)
        await task.hold(inactive=True)
        await task.read_input(None)

    harness = made(holder=run)
    harness.route("S:<h> = holder#postmaster")
    harness.invite("sip:h@example.com")
    answer = harness.final()
    harness.ack(answer)
    (task,) = harness.pbx.tasks.values()
    task.deliver_event(Event("Go"))
    harness.turn()
    (reinvite,) = harness.requests_to()
    assert b"a=inactive" in reinvite.body


def test_a_task_stopped_by_an_error_of_its_own_ends_its_program_and_call(made):
    ended = []

    async def run(task):
        await task.accept_call()
        try:
            await task.read_input(None)
        except BaseException as error:
            ended.append(type(error).__name__)
            raise

    harness = made(victim=run)
    harness.route("S:<v> = victim#postmaster")
    harness.invite("sip:v@example.com")
    answer = harness.final()
    harness.ack(answer)
    (task,) = harness.pbx.tasks.values()

    def broken():
        raise RuntimeError("a bug in the task's own handling")

    task.later(broken)
    harness.turn()
    assert ended == ["CancelledError"]
    assert [r.method for r in harness.requests_to()] == ["BYE"]
    assert harness.pbx.tasks == {}


def test_readnodestatus_writes_any_status_a_program_sets(made):
    async def run(task):
        task.set_status({"progress": 0.5, "items": [1, None, object()], "ok": True})
        await task.read_input(None)

    harness = made(odd=run)
    task_id = harness.cli("STARTPBXTASK postmaster odd")
    harness.turn()
    status = harness.cli(f"READNODESTATUS {task_id}")["Status"]
    assert status["progress"] == "0.5" and status["ok"] == "True"
    assert status["items"][0] in ("1", 1) and status["items"][1] == ""


def test_a_task_that_reads_nothing_keeps_a_bounded_queue(made):
    from twisted.internet.defer import Deferred

    from communigate.pbx.task import MAX_QUEUED

    async def run(task):
        await Deferred()  # never reads its input

    harness = made(deaf=run)
    task = harness.pbx.find(harness.cli("STARTPBXTASK postmaster deaf"))
    harness.turn()
    for number in range(MAX_QUEUED + 10):
        task.deliver_event(Event("Flood", None, number))
    harness.turn()
    assert task.dropped_inputs == 10
