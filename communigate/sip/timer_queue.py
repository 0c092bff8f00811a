"""
Many timers of one fixed length on one clock call.

A registrar answering a thousand REGISTERs a second keeps every completed
non-INVITE server transaction for Timer J, 32 s, so tens of thousands of
those timers are pending at once, all of the same length.  One
C{clock.callLater} each costs a delayed-call object (with its arguments
and a dictionary of the transaction's timers) per transaction, and a
push and a pop in the reactor's heap, whose every comparison is a Python
call.  Timers of one fixed length expire in the order they were set, so a
first-in first-out queue holds them in the same order, and a single
C{callLater}, for the earliest, is all the reactor needs to know about.

Each timer still fires when its own time comes: the clock call is set for
the head of the queue and, when it fires, runs every timer due by then
and is set again for the next.  A timer cannot be cancelled; what it
fires must do nothing when it no longer applies (a transaction already
terminated), which is cheaper than finding it in the queue.
"""

import collections

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class FixedDelayQueue:
    """
    Timers that all fire C{delay} seconds after they are set.

    @param clock: the L{IReactorTime} the timers run on.
    @param delay: their length, in seconds.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        if not delay >= 0:
            raise ValueError(f"a timer's delay must be 0 or more seconds, not {delay!r}")
        self._clock = clock
        self.delay = delay
        self._due: collections.deque = collections.deque()
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        """
        How many timers are pending.
        """
        return len(self._due)

    def call_later(self, fire) -> None:
        """
        Call C{fire()} C{delay} seconds from now.
        """
        self._due.append((self._clock.seconds() + self.delay, fire))
        if self._call is None:
            self._call = self._clock.callLater(self.delay, self._fire_due)

    def _fire_due(self) -> None:
        self._call = None
        due = self._due
        now = self._clock.seconds()
        # A clock set back can leave a later entry before an earlier one;
        # it then fires with the one ahead of it, never before its time.
        while due and due[0][0] <= now:
            _, fire = due.popleft()
            try:
                fire()
            except Exception:
                self.log.failure("A timer of {delay} s failed", delay=self.delay)
        if due and self._call is None:
            self._call = self._clock.callLater(max(0.0, due[0][0] - now), self._fire_due)

    def stop(self) -> None:
        """
        Forget every pending timer without firing it (the service stops).
        """
        self._due.clear()
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
