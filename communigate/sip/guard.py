"""
Protection of the SIP front end against abuse from the network: sources
that keep failing digest authentication (password guessing) and sources
that send more requests than any phone would.

Both keep per-source state, and the network chooses the sources (a UDP
source address costs an attacker nothing), so both are bounded: idle
entries are dropped as calls come in (oldest first, no timers needed), and
a hard cap evicts the least recently seen source when a flood of distinct
addresses fills the table.  Eviction forgets, so a flood of spoofed
sources can make a real offender's history be forgotten; that is the
price of bounded memory, counted and logged when it happens.

Sources are whatever the caller passes, compared for equality; pass the
host address, not host and port, since a client picks its port freely.
A NAT puts many phones behind one host: the thresholds are per source,
so choose them for an office, not a phone.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Hashable

from prometheus_client import CollectorRegistry, Counter
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["AuthFailureGuard", "RateLimiter"]


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, not {value!r}")


class AuthFailureGuard:
    """
    Blocks a source for C{cooloff} seconds once it has failed digest
    authentication C{max_failures} times within C{window} seconds; while
    blocked, the caller answers its requests 403 without checking them.

    What counts as a failure is the caller's call: a L{REFUSED
    <communigate.sip.digest.OutcomeKind.REFUSED>} verdict (wrong password,
    unknown user, replayed nonce), not the ordinary first 401 round trip or
    a stale nonce, so a working phone never accumulates failures.

    L{succeeded} forgives one failure, not all: a NAT with many good phones
    and one misconfigured one drifts down instead of being blocked, while
    a guesser who owns one working account can at best trade a good login
    for each guess, and the L{RateLimiter} bounds that.

    Blocking is not extended by failures while blocked (the caller does not
    check those requests), so a source is let in again C{cooloff} seconds
    after it was blocked and starts with a clean count.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int = 10,
        window: float = 60.0,
        cooloff: float = 300.0,
        max_sources: int = 100_000,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """
        @param registry: where to count C{communigate_sip_auth_blocked_total},
            or L{None}.
        """
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1:
            raise ValueError(f"max_failures must be a positive integer, not {max_failures!r}")
        _positive("window", window)
        _positive("cooloff", cooloff)
        if isinstance(max_sources, bool) or not isinstance(max_sources, int) or max_sources < 1:
            raise ValueError(f"max_sources must be a positive integer, not {max_sources!r}")
        self._clock = clock
        self._max_failures = max_failures
        self._window = float(window)
        self._cooloff = float(cooloff)
        self._max_sources = max_sources
        # source -> times of its recent failures; least recently failed first.
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()
        # source -> end of its block; cooloff is fixed, so ordered by end.
        self._blocked: OrderedDict[Hashable, float] = OrderedDict()
        #: How many times a source was blocked.
        self.blocks = 0
        #: How many entries were evicted because the tables were full.
        self.evictions = 0
        self._counter = None
        if registry is not None:
            self._counter = Counter(
                "communigate_sip_auth_blocked",
                "Sources blocked for failing SIP digest authentication too often.",
                registry=registry,
            )

    def _expire(self, now: float) -> None:
        while self._blocked:
            source, until = next(iter(self._blocked.items()))
            if until > now:
                break
            del self._blocked[source]
        horizon = now - self._window
        while self._failures:
            source, times = next(iter(self._failures.items()))
            if times and times[-1] > horizon:
                break
            del self._failures[source]

    def _evicted(self, what: str) -> None:
        self.evictions += 1
        if self.evictions == 1 or self.evictions % 10_000 == 0:
            self.log.warn(
                "SIP authentication guard full ({max_sources} sources): forgot the oldest {what};"
                " {evictions} forgotten so far",
                max_sources=self._max_sources,
                what=what,
                evictions=self.evictions,
            )

    def failed(self, source: Hashable) -> bool:
        """
        C{source} failed to authenticate.  Returns whether this failure got
        it blocked.
        """
        now = self._clock.seconds()
        self._expire(now)
        if source in self._blocked:
            return False
        times = self._failures.get(source)
        if times is None:
            if len(self._failures) >= self._max_sources:
                self._failures.popitem(last=False)
                self._evicted("failure history")
            times = self._failures[source] = deque(maxlen=self._max_failures)
        else:
            self._failures.move_to_end(source)
        times.append(now)
        horizon = now - self._window
        while times[0] <= horizon:
            times.popleft()
        if len(times) < self._max_failures:
            return False
        del self._failures[source]
        if len(self._blocked) >= self._max_sources:
            self._blocked.popitem(last=False)
            self._evicted("block")
        self._blocked[source] = now + self._cooloff
        self.blocks += 1
        if self._counter is not None:
            self._counter.inc()
        self.log.warn(
            "SIP source {source} blocked for {cooloff} s after {failures} failed logins in {window} s",
            source=source,
            cooloff=self._cooloff,
            failures=self._max_failures,
            window=self._window,
        )
        return True

    def succeeded(self, source: Hashable) -> None:
        """
        C{source} authenticated: forgive its oldest recent failure.
        """
        times = self._failures.get(source)
        if times:
            times.popleft()
            if not times:
                del self._failures[source]

    def blocked(self, source: Hashable) -> bool:
        """
        Whether requests from C{source} are to be answered 403 now.
        """
        self._expire(self._clock.seconds())
        return source in self._blocked

    def blocked_count(self) -> int:
        """
        How many sources are blocked now.
        """
        self._expire(self._clock.seconds())
        return len(self._blocked)

    def tracked_count(self) -> int:
        """
        How many sources have recent failures (not yet blocked).
        """
        self._expire(self._clock.seconds())
        return len(self._failures)


