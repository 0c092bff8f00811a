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

    __slots__ = ("machine", "queue", "ready", "timers", "running", "handling", "notify_stopped")

    def __init__(self, machine: SupportsHandle) -> None:
        self.machine = machine
        self.queue: deque = deque()
        self.ready = False  # in the scheduler's round-robin line
        self.timers: set = set()  # live Timer and PeriodicTimer handles
        self.running = True
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

    __slots__ = ("_scheduler", "_slot", "event", "due", "_call", "_due", "_live")

    def __init__(self, scheduler: Scheduler, slot: _Slot, seconds: float, event: Any) -> None:
        self._scheduler = scheduler
        self._slot = slot
        self.event = event
        self.due = scheduler.clock.seconds() + seconds
        self._due: _Due | None = None
        self._live = True
        self._call: IDelayedCall | None = scheduler.clock.callLater(seconds, self._fire)

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
        self._slot.timers.discard(self)
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _fire(self) -> None:
        self._call = None
        self._scheduler._enqueue(self._slot, _Due(self, 0, self.due))

    def _deliver(self, due: _Due) -> bool:
        if not self._live:  # cancelled after it was queued
            return False
        self._live = False
        self._slot.timers.discard(self)
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
        "last_lateness", "max_lateness", "_next", "_call", "_queued", "_live",
    )

    def __init__(
        self, scheduler: Scheduler, slot: _Slot, period: float, event: Any, first: float
    ) -> None:
        self._scheduler = scheduler
        self._slot = slot
        self.event = event
        self.period = period
        self.first = scheduler.clock.seconds() + first
        self.tick = -1
        self.missed = 0
        self.last_lateness = 0.0
        self.max_lateness = 0.0
        self._next = 0  # index of the tick the delayed call is armed for
        self._queued: _Due | None = None
        self._live = True
        self._call: IDelayedCall | None = scheduler.clock.callLater(first, self._fire)

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
        self._slot.timers.discard(self)
        self._queued = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _fire(self) -> None:
        clock = self._scheduler.clock
        now = clock.seconds()
        tick = self._next
        late = now - self.due(tick)
        if late >= self.period - _EPSILON:
            # The reactor slept through whole periods: deliver the latest due
            # tick, count the others.
            behind = floor(late / self.period + _EPSILON)
            tick += behind
            self.missed += behind
            self._scheduler.ticks_missed += behind
        if self._queued is not None:
            # The previous tick is still queued behind a busy machine's other
            # events: move it forward to this tick instead of queueing again.
            self.missed += 1
            self._scheduler.ticks_missed += 1
            self._queued.tick = tick
            self._queued.time = self.due(tick)
        else:
            self._queued = _Due(self, tick, self.due(tick))
            self._scheduler._enqueue(self._slot, self._queued)
        self._next = tick + 1
        self._call = clock.callLater(max(0.0, self.due(self._next) - now), self._fire)

    def _deliver(self, due: _Due) -> bool:
        if not self._live or due is not self._queued:
            return False
        self._queued = None
        self.tick = due.tick
        lateness = self._scheduler.clock.seconds() - due.time
        self.last_lateness = lateness
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        self._scheduler._record_tick(lateness)
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
        self._ready: deque[_Slot] = deque()
        self._drain_call: IDelayedCall | None = None
        self._draining = False
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
        return 0 if slot is None else len(slot.queue)

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
            machine.scheduler = self
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
        slot.running = False
        self.queued -= len(slot.queue)
        slot.queue.clear()
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
        timer = Timer(self, slot, seconds, event)
        slot.timers.add(timer)
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
        timer = PeriodicTimer(self, slot, period, event, first)
        slot.timers.add(timer)
        return timer

    # -- internals -------------------------------------------------------

    def _running_slot(self, machine: SupportsHandle) -> _Slot:
        slot = self._slots.get(id(machine))
        if slot is None:
            raise NotRunning(f"{machine!r} is not running on this scheduler")
        return slot

    def _enqueue(self, slot: _Slot, item: Any) -> None:
        queue = slot.queue
        queue.append(item)
        self.queued += 1
        if len(queue) > self.max_queue_length:
            self.max_queue_length = len(queue)
        if not slot.ready:
            slot.ready = True
            self._ready.append(slot)
            if self._drain_call is None and not self._draining:
                self._drain_call = self.clock.callLater(0, self._drain)

    def _idle(self) -> None:
        """
        Nothing is queued any more (the last busy machines were stopped):
        disarm the drain and let go of the stopped machines still in line.
        """
        for slot in self._ready:
            slot.ready = False
        self._ready.clear()
        if self._drain_call is not None:
            self._drain_call.cancel()
            self._drain_call = None

    def _record_tick(self, lateness: float) -> None:
        self.ticks_delivered += 1
        self.tick_lateness_sum += lateness
        if lateness > self.tick_lateness_max:
            self.tick_lateness_max = lateness

    def _drain(self) -> None:
        """
        One reactor turn: up to C{max_events_per_turn} events, one per
        machine per visit, round-robin.
        """
        self._drain_call = None
        if self._draining:  # only reachable if a handler spins the clock
            self._drain_call = self.clock.callLater(0, self._drain)
            return
        self._draining = True
        self.turns += 1
        ready = self._ready
        budget = self.max_events_per_turn
        try:
            while ready and budget:
                slot = ready.popleft()
                queue = slot.queue
                if not queue:  # stopped while waiting in line
                    slot.ready = False
                    continue
                item = queue.popleft()
                self.queued -= 1
                if queue:
                    ready.append(slot)
                else:
                    slot.ready = False
                if type(item) is _Due:
                    if not item.timer._deliver(item):
                        continue  # cancelled after it was queued
                    event = item.timer.event
                else:
                    event = item
                budget -= 1
                self._deliver(slot, event)
        finally:
            self._draining = False
            if ready and self._drain_call is None:
                self._drain_call = self.clock.callLater(0, self._drain)

    def _deliver(self, slot: _Slot, event: Any) -> None:
        machine = slot.machine
        slot.handling = True
        self.delivered += 1
        try:
            machine.handle(event)
        except Exception:
            slot.handling = False
            self._handler_failed(machine, event, Failure())
        else:
            slot.handling = False
        if slot.notify_stopped:
            slot.notify_stopped = False
            self._notify_stopped(machine)

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

    scheduler: Scheduler | None = None

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
        return self.scheduler is not None and self.scheduler.is_running(self)

    def post(self, event: Any) -> bool:
        """
        Queue C{event} for this machine (behind what is already queued).
        """
        return self._scheduler().post(self, event)

    def after(self, seconds: float, event: Any) -> Timer:
        """
        Queue C{event} for this machine in C{seconds}.
        """
        return self._scheduler().after(self, seconds, event)

    def every(self, period: float, event: Any, *, first: float | None = None) -> PeriodicTimer:
        """
        Queue C{event} for this machine every C{period} seconds.
        """
        return self._scheduler().every(self, period, event, first=first)

    def stop(self) -> bool:
        """
        Stop this machine (see L{Scheduler.stop}).
        """
        return self.scheduler is not None and self.scheduler.stop(self)

    def _scheduler(self) -> Scheduler:
        if self.scheduler is None:
            raise NotRunning(f"{self!r} has not been started")
        return self.scheduler


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
