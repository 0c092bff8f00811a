"""
Tests for communigate.sip.guard: the authentication-failure guard and the
per-source rate limiter, on a Clock.
"""

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from communigate.sip.guard import AuthFailureGuard, RateLimiter

ATTACKER = "198.51.100.66"
OFFICE = "203.0.113.7"


@pytest.fixture
def clock():
    found = Clock()
    found.advance(5_000)
    return found


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


# -- AuthFailureGuard ----------------------------------------------------------------------


def test_a_source_is_blocked_at_the_tenth_failure_within_a_minute(clock):
    guard = AuthFailureGuard(clock)
    for _ in range(9):
        assert guard.failed(ATTACKER) is False
        clock.advance(6)
    assert not guard.blocked(ATTACKER)
    assert guard.failed(ATTACKER) is True
    assert guard.blocked(ATTACKER)
    assert not guard.blocked(OFFICE)
    assert guard.blocks == 1


def test_failures_spread_wider_than_the_window_never_block(clock):
    guard = AuthFailureGuard(clock, max_failures=3, window=60)
    for _ in range(20):
        assert guard.failed(OFFICE) is False
        clock.advance(30.01)
    assert not guard.blocked(OFFICE)


def test_a_block_lasts_the_cooloff_and_then_the_count_starts_over(clock):
    guard = AuthFailureGuard(clock, max_failures=3, window=60, cooloff=300)
    for _ in range(3):
        guard.failed(ATTACKER)
    clock.advance(299.9)
    assert guard.blocked(ATTACKER)
    # Failures while blocked do not extend the block.
    assert guard.failed(ATTACKER) is False
    clock.advance(0.1)
    assert not guard.blocked(ATTACKER)
    assert guard.failed(ATTACKER) is False
    assert guard.failed(ATTACKER) is False
    assert guard.failed(ATTACKER) is True


def test_success_forgives_one_failure_not_all(clock):
    guard = AuthFailureGuard(clock, max_failures=3)
    guard.failed(OFFICE)
    guard.failed(OFFICE)
    guard.succeeded(OFFICE)
    assert guard.failed(OFFICE) is False
    assert guard.failed(OFFICE) is True


def test_success_of_an_unknown_source_is_harmless(clock):
    guard = AuthFailureGuard(clock)
    guard.succeeded(OFFICE)
    assert guard.tracked_count() == 0


def test_blocking_is_counted_on_the_registry_and_logged(clock, logged):
    registry = CollectorRegistry()
    guard = AuthFailureGuard(clock, max_failures=2, registry=registry)
    for source in (ATTACKER, "192.0.2.1"):
        guard.failed(source)
        guard.failed(source)
    assert registry.get_sample_value("communigate_sip_auth_blocked_total") == 2
    blocked = [event for event in logged if event.get("log_format", "").startswith("SIP source {source} blocked")]
    assert [event["source"] for event in blocked] == [ATTACKER, "192.0.2.1"]
    assert blocked[0]["failures"] == 2 and blocked[0]["cooloff"] == 300.0
    assert guard.blocked_count() == 2


def test_failure_histories_are_forgotten_once_out_of_the_window(clock):
    guard = AuthFailureGuard(clock, window=60)
    for n in range(1000):
        guard.failed(f"10.0.{n // 256}.{n % 256}")
    assert guard.tracked_count() == 1000
    clock.advance(60)
    assert guard.tracked_count() == 0


