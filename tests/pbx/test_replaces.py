"""
An INVITE with Replaces (RFC 3891) toward a task's call, on the memory
reactor: the new caller takes the task's call over with the task's media
channel, the old peer gets a BYE (or our INVITE a CANCEL), and the RFC's
refusals (481, 486, 400) and our authorisation rule (403) hold.
"""

import pytest

from communigate.pbx.events import Event, TaskMode
from communigate.sip.message import Request, Response, make_response
from communigate.sip.replaces import Replaces, parse_replaces

from .conftest import CALLER, PBXHarness, frequency_of, offer, tone
from .test_task import BOB, Program, requests_at, start

NEWCOMER = ("127.0.0.1", 5080)
NEWCOMER_MEDIA = ("127.0.0.1", 40200)


@pytest.fixture
def harness():
    made = PBXHarness()
    made.route("S:<echo> = echo#postmaster")
    yield made
    made.pbx.stopService()
    made.stop()


def echo_call(harness):
    harness.invite("sip:echo@example.com")
    answer = harness.final()
    harness.ack(answer)
    return answer


def replacing(harness, answer, *, user="newcomer", domain="example.net", replaces=None, headers=(),
              uri=None, send=True):
    """The newcomer's INVITE with Replaces naming the caller's dialog with the task."""
    value = replaces or f"{answer.call_id};to-tag={answer.to().tag};from-tag=ft1"
    message = harness.request(
        "INVITE", uri or answer.headers.get("Contact").strip("<>"), user=user, domain=domain,
        call_id="newcall@127.0.0.1", from_tag="nt1", source=NEWCOMER,
        headers=[("Contact", "<sip:newcomer@127.0.0.1:5080>"), ("Replaces", value), *headers],
        body=offer(port=NEWCOMER_MEDIA[1]), content_type="application/sdp",
    )
    if send:
        harness.port.receive(message, NEWCOMER)
        harness.turn()
    return message


def test_the_replaces_header_parses_and_prints():
    parsed = parse_replaces("98732@sip.example.com; from-tag=r33th4x0r ;to-tag=ff87ff;early-only")
    assert parsed == Replaces("98732@sip.example.com", "ff87ff", "r33th4x0r", True)
    assert parse_replaces(parsed.value()) == parsed
    for bad in ("", "abc;to-tag=x", "abc;from-tag=y", ";to-tag=x;from-tag=y"):
        with pytest.raises(ValueError):
            parse_replaces(bad)


def test_an_invite_with_replaces_takes_over_the_tasks_call_and_its_media(harness):
    answer = echo_call(harness)
    (task,) = harness.pbx.tasks.values()
    media_port = harness.media_port(answer)
    replacing(harness, answer, headers=[("Referred-By", "<sip:caller@example.net>")])
    (taken,) = [m for m in harness.responses(NEWCOMER) if m.status >= 200]
    assert taken.status == 200 and taken.content_type == "application/sdp"
    assert taken.headers.get("Contact") == "<sip:127.0.0.1:5060>"
    assert harness.media_port(taken) is media_port       # the same channel goes on
    # the old caller is hung up on
    (bye,) = harness.requests_to(CALLER)
    assert bye.method == "BYE" and bye.call_id == answer.call_id
    assert task.mode is TaskMode.CONNECTED and task.call.leg.call_id == "newcall@127.0.0.1"
    assert task.remote_uri() == "<sip:newcomer@example.net>;tag=nt1"
    # the newcomer's ACK ends our 200's retransmissions; its audio is echoed
    ack = harness.request("ACK", "sip:127.0.0.1:5060", user="newcomer", domain="example.net",
                          call_id="newcall@127.0.0.1", to_tag=taken.to().tag, from_tag="nt1", source=NEWCOMER)
    harness.port.receive(ack, NEWCOMER)
    harness.turn()
    peer = harness.peer(taken)
    peer.source = NEWCOMER_MEDIA
    peer.send_audio(tone(440, 0.6))
    harness.reactor.advance(0.2)
    heard = peer.heard()
    assert abs(frequency_of(heard[-3200:]) - 440) < 5
    harness.reactor.advance(40)
    assert [m for m in harness.take(NEWCOMER) if isinstance(m, Response)] == []
    # the newcomer hangs up: the echo task ends
    bye = harness.request("BYE", "sip:127.0.0.1:5060", user="newcomer", domain="example.net",
                          call_id="newcall@127.0.0.1", cseq=2, to_tag=taken.to().tag, from_tag="nt1",
                          source=NEWCOMER)
    harness.port.receive(bye, NEWCOMER)
    harness.turn()
    assert [m.status for m in harness.take(NEWCOMER)] == [200]
    assert harness.pbx.tasks == {}
    assert len(harness.core.dialogs) == 0


