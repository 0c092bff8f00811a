"""
Slowing down password guessing on the CLI/PWD port.

A client that keeps sending wrong passwords from one address gets its later
attempts answered more and more slowly.  The table is shared by every
connection of a listener, so opening new connections does not reset it, and
it is bounded both in time (entries expire) and in size (the oldest entries
are dropped first), so an attacker with many addresses cannot grow it
without limit.
"""

from collections import OrderedDict

import attrs
from twisted.internet.interfaces import IReactorTime


@attrs.define
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """
    Per-address counts of consecutive failed logins.

    The first C{free_failures} wrong passwords cost nothing.  After that
    each attempt waits C{base_delay} seconds, doubling with every further
    failure up to C{max_delay}.  A successful login forgets the address; so
    does C{expiry} seconds without a failure.

    @param clock: where time comes from; nothing here reads the wall clock.
    """

    def __init__(
        self,
        clock: IReactorTime,
        free_failures: int = 5,
        base_delay: float = 2.0,
        max_delay: float = 60.0,
        expiry: float = 900.0,
        max_entries: int = 10_000,
    ):
        if free_failures < 1:
            raise ValueError("free_failures must be at least 1")
        if not 0 < base_delay <= max_delay:
            raise ValueError("base_delay must be positive and at most max_delay")
        if expiry <= 0:
            raise ValueError("expiry must be positive")
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._clock = clock
        self._free_failures = free_failures
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._expiry = expiry
        self._max_entries = max_entries
        # Ordered oldest failure first: every update moves its entry to
        # the end, so expired entries are always at the front.
        self._entries: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        """
        How many addresses are currently remembered.
        """
        self._expire()
        return len(self._entries)

    def delay_for(self, address: str) -> float:
        """
        The seconds a login attempt from C{address} must wait before it is
        checked and answered; C{0.0} when it need not wait.
        """
        self._expire()
        entry = self._entries.get(address)
        if entry is None or entry.count < self._free_failures:
            return 0.0
        doublings = entry.count - self._free_failures
        # Cap the exponent too, so a huge count cannot overflow the float.
        delay = self._base_delay * 2.0 ** min(doublings, 64)
        return min(delay, self._max_delay)

    def record_failure(self, address: str) -> None:
        """
        Remember one more wrong password from C{address}.
        """
        self._expire()
        now = self._clock.seconds()
        entry = self._entries.pop(address, None)
        if entry is None:
            entry = _Failures(count=0, last=now)
        entry.count += 1
        entry.last = now
        self._entries[address] = entry
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def record_success(self, address: str) -> None:
        """
        Forget the failures of C{address}: its user knows the password.
        """
        self._entries.pop(address, None)

    def _expire(self) -> None:
        deadline = self._clock.seconds() - self._expiry
        while self._entries:
            address, entry = next(iter(self._entries.items()))
            if entry.last > deadline:
                break
            del self._entries[address]
