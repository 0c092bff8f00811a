"""
Task queues (communigate.pbx.queues) alone and through the task verbs
(enqueue, check_queue, dequeue, read_queue) on the memory reactor:
priority then arrival order, waiting readers, timeouts, tasks that end.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from communigate.pbx.events import CallError
from communigate.pbx.queues import QueueError, TaskQueues

from .test_task import made, start  # noqa: F401  (made is a fixture)

A = "sales@example.com"


def test_a_queue_is_ordered_by_priority_then_arrival():
    queues = TaskQueues()
    assert queues.enqueue(A, "q", "t1") == (1, 0)
    assert queues.enqueue(A, "q", "t2") == (2, 1)
    assert queues.enqueue(A, "q", "vip", "gold", priority=5) == (3, 0)
    assert queues.enqueue(A, "q", "t3", priority=-1) == (4, 3)
    assert queues.check(A, "q", "t2") == (4, 2)
    assert [queues.read(A, "q").task_id for _ in range(4)] == ["vip", "t1", "t2", "t3"]
    assert queues.read(A, "q") is None
    assert queues.queues() == []  # an empty queue is dropped


def test_enqueueing_again_moves_the_task_and_dequeue_and_forget_take_it_out():
    queues = TaskQueues()
    queues.enqueue(A, "q", "t1")
    queues.enqueue(A, "q", "t2")
    assert queues.enqueue(A, "q", "t1", "again") == (2, 1)
    assert queues.dequeue(A, "q", "t2") and not queues.dequeue(A, "q", "t2")
    assert queues.check(A, "q", "t2") == (1, None)
    queues.enqueue(A, "other", "t1")
    queues.forget("t1")
    assert queues.queues() == []


def test_queues_are_per_account_and_names_are_checked():
    queues = TaskQueues()
    queues.enqueue(A, "q", "t1")
    assert queues.read("other@example.com", "q") is None
    for bad in ("", "x" * 256, "tab\there", 7):
        with pytest.raises(QueueError):
            queues.enqueue(A, bad, "t1")
    for bad in ("high", float("nan"), float("inf"), None):
        with pytest.raises(QueueError):
            queues.enqueue(A, "q", "t1", priority=bad)


def test_a_waiting_reader_takes_the_next_task_and_one_that_declines_is_passed_over():
    queues, taken = TaskQueues(), []
    queues.wait(A, "q", lambda entry: False)  # a reader that has ended
    queues.wait(A, "q", lambda entry: taken.append(entry.task_id) or True)
    assert queues.enqueue(A, "q", "t1") == (0, 0)
    assert taken == ["t1"] and queues.queues() == []
    token = queues.wait(A, "q", lambda entry: taken.append(entry.task_id) or True)
    queues.stop_waiting(token)
    assert queues.enqueue(A, "q", "t2") == (1, 0)


def test_an_entry_put_back_goes_to_the_head_of_its_priority():
    queues = TaskQueues()
    queues.enqueue(A, "q", "t1")
    head = queues.read(A, "q")
    queues.enqueue(A, "q", "t2")
    queues.enqueue(A, "q", "vip", priority=3)
    queues.put_back(A, "q", head)
    assert [queues.read(A, "q").task_id for _ in range(3)] == ["vip", "t1", "t2"]


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(-2, 2)), max_size=40))
def test_reading_follows_priority_then_arrival_whatever_the_operations(operations):
    queues, expected = TaskQueues(), {}
    for arrival, (task, priority) in enumerate(operations):
        task_id = f"t{task}"
        length, position = queues.enqueue(A, "q", task_id, priority=priority)
        expected[task_id] = (-priority, arrival)
        order = sorted(expected, key=expected.get)
        assert (length, position) == (len(order), order.index(task_id))
    read = []
    while (entry := queues.read(A, "q")) is not None:
        read.append(entry.task_id)
    assert read == sorted(expected, key=expected.get)


# -- through the task verbs ------------------------------------------------------------


def test_a_task_enqueues_itself_and_another_reads_it_with_its_parameter(made):  # noqa: F811
    seen = []

    async def caller(task):
        seen.append(("caller", task.enqueue("line", {"from": "alice"})))
        seen.append(("caller", task.check_queue("line")))
        await task.read_input(None)

    async def agent(task):
        seen.append(("agent", await task.read_queue("line")))
        seen.append(("agent", await task.read_queue("line")))

    harness = made(caller=caller, agent=agent)
    waiting = start(harness, "caller", "sales@example.com")
    start(harness, "agent", "sales@example.com")
    assert seen == [
        ("caller", {"length": 1, "position": 0}),
        ("caller", {"length": 1, "position": 0}),
        ("agent", {"id": waiting.id, "parameter": {"from": "alice"}}),
        ("agent", None),
    ]


def test_read_queue_waits_for_the_next_task_or_times_out(made):  # noqa: F811
    seen = []

    async def agent(task):
        seen.append(await task.read_queue("line", None))
        seen.append(await task.read_queue("line", 2))

    async def caller(task):
        seen.append(task.enqueue("line", "first"))
        await task.read_input(None)

    harness = made(caller=caller, agent=agent)
    start(harness, "agent", "sales@example.com")
    assert seen == []
    waiting = start(harness, "caller", "sales@example.com")
    assert seen == [{"length": 0, "position": 0}, {"id": waiting.id, "parameter": "first"}]
    harness.reactor.advance(2.01)
    harness.turn()
    assert seen[-1] is None
    assert harness.pbx.queues.queues() == []  # no reader left waiting


def test_a_task_that_ends_leaves_its_queues_and_a_killed_reader_stops_waiting(made):  # noqa: F811
    async def caller(task):
        task.enqueue("line")
        task.enqueue("other")
        await task.read_input(None)

    async def agent(task):
        await task.read_queue("line", None)

    harness = made(caller=caller, agent=agent)
    waiting = start(harness, "caller", "sales@example.com")
    assert [name for _, name, _, _ in harness.pbx.queues.queues()] == ["line", "other"]
    harness.pbx.kill(waiting.id)
    harness.turn()
    assert harness.pbx.queues.queues() == []
    reader = start(harness, "agent", "sales@example.com")
    assert harness.pbx.queues.queues() == [("sales@example.com", "line", [], 1)]
    harness.pbx.kill(reader.id)
    harness.turn()
    assert harness.pbx.queues.queues() == []


def test_a_task_handed_to_a_reader_that_ends_before_its_turn_goes_back_to_the_queue(made):  # noqa: F811
    async def caller(task):
        await task.read_input(None)

    async def agent(task):
        await task.read_queue("line", None)

    harness = made(caller=caller, agent=agent)
    reader = start(harness, "agent", "sales@example.com")
    waiting = start(harness, "caller", "sales@example.com")
    # handed to the waiting reader, whose turn to take it is still to come
    assert harness.pbx.queues.enqueue("sales@example.com", "line", waiting.id) == (0, 0)
    assert harness.pbx.queues.queues() == []
    harness.pbx.kill(reader.id)
    harness.turn()
    ((_, _, entries, readers),) = harness.pbx.queues.queues()
    assert [entry.task_id for entry in entries] == [waiting.id] and readers == 0


def test_bad_queue_names_are_call_errors(made):  # noqa: F811
    errors = []

    async def program(task):
        for verb in (lambda: task.enqueue(""), lambda: task.check_queue("x" * 300), lambda: task.dequeue(None)):
            try:
                verb()
            except CallError as error:
                errors.append(str(error))
        try:
            await task.read_queue("")
        except CallError as error:
            errors.append(str(error))

    harness = made(program=program)
    start(harness, "program")
    assert errors == ["bad queue name"] * 4


def test_an_event_stops_a_waiting_read_queue_and_stays_to_be_read(made):  # noqa: F811
    seen = []

    async def agent(task):
        seen.append(await task.read_queue("line", None))
        seen.append((await task.read_input(0)).what)

    harness = made(agent=agent)
    reader = start(harness, "agent", "sales@example.com")
    harness.cli(f"SENDTASKEVENT {reader.id} EVENT Shift")
    harness.turn()
    assert seen == [None, "Shift"]
    assert harness.pbx.queues.queues() == []
