"""
The verbs by which tasks find each other: queues (CG/PL C{Enqueue},
C{CheckQueue}, C{Dequeue}, C{ReadQueue}; L{communigate.pbx.queues}) and
meetings (C{CreateMeeting} ... C{RemoveMeeting};
L{communigate.pbx.meetings}).  Both are the task's own account's: a
program reaches another account's queues or meetings by running a task
for it.

L{RendezvousVerbs} is a part of L{communigate.pbx.task.Task}, kept in its
own module like the other groups of verbs.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from communigate.pbx.events import CallError
from communigate.pbx.meetings import MeetingError
from communigate.pbx.queues import QueueError

__all__ = ["RendezvousVerbs"]

_KEEP = object()  # a meeting verb called without a parameter keeps the stored one


class RendezvousVerbs:
    """Queue and meeting verbs of a task (see the module docstring)."""

    # -- queues -----------------------------------------------------------------

    def enqueue(self, queue: str, parameter=None, priority: float = 0.0) -> dict:
        """
        Put this task in C{queue} (again: moved to its new place) with
        C{parameter}; a higher C{priority} goes first.  Returns
        C{{"length": ..., "position": ...}} (0 is the head).
        """
        self._check()
        try:
            length, position = self.service.queues.enqueue(self.account, queue, self.id, parameter, priority)
        except QueueError as error:
            raise CallError(str(error)) from None
        return {"length": length, "position": position}

    def check_queue(self, queue: str) -> dict:
        """C{{"length": ..., "position": ...}}: C{position} L{None} when this task is not in C{queue}."""
        self._check()
        try:
            length, position = self.service.queues.check(self.account, queue, self.id)
        except QueueError as error:
            raise CallError(str(error)) from None
        return {"length": length, "position": position}

    def dequeue(self, queue: str) -> bool:
        """Take this task out of C{queue}; whether it was in it."""
        self._check()
        try:
            return self.service.queues.dequeue(self.account, queue, self.id)
        except QueueError as error:
            raise CallError(str(error)) from None

    def read_queue(self, queue: str, timeout: float | None = 0) -> Deferred:
        """
        Take the task at the head of C{queue}: C{{"id": ..., "parameter":
        ...}}, or L{None} when it is empty -- at once with C{timeout} 0 (as
        CG/PL's C{ReadQueue}), else after waiting up to C{timeout} seconds
        (L{None}: as long as it takes) for a task to be enqueued.  Like
        playing, waiting stops with L{None} when an event, a hang-up or
        (with interrupts on) a key comes; C{read_input} then reads it.  The
        task read is out of the queue; telling it so (an event, a bridge)
        is the reader's business.
        """
        self._check()
        queues = self.service.queues
        try:
            entry = queues.read(self.account, queue)
        except QueueError as error:
            raise CallError(str(error)) from None
        if entry is not None:
            return succeed(_entry(entry))
        if timeout is not None and timeout <= 0:
            return succeed(None)
        account = self.account

        def handed(entry) -> bool:
            if self.ended:
                return False
            self._handed = (account, queue, entry)
            self.later(self._queue_entry)
            return True

        token = queues.wait(account, queue, handed)
        d = self._wait("queue", timeout)

        def done(result):
            queues.stop_waiting(token)
            return result

        return d.addBoth(done)

    _handed = None  # (account, queue, entry) handed to our read_queue, not taken yet

    def _queue_entry(self) -> None:
        """
        (In our turn.)  An entry was handed to our waiting C{read_queue};
        when we stopped waiting meanwhile it goes back to the head of the
        queue for the next reader.
        """
        handed, self._handed = self._handed, None
        if handed is not None and not self._wake(_entry(handed[2]), "queue"):
            self._hand_back(handed)

    def _hand_back(self, handed) -> None:
        account, queue, entry = handed
        if self.service.find(entry.task_id) is not None:
            self.service.queues.put_back(account, queue, entry)

    def _leave_rendezvous(self) -> None:
        """
        The task ended: it leaves every queue, lets go of its meetings,
        and a task handed to it and not taken yet goes back to its queue.
        """
        self.service.queues.forget(self.id)
        self.service.meetings.task_ended(self.id)
        handed, self._handed = self._handed, None
        if handed is not None:
            self._hand_back(handed)

    # -- meetings ------------------------------------------------------------------

    def _meeting(self, fn, *args):
        self._check()
        try:
            return fn(self.account, *args)
        except MeetingError as error:
            raise CallError(str(error)) from None

    def create_meeting(self, meeting_set: str, key: str, parameter=None) -> None:
        """A new meeting C{key} in C{meeting_set} (an existing one: CallError C{meeting exists})."""
        self._meeting(self.service.meetings.create, meeting_set, key, parameter)

    def activate_meeting(self, meeting_set: str, key: str, parameter=_KEEP) -> None:
        """This task becomes the meeting's active task (C{parameter}, when given, is stored)."""
        replace = parameter is not _KEEP
        self._meeting(self.service.meetings.activate, meeting_set, key, self.id,
                      None if not replace else parameter, replace)

    def deactivate_meeting(self, meeting_set: str, key: str, parameter=_KEEP) -> None:
        """This task lets go of the meeting (C{parameter}, when given, is stored)."""
        replace = parameter is not _KEEP
        self._meeting(self.service.meetings.deactivate, meeting_set, key, self.id,
                      None if not replace else parameter, replace)

    def find_meeting(self, meeting_set: str, key: str) -> dict | None:
        """C{{"parameter": ..., "id": ...}} (C{id} while a task holds it active), or L{None}."""
        return self._meeting(self.service.meetings.find, meeting_set, key)

    def clear_meeting(self, meeting_set: str, key: str) -> None:
        """The meeting's parameter and activation go; the meeting stays."""
        self._meeting(self.service.meetings.clear, meeting_set, key)

    def remove_meeting(self, meeting_set: str, key: str) -> None:
        """The meeting goes."""
        self._meeting(self.service.meetings.remove, meeting_set, key)


def _entry(entry) -> dict:
    return {"id": entry.task_id, "parameter": entry.parameter}
