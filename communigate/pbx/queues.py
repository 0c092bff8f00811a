"""
Task queues (CG/PL C{Enqueue}, C{CheckQueue}, C{Dequeue}, C{ReadQueue}):
named lines of waiting tasks, one set per account, where one task (a
caller waiting for an operator) puts itself and another (the operator's)
takes the task at the head.

A queue holds task IDs with a parameter and a priority; it is ordered by
priority (higher first) and, within a priority, by arrival [C].  A task is
in a queue at most once: enqueueing again moves it (a new priority, a new
parameter, the back of its priority).  A task that ends leaves every queue
(L{TaskQueues.forget}); an empty queue is dropped.  Queues live as long as
the tasks in them, so they are kept in memory, not stored: after a restart
there are no waiting tasks to queue.

[D] beyond CG/PL: C{read} can wait (L{TaskQueues.wait}) for the next task
to arrive, so an operator's program needs no polling loop; waiters are
served in the order they began to wait.

Names: a queue's name is up to 255 printable characters; the account is
the reading or enqueueing task's own unless the caller names another.
"""

from __future__ import annotations

import itertools

import attrs

__all__ = ["QueueEntry", "QueueError", "TaskQueues", "check_queue_name"]

MAX_NAME = 255


class QueueError(ValueError):
    """A bad queue name or priority; the message is CG/PL's error text."""


def check_queue_name(name) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable():
        raise QueueError("bad queue name")
    return name


@attrs.frozen
class QueueEntry:
    """One waiting task: C{task_id}, the C{parameter} it gave, its C{priority}."""

    task_id: str
    parameter: object
    priority: float
    order: int


class _Queue:
    def __init__(self) -> None:
        self.entries: list[QueueEntry] = []
        self.waiters: list = []  # callables taking the QueueEntry, first come first served

    def position(self, task_id: str) -> int | None:
        for index, entry in enumerate(self.entries):
            if entry.task_id == task_id:
                return index
        return None

    def insert(self, entry: QueueEntry) -> int:
        """Put C{entry} after every entry of its priority or a higher one; its position."""
        index = len(self.entries)
        while index > 0 and self.entries[index - 1].priority < entry.priority:
            index -= 1
        self.entries.insert(index, entry)
        return index


class TaskQueues:
    """
    The queues of every account (see the module docstring); the PBX
    service keeps one.
    """

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._order = itertools.count()

    def enqueue(self, account: str, name: str, task_id: str, parameter=None, priority: float = 0.0) -> tuple[int, int]:
        """
        Put task C{task_id} in the queue: the queue's length and the
        task's position (0 is the head).  A task some reader waits for is
        handed over at once (length 0, position 0).
        """
        check_queue_name(name)
        try:
            priority = float(priority)
        except (TypeError, ValueError):
            raise QueueError("bad queue priority") from None
        if priority != priority or priority in (float("inf"), float("-inf")):
            raise QueueError("bad queue priority")
        key = (account, name)
        queue = self._queues.setdefault(key, _Queue())
        index = queue.position(task_id)
        if index is not None:
            del queue.entries[index]
        entry = QueueEntry(task_id, parameter, priority, next(self._order))
        if not queue.entries and self._handed_to_waiter(key, queue, entry):
            return 0, 0
        position = queue.insert(entry)
        return len(queue.entries), position

    def put_back(self, account: str, name: str, entry: QueueEntry) -> None:
        """
        C{entry}, read but not taken (its reader stopped waiting), goes
        back to the head of its priority, or to the next waiting reader.
        """
        key = (account, name)
        queue = self._queues.setdefault(key, _Queue())
        if queue.position(entry.task_id) is not None:
            return  # it enqueued itself again meanwhile
        if not queue.entries and self._handed_to_waiter(key, queue, entry):
            return
        index = 0
        while index < len(queue.entries) and queue.entries[index].priority > entry.priority:
            index += 1
        queue.entries.insert(index, entry)

    def _handed_to_waiter(self, key, queue: _Queue, entry: QueueEntry) -> bool:
        """Whether a waiting reader took C{entry} (a reader that has ended declines)."""
        while queue.waiters:
            waiter = queue.waiters.pop(0)
            if waiter(entry):
                self._drop_if_empty(key)
                return True
        return False

    def check(self, account: str, name: str, task_id: str) -> tuple[int, int | None]:
        """The queue's length and C{task_id}'s position in it (L{None}: not in it)."""
        check_queue_name(name)
        queue = self._queues.get((account, name))
        if queue is None:
            return 0, None
        return len(queue.entries), queue.position(task_id)

    def dequeue(self, account: str, name: str, task_id: str) -> bool:
        """Take C{task_id} out of the queue; whether it was in it."""
        check_queue_name(name)
        key = (account, name)
        queue = self._queues.get(key)
        index = None if queue is None else queue.position(task_id)
        if index is None:
            return False
        del queue.entries[index]
        self._drop_if_empty(key)
        return True

    def read(self, account: str, name: str) -> QueueEntry | None:
        """Take the head of the queue, or L{None} when it is empty."""
        check_queue_name(name)
        key = (account, name)
        queue = self._queues.get(key)
        if queue is None or not queue.entries:
            return None
        entry = queue.entries.pop(0)
        self._drop_if_empty(key)
        return entry

    def wait(self, account: str, name: str, waiter) -> object:
        """
        C{waiter(entry)} is called with the next task enqueued (the queue
        must be empty now: L{read} first) and says whether it took it.
        Returns a token for L{stop_waiting}.
        """
        check_queue_name(name)
        queue = self._queues.setdefault((account, name), _Queue())
        queue.waiters.append(waiter)
        return (account, name, waiter)

    def stop_waiting(self, token) -> None:
        account, name, waiter = token
        queue = self._queues.get((account, name))
        if queue is not None and waiter in queue.waiters:
            queue.waiters.remove(waiter)
            self._drop_if_empty((account, name))

    def forget(self, task_id: str) -> None:
        """Task C{task_id} ended: it leaves every queue."""
        for key, queue in list(self._queues.items()):
            index = queue.position(task_id)
            if index is not None:
                del queue.entries[index]
                self._drop_if_empty(key)

    def queues(self, account: str | None = None) -> list[tuple[str, str, list[QueueEntry], int]]:
        """Every queue (of C{account}): account, name, its entries in order, how many wait to read."""
        return [
            (key[0], key[1], list(queue.entries), len(queue.waiters))
            for key, queue in sorted(self._queues.items())
            if account is None or key[0] == account
        ]

    def _drop_if_empty(self, key) -> None:
        queue = self._queues.get(key)
        if queue is not None and not queue.entries and not queue.waiters:
            del self._queues[key]
