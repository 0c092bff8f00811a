"""
The stock call-queue applications (communigate.pbx.callqueue) on the
memory reactor: callers wait with music and go to the agent in order of
arrival; an agent is bridged, hears the caller hang up and takes the
next; '#' ends a call; a caller gives up after MAXWAIT; bad parameters.
"""

import pytest

from communigate.cli.context import CommandContext
from communigate.pbx.callqueue import CallQueue, QueueAgent, queue_parameters
from communigate.pbx.prompts import _built_in
from communigate.sip.message import Request

from .conftest import PBXHarness, offer

ALICE = ("127.0.0.1", 5071)
CAROL = ("127.0.0.1", 5072)
AGENT = ("127.0.0.1", 5073)


@pytest.fixture
def harness():
    harness = PBXHarness(applications={"callqueue": CallQueue(), "queueagent": QueueAgent()})
    harness.route(
        "S:<support> = callqueue{support}#postmaster",
        "S:<impatient> = callqueue{support,3}#postmaster",
        "S:<agents> = queueagent{support}#postmaster",
    )
    yield harness
    harness.pbx.stopService()
    harness.stop()


def call(harness, uri, source, media_port):
    """A caller from C{source} calling C{uri}; its 200, acknowledged."""
    harness.invite(uri, source=source, body=offer(port=media_port))
    answer = harness.final(source)
    assert answer.status == 200
    harness.ack(answer, source=source)
    return answer


def tasks(harness, program):
    return [t for t in harness.pbx.tasks.values() if t.program == program]


def bridged(first, second) -> bool:
    return first.call.channel is not None and first.call.channel.bridge is second.call.channel


def run(harness, seconds):
    for _ in range(round(seconds / 0.02)):
        harness.reactor.advance(0.02)


def byes_to(harness, source):
    return [m for m in harness.requests_to(source) if isinstance(m, Request) and m.method == "BYE"]


def test_queue_parameters():
    assert queue_parameters(()) == ("main", None)
    assert queue_parameters(("support", "90")) == ("support", 90.0)
    assert queue_parameters((" ", "")) == ("main", None)
    for bad in ("soon", "-1", "100000"):
        with pytest.raises(ValueError):
            queue_parameters(("q", bad))


def test_callers_wait_with_music_and_go_to_the_agent_in_order_of_arrival(harness):
    alice = call(harness, "sip:support@example.com", ALICE, 40010)
    run(harness, 1)
    call(harness, "sip:support@example.com", CAROL, 40020)
    run(harness, 5)  # each caller looks at its place between slices of music
    first, second = sorted(tasks(harness, "callqueue"), key=lambda t: int(t.id))
    assert first.status == "waiting in support: 1 of 2" and second.status == "waiting in support: 2 of 2"
    assert first.call.channel.frames_sent > 40  # the chime, then music
    agent_answer = call(harness, "sip:agents@example.com", AGENT, 40030)
    run(harness, 0.5)
    (agent,) = tasks(harness, "queueagent")
    assert bridged(agent, first) and bridged(first, agent)
    assert agent.status == "talking to <sip:caller@example.net>"
    run(harness, 6)
    assert second.status == "waiting in support: 1 of 1"
    # alice hangs up: the agent is free and takes carol
    harness.in_dialog("BYE", alice, cseq=3, source=ALICE)
    run(harness, 0.5)
    assert bridged(agent, second)
    assert agent.status.startswith("talking to")
    assert harness.pbx.queues.queues() == []
    # the agent ends carol's call with '#': carol gets a BYE, the agent waits for the next
    harness.in_dialog("INFO", agent_answer, cseq=3, source=AGENT, body=b"Signal=#\r\nDuration=160\r\n",
                      content_type="application/dtmf-relay")
    run(harness, 0.5)
    assert byes_to(harness, CAROL)
    assert agent.status == "ready for support (2 served)"
    assert harness.pbx.queues.queues() == [("postmaster@example.com", "support", [], 1)]
    # the agent hangs up: logged out, nobody reads the queue
    harness.in_dialog("BYE", agent_answer, cseq=4, source=AGENT)
    run(harness, 0.2)
    assert tasks(harness, "queueagent") == [] and harness.pbx.queues.queues() == []


