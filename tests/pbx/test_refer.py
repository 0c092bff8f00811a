"""
A REFER from a task's peer (RFC 3515) on the memory reactor: with the
default C{refer} option (C{self}) the server calls the Refer-To target
with the task's channel and hands the task's call over (202, NOTIFYs,
BYE to the referrer); C{disabled} answers 603; C{peer} relays the REFER
to the bridged task's peer and its NOTIFYs back.
"""

import pytest
from zope.interface.verify import verifyObject

from communigate.pbx.call import ICallOwner
from communigate.pbx.events import Event, TaskMode
from communigate.sip.message import make_response

from .conftest import frequency_of, tone
from .test_task import BOB, BOB_MEDIA, bob_answers, made, requests_at  # noqa: F401  (made: a fixture)


def stays(events, options=()):
    async def run(task):
        for name, value in options:
            task.signal_option(name, value)
        await task.accept_call()
        task.start_echo()
        while True:
            item = await task.read_input(None)
            events.append(item)
            if isinstance(item, Event) and item.is_disconnect:
                return

    return run


@pytest.fixture
def setup(made):  # noqa: F811
    def make(options=()):
        events = []
        harness = made(stays=stays(events, options))
        harness.route("S:<s> = stays#postmaster")
        harness.register("bob", BOB)
        harness.invite("sip:s@example.com")
        answer = harness.final()
        harness.ack(answer)
        return harness, answer, events

    return make


def notify_bodies(requests):
    seen, bodies = set(), []
    for r in requests:
        if r.method == "NOTIFY" and r.cseq().number not in seen:
            seen.add(r.cseq().number)
            bodies.append((r.body.decode().strip(), r.headers.get("Subscription-State").split(";")[0]))
    return bodies


def test_a_peers_refer_is_carried_out_by_the_server_and_the_task_goes_on_with_the_new_peer(setup):
    harness, answer, events = setup()
    (task,) = harness.pbx.tasks.values()
    port = harness.media_port(answer)
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>"),
                                                        ("Referred-By", "<sip:caller@example.net>")])
    assert [r.status for r in harness.responses() if r.status >= 200] == [202]
    # while the transfer lasts the calls report to a stand-in that is a full call owner
    standing_in = task.call.task
    assert standing_in is not task and verifyObject(ICallOwner, standing_in) and verifyObject(ICallOwner, task)
    assert (standing_in.id, standing_in.account, standing_in.service) == (task.id, task.account, task.service)
    invite = bob_answers(harness, provisional=(180,))
    assert invite.headers.get("Referred-By") == "<sip:caller@example.net>"
    assert b"m=audio %d" % port.getHost().port in invite.body   # the task's own channel offered
    requests = harness.requests_to()
    assert notify_bodies(requests) == [("SIP/2.0 100 Trying", "active"), ("SIP/2.0 180 Ringing", "active"),
                                       ("SIP/2.0 200 OK", "terminated")]
    assert [r.method for r in requests if r.method != "NOTIFY"] == ["BYE"]
    assert task.call.leg.call_id == invite.call_id and task.mode is TaskMode.CONNECTED
    assert events == []                          # transferReport is off by default
    # bob's audio is echoed back to bob by the same channel
    from .conftest import PeerMedia

    bob = PeerMedia(harness, port)
    bob.source = BOB_MEDIA
    bob.send_audio(tone(440, 0.6))
    harness.reactor.advance(0.2)
    assert abs(frequency_of(bob.heard()[-3200:]) - 440) < 5
    # bob hangs up: the task hears it
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=1,
                          from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
    harness.port.receive(bye, BOB)
    harness.turn()
    assert events[-1].is_disconnect


def test_transfer_report_queues_call_transferred_with_the_new_peer(setup):
    harness, answer, events = setup(options=[("transferReport", True)])
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    bob_answers(harness)
    assert events == [Event("CallTransferred", None, "sip:bob@example.com")]
    assert events[0].is_call_transferred


def test_a_failed_transfer_is_notified_and_the_referrer_keeps_its_call(setup):
    harness, answer, events = setup()
    (task,) = harness.pbx.tasks.values()
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    bob_answers(harness, 486)
    requests = harness.requests_to()
    assert notify_bodies(requests) == [("SIP/2.0 100 Trying", "active"), ("SIP/2.0 486 Busy Here", "terminated")]
    assert "BYE" not in [r.method for r in requests]
    assert task.call.leg.call_id == answer.call_id and not task.call.channel.closed
    # the caller still hears itself
    peer = harness.peer(answer)
    peer.send_audio(tone(440, 0.6))
    harness.reactor.advance(0.2)
    assert abs(frequency_of(peer.heard()[-3200:]) - 440) < 5


def test_the_referrer_may_hang_up_at_once_and_the_transfer_goes_on(setup):
    harness, answer, events = setup()
    (task,) = harness.pbx.tasks.values()
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    harness.in_dialog("BYE", answer, cseq=3)
    assert [r.status for r in harness.responses() if r.status >= 200] == [202, 200]
    assert events == []
    invite = bob_answers(harness)
    assert task.call.leg.call_id == invite.call_id and task.mode is TaskMode.CONNECTED
    assert not task.call.channel.closed
    assert events == []


