"""
NAT keep-alive pingers on the scheduler: when pings go out, how answers
and failures are counted, when a flow is declared dead, and that
forgetting a flow leaves nothing behind.  Time comes from L{Clock} only.
"""

import random
from collections import Counter

import attrs
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from communigate.core.scheduler import Scheduler
from communigate.sip.keepalive import Flow, KeepAliveService, KeepAliveSettings

UDP = Flow("udp", ("192.0.2.1", 5060), ("198.51.100.7", 40000))
TCP = Flow("TCP", ("192.0.2.1", 5060), ("198.51.100.7", 40001))


class Harness:
    """
    A service over a Clock that records every ping sent and every flow
    reported dead.
    """

    def __init__(self, seed=1, **settings):
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock)
        self.sent = []  # (time, flow, kind)
        self.dead = []
        self.raise_on_send = False
        self.service = KeepAliveService(
            self.scheduler,
            self.send,
            self.dead.append,
            KeepAliveSettings(**settings),
            random=random.Random(seed),
        )

    def send(self, flow, kind):
        if self.raise_on_send:
            raise OSError("network unreachable")
        self.sent.append((self.clock.seconds(), flow, kind))

    def run(self, seconds, step=0.5):
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def times(self, flow=None):
        return [t for t, f, _ in self.sent if flow is None or f == flow]


# -- settings ----------------------------------------------------------------