def test_a_replaces_from_the_replaced_party_itself_is_authorised(harness):
    answer = echo_call(harness)
    replacing(harness, answer, user="caller")
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [200]


def test_a_replaces_from_an_authenticated_account_is_authorised(harness):
    answer = echo_call(harness)
    value = f"{answer.call_id};to-tag={answer.to().tag};from-tag=ft1"
    final, _, _ = harness.authorized(
        "INVITE", "sip:127.0.0.1:5060", user="alice", call_id="newcall@127.0.0.1", from_tag="nt1",
        source=NEWCOMER, headers=[("Contact", "<sip:alice@127.0.0.1:5080>"), ("Replaces", value)],
        body=offer(port=NEWCOMER_MEDIA[1]), content_type="application/sdp",
    )
    harness.turn()
    final = final if final.status >= 200 else harness.final(NEWCOMER)
    assert final.status == 200
    (task,) = harness.pbx.tasks.values()
    assert task.call.leg.call_id == "newcall@127.0.0.1"
    assert task.remote_authentication() == "alice@example.com"


def test_a_replaces_from_a_stranger_is_refused_403_and_the_call_goes_on(harness, caplog_events):
    answer = echo_call(harness)
    replacing(harness, answer)
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [403]
    assert harness.requests_to(CALLER) == []
    (task,) = harness.pbx.tasks.values()
    assert task.call.leg.call_id == answer.call_id
    assert any("not authorised" in text for text in caplog_events)


@pytest.mark.parametrize("value, status", [
    ("nosuchcall@h;to-tag=x;from-tag=y", 481),
    ("{call};to-tag={tag};from-tag=wrong", 481),
    ("{call};to-tag={tag};from-tag=ft1;early-only", 486),
    ("{call};from-tag=ft1", 400),
])
def test_replaces_that_cannot_be_honoured_are_refused(harness, value, status):
    answer = echo_call(harness)
    value = value.format(call=answer.call_id, tag=answer.to().tag)
    replacing(harness, answer, user="caller", replaces=value)
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [status]
    assert harness.requests_to(CALLER) == []


def test_two_replaces_headers_are_a_bad_request(harness):
    answer = echo_call(harness)
    value = f"{answer.call_id};to-tag={answer.to().tag};from-tag=ft1"
    replacing(harness, answer, user="caller", headers=[("Replaces", value)])
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [400]


def test_an_unanswered_incoming_call_cannot_be_replaced(harness):
    async def ringing(task):
        await task.provision_call()
        await task.read_input(None)

    harness.pbx.applications["ringing"] = Program("ringing", ringing)
    harness.route("S:<ring> = ringing#postmaster")
    harness.invite("sip:ring@example.com")
    (ringing_answer,) = [m for m in harness.responses() if m.status == 180]
    replacing(harness, ringing_answer, user="caller", uri="sip:127.0.0.1:5060")
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [481]


def test_replaces_naming_another_dialog_to_another_target_is_routed_as_usual(harness):
    answer = echo_call(harness)
    replacing(harness, answer, user="caller", uri="sip:echo@example.com",
              replaces="elsewhere@h;to-tag=a;from-tag=b")
    # a new echo task answers: the dialog named was not ours to judge
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [200]
    assert len(harness.pbx.tasks) == 2