def test_the_referrer_hanging_up_and_a_failed_transfer_end_the_call(setup):
    harness, answer, events = setup()
    (task,) = harness.pbx.tasks.values()
    port = harness.media_port(answer)
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    harness.in_dialog("BYE", answer, cseq=3)
    bob_answers(harness, 603)
    harness.turn()
    assert [e.what for e in events] == ["Disconnect"]
    assert not port.listening


def test_a_refer_to_with_replaces_puts_replaces_in_the_invite(setup):
    harness, answer, events = setup()
    harness.in_dialog("REFER", answer, cseq=2, headers=[
        ("Refer-To", "<sip:bob@127.0.0.1:5090?Replaces=abc%40h%3Bto-tag%3Dbt%3Bfrom-tag%3Dft>")])
    (invite,) = requests_at(harness, BOB, "INVITE")
    assert str(invite.uri) == "sip:bob@127.0.0.1:5090"
    assert invite.headers.get("Replaces") == "abc@h;to-tag=bt;from-tag=ft"
    assert invite.headers.get("Require") == "replaces"


@pytest.mark.parametrize("headers, status", [
    ([], 400),
    ([("Refer-To", "<sip:a@example.com>"), ("Refer-To", "<sip:b@example.com>")], 400),
    ([("Refer-To", "<tel:+15551234>")], 416),
])
def test_a_refer_without_one_sip_refer_to_is_refused(setup, headers, status):
    harness, answer, events = setup()
    harness.in_dialog("REFER", answer, cseq=2, headers=headers)
    assert [r.status for r in harness.responses() if r.status >= 200] == [status]


def test_a_second_refer_while_one_is_carried_out_gets_491(setup):
    harness, answer, events = setup()
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    harness.in_dialog("REFER", answer, cseq=3, headers=[("Refer-To", "<sip:bob@example.com>")])
    assert [r.status for r in harness.responses() if r.status >= 200] == [202, 491]


def test_refer_disabled_answers_603(setup):
    harness, answer, events = setup(options=[("refer", "disabled")])
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    assert [r.status for r in harness.responses() if r.status >= 200] == [603]
    assert requests_at(harness, BOB, "INVITE") == []


def test_signal_option_returns_the_old_value_and_refuses_unknown_ones(made):  # noqa: F811
    from .test_task import start

    results = []

    async def run(task):
        results.append(task.signal_option("refer"))
        results.append(task.signal_option("refer", "peer"))
        results.append(task.signal_option("refer"))
        results.append(task.signal_option("transferReport", 1))
        for bad in (("refer", "nobody"), ("bridgedProvisionQueue", 3), ("bridgeBreak", "drop")):
            try:
                task.signal_option(*bad)
            except ValueError as error:
                results.append(str(error))

    harness = made(options=run)
    start(harness, "options")
    assert results[:4] == ["self", "self", "peer", False]
    assert "refer is one of self, peer, disabled" in results[4]
    assert "unknown signal option 'bridgedProvisionQueue'" in results[5]
    assert "bridgeBreak is one of keep, disconnect, default" in results[6]


def test_refer_peer_relays_the_refer_to_the_bridged_peer_and_its_notifies_back(made):  # noqa: F811
    from communigate.pbx.attendant import BridgedCall

    async def front(task):
        task.signal_option("refer", "peer")
        leg = task.start_task("bridgedcall", ("bob@example.com",))
        await task.start_bridge(leg)
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                return

    harness = made(front=front)
    harness.pbx.applications["bridgedcall"] = BridgedCall()
    harness.route("S:<front> = front#postmaster")
    harness.register("bob", BOB)
    harness.invite("sip:front@example.com")
    invite = bob_answers(harness)
    answer = harness.final()
    harness.ack(answer)
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:carol@example.com>")])
    (refer,) = requests_at(harness, BOB, "REFER")
    assert refer.headers.get("Refer-To") == "<sip:carol@example.com>"
    assert refer.call_id == invite.call_id
    bridged = [t for t in harness.pbx.tasks.values() if t.program == "bridgedcall"][0]
    assert bridged.call.task is not bridged and verifyObject(ICallOwner, bridged.call.task)
    harness.port.receive(bytes(make_response(refer, 202)), BOB)
    harness.turn()
    assert [r.status for r in harness.responses() if r.status >= 200] == [202]
    notify = harness.request(
        "NOTIFY", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=2, from_tag="bobtag",
        to_tag=invite.from_().tag, source=BOB, body=b"SIP/2.0 200 OK\r\n", content_type="message/sipfrag",
        headers=[("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")],
    )
    harness.port.receive(notify, BOB)
    harness.turn()
    assert notify_bodies(harness.requests_to()) == [("SIP/2.0 200 OK", "terminated")]


def test_refer_peer_without_a_bridge_answers_603(setup):
    harness, answer, events = setup(options=[("refer", "peer")])
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    assert [r.status for r in harness.responses() if r.status >= 200] == [603]


def test_a_task_that_ends_during_the_transfer_hangs_up_the_new_call_when_answered(setup):
    harness, answer, events = setup()
    (task,) = harness.pbx.tasks.values()
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    task.kill()
    harness.turn()
    invite = bob_answers(harness)
    assert [r.method for r in requests_at(harness, BOB) if r.call_id == invite.call_id] == ["ACK", "BYE"]
    assert len(harness.core.dialogs) == 0