class RateLimiter:
    """
    A token bucket per source: C{burst} requests at once, then C{rate} per
    second.  A request over the limit is answered 503 with the
    C{Retry-After} that L{allow} computes, and does not use up tokens, so a
    client that waits as told gets in.

    A bucket that has refilled to C{burst} is the same as no bucket, so
    such buckets are dropped; the table holds only sources that sent
    recently, at most C{max_sources}.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        rate: float = 50.0,
        burst: float = 200.0,
        max_sources: int = 100_000,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """
        The defaults allow an office NAT of a few hundred phones to
        re-register at once; a single phone sends a handful of requests a
        minute.

        @param registry: where to count C{communigate_sip_rate_limited_total},
            or L{None}.
        """
        _positive("rate", rate)
        _positive("burst", burst)
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if isinstance(max_sources, bool) or not isinstance(max_sources, int) or max_sources < 1:
            raise ValueError(f"max_sources must be a positive integer, not {max_sources!r}")
        self._clock = clock
        self._rate = float(rate)
        self._burst = float(burst)
        self._max_sources = max_sources
        # source -> [tokens, time of last refill, over the limit now];
        # least recently seen first.
        self._buckets: OrderedDict[Hashable, list] = OrderedDict()
        #: How many requests were refused.
        self.refused = 0
        #: How many buckets were evicted because the table was full.
        self.evictions = 0
        self._counter = None
        if registry is not None:
            self._counter = Counter(
                "communigate_sip_rate_limited",
                "SIP requests refused with 503 because their source sent too many.",
                registry=registry,
            )

    def _drop_idle(self, now: float) -> None:
        while self._buckets:
            source, (tokens, last, _) = next(iter(self._buckets.items()))
            if tokens + (now - last) * self._rate < self._burst:
                break
            del self._buckets[source]

    def reconfigure(self, rate: float, burst: float) -> None:
        """
        New limits, from the SIP settings, for the requests to come.
        """
        _positive("rate", rate)
        _positive("burst", burst)
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)

    def allow(self, source: Hashable) -> tuple[bool, int]:
        """
        Whether a request from C{source} may go on now; when not, also the
        whole seconds until it may (at least 1), for C{Retry-After}.
        """
        now = self._clock.seconds()
        self._drop_idle(now)
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self._max_sources:
                self._buckets.popitem(last=False)
                self.evictions += 1
                if self.evictions == 1 or self.evictions % 10_000 == 0:
                    self.log.warn(
                        "SIP rate limiter full ({max_sources} sources): {evictions} busy sources forgotten so far",
                        max_sources=self._max_sources,
                        evictions=self.evictions,
                    )
            bucket = self._buckets[source] = [self._burst, now, False]
        else:
            bucket[0] = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
            bucket[1] = now
            self._buckets.move_to_end(source)
        if bucket[0] >= 1:
            bucket[0] -= 1
            bucket[2] = False
            return True, 0
        self.refused += 1
        if self._counter is not None:
            self._counter.inc()
        if not bucket[2]:
            bucket[2] = True
            self.log.info(
                "SIP source {source} is over {rate} requests/s (burst {burst}); answering 503",
                source=source,
                rate=self._rate,
                burst=self._burst,
            )
        return False, max(1, math.ceil((1 - bucket[0]) / self._rate))

    def tracked_count(self) -> int:
        """
        How many sources have a bucket that is not full.
        """
        self._drop_idle(self._clock.seconds())
        return len(self._buckets)