def test_a_caller_arriving_while_the_agent_waits_is_bridged_at_once(harness):
    call(harness, "sip:agents@example.com", AGENT, 40030)
    run(harness, 0.5)
    (agent,) = tasks(harness, "queueagent")
    assert agent.status == "ready for support (0 served)"
    call(harness, "sip:support@example.com", ALICE, 40010)
    run(harness, 0.5)
    (caller,) = tasks(harness, "callqueue")
    assert bridged(caller, agent) and caller.status == "talking to an agent"


def test_the_agent_hanging_up_ends_the_callers_call(harness):
    agent_answer = call(harness, "sip:agents@example.com", AGENT, 40030)
    call(harness, "sip:support@example.com", ALICE, 40010)
    run(harness, 0.5)
    harness.in_dialog("BYE", agent_answer, cseq=3, source=AGENT)
    run(harness, 0.5)
    assert byes_to(harness, ALICE) and tasks(harness, "callqueue") == []


def test_a_caller_gives_up_after_maxwait_with_the_congestion_tone(harness):
    call(harness, "sip:impatient@example.com", ALICE, 40010)
    run(harness, 2.5)
    (caller,) = tasks(harness, "callqueue")
    assert caller.status == "waiting in support: 1 of 1"
    run(harness, 3)
    assert caller.status == "gave up waiting in support" and harness.pbx.queues.queues() == []
    run(harness, 2)
    assert byes_to(harness, ALICE) and tasks(harness, "callqueue") == []


def test_a_caller_read_by_an_agent_that_never_bridges_takes_its_place_again(harness):
    call(harness, "sip:support@example.com", ALICE, 40010)
    run(harness, 1)
    call(harness, "sip:support@example.com", CAROL, 40020)
    run(harness, 1)
    first = sorted(tasks(harness, "callqueue"), key=lambda t: int(t.id))[0]
    assert harness.pbx.queues.read("postmaster@example.com", "support").task_id == first.id
    run(harness, 12)  # within two slices of music
    ((_, _, entries, _),) = harness.pbx.queues.queues()
    assert [entry.task_id for entry in entries][0] == first.id  # back, ahead of carol
    run(harness, 5)
    assert first.status == "waiting in support: 1 of 2"


def test_a_misconfigured_queue_answers_500(harness):
    harness.route("S:<bad> = callqueue{support,soon}#postmaster")
    harness.invite("sip:bad@example.com")
    assert harness.final().status == 500


def test_the_built_in_hold_music_is_a_quiet_loopable_phrase():
    music = _built_in("hold")
    assert len(music) == 3.2 * 8000 * 2
    samples = memoryview(music).cast("h")
    assert 0 < max(abs(s) for s in samples) < 8000  # audible, far from full scale


def test_listpbxqueues_and_listpbxmeetings_show_who_waits_and_who_holds_what(harness):
    call(harness, "sip:support@example.com", ALICE, 40010)
    run(harness, 1)
    (caller,) = tasks(harness, "callqueue")
    listed = harness.cli("LISTPBXQUEUES")
    assert listed == {"postmaster@example.com": {"support": {
        "Waiting": [{"ID": caller.id, "Parameter": {"caller": "<sip:caller@example.net>", "since": "1700000000.0"},
                     "Priority": "0"}],
        "Readers": "0",
    }}}
    assert harness.cli("LISTPBXQUEUES postmaster") == listed
    harness.cli("CREATEACCOUNT sales {Password = x;}")
    assert harness.cli("LISTPBXQUEUES sales") == {}
    harness.pbx.meetings.create("postmaster@example.com", "park", "701", "alice")
    harness.pbx.meetings.activate("postmaster@example.com", "park", "701", caller.id)
    assert harness.cli("LISTPBXMEETINGS postmaster") == {"park": {"701": {"Parameter": "alice", "ID": caller.id}}}
    refused = harness.core.interpreter.run(CommandContext.for_account("postmaster@example.com"),
                                           "LISTPBXMEETINGS nobody")
    assert not refused.ok and "unknown account" in refused.error