def test_replacing_a_call_the_task_is_placing_cancels_it_and_completes_start_call(harness):
    events = []

    async def run(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            events.append(item)
            if item.is_disconnect:
                return

    harness.pbx.applications["dialer"] = Program("dialer", run)
    harness.register("bob", BOB)
    task = start(harness, "dialer")
    (invite,) = requests_at(harness, BOB, "INVITE")
    harness.port.receive(bytes(make_response(invite, 180, to_tag="bobtag")), BOB)
    harness.turn()
    value = f"{invite.call_id};to-tag={invite.from_().tag};from-tag=bobtag"
    replacing(harness, None, uri="sip:127.0.0.1:5060", replaces=value,
              headers=[("Referred-By", "<sip:bob@example.com>")])
    (taken,) = [m for m in harness.responses(NEWCOMER) if m.status >= 200]
    assert taken.status == 200
    assert [m.method for m in requests_at(harness, BOB)] == ["CANCEL"]
    harness.port.receive(bytes(make_response(invite, 487, to_tag="bobtag")), BOB)
    harness.turn()
    assert [e.what for e in events] == ["CallProvision", "CallCompleted"]
    assert events[1].parameter is None
    assert task.mode is TaskMode.CONNECTED and task.call.leg.call_id == "newcall@127.0.0.1"


def test_start_call_sends_a_replaces_header_and_requires_the_extension(harness):
    async def run(task):
        await task.start_call("bob@example.com", replaces="abc@h;to-tag=t1;from-tag=f1")
        await task.read_input(None)

    harness.pbx.applications["replacer"] = Program("replacer", run)
    harness.register("bob", BOB)
    start(harness, "replacer")
    (invite,) = requests_at(harness, BOB, "INVITE")
    assert isinstance(invite, Request)
    assert invite.headers.get("Replaces") == "abc@h;to-tag=t1;from-tag=f1"
    assert invite.headers.get("Require") == "replaces"


def test_start_call_refuses_a_malformed_replaces(harness):
    errors = []

    async def run(task):
        try:
            await task.start_call("bob@example.com", replaces="abc@h")
        except Exception as error:
            errors.append(str(error))

    harness.pbx.applications["replacer"] = Program("replacer", run)
    start(harness, "replacer")
    assert errors == ["bad replaces: Replaces needs a to-tag and a from-tag"]


def test_the_program_is_not_told_its_call_was_replaced(harness):
    """The program is not interrupted: no event reaches it (only Disconnect at the end)."""
    events = []

    async def run(task):
        await task.accept_call()
        while True:
            item = await task.read_input(None)
            events.append(item)
            if isinstance(item, Event) and item.is_disconnect:
                return

    harness.pbx.applications["quiet"] = Program("quiet", run)
    harness.route("S:<quiet> = quiet#postmaster")
    harness.invite("sip:quiet@example.com")
    answer = harness.final()
    harness.ack(answer)
    replacing(harness, answer, user="caller")
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [200]
    assert events == []


def test_the_old_callers_late_packets_do_not_capture_the_channel(harness):
    answer = echo_call(harness)
    old = harness.peer(answer)
    old.send_audio(tone(440, 0.2))
    replacing(harness, answer, user="caller")
    (taken,) = [m for m in harness.responses(NEWCOMER) if m.status >= 200]
    old.send_audio(tone(440, 0.2))          # still sending after its BYE
    new = harness.peer(taken)
    new.source = NEWCOMER_MEDIA
    new.sequence, new.timestamp = 1000, 50_000  # the same SSRC and numbers as the caller's start
    new.send_audio(tone(1000, 0.6))
    harness.reactor.advance(0.2)
    heard = new.heard()
    assert abs(frequency_of(heard[-3200:]) - 1000) < 5
    (task,) = harness.pbx.tasks.values()
    assert task.call.channel.remote == NEWCOMER_MEDIA


def test_replaces_naming_a_dialog_that_has_ended_gets_603(harness):
    answer = echo_call(harness)
    harness.in_dialog("BYE", answer, cseq=2)
    harness.turn()
    replacing(harness, answer, user="caller")
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [603]


def test_a_task_answers_and_calls_with_supported_replaces(harness):
    answer = echo_call(harness)
    assert "replaces" in [tag.strip() for tag in answer.headers.get("Supported").split(",")]


def test_replaces_during_a_transfer_the_server_carries_out_gets_491(harness):
    answer = echo_call(harness)
    harness.register("bob", BOB)
    harness.in_dialog("REFER", answer, cseq=2, headers=[("Refer-To", "<sip:bob@example.com>")])
    replacing(harness, answer, user="caller")
    assert [m.status for m in harness.responses(NEWCOMER) if m.status >= 200] == [491]


def test_a_tasks_dialog_owner_and_the_table_provide_their_interfaces(harness):
    from zope.interface.verify import verifyObject

    from communigate.interfaces import IDialogOwner, ILocalDialogs

    answer = echo_call(harness)
    owner = harness.core.dialogs.owner(answer.call_id, answer.to().tag)
    assert verifyObject(IDialogOwner, owner)
    assert verifyObject(ILocalDialogs, harness.core.dialogs)
