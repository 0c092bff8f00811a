"""
Attended transfer between two tasks on the memory reactor: the caller of
one task is sent a REFER with Replaces toward the phone the other task
talks to; rejections and failures reach start_transfer as CallError.
"""

from urllib.parse import unquote

from communigate.pbx.events import CallError, Event
from communigate.pbx.transfer import is_start_transfer, replaces_target
from communigate.sip.message import make_response

from .conftest import CALLER, PBXHarness
from .test_task import BOB, Program, bob_answers, requests_at


def harness_with(**programs):
    return PBXHarness(applications={name: Program(name, run) for name, run in programs.items()})


def test_replaces_target_escapes_the_dialog_into_a_uri_header():
    assert replaces_target("sip:bob@10.0.0.2:5060;transport=udp?X=1", "abc@h", "bt", "ot") == (
        "sip:bob@10.0.0.2:5060;transport=udp?Replaces=abc%40h%3Bto-tag%3Dbt%3Bfrom-tag%3Dot")


def consultation(log, answer_with="accept"):
    """Task 2: calls bob, then accepts (or rejects) a StartTransfer."""

    async def consult(task):
        await task.start_call("bob@example.com")
        while True:
            item = await task.read_input(None)
            log.append(item.what if isinstance(item, Event) else item)
            if is_start_transfer(item):
                if answer_with == "accept":
                    await task.accept_transfer(item)
                else:
                    await task.reject_transfer(item, "486 Busy Here")
            elif isinstance(item, Event) and item.is_disconnect:
                return

    return consult


def test_start_transfer_refers_the_caller_to_the_other_tasks_peer_with_replaces():
    log = []
    consult_task = []

    async def front(task):
        await task.accept_call()
        other = task.start_task("consult")
        consult_task.append(other)
        await task.read_input(None)            # "go": the consultation call is up
        try:
            log.append(("transfer", await task.start_transfer(other)))
        except CallError as error:
            log.append(("transfer", str(error)))
        log.append((await task.read_input(None)).what)

    harness = harness_with(front=front, consult=consultation(log))
    try:
        harness.register("bob", BOB)
        harness.route("S:<front> = front#postmaster")
        harness.invite("sip:front@example.com")
        answer = harness.final()
        harness.ack(answer)
        invite = bob_answers(harness)
        (other,) = consult_task
        leg = other.call.leg
        front_task = [t for t in harness.pbx.tasks.values() if t.program == "front"][0]
        front_task.deliver_event(Event("Go"))
        harness.turn()
        (refer,) = [r for r in harness.requests_to() if r.method == "REFER"]
        refer_to = refer.headers.get("Refer-To")
        assert refer_to.startswith("<sip:bob@127.0.0.1:5090?Replaces=")
        replaces = unquote(refer_to.strip("<>").split("?Replaces=")[1])
        assert replaces == f"{invite.call_id};to-tag=bobtag;from-tag={leg.local_tag}"
        assert refer.headers.get("Referred-By") == "<sip:postmaster@example.com>"
        harness.port.receive(bytes(make_response(refer, 202)), CALLER)
        harness.turn()
        assert ("transfer", None) in log
        # bob takes the caller's INVITE with Replaces and hangs up on the consultation task
        bye = harness.request("BYE", "sip:127.0.0.1:5060", user="bob", call_id=invite.call_id, cseq=1,
                              from_tag="bobtag", to_tag=invite.from_().tag, source=BOB)
        harness.port.receive(bye, BOB)
        harness.turn()
        assert "Disconnect" in log
        # the caller hangs up on the front task
        harness.in_dialog("BYE", answer, cseq=2)
        assert log[-1] == "Disconnect"
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_a_rejected_transfer_raises_the_other_tasks_error_and_sends_no_refer():
    log = []

    async def front(task):
        await task.accept_call()
        other = task.start_task("consult")
        await task.read_input(None)
        try:
            await task.start_transfer(other)
        except CallError as error:
            log.append(("transfer", str(error)))
        await task.read_input(None)

    harness = harness_with(front=front, consult=consultation(log, answer_with="reject"))
    try:
        harness.register("bob", BOB)
        harness.route("S:<front> = front#postmaster")
        harness.invite("sip:front@example.com")
        harness.ack(harness.final())
        bob_answers(harness)
        front_task = [t for t in harness.pbx.tasks.values() if t.program == "front"][0]
        front_task.deliver_event(Event("Go"))
        harness.turn()
        assert ("transfer", "486 Busy Here") in log
        assert [r for r in harness.requests_to() if r.method == "REFER"] == []
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_a_refused_refer_and_a_task_without_a_call_fail_with_call_error():
    log = []

    async def front(task):
        await task.accept_call()
        other = task.start_task("consult")
        await task.read_input(None)
        try:
            await task.start_transfer(other)
        except CallError as error:
            log.append(str(error))
        idle = task.start_task("idle")
        try:
            await task.start_transfer(idle)     # accept_transfer there fails: not connected
        except CallError as error:
            log.append(str(error))
        await task.read_input(None)

    async def idle(task):
        item = await task.read_input(None)
        try:
            await task.accept_transfer(item)
        except CallError as error:
            log.append(("idle", str(error)))

    harness = harness_with(front=front, consult=consultation(log), idle=idle)
    try:
        harness.register("bob", BOB)
        harness.route("S:<front> = front#postmaster")
        harness.invite("sip:front@example.com")
        harness.ack(harness.final())
        bob_answers(harness)
        front_task = [t for t in harness.pbx.tasks.values() if t.program == "front"][0]
        front_task.deliver_event(Event("Go"))
        harness.turn()
        (refer,) = [r for r in harness.requests_to() if r.method == "REFER"]
        harness.port.receive(bytes(make_response(refer, 603)), CALLER)
        harness.turn()
        assert log[-3:] == ["603 Decline", ("idle", "not connected"), "not connected"]
    finally:
        harness.pbx.stopService()
        harness.stop()


def test_start_transfer_fails_with_disconnected_when_the_caller_hangs_up_while_waiting():
    log = []

    async def front(task):
        await task.accept_call()
        other = task.start_task("deaf")
        try:
            await task.start_transfer(other)
        except CallError as error:
            log.append(str(error))

    async def deaf(task):
        await task.read_input(None)              # takes StartTransfer and never answers
        await task.read_input(None)

    harness = harness_with(front=front, deaf=deaf)
    try:
        harness.route("S:<front> = front#postmaster")
        harness.invite("sip:front@example.com")
        answer = harness.final()
        harness.ack(answer)
        harness.in_dialog("BYE", answer, cseq=2)
        assert harness.final().status == 200
        assert log == ["disconnected"]
    finally:
        harness.pbx.stopService()
        harness.stop()
