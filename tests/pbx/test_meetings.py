"""
Meetings (communigate.pbx.meetings) over a store, and through the task
verbs: create, activate, deactivate, find, clear, remove; the stored
parameter outlives the tasks (and a new Meetings over the same store),
the activation does not; accounts deleted and renamed.
"""

import pytest

from communigate.pbx.events import CallError
from communigate.pbx.meetings import KIND, MeetingError, Meetings
from communigate.storage import MemoryStore

from .test_task import made, start  # noqa: F401  (made is a fixture)

A = "sales@example.com"


def meetings(alive=("t1", "t2")):
    store = MemoryStore()
    return store, Meetings(store, lambda task_id: task_id in alive)


def test_a_meeting_is_created_activated_found_deactivated_cleared_and_removed():
    _, found = meetings()
    assert found.find(A, "park", "701") is None
    found.create(A, "park", "701", {"caller": "sip:alice@example.net"})
    with pytest.raises(MeetingError, match="meeting exists"):
        found.create(A, "park", "701")
    assert found.find(A, "park", "701") == {"parameter": {"caller": "sip:alice@example.net"}}
    found.activate(A, "park", "701", "t1")
    assert found.find(A, "park", "701") == {"parameter": {"caller": "sip:alice@example.net"}, "id": "t1"}
    with pytest.raises(MeetingError, match="meeting is active"):
        found.activate(A, "park", "701", "t2")
    with pytest.raises(MeetingError, match="not the active task"):
        found.deactivate(A, "park", "701", "t2")
    found.deactivate(A, "park", "701", "t1", "left", replace=True)
    assert found.find(A, "park", "701") == {"parameter": "left"}
    found.activate(A, "park", "701", "t2")
    found.clear(A, "park", "701")
    assert found.find(A, "park", "701") == {"parameter": None}
    found.remove(A, "park", "701")
    assert found.find(A, "park", "701") is None
    for verb in (found.clear, found.remove):
        with pytest.raises(MeetingError, match="meeting not found"):
            verb(A, "park", "701")


def test_activating_a_missing_meeting_creates_it_and_a_dead_holder_does_not_block():
    _, found = meetings(alive=("t2",))
    found.activate(A, "ops", "desk", "t1", "on duty", replace=True)
    assert found.find(A, "ops", "desk") == {"parameter": "on duty"}  # t1 is not alive: no id
    found.activate(A, "ops", "desk", "t2")
    assert found.find(A, "ops", "desk") == {"parameter": "on duty", "id": "t2"}


def test_the_parameter_is_stored_and_the_activation_is_not():
    store, found = meetings()
    found.create(A, "rooms", "board", {"pin": "1234", "size": 8})
    found.activate(A, "rooms", "board", "t1")
    again = Meetings(store, lambda task_id: True)  # after a restart
    assert again.find(A, "rooms", "board") == {"parameter": {"pin": "1234", "size": 8}}
    assert again.listed(A) == [("rooms", "board", {"parameter": {"pin": "1234", "size": 8}})]


def test_a_task_that_ends_lets_go_and_bad_names_and_parameters_are_refused():
    _, found = meetings()
    found.activate(A, "s", "k", "t1")
    found.task_ended("t1")
    assert found.find(A, "s", "k") == {"parameter": None}
    for meeting_set, key in (("", "k"), ("s", ""), ("s\tx", "k"), ("s", "x" * 256), (5, "k")):
        with pytest.raises(MeetingError):
            found.create(A, meeting_set, key)
    with pytest.raises(MeetingError, match="must be data"):
        found.create(A, "s", "k2", object())
    with pytest.raises(MeetingError, match="too large"):
        found.create(A, "s", "k2", "x" * 70_000)


def test_a_record_that_does_not_parse_is_read_as_empty():
    store, found = meetings()
    store.put(KIND, f"{A}\ts\tk", "{not json")
    assert found.find(A, "s", "k") == {"parameter": None}


def test_meetings_follow_their_account():
    store, found = meetings()
    found.create(A, "s", "k", 1)
    found.activate(A, "s", "k", "t1")
    found.create("other@example.com", "s", "k", 2)
    found.account_renamed(A, "team@example.com")
    assert found.find(A, "s", "k") is None
    assert found.find("team@example.com", "s", "k") == {"parameter": 1, "id": "t1"}
    found.account_removed("team@example.com")
    assert found.find("team@example.com", "s", "k") is None
    assert found.find("other@example.com", "s", "k") == {"parameter": 2}


# -- through the task verbs ------------------------------------------------------------


def test_tasks_find_each_other_through_a_meeting(made):  # noqa: F811
    seen = []

    async def host(task):
        task.create_meeting("conf", "board", {"topic": "budget"})
        task.activate_meeting("conf", "board")
        await task.read_input(None)

    async def guest(task):
        found = task.find_meeting("conf", "board")
        seen.append(found)
        task.send_event(found["id"], "Hello", "guest")
        try:
            task.create_meeting("conf", "board")
        except CallError as error:
            seen.append(str(error))
        try:
            task.deactivate_meeting("conf", "board")
        except CallError as error:
            seen.append(str(error))

    harness = made(host=host, guest=guest)
    hosting = start(harness, "host", A)
    start(harness, "guest", A)
    assert seen == [{"parameter": {"topic": "budget"}, "id": hosting.id}, "meeting exists", "not the active task"]
    harness.pbx.kill(hosting.id)
    harness.turn()
    assert harness.pbx.meetings.find(A, "conf", "board") == {"parameter": {"topic": "budget"}}


def test_the_account_directory_tells_meetings_of_a_deleted_account(made):  # noqa: F811
    harness = made()
    harness.cli("CREATEACCOUNT sales {Password = x;}")
    harness.pbx.meetings.create(A, "s", "k", "v")
    harness.cli("DELETEACCOUNT sales")
    assert harness.pbx.meetings.find(A, "s", "k") is None