def test_the_default_settings_ping_every_20_to_25_seconds_with_options_on_udp_and_crlf_on_streams():
    settings = KeepAliveSettings()
    assert settings.interval == 25
    assert (1 - settings.jitter) * settings.interval == 20
    assert settings.udp_method == "options" and settings.stream_method == "crlf"
    assert settings.max_failures == 3


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("interval", 0, "interval must be a number from 5 to 3600, not 0"),
        ("interval", "25", "interval must be a number"),
        ("interval", True, "interval must be a number"),
        ("jitter", 0.9, "jitter must be a number from 0 to 0.5, not 0.9"),
        ("udp_method", "stun", "udp_method must be one of options, crlf, not 'stun'"),
        ("stream_method", "options", "stream_method must be one of crlf, not 'options'"),
        ("max_failures", 0, "max_failures must be a whole number from 1 to 100, not 0"),
        ("max_failures", 2.5, "max_failures must be a whole number"),
        ("stream_pong_required", "yes", "stream_pong_required must be true or false"),
        ("options_timeout", -1, "options_timeout must be a number from 1 to 3600"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting_and_what_it_allows(field, value, message):
    with pytest.raises(ValueError, match=message):
        KeepAliveSettings(**{field: value})


def test_a_flow_needs_a_known_transport():
    with pytest.raises(ValueError, match="unknown SIP transport 'carrier-pigeon'"):
        Flow("carrier-pigeon", ("a", 1), ("b", 2))
    assert TCP.transport == "tcp"


def test_a_flow_converts_to_and_from_the_triples_bindings_store():
    flow = Flow.between(("udp", "198.51.100.7", 40000), ("udp", "192.0.2.1", 5060))
    assert flow == UDP
    assert flow.source == ("udp", "198.51.100.7", 40000)
    assert flow.listener == ("udp", "192.0.2.1", 5060)


def test_watching_a_flow_without_a_sip_transport_is_refused():
    harness = Harness()

    @attrs.frozen
    class Odd:
        transport: str = "sctp-over-avian"

    with pytest.raises(ValueError, match="cannot keep a sctp-over-avian flow alive"):
        harness.service.watch(Odd())
    with pytest.raises(ValueError, match="transport-less"):
        harness.service.watch(("no", "transport"))
    assert harness.service.flows == 0


# -- when pings go out -----------------------------------------------------


def test_pings_come_within_the_first_interval_and_then_every_80_to_100_percent_of_it():
    harness = Harness(udp_method="crlf", interval=25, jitter=0.2)
    harness.service.watch(UDP)
    harness.run(1000, step=0.25)
    times = harness.times()
    assert 0 <= times[0] <= 25
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 39
    assert all(20 - 0.25 <= gap <= 25 + 0.25 for gap in gaps)
    assert max(gaps) - min(gaps) > 2  # actually jittered
    assert all(kind == "crlf" for _, _, kind in harness.sent)


def test_without_jitter_pings_come_exactly_at_the_interval():
    harness = Harness(udp_method="crlf", interval=10, jitter=0)
    harness.service.watch(UDP)
    harness.run(100)
    times = harness.times()
    assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([10] * (len(times) - 1))


def test_the_same_seed_gives_the_same_ping_times():
    runs = []
    for _ in range(2):
        harness = Harness(seed=42, udp_method="crlf")
        for port in range(50):
            harness.service.watch(Flow("udp", ("s", 5060), ("c", port)))
        harness.run(100)
        runs.append(harness.sent)
    assert runs[0] == runs[1]


def test_udp_flows_are_pinged_with_options_and_stream_flows_with_crlf():
    harness = Harness()
    harness.service.watch(UDP)
    harness.service.watch(TCP)
    harness.run(25)
    assert {(flow, kind) for _, flow, kind in harness.sent} == {(UDP, "options"), (TCP, "crlf")}
    assert harness.service.pings == {"options": 1, "crlf": 1}


def test_ten_thousand_flows_watched_at_once_ping_at_a_steady_rate_from_the_first_second():
    harness = Harness(interval=25, jitter=0.2, udp_method="crlf")
    for i in range(10_000):
        remote = (f"10.{i // 250}.0.{i % 250}", 5060)
        harness.service.watch(Flow("udp", ("192.0.2.1", 5060), remote))
    assert harness.service.flows == 10_000
    harness.clock.advance(0)  # the pingers start now, not at the end of the first step
    harness.run(100, step=0.5)
    per_tick = Counter(round(t / 0.5) for t in harness.times())  # pings per 0.5 s advance
    steady = 10_000 / 22.5 * 0.5  # flows / mean gap, per half-second tick: 222
    assert len(per_tick) == 200  # no empty tick
    assert max(per_tick.values()) <= 1.35 * steady
    assert min(per_tick.values()) >= 0.65 * steady
    assert len([t for t in harness.times() if t <= 25]) >= 10_000
    assert harness.scheduler.max_queue_length == 1
    assert len(harness.clock.getDelayedCalls()) == 1


def test_a_first_ping_is_due_within_one_interval():
    harness = Harness(interval=25, jitter=0.5)
    firsts = [harness.service.first_gap() for _ in range(10_000)]
    assert 0 <= min(firsts) and max(firsts) <= 25
    # flat up to 12.5 s, then thinning out: (25 - 12.5) / (2 * 18.75) = 1/3 of
    # the mass is beyond 12.5
    beyond = len([f for f in firsts if f > 12.5]) / len(firsts)
    assert 0.31 < beyond < 0.36


# -- answers and failures --------------------------------------------------


def test_a_udp_flow_whose_options_keep_failing_is_dead_after_max_failures_and_reported():
    harness = Harness(max_failures=3)
    service = harness.service
    service.watch(UDP)
    for attempt in range(3):
        harness.run(25)
        assert harness.sent[-1][1:] == (UDP, "options")
        assert harness.dead == []
        service.failed(UDP)  # Timer F fired
        harness.clock.advance(0)
    assert harness.dead == [UDP]
    assert UDP not in service and service.flows == 0
    assert service.dead == 1 and service.failures == 3
    assert harness.clock.getDelayedCalls() == []


def test_on_dead_sees_the_flow_forgotten_and_may_watch_it_again_at_once():
    harness = Harness(udp_method="crlf", max_failures=1)
    service = harness.service
    seen = []

    def on_dead(flow):
        seen.append(flow in service)
        service.watch(flow)  # the contact re-registered in the meantime

    service.on_dead = on_dead
    service.watch(UDP)
    service.failed(UDP)
    harness.clock.advance(0)
    assert seen == [False]
    assert UDP in service and service.flows == 1
    harness.run(30)
    assert harness.times(UDP)  # the new pinger pings


def test_an_answer_resets_the_failure_count():
    harness = Harness(max_failures=3)
    service = harness.service
    service.watch(UDP)
    for outcome in ["failed", "failed", "pong", "failed", "failed", "pong", "failed"]:
        harness.run(25)
        getattr(service, outcome)(UDP)
        harness.clock.advance(0)
    assert harness.dead == []
    assert service.pongs == 2


def test_no_second_options_is_sent_while_one_is_outstanding():
    harness = Harness(interval=10, jitter=0)
    service = harness.service
    service.watch(UDP)
    harness.run(10)
    assert len(harness.sent) == 1
    harness.run(30)  # the transaction is still retransmitting
    assert len(harness.sent) == 1
    service.pong(UDP)
    harness.run(10)
    assert len(harness.sent) == 2


def test_an_options_ping_the_sip_layer_never_reports_on_counts_as_failed_after_options_timeout():
    harness = Harness(interval=10, jitter=0, options_timeout=30, max_failures=2)
    service = harness.service
    service.watch(UDP)
    harness.run(200)
    assert harness.dead == [UDP]
    # ping at 0+, failure counted at the first tick 30 s later, a new ping,
    # its failure 30 s later again
    assert len(harness.sent) == 2


def test_a_udp_crlf_flow_is_dead_only_from_send_failures_logged_without_traceback():
    harness = Harness(udp_method="crlf", max_failures=2)
    harness.service.watch(UDP)
    harness.run(500)
    assert harness.dead == [] and len(harness.sent) >= 19
    harness.raise_on_send = True
    with capturedLogs() as logs:
        harness.run(50)
    assert harness.dead == [UDP]
    warnings = [e for e in logs if isinstance(e.get("error"), OSError)]
    assert warnings and warnings[0]["log_level"] == LogLevel.warn
    assert warnings[0]["flow"] == UDP and "log_failure" not in warnings[0]  # no traceback


def test_a_send_failure_reported_later_counts_for_a_udp_crlf_flow():
    harness = Harness(udp_method="crlf", max_failures=2)
    harness.service.watch(UDP)
    harness.run(25)
    harness.service.failed(UDP)
    harness.service.failed(UDP)
    harness.clock.advance(0)
    assert harness.dead == [UDP]


def test_a_stream_flow_that_answered_once_is_dead_after_max_failures_missed_pongs():
    harness = Harness(interval=10, jitter=0, max_failures=3)
    service = harness.service
    service.watch(TCP)
    harness.run(10)
    service.pong(TCP)  # a single CRLF came back: this UA implements outbound
    harness.run(10)
    assert len(harness.sent) == 2 and harness.dead == []
    harness.run(30)  # three pings go unanswered
    assert harness.dead == [TCP]
    assert harness.clock.getDelayedCalls() == []


def test_a_stream_flow_that_never_answers_crlf_is_not_declared_dead_by_default():
    harness = Harness(interval=10, jitter=0)
    harness.service.watch(TCP)
    harness.run(300)
    assert harness.dead == [] and len(harness.sent) == 30


def test_a_stream_flow_must_answer_from_the_start_when_pongs_are_required():
    harness = Harness(interval=10, jitter=0, stream_pong_required=True, max_failures=2)
    harness.service.watch(TCP)
    harness.run(30)
    assert harness.dead == [TCP]


def test_a_pong_before_the_next_ping_keeps_a_stream_flow_alive():
    harness = Harness(interval=10, jitter=0, stream_pong_required=True, max_failures=1)
    harness.service.watch(TCP)
    for _ in range(20):
        harness.run(10)
        harness.service.pong(TCP)
    assert harness.dead == []


def test_an_on_dead_callback_that_raises_is_logged_and_the_flow_is_still_forgotten():
    harness = Harness(udp_method="crlf", max_failures=1)

    def broken(flow):
        raise RuntimeError("registrar broke")

    harness.service.on_dead = broken
    harness.service.watch(UDP)
    harness.service.failed(UDP)
    with capturedLogs() as logs:
        harness.clock.advance(0)
    assert harness.service.flows == 0
    assert any(e.get("log_failure") and e["log_failure"].check(RuntimeError) for e in logs)
    assert harness.scheduler.errors == 0


# -- watch and forget ------------------------------------------------------


def test_forgetting_a_flow_stops_its_pinger_and_leaves_no_delayed_call():
    harness = Harness()
    service = harness.service
    service.watch(UDP)
    service.watch(TCP)
    harness.run(30)
    assert service.forget(UDP) is True
    assert service.forget(TCP) is True
    assert service.forget(TCP) is False
    assert harness.clock.getDelayedCalls() == []
    before = len(harness.sent)
    harness.run(100)
    assert len(harness.sent) == before
    assert service.flows == 0 and harness.scheduler.machines == 0


def test_answers_and_failures_for_flows_not_watched_are_ignored():
    harness = Harness()
    assert harness.service.pong(UDP) is False
    assert harness.service.failed(UDP) is False
    assert harness.clock.getDelayedCalls() == []


def test_watching_a_watched_flow_changes_nothing():
    harness = Harness(udp_method="crlf", interval=10, jitter=0)
    harness.service.watch(UDP)
    harness.service.watch(UDP)
    harness.run(50)
    assert harness.service.flows == 1 and len(harness.sent) == 5


def test_memory_is_bounded_by_the_flows_watched():
    harness = Harness(udp_method="crlf")
    service = harness.service
    for round_ in range(5):
        flows = [Flow("udp", ("s", 5060), ("c", round_ * 1000 + i)) for i in range(1000)]
        for flow in flows:
            service.watch(flow)
        harness.run(30)
        for flow in flows:
            service.forget(flow)
    assert service.flows == 0
    assert harness.scheduler.machines == 0
    assert harness.clock.getDelayedCalls() == []


def test_forget_all_stops_every_pinger():
    harness = Harness()
    for port in range(10):
        harness.service.watch(Flow("tcp", ("s", 5060), ("c", port)))
    harness.service.forget_all()
    assert harness.service.flows == 0 and harness.clock.getDelayedCalls() == []


def test_new_settings_apply_from_the_next_ping_without_a_restart():
    harness = Harness(interval=10, jitter=0, udp_method="crlf")
    harness.service.watch(UDP)
    harness.run(20)
    harness.service.update_settings(KeepAliveSettings(interval=30, jitter=0, udp_method="options"))
    harness.run(100)
    kinds = [kind for _, _, kind in harness.sent]
    assert kinds[:2] == ["crlf", "crlf"] and "options" in kinds


def test_the_figures_are_on_the_prometheus_registry_when_one_is_given():
    clock = Clock()
    registry = CollectorRegistry()
    service = KeepAliveService(
        Scheduler(clock), lambda flow, kind: None, lambda flow: None,
        random=random.Random(3), registry=registry,
    )
    service.watch(UDP)
    service.watch(TCP)
    for _ in range(60):
        clock.advance(0.5)
    service.pong(UDP)
    value = registry.get_sample_value
    assert value("communigate_sip_keepalive_flows") == 2
    assert value("communigate_sip_keepalive_pings_total", {"kind": "options"}) == 1
    assert value("communigate_sip_keepalive_pings_total", {"kind": "crlf"}) >= 1
    assert value("communigate_sip_keepalive_pongs_total") == 1
    assert value("communigate_sip_keepalive_failures_total") == 0
    assert value("communigate_sip_keepalive_dead_flows_total") == 0


def test_other_traffic_clears_the_failure_count_but_does_not_make_a_stream_flow_answer():
    harness = Harness(interval=10, jitter=0, max_failures=2)
    service = harness.service
    service.watch(UDP)
    service.watch(TCP)
    for _ in range(10):
        harness.run(10)
        service.heard(TCP)  # a REGISTER refresh, the UA's own CRLFCRLF ...
        service.failed(UDP)  # every OPTIONS times out
        service.heard(UDP)  # ... but the contact keeps sending requests
    harness.clock.advance(0)
    assert harness.dead == []
    assert service.pongs == 0
    assert service.heard(("not", "watched")) is False


def test_a_send_bug_is_logged_with_its_traceback_and_counts_as_a_failure():
    harness = Harness(udp_method="crlf", max_failures=1)

    def broken(flow, kind):
        raise TypeError("send() got confused")

    harness.service.send = broken
    harness.service.watch(UDP)
    with capturedLogs() as logs:
        harness.run(25)
    assert harness.dead == [UDP]
    assert [e["log_failure"].type for e in logs if e.get("log_failure")] == [TypeError]


def test_a_pinger_whose_handler_raises_is_forgotten_not_left_half_watched():
    harness = Harness()

    def broken():
        raise ArithmeticError("bad jitter")

    harness.service.first_gap = broken
    harness.service.watch(UDP)
    with capturedLogs():
        harness.clock.advance(0)
    assert harness.scheduler.errors == 1
    assert UDP not in harness.service and harness.service.flows == 0
    harness.service.watch(UDP)  # and it can be watched again
    assert harness.service.flows == 1
