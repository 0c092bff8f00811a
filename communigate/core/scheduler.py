"""
The one reactor-driven scheduler that every state machine runs on: PBX
tasks, the mixer's 20 ms tick, NAT keep-alive pingers (DESIGN.md, "One
scheduler").

A machine is any object with C{handle(event)}; subclassing L{Machine} adds
C{post}, C{after}, C{every} and C{stop} as methods.  The scheduler gives
each machine a FIFO queue and promises three things:

  - B{In order.}  A machine sees its events in the order they were queued.
  - B{Never re-entrant.}  At most one handler runs at a time, and
    L{Scheduler.post} never runs a handler in its caller's stack: an event
    posted from inside a handler (to the same machine or another) is
    queued and delivered after the running handler has returned.
  - B{Timers are events.}  L{Scheduler.after} and L{Scheduler.every} put
    their event into the machine's queue when the clock says so, behind
    what is already queued, and a cancelled timer delivers nothing, even
    when it had already been queued.

How the queues are drained
==========================
C{post} queues and, if no drain is pending, arms one with
C{clock.callLater(0, ...)}.  The alternative, draining at the end of the
outermost C{post}, was rejected: the code that posts (a SIP transport in
C{datagramReceived}, a Deferred callback, a CLI command) would then run
other machines' handlers in the middle of its own work and see its own
state change under it, which is the re-entrancy the design forbids, only
one level up.  The price is one reactor iteration of latency and one
delayed call per batch (not per event); tests call C{clock.advance(0)}.

A drain is one reactor turn.  It visits the machines that have events
round-robin, B{one event per visit}: a machine that keeps posting to
itself goes to the back of the line after each event, so it cannot starve
the others.  A turn handles at most C{max_events_per_turn} events; what is
left is handled in the next turn, after the reactor has polled for I/O, so
a flood of events delays network input by one bounded turn, not until the
flood is over.  The round-robin position carries over between turns.

Machines that a timer made ready wait in a second line, served first for
up to half of each turn.  Without it a 20 ms mixer tick would wait behind
every machine already in line (benchmarks/scheduler.py, 1,000 tickers
beside 10,000 busy machines: p50 7.6 ms, p99 16 ms late, 0.8% of ticks
missed); with it, about one turn (p50 1.5 ms, p99 3 ms, none missed).  The cap leaves the other half of
every turn to the round-robin line, so timers cannot starve posted
events either.  Within one machine nothing is reordered: the timer only
decides when the machine's turn comes, and the machine still gets the
event at the head of its own queue.

All timers live in one heap with one delayed call armed for the earliest,
rather than a delayed call each: 10,000 NAT pingers are 10,000 small heap
entries, timers due together are queued by one reactor callback, and ties
keep the order the timers were set in.

Periodic timers and drift
=========================
C{every(period, event)} schedules tick I{k} for C{first + k * period},
computed from the ideal start, never C{now + period}: a late tick does not
push the later ones back, so the drift is bounded by the lateness of one
tick and does not accumulate.  When the reactor is so late that whole
periods have passed, the missed ticks are not replayed in a burst: one
event is delivered for the latest due tick and the others are counted in
L{PeriodicTimer.missed} (a mixer wants the current frame, not a backlog of
stale ones).  Likewise a tick that comes due while the previous one is
still waiting in a busy machine's queue is folded into it and counted as
missed, so a slow machine's queue cannot fill with ticks.  How late each
tick was when its handler ran (queueing included) is in
L{PeriodicTimer.last_lateness} and the scheduler's C{tick_lateness_*}
figures.

Stopping and errors
===================
L{Scheduler.stop} cancels the machine's timers, drops its queue, and
delivers nothing more.  A machine's C{stopped()} method, if it has one, is
then called once, never while its own C{handle} is running (when a machine
stops itself, C{stopped()} runs just after its handler returns): the place
for a PBX task to release its call.  A handler that raises is logged with
its machine and event as structured fields and, by default, its machine is
stopped; other machines go on.  The C{on_error} hook replaces that policy.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush
from itertools import count
from math import floor
from typing import Any, Callable, Protocol

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = [
    "Machine",
    "NotRunning",
    "PeriodicTimer",
    "Scheduler",
    "Started",
    "SupportsHandle",
    "Timer",
]

#: Events handled in one reactor turn unless the constructor says otherwise.
#: The scheduler's own cost is about 0.6 us an event (benchmarks/scheduler.py),
#: so a turn of trivial handlers holds network input back for under a
#: millisecond; handlers that do real work make it longer, in proportion.
DEFAULT_MAX_EVENTS_PER_TURN = 1000

# A tick is "due" when the clock is within this much of its ideal time; it
# absorbs floating-point noise in first + k * period.
_EPSILON = 1e-9


class SupportsHandle(Protocol):
    """
    What the scheduler needs of a machine: one method that takes an event.
    """

    def handle(self, event: Any) -> None: ...


@attrs.frozen
class Started:
    """
    The first event every machine receives, queued by L{Scheduler.start}.
    Starting is an event (not a call inside C{start}) so that the machine's
    first actions run under the same rules as all the others.
    """


class NotRunning(RuntimeError):
    """
    A timer was asked of a machine the scheduler is not running.
    """


class _Slot:
    """
    The scheduler's record of one running machine.
    """

    __slots__ = (
        "machine", "head", "rest", "length", "ready", "timers", "handling", "notify_stopped",
    )

    def __init__(self, machine: SupportsHandle) -> None:
        self.machine = machine
        # The queue: its first event in `head`, the others in `rest`.  Most
        # machines (pingers, ping-pong partners) never hold more than one
        # event, and an empty deque costs 760 bytes; `rest` exists only
        # while a machine has two or more.
        self.head: Any = None
        self.rest: deque | None = None
        self.length = 0
        self.ready = False  # waiting in one of the scheduler's lines
        self.timers: list | None = None  # live Timer and PeriodicTimer handles
        self.handling = False
        self.notify_stopped = False


class _Due:
    """
    A queued timer event; delivered only if its timer is still live.
    """

    __slots__ = ("timer", "tick", "time")

    def __init__(self, timer: Timer | PeriodicTimer, tick: int, time: float) -> None:
        self.timer = timer
        self.tick = tick
        self.time = time


class Timer:
    """
    A one-shot timer from L{Scheduler.after}.  Once cancelled or delivered
    it is inert: C{cancel()} does nothing and nothing more is delivered.

    @ivar event: what will be delivered.
    @ivar due: the clock time the event is due at.
    """

    __slots__ = ("_scheduler", "_slot", "event", "due", "_entry", "_live")

    def __init__(self, scheduler: Scheduler, slot: _Slot, due: float, event: Any) -> None:
        self._scheduler = scheduler
        self._slot = slot
        self.event = event
        self.due = due
        self._live = True
        self._entry: list | None = scheduler._arm(self, due)

    @property
    def active(self) -> bool:
        """
        Whether the event may still be delivered (waiting for the clock, or
        queued behind other events).
        """
        return self._live

    def cancel(self) -> None:
        """
        Make sure the event is never delivered.  Inert if already cancelled
        or delivered; safe from inside any handler, including the one of
        the machine the timer belongs to.
        """
        if not self._live:
            return
        self._live = False
        self._slot.timers.remove(self)
        if self._entry is not None:
            self._scheduler._disarm(self._entry)
            self._entry = None

    def _fire(self, now: float) -> None:
        self._entry = None
        self._scheduler._enqueue(self._slot, _Due(self, 0, self.due), True)

    def _deliver(self, due: _Due) -> bool:
        if not self._live:  # cancelled after it was queued
            return False
        self._live = False
        self._slot.timers.remove(self)
        return True

    def __repr__(self) -> str:
        state = "active" if self._live else "inert"
        return f"<Timer {self.event!r} due {self.due:.3f} {state}>"


class PeriodicTimer:
    """
    A periodic timer from L{Scheduler.every}: tick I{k} is due at
    C{first + k * period}.

    @ivar event: what each tick delivers.
    @ivar period: seconds between ideal tick times.
    @ivar first: the ideal time of tick 0.
    @ivar tick: the index of the tick last delivered (-1 before the first).
    @ivar missed: ticks never delivered: skipped because whole periods had
        passed, or folded into a tick still queued.
    @ivar last_lateness: seconds between the ideal time of the tick last
        delivered and the moment its handler was called.
    @ivar max_lateness: the largest C{last_lateness} so far.
    """

    __slots__ = (
        "_scheduler", "_slot", "event", "period", "first", "tick", "missed",
        "last_lateness", "max_lateness", "_next", "_entry", "_queued", "_live",
    )

    def __init__(
        self, scheduler: Scheduler, slot: _Slot, period: float, event: Any, first: float
    ) -> None:
        self._scheduler = scheduler
        self._slot = slot
        self.event = event
        self.period = period
        self.first = first
        self.tick = -1
        self.missed = 0
        self.last_lateness = 0.0
        self.max_lateness = 0.0
        self._next = 0  # index of the tick the timer is armed for
        self._queued: _Due | None = None
        self._live = True
        self._entry: list | None = scheduler._arm(self, first)

    @property
    def active(self) -> bool:
        """
        Whether ticks are still coming.
        """
        return self._live

    def due(self, tick: int) -> float:
        """
        The ideal time of tick C{tick}.
        """
        return self.first + tick * self.period

    def cancel(self) -> None:
        """
        Stop ticking; a tick already queued is not delivered.  Inert once
        cancelled.
        """
        if not self._live:
            return
        self._live = False
        self._slot.timers.remove(self)
        self._queued = None
        if self._entry is not None:
            self._scheduler._disarm(self._entry)
            self._entry = None

    def _fire(self, now: float) -> None:
        scheduler = self._scheduler
        first, period = self.first, self.period
        tick = self._next
        time = first + tick * period
        if now - time >= period - _EPSILON:
            # The reactor slept through whole periods: deliver the latest due
            # tick, count the others.
            behind = floor((now - time) / period + _EPSILON)
            tick += behind
            time = first + tick * period
            self.missed += behind
            scheduler.ticks_missed += behind
        queued = self._queued
        if queued is not None:
            # The previous tick is still queued behind a busy machine's other
            # events: move it forward to this tick instead of queueing again.
            self.missed += 1
            scheduler.ticks_missed += 1
            queued.tick = tick
            queued.time = time
        else:
            self._queued = queued = _Due(self, tick, time)
            scheduler._enqueue(self._slot, queued, True)
        self._next = tick + 1
        self._entry = scheduler._arm(self, time + period)

    def _deliver(self, due: _Due) -> bool:
        if not self._live or due is not self._queued:
            return False
        self._queued = None
        self.tick = due.tick
        scheduler = self._scheduler
        lateness = scheduler.clock.seconds() - due.time
        self.last_lateness = lateness
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        scheduler.ticks_delivered += 1
        scheduler.tick_lateness_sum += lateness
        if lateness > scheduler.tick_lateness_max:
            scheduler.tick_lateness_max = lateness
        return True

    def __repr__(self) -> str:
        state = "active" if self._live else "inert"
        return f"<PeriodicTimer {self.event!r} every {self.period}s tick {self.tick} {state}>"


class Scheduler:
    """
    Runs many state machines in the reactor's thread, each with its own
    event queue (see the module docstring for the rules).

    @param clock: where time and delayed calls come from.
    @param on_error: C{on_error(machine, event, failure)} is called after a
        handler raised and the failure was logged; by default the machine
        is stopped.  If the hook itself raises, that is logged too and the
        machine is stopped.
    @param registry: a Prometheus registry to expose the figures below on
        (as C{communigate_scheduler_*}), or L{None}.
    @param max_events_per_turn: events handled per reactor turn at most.

    @ivar delivered: events handed to handlers.
    @ivar errors: handlers that raised.
    @ivar dropped: events posted to machines that were not running.
    @ivar queued: events waiting in all queues.
    @ivar max_queue_length: the longest any one machine's queue has been.
    @ivar turns: drains run (reactor turns that handled events).
    @ivar ticks_delivered: periodic ticks delivered.
    @ivar ticks_missed: periodic ticks skipped or folded (see L{PeriodicTimer}).
    @ivar tick_lateness_max: the latest any periodic tick has been, seconds.
    @ivar tick_lateness_sum: the sum of all ticks' lateness, seconds.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        on_error: Callable[[SupportsHandle, Any, Failure], None] | None = None,
        registry: CollectorRegistry | None = None,
        max_events_per_turn: int = DEFAULT_MAX_EVENTS_PER_TURN,
    ) -> None:
        if max_events_per_turn < 1:
            raise ValueError(
                f"max_events_per_turn must be at least 1, not {max_events_per_turn!r}"
            )
        self.clock = clock
        self.on_error = on_error
        self.max_events_per_turn = max_events_per_turn
        self.delivered = 0
        self.errors = 0
        self.dropped = 0
        self.queued = 0
        self.max_queue_length = 0
        self.turns = 0
        self.ticks_delivered = 0
        self.ticks_missed = 0
        self.tick_lateness_max = 0.0
        self.tick_lateness_sum = 0.0
        self._slots: dict[int, _Slot] = {}
        self._ready: deque[_Slot] = deque()  # machines with events, round-robin
        self._due_line: deque[_Slot] = deque()  # machines a timer made ready
        self._drain_call: IDelayedCall | None = None
        self._draining = False
        # Timers: a heap of [due, sequence, timer] (timer None once
        # cancelled), and one delayed call armed for the earliest.
        self._heap: list[list] = []
        self._armed = 0  # live entries in the heap
        self._sequence = count()
        self._timer_call: IDelayedCall | None = None
        self._timer_call_due = 0.0
        self._firing = False
        if registry is not None:
            registry.register(SchedulerCollector(self))

    # -- figures ---------------------------------------------------------

    @property
    def machines(self) -> int:
        """
        How many machines are running.
        """
        return len(self._slots)

    def is_running(self, machine: SupportsHandle) -> bool:
        """
        Whether C{machine} is started and not stopped.
        """
        return id(machine) in self._slots

    def queue_length(self, machine: SupportsHandle) -> int:
        """
        Events waiting for C{machine} (0 when it is not running).
        """
        slot = self._slots.get(id(machine))
        return 0 if slot is None else slot.length

    # -- lifecycle -------------------------------------------------------

    def start(self, machine: SupportsHandle) -> None:
        """
        Run C{machine}; its first event is L{Started}.  A L{Machine} learns
        its scheduler here.  Starting a running machine is an error.
        """
        key = id(machine)
        if key in self._slots:
            raise ValueError(f"{machine!r} is already running")
        slot = self._slots[key] = _Slot(machine)
        if isinstance(machine, Machine):
            machine._scheduler_ref = self
        self._enqueue(slot, Started())

    def stop(self, machine: SupportsHandle) -> bool:
        """
        Stop C{machine}: cancel its timers, drop its queue, deliver nothing
        more, then call its C{stopped()} if it has one (after its handler
        returns, if it stopped itself).  Returns whether it was running.
        """
        slot = self._slots.pop(id(machine), None)
        if slot is None:
            return False
        self.queued -= slot.length
        slot.length = 0
        slot.head = slot.rest = None
        if slot.timers:
            for timer in list(slot.timers):
                timer.cancel()
        if self.queued == 0 and not self._draining:
            self._idle()
        if slot.handling:
            slot.notify_stopped = True
        else:
            self._notify_stopped(machine)
        return True

    def stop_all(self) -> None:
        """
        Stop every machine (server shutdown) and disarm the drain.
        """
        for slot in list(self._slots.values()):
            self.stop(slot.machine)

    # -- events and timers -----------------------------------------------

    def post(self, machine: SupportsHandle, event: Any) -> bool:
        """
        Queue C{event} for C{machine}; it is delivered after the events
        already queued for it, and never from inside this call.  Returns
        L{False} (counted in C{dropped}) if the machine is not running:
        like CG/PL's C{SendEvent}, posting is fire-and-forget and the
        receiver may have finished.
        """
        slot = self._slots.get(id(machine))
        if slot is None:
            self.dropped += 1
            self.log.debug(
                "Dropped {event!r} for {machine!r}: not running", event=event, machine=machine
            )
            return False
        self._enqueue(slot, event)
        return True

    def after(self, machine: SupportsHandle, seconds: float, event: Any) -> Timer:
        """
        Queue C{event} for C{machine} in C{seconds}.  The timer is cancelled
        when the machine stops.
        """
        if seconds < 0:
            raise ValueError(f"a timer cannot be due in the past ({seconds!r} seconds)")
        slot = self._running_slot(machine)
        timer = Timer(self, slot, self.clock.seconds() + seconds, event)
        if slot.timers is None:
            slot.timers = [timer]
        else:
            slot.timers.append(timer)
        return timer

    def every(
        self, machine: SupportsHandle, period: float, event: Any, *, first: float | None = None
    ) -> PeriodicTimer:
        """
        Queue C{event} for C{machine} every C{period} seconds, the first in
        C{first} seconds (default: one period).  Tick times are computed
        from the start, so they do not drift; see L{PeriodicTimer}.
        """
        if not period > 0:
            raise ValueError(f"a periodic timer needs a positive period, not {period!r}")
        if first is None:
            first = period
        elif first < 0:
            raise ValueError(f"a first tick cannot be due in the past ({first!r} seconds)")
        slot = self._running_slot(machine)
        timer = PeriodicTimer(self, slot, period, event, self.clock.seconds() + first)
        if slot.timers is None:
            slot.timers = [timer]
        else:
            slot.timers.append(timer)
        return timer

    # -- internals -------------------------------------------------------

    def _running_slot(self, machine: SupportsHandle) -> _Slot:
        slot = self._slots.get(id(machine))
        if slot is None:
            raise NotRunning(f"{machine!r} is not running on this scheduler")
        return slot

    def _enqueue(self, slot: _Slot, item: Any, timer: bool = False) -> None:
        length = slot.length
        if length == 0:
            slot.head = item
        elif slot.rest is None:
            slot.rest = deque((item,))
        else:
            slot.rest.append(item)
        slot.length = length = length + 1
        self.queued += 1
        if length > self.max_queue_length:
            self.max_queue_length = length
        if not slot.ready:
            slot.ready = True
            (self._due_line if timer else self._ready).append(slot)
            if self._drain_call is None and not self._draining:
                self._drain_call = self.clock.callLater(0, self._drain)

    # Timers: why one heap and one delayed call.  A delayed call per timer
    # would do, but 10,000 NAT pingers would keep 10,000 DelayedCall objects
    # in the reactor (and Clock re-sorts its whole list on every call, which
    # makes large tests quadratic).  A heap entry is a small list, pushing
    # and popping it is done in C, timers due at the same moment are queued
    # in one reactor callback, and ties keep the order the timers were set.

    def _arm(self, timer: Timer | PeriodicTimer, due: float) -> list:
        entry = [due, next(self._sequence), timer]
        heappush(self._heap, entry)
        self._armed += 1
        if not self._firing and (self._timer_call is None or due < self._timer_call_due):
            self._rearm(due)
        return entry

    def _disarm(self, entry: list) -> None:
        entry[2] = None
        self._armed -= 1
        heap = self._heap
        if self._armed == 0:
            heap.clear()
            if self._timer_call is not None:
                self._timer_call.cancel()
                self._timer_call = None
        elif len(heap) > 64 and len(heap) > 2 * self._armed:
            # Mostly cancelled entries (flows forgotten): compact, so memory
            # follows the live timers.
            self._heap = [e for e in heap if e[2] is not None]
            heapify(self._heap)

    def _rearm(self, due: float) -> None:
        if self._timer_call is not None:
            self._timer_call.cancel()
        self._timer_call_due = due
        self._timer_call = self.clock.callLater(
            max(0.0, due - self.clock.seconds()), self._fire_timers
        )

    def _fire_timers(self) -> None:
        self._timer_call = None
        now = self.clock.seconds()
        heap = self._heap
        limit = now + _EPSILON
        self._firing = True
        try:
            while heap and heap[0][0] <= limit:
                entry = heappop(heap)
                timer = entry[2]
                if timer is not None:
                    self._armed -= 1
                    timer._fire(now)  # may push the next tick of a periodic timer
        finally:
            self._firing = False
            while heap and heap[0][2] is None:
                heappop(heap)
            if heap:
                self._rearm(heap[0][0])

    def _idle(self) -> None:
        """
        Nothing is queued any more (the last busy machines were stopped):
        disarm the drain and let go of the stopped machines still in line.
        """
        for line in (self._due_line, self._ready):
            for slot in line:
                slot.ready = False
            line.clear()
        if self._drain_call is not None:
            self._drain_call.cancel()
            self._drain_call = None

    def _drain(self) -> None:
        """
        One reactor turn: up to C{max_events_per_turn} events, one per
        machine per visit, round-robin; machines that a timer made ready
        first, for up to half the turn.
        """
        self._drain_call = None
        if self._draining:  # only reachable if a handler spins the clock
            self._drain_call = self.clock.callLater(0, self._drain)
            return
        self._draining = True
        self.turns += 1
        ready = self._ready
        due_line = self._due_line
        budget = self.max_events_per_turn
        due_budget = max(1, budget // 2)
        try:
            while budget:
                if due_line and due_budget:
                    slot = due_line.popleft()
                    due_budget -= 1
                elif ready:
                    slot = ready.popleft()
                elif due_line:
                    slot = due_line.popleft()
                else:
                    break
                length = slot.length
                if not length:  # stopped while waiting in line
                    slot.ready = False
                    continue
                item = slot.head
                slot.length = length = length - 1
                self.queued -= 1
                if length:
                    slot.head = slot.rest.popleft()
                    ready.append(slot)
                else:
                    slot.head = slot.rest = None
                    slot.ready = False
                if type(item) is _Due:
                    if not item.timer._deliver(item):
                        continue  # cancelled after it was queued
                    event = item.timer.event
                else:
                    event = item
                budget -= 1
                # delivery, inline: this loop is the scheduler's hot path
                slot.handling = True
                self.delivered += 1
                try:
                    slot.machine.handle(event)
                except Exception:
                    slot.handling = False
                    self._handler_failed(slot.machine, event, Failure())
                else:
                    slot.handling = False
                if slot.notify_stopped:
                    slot.notify_stopped = False
                    self._notify_stopped(slot.machine)
        finally:
            self._draining = False
            if (ready or due_line) and self._drain_call is None:
                self._drain_call = self.clock.callLater(0, self._drain)

    def _handler_failed(self, machine: SupportsHandle, event: Any, failure: Failure) -> None:
        self.errors += 1
        self.log.failure(
            "{machine!r} raised handling {event!r}",
            failure,
            LogLevel.error,
            machine=machine,
            event=event,
        )
        if self.on_error is None:
            self.stop(machine)
            return
        try:
            self.on_error(machine, event, failure)
        except Exception:
            self.log.failure(
                "on_error hook raised for {machine!r}; stopping it",
                Failure(),
                LogLevel.error,
                machine=machine,
                event=event,
            )
            self.stop(machine)

    def _notify_stopped(self, machine: SupportsHandle) -> None:
        stopped = getattr(machine, "stopped", None)
        if stopped is None:
            return
        try:
            stopped()
        except Exception:
            self.errors += 1
            self.log.failure(
                "{machine!r} raised in stopped()", Failure(), LogLevel.error, machine=machine
            )


class Machine:
    """
    A base class for machines: C{handle(event)} to override, and the
    scheduler's calls as methods.  C{scheduler} is set by
    L{Scheduler.start}.
    """

    # A slot, not a class attribute, so that a subclass with __slots__ (a
    # NAT pinger, of which there are thousands) carries no __dict__.
    __slots__ = ("_scheduler_ref",)

    @property
    def scheduler(self) -> Scheduler | None:
        """
        The scheduler running this machine, once started.
        """
        try:
            return self._scheduler_ref
        except AttributeError:
            return None

    def handle(self, event: Any) -> None:
        """
        Take one event.  Called by the scheduler only, one at a time.
        """
        raise NotImplementedError(f"{type(self).__name__} does not handle events")

    def stopped(self) -> None:
        """
        Called once when the machine has been stopped; nothing more will be
        delivered.  Does nothing unless overridden.
        """

    @property
    def running(self) -> bool:
        scheduler = self.scheduler
        return scheduler is not None and scheduler.is_running(self)

    def post(self, event: Any) -> bool:
        """
        Queue C{event} for this machine (behind what is already queued).
        """
        try:
            scheduler = self._scheduler_ref
        except AttributeError:
            raise NotRunning(f"{self!r} has not been started") from None
        return scheduler.post(self, event)

    def after(self, seconds: float, event: Any) -> Timer:
        """
        Queue C{event} for this machine in C{seconds}.
        """
        return self._started().after(self, seconds, event)

    def every(self, period: float, event: Any, *, first: float | None = None) -> PeriodicTimer:
        """
        Queue C{event} for this machine every C{period} seconds.
        """
        return self._started().every(self, period, event, first=first)

    def stop(self) -> bool:
        """
        Stop this machine (see L{Scheduler.stop}).
        """
        scheduler = self.scheduler
        return scheduler is not None and scheduler.stop(self)

    def _started(self) -> Scheduler:
        try:
            return self._scheduler_ref
        except AttributeError:
            raise NotRunning(f"{self!r} has not been started") from None


class SchedulerCollector(Collector):
    """
    The scheduler's figures as C{communigate_scheduler_*} metrics, read at
    scrape time so that the event path pays nothing for them.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def collect(self):
        s = self._scheduler
        yield GaugeMetricFamily(
            "communigate_scheduler_machines", "Machines running.", value=s.machines
        )
        yield GaugeMetricFamily(
            "communigate_scheduler_queued_events", "Events waiting in queues.", value=s.queued
        )
        yield GaugeMetricFamily(
            "communigate_scheduler_max_queue_length",
            "The longest any machine's queue has been.",
            value=s.max_queue_length,
        )
        yield CounterMetricFamily(
            "communigate_scheduler_events_delivered", "Events handed to handlers.",
            value=s.delivered,
        )
        yield CounterMetricFamily(
            "communigate_scheduler_handler_errors", "Handlers that raised.", value=s.errors
        )
        yield CounterMetricFamily(
            "communigate_scheduler_events_dropped",
            "Events posted to machines that were not running.",
            value=s.dropped,
        )
        yield CounterMetricFamily(
            "communigate_scheduler_ticks_missed",
            "Periodic ticks skipped or folded because the machine or reactor was behind.",
            value=s.ticks_missed,
        )
        yield SummaryMetricFamily(
            "communigate_scheduler_tick_lateness_seconds",
            "How late periodic ticks reached their handler.",
            count_value=s.ticks_delivered,
            sum_value=s.tick_lateness_sum,
        )
        yield GaugeMetricFamily(
            "communigate_scheduler_tick_lateness_max_seconds",
            "The latest any periodic tick has reached its handler.",
            value=s.tick_lateness_max,
        )
