"""
The scheduler every state machine runs on: order, non-reentrancy,
fairness, timers as events, stop semantics, error isolation.  Time comes
from L{Clock} only; a "slow" handler spends clock time by moving
C{Clock.rightNow} forward, which is what a real reactor sees when a handler
uses CPU.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from communigate.core.scheduler import (
    Machine,
    NotRunning,
    PeriodicTimer,
    Scheduler,
    Started,
    Timer,
)


class Recorder(Machine):
    """
    Records what it gets; an event that is a callable is called with the
    machine (so tests can act from inside a handler).
    """

    def __init__(self, name="m"):
        self.name = name
        self.events = []
        self.inside = False
        self.stopped_calls = []

    def handle(self, event):
        assert not self.inside, "handler re-entered"
        self.inside = True
        try:
            if callable(event):
                self.events.append(getattr(event, "label", "call"))
                event(self)
            elif not isinstance(event, Started):
                self.events.append(event)
        finally:
            self.inside = False

    def stopped(self):
        self.stopped_calls.append(list(self.events))

    def __repr__(self):
        return f"<Recorder {self.name}>"


def act(label, function):
    function.label = label
    return function


def started(clock, *machines, **kwargs):
    scheduler = Scheduler(clock, **kwargs)
    for machine in machines:
        scheduler.start(machine)
    clock.advance(0)
    return scheduler


# -- order and non-reentrancy ----------------------------------------------


def test_started_is_the_first_event_and_comes_on_the_next_turn_not_inside_start():
    clock = Clock()
    scheduler = Scheduler(clock)
    got = []

    class First(Machine):
        def handle(self, event):
            got.append(event)

    machine = First()
    scheduler.start(machine)
    machine.post("after start")
    assert got == []
    clock.advance(0)
    assert got == [Started(), "after start"]
    assert machine.scheduler is scheduler and machine.running


def test_events_are_delivered_in_the_order_they_were_posted():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    for i in range(100):
        scheduler.post(machine, i)
    clock.advance(0)
    assert machine.events == list(range(100))


def test_post_never_runs_a_handler_in_the_callers_stack():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    assert scheduler.post(machine, "x") is True
    assert machine.events == []
    assert scheduler.queued == 1
    clock.advance(0)
    assert machine.events == ["x"]
    assert scheduler.queued == 0


def test_an_event_a_handler_posts_to_itself_comes_after_it_returns_and_after_earlier_events():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    log = []

    def first(m):
        m.post("from inside")
        log.append("first handler returns")
        assert m.events == ["first"]

    scheduler.post(machine, act("first", first))
    scheduler.post(machine, "second")
    clock.advance(0)
    assert machine.events == ["first", "second", "from inside"]
    assert log == ["first handler returns"]


def test_an_event_posted_to_another_machine_from_a_handler_waits_for_that_handler_to_return():
    clock = Clock()
    trace = []

    class Echo(Recorder):
        def handle(self, event):
            if not isinstance(event, Started):
                trace.append(("b gets", event, a.inside))
            super().handle(event)

    a, echo = Recorder("a"), Echo("echo")
    scheduler = started(clock, a, echo)

    def ping(m):
        scheduler.post(echo, "ping")
        trace.append("a returns")

    scheduler.post(a, act("ping", ping))
    clock.advance(0)
    assert trace == ["a returns", ("b gets", "ping", False)]


def test_ping_pong_between_two_machines_alternates_without_nesting():
    clock = Clock()
    depth = []

    class Player(Machine):
        active = 0

        def __init__(self):
            self.partner = None
            self.count = 0

        def handle(self, event):
            Player.active += 1
            depth.append(Player.active)
            if isinstance(event, int) and event < 50:
                self.count += 1
                self.partner.post(event + 1)
            Player.active -= 1

    a, b = Player(), Player()
    a.partner, b.partner = b, a
    scheduler = started(clock, a, b)
    a.post(0)
    clock.advance(0)
    assert a.count + b.count == 50
    assert max(depth) == 1


# -- fairness and bounded turns --------------------------------------------


def test_a_machine_with_a_long_backlog_does_not_starve_one_posted_to_later():
    clock = Clock()
    order = []

    class Named(Machine):
        def __init__(self, name):
            self.name = name

        def handle(self, event):
            if not isinstance(event, Started):
                order.append(self.name)

    busy, quiet = Named("busy"), Named("quiet")
    started(clock, busy, quiet)
    for i in range(1000):
        busy.post(i)
    quiet.post("hello")
    clock.advance(0)
    assert order.index("quiet") == 1  # not after the 1,000 queued before it


def test_a_machine_that_keeps_posting_to_itself_lets_others_in_between():
    clock = Clock()
    order = []

    class Looping(Machine):
        def handle(self, event):
            if isinstance(event, int) and event < 100:
                order.append("loop")
                self.post(event + 1)

    class Named(Machine):
        def handle(self, event):
            if not isinstance(event, Started):
                order.append("other")
                if event < 3:
                    self.post(event + 1)

    looping, other = Looping(), Named()
    started(clock, looping, other)
    looping.post(0)
    other.post(0)
    clock.advance(0)
    assert order[:8] == ["loop", "other"] * 4


def test_ready_machines_are_visited_round_robin_one_event_per_visit():
    clock = Clock()
    order = []

    class Named(Machine):
        def __init__(self, name):
            self.name = name

        def handle(self, event):
            if not isinstance(event, Started):
                order.append((self.name, event))

    a, b, c = Named("a"), Named("b"), Named("c")
    scheduler = started(clock, a, b, c)
    for i in range(3):
        a.post(i)
    for i in range(2):
        b.post(i)
    c.post(0)
    clock.advance(0)
    assert order == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_a_turn_handles_at_most_max_events_per_turn_and_the_rest_wait_for_the_next_turn():
    clock = Clock()
    turns = []

    class Counting(Machine):
        def handle(self, event):
            turns.append(self.scheduler.turns)

    machine = Counting()
    scheduler = started(clock, machine, max_events_per_turn=3)
    for i in range(10):
        machine.post(i)
    first_turn = scheduler.turns
    assert len(clock.getDelayedCalls()) == 1  # one drain for the batch, not one per event
    clock.advance(0)
    per_turn = [turns.count(t) for t in sorted(set(turns[1:]))]
    assert per_turn == [3, 3, 3, 1]
    assert scheduler.turns == first_turn + 4


def test_a_scheduler_needs_at_least_one_event_per_turn():
    with pytest.raises(ValueError, match="max_events_per_turn"):
        Scheduler(Clock(), max_events_per_turn=0)


def test_starting_a_running_machine_twice_is_refused():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    with pytest.raises(ValueError, match="already running"):
        scheduler.start(machine)


def test_a_plain_object_with_handle_can_be_a_machine():
    clock = Clock()

    class Plain:
        def __init__(self):
            self.events = []

        def handle(self, event):
            self.events.append(event)

    plain = Plain()
    scheduler = started(clock, plain)
    scheduler.post(plain, 1)
    scheduler.after(plain, 1, "timer")
    clock.advance(1)
    assert plain.events == [Started(), 1, "timer"]
    assert scheduler.stop(plain) is True


# -- timers ----------------------------------------------------------------


def test_a_one_shot_timer_delivers_its_event_when_due_and_not_before():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    timer = machine.after(2.5, "wake")
    assert isinstance(timer, Timer) and timer.active and timer.due == 2.5
    clock.advance(2.4)
    assert machine.events == []
    clock.advance(0.1)
    assert machine.events == ["wake"]
    assert not timer.active
    assert clock.getDelayedCalls() == []


def test_a_timer_event_queues_behind_events_already_posted():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    machine.after(0, "timer")

    def post_more(m):
        m.post("posted inside")

    scheduler.post(machine, act("first", post_more))
    clock.advance(0)
    assert machine.events == ["first", "timer", "posted inside"]


def test_a_cancelled_timer_delivers_nothing_and_leaves_no_delayed_call():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    timer = machine.after(5, "never")
    timer.cancel()
    assert not timer.active
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert machine.events == []
    timer.cancel()  # inert


def test_a_fired_timer_is_inert():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    timer = machine.after(1, "once")
    clock.advance(1)
    timer.cancel()
    clock.advance(5)
    assert machine.events == ["once"]


def test_a_timer_cancelled_from_a_handler_after_it_was_queued_is_not_delivered():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    timers = {}

    def cancel_it(m):
        timers["t"].cancel()

    # Both become due at t=1; the cancel event is queued first.
    machine.after(1, act("cancel", cancel_it))
    timers["t"] = machine.after(1, "cancelled")
    clock.advance(1)
    assert machine.events == ["cancel"]
    assert scheduler.queued == 0
    assert clock.getDelayedCalls() == []


def test_a_periodic_timer_ticks_at_its_period():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    times = []

    def tick(m):
        times.append(clock.seconds())

    timer = machine.every(0.02, act("tick", tick))
    assert isinstance(timer, PeriodicTimer)
    for _ in range(10):
        clock.advance(0.02)
    assert times == pytest.approx([0.02 * k for k in range(1, 11)])
    assert timer.tick == 9 and timer.missed == 0


def test_a_periodic_timer_can_start_after_a_given_delay():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    timer = machine.every(10, "tick", first=3)
    clock.advance(3)
    assert machine.events == ["tick"]
    clock.advance(10)
    assert machine.events == ["tick", "tick"]
    assert timer.due(2) == 23


def test_a_periodic_timer_cancelled_from_its_own_tick_stops_and_leaves_no_delayed_call():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    holder = {}

    def tick(m):
        if len(m.events) == 3:
            holder["timer"].cancel()

    holder["timer"] = machine.every(1, act("tick", tick))
    clock.advance(1)
    clock.advance(1)
    clock.advance(1)
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert machine.events == ["tick"] * 3


def test_periodic_ticks_follow_the_ideal_times_so_lateness_does_not_accumulate():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    period, step = 0.02, 0.007  # the reactor wakes up at awkward moments
    times = []
    timer = machine.every(period, act("tick", lambda m: times.append(clock.seconds())))
    for _ in range(3000):
        clock.advance(step)
    assert len(times) == int(3000 * step / period + 1e-6)
    for k, when in enumerate(times):
        ideal = period * (k + 1)
        assert ideal - 1e-9 <= when < ideal + step
    # A "now + period" timer would have drifted by about step/2 per tick.
    assert times[-1] - period * len(times) < step
    assert 0 < timer.max_lateness < step
    assert scheduler.tick_lateness_max == timer.max_lateness
    assert scheduler.ticks_delivered == len(times)


def test_when_whole_periods_pass_one_tick_is_delivered_and_the_rest_counted_missed():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    timer = machine.every(1, "tick")
    clock.advance(1)
    clock.advance(4.5)  # the reactor was blocked through ticks 1..4
    assert machine.events == ["tick", "tick"]
    assert timer.tick == 4 and timer.missed == 3
    assert timer.last_lateness == pytest.approx(0.5)
    assert scheduler.ticks_missed == 3
    clock.advance(0.5)  # and the next tick is back on the ideal time
    assert machine.events == ["tick"] * 3 and timer.tick == 5 and timer.last_lateness == 0


def test_a_tick_due_while_the_previous_one_is_still_queued_is_folded_into_it():
    clock = Clock()
    ticks = []

    class Busy(Machine):
        def handle(self, event):
            if event == "work":
                clock.rightNow += 0.015  # this handler uses 15 ms of CPU
            elif event == "tick":
                ticks.append(clock.seconds())

    busy = Busy()
    scheduler = started(clock, busy)
    timer = busy.every(0.02, "tick")
    clock.advance(0.019)
    for _ in range(4):
        busy.post("work")
    clock.advance(0.001)
    # The four work events run from 0.02 to 0.08; tick 0, due at 0.02, waits
    # behind them in the machine's own queue, and ticks 1 to 3 are folded
    # into it instead of piling up.
    assert ticks == [pytest.approx(0.08)]
    assert timer.tick == 3 and timer.missed == 3
    assert scheduler.max_queue_length == 4


def test_a_machine_a_timer_made_ready_overtakes_machines_waiting_in_line():
    clock = Clock()
    order = []

    class Named(Machine):
        def __init__(self, name):
            self.name = name

        def handle(self, event):
            if not isinstance(event, Started):
                order.append(self.name)
                clock.rightNow += 0.01  # each event costs 10 ms

    others = [Named(f"other{i}") for i in range(10)]
    mixer = Named("mixer")
    started(clock, mixer, *others, max_events_per_turn=2)
    mixer.every(1, "tick")
    clock.advance(0.99)
    for other in others:
        other.post("x")
    clock.advance(0.001)
    # the first turn ends at 1.01, after the tick came due: it goes first
    # in the next turn, ahead of the eight others still waiting
    assert order[:3] == ["other0", "other1", "mixer"]
    assert len(order) == 11


def test_ticks_take_at_most_half_a_turn_while_other_machines_wait():
    clock = Clock()
    turns = {"tick": [], "post": []}

    class Counting(Machine):
        def handle(self, event):
            if event in turns:
                turns[event].append(self.scheduler.turns)
            if event == "post":
                clock.rightNow += 0.05

    tickers = [Counting() for _ in range(10)]
    posters = [Counting() for _ in range(10)]
    started(clock, *tickers, *posters, max_events_per_turn=4)
    for ticker in tickers:
        ticker.every(1, "tick")
    clock.advance(0.9)
    for poster in posters:
        for _ in range(3):
            poster.post("post")
    clock.advance(0.001)
    first = min(turns["tick"])
    per_turn = [(turns["tick"].count(t), turns["post"].count(t)) for t in range(first, first + 5)]
    assert per_turn == [(2, 2)] * 5
    assert len(turns["post"]) == 30


def test_timers_come_due_in_time_order_and_timers_due_together_in_the_order_they_were_set():
    clock = Clock()
    machine = Recorder()
    started(clock, machine)
    machine.every(0.02, "tick")
    machine.after(0.025, "one-shot")  # due between two ticks
    for name in "abc":
        machine.after(0.03, name)
    times = {}

    for _ in range(50):
        clock.advance(0.001)
        for event in machine.events:
            times.setdefault(event, clock.seconds())
    assert machine.events[:5] == ["tick", "one-shot", "a", "b", "c"]
    assert times["one-shot"] == pytest.approx(0.025)


def test_many_timers_hold_one_delayed_call_and_cancelled_ones_are_let_go():
    clock = Clock()
    machines = [Recorder(str(i)) for i in range(1000)]
    scheduler = started(clock, *machines)
    timers = [m.after(10 + i / 1000, "wake") for i, m in enumerate(machines)]
    assert len(clock.getDelayedCalls()) == 1
    for timer in timers[:900]:
        timer.cancel()
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(11)
    assert sum(len(m.events) for m in machines) == 100
    assert clock.getDelayedCalls() == []
    assert scheduler.delivered == 1000 + 100


def test_timers_refuse_bad_times_and_machines_that_are_not_running():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    with pytest.raises(ValueError, match="past"):
        machine.after(-1, "x")
    with pytest.raises(ValueError, match="positive period"):
        machine.every(0, "x")
    with pytest.raises(ValueError, match="past"):
        machine.every(1, "x", first=-1)
    with pytest.raises(NotRunning):
        Recorder().after(1, "x")
    machine.stop()
    with pytest.raises(NotRunning):
        scheduler.after(machine, 1, "x")


# -- stop ------------------------------------------------------------------


def test_a_stopped_machine_gets_nothing_more_and_its_timers_and_queue_are_gone():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    machine.after(1, "one-shot")
    machine.every(0.5, "tick")
    machine.post("queued")
    assert machine.stop() is True
    assert clock.getDelayedCalls() == []  # the drain was the only other call, and it ran
    clock.advance(0)
    clock.advance(10)
    assert machine.events == []
    assert scheduler.queued == 0 and scheduler.machines == 0
    assert scheduler.post(machine, "late") is False
    assert scheduler.dropped == 1
    assert machine.stopped_calls == [[]]
    assert machine.stop() is False  # stopping twice is harmless
    assert machine.stopped_calls == [[]]


def test_a_machine_stopping_itself_gets_none_of_its_queued_events_and_stopped_runs_after():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    during = []

    def stop_now(m):
        m.stop()
        during.append(list(m.stopped_calls))

    machine.every(1, "tick")
    scheduler.post(machine, act("stop", stop_now))
    scheduler.post(machine, "never")
    clock.advance(0)
    clock.advance(5)
    assert machine.events == ["stop"]
    assert during == [[]]  # not called inside its own handler
    assert machine.stopped_calls == [["stop"]]
    assert clock.getDelayedCalls() == []


def test_a_machine_stopped_by_another_machine_gets_nothing_already_queued():
    clock = Clock()
    victim, killer = Recorder("victim"), Recorder("killer")
    scheduler = started(clock, killer, victim)
    scheduler.post(killer, act("kill", lambda m: scheduler.stop(victim)))
    scheduler.post(victim, "too late")
    clock.advance(0)
    assert victim.events == []
    assert victim.stopped_calls == [[]]


def test_stop_all_stops_every_machine_and_leaves_no_delayed_call():
    clock = Clock()
    machines = [Recorder(str(i)) for i in range(5)]
    scheduler = started(clock, *machines)
    for m in machines:
        m.every(1, "tick")
        m.post("pending")
    scheduler.stop_all()
    assert clock.getDelayedCalls() == []
    assert scheduler.machines == 0


def test_a_stopped_machine_can_be_started_again_with_a_fresh_queue():
    clock = Clock()
    machine = Recorder()
    scheduler = started(clock, machine)
    machine.post("old")
    machine.stop()
    scheduler.start(machine)
    machine.post("new")
    clock.advance(0)
    assert machine.events == ["new"]


# -- errors ----------------------------------------------------------------


class Exploding(Recorder):
    def handle(self, event):
        if event == "boom":
            raise ZeroDivisionError("boom")
        super().handle(event)


def test_a_handler_that_raises_is_logged_with_its_machine_and_event_and_only_its_machine_stops():
    clock = Clock()
    bad, good = Exploding("bad"), Recorder("good")
    scheduler = started(clock, bad, good)
    bad.every(1, "tick")
    with capturedLogs() as events:
        bad.post("boom")
        bad.post("after")
        good.post("fine")
        clock.advance(0)
    good.post("still fine")
    clock.advance(5)
    assert good.events == ["fine", "still fine"]
    assert bad.events == []
    assert not bad.running and bad.stopped_calls == [[]]
    assert scheduler.errors == 1
    [logged] = [e for e in events if e.get("log_failure") is not None]
    assert logged["machine"] is bad and logged["event"] == "boom"
    assert logged["log_level"] == LogLevel.error
    assert logged["log_failure"].check(ZeroDivisionError)
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_the_on_error_hook_replaces_stopping():
    clock = Clock()
    seen = []
    bad = Exploding()
    scheduler = Scheduler(clock, on_error=lambda m, e, f: seen.append((m, e, f.type)))
    scheduler.start(bad)
    with capturedLogs():
        bad.post("boom")
        bad.post("after")
        clock.advance(0)
    assert seen == [(bad, "boom", ZeroDivisionError)]
    assert bad.running and bad.events == ["after"]


def test_an_on_error_hook_that_raises_is_logged_and_the_machine_stopped():
    clock = Clock()

    def hook(machine, event, failure):
        raise RuntimeError("hook broke")

    bad = Exploding()
    scheduler = Scheduler(clock, on_error=hook)
    scheduler.start(bad)
    with capturedLogs() as events:
        bad.post("boom")
        clock.advance(0)
    assert not bad.running
    failures = [e["log_failure"].type for e in events if e.get("log_failure")]
    assert failures == [ZeroDivisionError, RuntimeError]


def test_a_stopped_hook_that_raises_is_logged_and_counted():
    clock = Clock()

    class BadStop(Recorder):
        def stopped(self):
            raise ValueError("bad cleanup")

    machine = BadStop()
    scheduler = started(clock, machine)
    with capturedLogs() as events:
        machine.stop()
    assert scheduler.errors == 1
    assert [e["log_failure"].type for e in events if e.get("log_failure")] == [ValueError]


# -- observability ---------------------------------------------------------


def test_the_figures_count_machines_queues_deliveries_and_errors():
    clock = Clock()
    a, b = Recorder("a"), Exploding("b")
    scheduler = Scheduler(clock)
    scheduler.start(a)
    scheduler.start(b)
    for i in range(5):
        a.post(i)
    assert scheduler.machines == 2
    assert scheduler.queued == 7
    assert scheduler.queue_length(a) == 6
    assert scheduler.max_queue_length == 6
    with capturedLogs():
        b.post("boom")
        clock.advance(0)
    assert scheduler.delivered == 2 + 5 + 1
    assert scheduler.errors == 1
    assert scheduler.machines == 1
    assert scheduler.queued == 0


def test_the_figures_are_on_the_prometheus_registry_when_one_is_given():
    clock = Clock()
    registry = CollectorRegistry()
    machine = Recorder()
    scheduler = Scheduler(clock, registry=registry)
    scheduler.start(machine)
    machine.every(0.02, "tick")
    clock.advance(0)
    clock.advance(0.02)
    machine.post("waiting")
    value = registry.get_sample_value
    assert value("communigate_scheduler_machines") == 1
    assert value("communigate_scheduler_queued_events") == 1
    assert value("communigate_scheduler_events_delivered_total") == 2
    assert value("communigate_scheduler_handler_errors_total") == 0
    assert value("communigate_scheduler_max_queue_length") == 1
    assert value("communigate_scheduler_tick_lateness_seconds_count") == 1
    assert value("communigate_scheduler_ticks_missed_total") == 0
    assert value("communigate_scheduler_events_dropped_total") == 0
    assert value("communigate_scheduler_tick_lateness_max_seconds") == 0


# -- random interleavings --------------------------------------------------


class Checked(Machine):
    """
    Checks the scheduler's promises as events arrive: never re-entered,
    nothing after stop, posted events in posting order.
    """

    active = 0  # handlers running, across all machines

    def __init__(self, index, world):
        self.index = index
        self.world = world
        self.got = []

    def handle(self, event):
        assert Checked.active == 0, "a handler ran inside another"
        assert self.index not in self.world["stopped"], "delivered after stop"
        Checked.active += 1
        try:
            if isinstance(event, Started):
                return
            kind, payload = event
            self.got.append(event)
            if kind == "timer":
                assert self.world["clock"].seconds() >= payload[1] - 1e-9
                assert payload[0] not in self.world["cancelled"]
            elif kind == "tick":
                assert payload not in self.world["cancelled"], "tick after cancel"
            elif kind == "relay":
                # post onward from inside the handler
                target, seq = payload[1], payload[2]
                self.world["post"](target, seq)
        finally:
            Checked.active -= 1


operations = st.lists(
    st.one_of(
        st.tuples(st.just("post"), st.integers(0, 3)),
        st.tuples(st.just("relay"), st.integers(0, 3), st.integers(0, 3)),
        st.tuples(st.just("after"), st.integers(0, 3), st.sampled_from([0, 0.5, 1, 2.5])),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("stop"), st.integers(0, 3)),
        st.tuples(st.just("advance"), st.sampled_from([0, 0.25, 1, 3])),
        st.tuples(st.just("every"), st.integers(0, 3), st.sampled_from([0.5, 1])),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(1, 4))
def test_random_interleavings_never_deliver_out_of_order_reentrantly_or_after_stop(ops, per_turn):
    clock = Clock()
    scheduler = Scheduler(clock, max_events_per_turn=per_turn)
    world = {"stopped": set(), "cancelled": set(), "clock": clock}
    machines = [Checked(i, world) for i in range(4)]
    posted = {i: [] for i in range(4)}
    sequence = iter(range(10**6))
    timers = []
    owner = {}  # timer index -> machine index

    def post(index, seq=None):
        seq = next(sequence) if seq is None else seq
        if scheduler.post(machines[index], ("post", seq)):
            posted[index].append(seq)

    world["post"] = post
    for m in machines:
        scheduler.start(m)
    for op in ops:
        kind = op[0]
        if kind == "post":
            post(op[1])
        elif kind == "relay":
            seq = next(sequence)
            if scheduler.post(machines[op[1]], ("relay", (seq, op[2], next(sequence)))):
                posted[op[1]].append(seq)
        elif kind in ("after", "every") and op[1] not in world["stopped"]:
            n = len(timers)
            owner[n] = op[1]
            if kind == "after":
                due = clock.seconds() + op[2]
                timers.append(machines[op[1]].after(op[2], ("timer", (n, due))))
            else:
                timers.append(machines[op[1]].every(op[2], ("tick", n)))
        elif kind == "cancel" and op[1] < len(timers):
            if timers[op[1]].active:
                world["cancelled"].add(op[1])
            timers[op[1]].cancel()
        elif kind == "stop":
            world["stopped"].add(op[1])
            scheduler.stop(machines[op[1]])
        elif kind == "advance":
            clock.advance(op[1])
    clock.advance(0)
    for index, machine in enumerate(machines):
        seqs = [
            e[1] if e[0] == "post" else e[1][0]
            for e in machine.got
            if e[0] in ("post", "relay")
        ]
        if index in world["stopped"]:
            assert seqs == posted[index][: len(seqs)]
        else:
            assert seqs == posted[index]
        for n, timer in enumerate(timers):
            if owner[n] == index and isinstance(timer, Timer):
                fired = [e for e in machine.got if e[0] == "timer" and e[1][0] == n]
                due = n not in world["cancelled"] and clock.seconds() >= timer.due
                if index in world["stopped"]:  # may have come before the stop
                    assert len(fired) <= (1 if due else 0)
                else:
                    assert len(fired) == (1 if due else 0)
    assert scheduler.queued == 0
    for index in world["stopped"]:
        assert not any(owner[n] == index and t.active for n, t in enumerate(timers))
    if len(world["stopped"]) == len(machines):
        assert clock.getDelayedCalls() == []