def test_the_guard_holds_at_most_max_sources_under_a_flood_of_sources(clock):
    guard = AuthFailureGuard(clock, max_failures=2, max_sources=100)
    for n in range(5000):
        guard.failed(("flood", n))
        guard.failed(("flood", n // 2))
        assert guard.tracked_count() <= 100
        assert guard.blocked_count() <= 100
    assert guard.evictions > 0


def test_blocks_end_in_order_and_memory_is_released(clock):
    guard = AuthFailureGuard(clock, max_failures=1, cooloff=10)
    for n in range(50):
        guard.failed(n)
        clock.advance(1)
    # Blocked at 0..49 s for 10 s each; at 50 s those from 41 s on remain.
    assert guard.blocked_count() == 9
    clock.advance(10)
    assert guard.blocked_count() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_failures": 0}, "max_failures"),
        ({"window": 0}, "window"),
        ({"cooloff": -1}, "cooloff"),
        ({"max_sources": 0}, "max_sources"),
    ],
)
def test_bad_guard_settings_are_refused_by_name(clock, kwargs, message):
    with pytest.raises(ValueError, match=message):
        AuthFailureGuard(clock, **kwargs)


# -- RateLimiter ---------------------------------------------------------------------------


def test_a_burst_is_allowed_then_refused_with_retry_after(clock):
    limiter = RateLimiter(clock, rate=2, burst=5)
    assert [limiter.allow(OFFICE) for _ in range(5)] == [(True, 0)] * 5
    assert limiter.allow(OFFICE) == (False, 1)
    assert limiter.allow("192.0.2.1") == (True, 0)
    clock.advance(0.5)
    assert limiter.allow(OFFICE) == (True, 0)
    assert limiter.allow(OFFICE) == (False, 1)


def test_retry_after_says_when_a_token_will_be_there(clock):
    limiter = RateLimiter(clock, rate=0.1, burst=1)
    assert limiter.allow(OFFICE) == (True, 0)
    assert limiter.allow(OFFICE) == (False, 10)
    clock.advance(4)
    assert limiter.allow(OFFICE) == (False, 6)
    clock.advance(6)
    assert limiter.allow(OFFICE) == (True, 0)


def test_refused_requests_do_not_use_up_tokens(clock):
    limiter = RateLimiter(clock, rate=1, burst=1)
    limiter.allow(ATTACKER)
    for _ in range(100):
        assert limiter.allow(ATTACKER)[0] is False
    clock.advance(1)
    assert limiter.allow(ATTACKER) == (True, 0)


def test_a_steady_sender_at_the_rate_is_never_refused(clock):
    limiter = RateLimiter(clock, rate=10, burst=1)
    for _ in range(1000):
        assert limiter.allow(OFFICE) == (True, 0)
        clock.advance(0.1)


def test_refusals_are_counted_and_logged_once_per_episode(clock, logged):
    registry = CollectorRegistry()
    limiter = RateLimiter(clock, rate=1, burst=1, registry=registry)
    limiter.allow(ATTACKER)
    for _ in range(5):
        limiter.allow(ATTACKER)
    clock.advance(1)
    limiter.allow(ATTACKER)
    limiter.allow(ATTACKER)
    assert registry.get_sample_value("communigate_sip_rate_limited_total") == 6
    assert limiter.refused == 6
    episodes = [event for event in logged if event.get("log_format", "").startswith("SIP source {source} is over")]
    assert len(episodes) == 2


def test_idle_buckets_are_dropped(clock):
    limiter = RateLimiter(clock, rate=10, burst=20)
    for n in range(1000):
        limiter.allow(n)
    assert limiter.tracked_count() == 1000
    clock.advance(0.05)
    assert limiter.tracked_count() == 1000
    clock.advance(0.05)
    assert limiter.tracked_count() == 0


def test_the_limiter_holds_at_most_max_sources_under_a_flood_of_sources(clock):
    limiter = RateLimiter(clock, rate=1, burst=2, max_sources=100)
    for n in range(5000):
        assert limiter.allow(("flood", n)) == (True, 0)
        assert limiter.tracked_count() <= 100
    assert limiter.evictions == 4900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"burst": 0.5}, "burst"),
        ({"burst": True}, "burst"),
        ({"max_sources": 0}, "max_sources"),
    ],
)
def test_bad_limiter_settings_are_refused_by_name(clock, kwargs, message):
    with pytest.raises(ValueError, match=message):
        RateLimiter(clock, **kwargs)
