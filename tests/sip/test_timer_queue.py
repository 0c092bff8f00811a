"""
FixedDelayQueue: many timers of one length on one clock call, each still
firing at its own time.
"""

import pytest
from twisted.internet.task import Clock

from communigate.sip.timer_queue import FixedDelayQueue


def test_each_timer_fires_at_its_own_time_in_the_order_set():
    clock, fired = Clock(), []
    queue = FixedDelayQueue(clock, 32.0)
    queue.call_later(lambda: fired.append(("a", clock.seconds())))
    clock.advance(0.5)
    queue.call_later(lambda: fired.append(("b", clock.seconds())))
    queue.call_later(lambda: fired.append(("c", clock.seconds())))
    clock.advance(31.4)
    assert fired == [] and len(queue) == 3
    clock.advance(0.1)
    assert fired == [("a", 32.0)]
    clock.advance(0.5)
    assert fired == [("a", 32.0), ("b", 32.5), ("c", 32.5)]
    assert len(queue) == 0 and clock.getDelayedCalls() == []


def test_a_thousand_pending_timers_are_one_clock_call():
    clock, fired = Clock(), []
    queue = FixedDelayQueue(clock, 32.0)
    for i in range(1000):
        queue.call_later(lambda i=i: fired.append(i))
        clock.advance(0.01)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(32)
    assert fired == list(range(1000))


def test_a_failing_timer_is_logged_and_the_others_still_fire():
    clock, fired = Clock(), []
    queue = FixedDelayQueue(clock, 1.0)
    queue.call_later(lambda: 1 / 0)
    queue.call_later(lambda: fired.append("after"))
    clock.advance(1)
    assert fired == ["after"]


def test_stopping_forgets_the_pending_timers():
    clock, fired = Clock(), []
    queue = FixedDelayQueue(clock, 1.0)
    queue.call_later(lambda: fired.append("never"))
    queue.stop()
    clock.advance(2)
    assert fired == [] and clock.getDelayedCalls() == [] and len(queue) == 0
    queue.call_later(lambda: fired.append("again"))
    clock.advance(1)
    assert fired == ["again"]


def test_a_negative_delay_is_refused():
    with pytest.raises(ValueError, match="delay"):
        FixedDelayQueue(Clock(), -1)
