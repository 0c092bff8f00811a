"""
Where a PBX media channel binds and what it names itself by: the RTP port
range (L{PortRange}) and the local address towards a peer
(L{address_towards}), for SDP when channels listen on every interface.
"""

from __future__ import annotations

from communigate.media.relay_policy import local_address_towards

__all__ = ["PortRange", "address_towards"]

_towards_cache: dict[str, str] = {}


class PortRange:
    """
    RTP ports to bind, even numbers from C{low} to C{high} (RTCP on the
    odd port above each).  Allocation goes round the range, so a port just
    released is not handed out again at once (a late packet of the last
    call must not reach the next one).
    """

    def __init__(self, low: int, high: int) -> None:
        if low % 2:
            low += 1
        if not 1024 <= low < high <= 65535:
            raise ValueError(f"RTP port range {low}-{high} is not within 1024-65535, low below high")
        self.low = low
        self.high = high
        self._next = low
        self.in_use: set[int] = set()

    @property
    def size(self) -> int:
        return (self.high - self.low) // 2 + (1 if self.high > self.low else 0)

    def candidates(self):
        """
        Each free even port once, starting after the last one handed out.
        """
        count = self.size
        port = self._next
        for _ in range(count):
            if port + 1 > self.high:
                port = self.low
            if port not in self.in_use:
                self._next = port + 2
                yield port
            port += 2

    def take(self, port: int) -> None:
        self.in_use.add(port)

    def release(self, port: int) -> None:
        self.in_use.discard(port)


def address_towards(host: str | None) -> str:
    """
    The local address the system would send to C{host} from (a UDP
    C{connect} sends nothing; it only asks the routing table), for SDP
    when the channel listens on every interface.  127.0.0.1 when there is
    no route or no host.
    """
    if not host or host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    cached = _towards_cache.get(host)
    if cached is not None:
        return cached
    found = local_address_towards(host) or "127.0.0.1"
    if len(_towards_cache) > 1024:
        _towards_cache.clear()
    _towards_cache[host] = found
    return found
