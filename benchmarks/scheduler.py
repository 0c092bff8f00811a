"""
The scheduler under load, on the real reactor (bounded runs, a few
seconds each):

  1. events per second: 10,000 machines in 5,000 pairs, each pair passing
     one event back and forth (every delivery posts the next one);
  2. the 20 ms tick: 1,000 machines ticking every 20 ms, how late each tick
     reached its handler (p50, p99, max) and how many were missed, first
     on an idle scheduler, then while the 10,000 ping-pong machines keep
     it busy;
  3. memory: bytes per watched NAT keep-alive flow (10,000 flows).

    python benchmarks/scheduler.py [SECONDS_PER_TICK_RUN]
"""

import gc
import random
import sys
import time
import tracemalloc

from twisted.internet.task import Clock

from communigate.core.scheduler import Machine, Scheduler, Started
from communigate.sip.keepalive import Flow, KeepAliveService, KeepAliveSettings

PAIRS = 5_000
ROUNDS = 100  # events each machine handles in part 1
TICKERS = 1_000
PERIOD = 0.020


class Player(Machine):
    """
    Passes a counter to its partner until it reaches C{limit} (or forever).
    """

    def __init__(self, limit, done):
        self.partner = None
        self.limit = limit
        self.done = done

    def handle(self, event):
        if type(event) is int:
            if event < self.limit:
                self.partner.post(event + 1)
            else:
                self.done()


class Ticker(Machine):
    """
    Stands for a mixer: on each 20 ms tick, notes how late the tick was.
    """

    def __init__(self, lateness):
        self.lateness = lateness
        self.timer = None

    def handle(self, event):
        if event == "tick":
            self.lateness.append(self.timer.last_lateness)
        elif isinstance(event, Started):
            self.timer = self.every(PERIOD, "tick")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def start_pairs(scheduler, limit, done):
    players = []
    for _ in range(PAIRS):
        a, b = Player(limit, done), Player(limit, done)
        a.partner, b.partner = b, a
        scheduler.start(a)
        scheduler.start(b)
        players.append(a)
    for a in players:
        a.post(0)


def wait(reactor, seconds):
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


async def ping_pong(reactor):
    from twisted.internet.defer import Deferred

    scheduler = Scheduler(reactor)
    finished = Deferred()
    remaining = [PAIRS]

    def done():
        remaining[0] -= 1
        if remaining[0] == 0:
            finished.callback(None)

    start_pairs(scheduler, 2 * ROUNDS, done)
    before = scheduler.delivered
    started = time.perf_counter()
    await finished
    elapsed = time.perf_counter() - started
    events = scheduler.delivered - before
    print(
        f"ping-pong: {2 * PAIRS:,} machines, {events:,} events in {elapsed:.2f} s: "
        f"{events / elapsed:,.0f} events/s ({scheduler.turns:,} reactor turns)"
    )
    scheduler.stop_all()


async def ticks(reactor, seconds, loaded):
    scheduler = Scheduler(reactor)
    lateness = []
    tickers = [Ticker(lateness) for _ in range(TICKERS)]
    for ticker in tickers:
        scheduler.start(ticker)
    if loaded:
        start_pairs(scheduler, float("inf"), None)
    await wait(reactor, 0.5)  # let start-up settle
    lateness.clear()
    delivered, missed = scheduler.delivered, scheduler.ticks_missed
    started = time.perf_counter()
    await wait(reactor, seconds)
    elapsed = time.perf_counter() - started
    events = scheduler.delivered - delivered
    missed = scheduler.ticks_missed - missed
    expected = TICKERS * elapsed / PERIOD
    label = "under ping-pong load" if loaded else "idle"
    print(
        f"20 ms ticks, {TICKERS:,} machines, {label}: {len(lateness):,} ticks of "
        f"{expected:,.0f} due in {elapsed:.1f} s, {missed:,} missed; lateness "
        f"p50 {percentile(lateness, 0.5) * 1000:.2f} ms, "
        f"p99 {percentile(lateness, 0.99) * 1000:.2f} ms, "
        f"max {max(lateness) * 1000:.2f} ms; {events / elapsed:,.0f} events/s in all"
    )
    scheduler.stop_all()


def keepalive_memory(flows=10_000):
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    clock = Clock()
    service = KeepAliveService(
        Scheduler(clock), lambda flow, kind: None, lambda flow: None,
        KeepAliveSettings(), random=random.Random(1),
    )
    for i in range(flows):
        service.watch(Flow("udp", ("192.0.2.1", 5060), (f"10.0.{i // 250}.{i % 250}", 5060)))
    clock.advance(0)
    for _ in range(60):
        clock.advance(0.5)
    after = tracemalloc.take_snapshot()
    used = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    tracemalloc.stop()
    print(
        f"NAT keep-alive: {flows:,} watched flows (Flow objects included) hold "
        f"{used / 1024 / 1024:.1f} MiB, {used / flows:,.0f} bytes per flow; "
        f"{sum(service.pings.values()):,} pings in 30 s"
    )
    service.forget_all()


async def run(reactor, seconds):
    await ping_pong(reactor)
    await ticks(reactor, seconds, loaded=False)
    await ticks(reactor, seconds, loaded=True)


def main(seconds: float = 5.0) -> None:
    from twisted.internet import defer, task

    keepalive_memory()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, seconds)))


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
