"""
The sans-IO half of the media relay: what a datagram is, and whether it
may pass and where to (latching, also called symmetric RTP, RFC 4961).

- `classify(data)` looks at the fixed header only (no payload is decoded)
  and says `PacketKind.RTP`, `PacketKind.RTCP` or None for a datagram
  that is neither: shorter than a header, a version other than 2, a CSRC
  list, header extension or padding running past the end (RTP), a length
  field longer than the datagram (RTCP).  RTP and RTCP are told apart by
  the second octet as on a multiplexed port (RFC 5761 §4: 192-223 is
  RTCP), so a relay port accepts both, whether or not the parties use
  ``a=rtcp-mux``.  `malformation(data)` names the fault for a log line.
- `Peer` is one relay socket's idea of the party it serves: the address
  that party's SDP gave (`expect`), whether it may be *latched* from
  anywhere (the party is behind NAT: its SDP names an address it cannot
  be reached at), and the source it latched to.  `admit(source)` decides
  for each datagram arriving from that party's side; `destination()`
  says where datagrams for that party go.

Latching [D]:

- Before a latch, a datagram is admitted from the expected host (any
  port: some phones send RTCP from the RTP port) or, for a NATed party,
  from anywhere; the first one admitted fixes the source, host and port.
- After the latch, only that exact source is admitted; everything else
  is `Drop.WRONG_SOURCE`.  A party that has no expected address yet (its
  SDP has not passed) and is not NATed admits nothing.
- A new expectation (re-INVITE, UPDATE, the answer of another fork)
  that names another address or port drops the latch; the same one keeps
  it, so a session refresh does not open a window for someone else.
- Datagrams for a party go to its latched source, else (not NATed) to the
  address its SDP gave; a NATed party that has not sent yet cannot be
  reached (`Drop.NO_DESTINATION`): its SDP address is behind its NAT.
- An SDP address of 0.0.0.0 (the old-style hold, RFC 3264 §8.4) or a
  port of 0 leaves the expectation as it was: the relay keeps that
  ``c=`` line in what it forwards, so the other party holds too.
- An SDP address that is a host name is not resolved (the packet path
  never blocks on DNS): that party is latched from wherever it sends.
"""

from __future__ import annotations

import enum
import ipaddress

__all__ = ["PacketKind", "Drop", "classify", "malformation", "Peer", "ADMITTED", "LATCHED", "REFUSED"]


class PacketKind(enum.Enum):
    RTP = "rtp"
    RTCP = "rtcp"


class Drop(enum.Enum):
    """Why the relay did not forward a datagram (the metric's label)."""

    MALFORMED = "malformed"
    WRONG_SOURCE = "wrong_source"
    NO_DESTINATION = "no_destination"
    SEND_FAILED = "send_failed"


_RTP = PacketKind.RTP
_RTCP = PacketKind.RTCP


def classify(data: bytes) -> PacketKind | None:
    """RTP, RTCP, or None for a datagram that is neither (see the module
    docstring); only header fields are read."""
    length = len(data)
    if length < 8:
        return None
    first = data[0]
    if first & 0xC0 != 0x80:
        return None
    if 192 <= data[1] <= 223:
        # RTCP: the first packet's length field (32-bit words minus one)
        # must fit; a compound packet may follow it.
        if ((data[2] << 8 | data[3]) + 1) * 4 > length:
            return None
        return _RTCP
    if length < 12:
        return None
    header = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if header + 4 > length:
            return None
        header += 4 + 4 * (data[header + 2] << 8 | data[header + 3])
    if header > length:
        return None
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or padding > length - header:
            return None
    return _RTP


def malformation(data: bytes) -> str:
    """Why `classify` refused ``data``, for a log line ("" if it did not)."""
    length = len(data)
    if length < 8:
        return f"{length} octets, shorter than any RTP or RTCP header"
    if data[0] >> 6 != 2:
        return f"version {data[0] >> 6}, not 2"
    if 192 <= data[1] <= 223:
        words = data[2] << 8 | data[3]
        if (words + 1) * 4 > length:
            return f"RTCP length of {(words + 1) * 4} octets in a {length}-octet datagram"
        return ""
    if length < 12:
        return f"{length} octets, shorter than the 12-octet RTP header"
    if classify(data) is None:
        return "CSRC list, header extension or padding runs past the end"
    return ""


#: `Peer.admit` results.
REFUSED = 0
ADMITTED = 1
LATCHED = 2


def _canonical(host: str) -> str | None:
    """An IP address in the form sockets report it (IPv6 compressed), or
    None for anything else (a host name)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class Peer:
    """
    The party on one side of one relay socket (see the module docstring).

    @ivar expected: C{(host, port)} from that party's SDP, or L{None}.
    @ivar latch_any: the party is behind NAT: latch to whoever sends first.
    @ivar latched: the C{(host, port)} latched to, or L{None}.
    """

    __slots__ = ("expected", "latch_any", "latched", "_expected_host")

    def __init__(self) -> None:
        self.expected: tuple[str, int] | None = None
        self.latch_any = False
        self.latched: tuple[str, int] | None = None
        self._expected_host: str | None = None

    def expect(self, address: tuple[str, int] | None, latch_any: bool) -> bool:
        """
        The party's SDP names C{address} (None: unknown, or a hold).
        Returns whether an existing latch was dropped because the address
        changed.
        """
        if address is not None:
            host, port = address
            canonical = _canonical(host)
            if canonical is None:
                # A host name: never resolved here (that would block the
                # reactor); the party is latched from wherever it sends.
                address, latch_any = None, True
            elif canonical in ("0.0.0.0", "::") or not port:
                address = None
            else:
                address = (canonical, int(port))
        changed = address is not None and address != self.expected
        self.latch_any = latch_any
        if address is not None:
            self.expected = address
            self._expected_host = address[0]
        dropped = changed and self.latched is not None
        if dropped:
            self.latched = None
        return dropped

    def admit(self, source) -> int:
        """
        C{REFUSED}, C{ADMITTED} or C{LATCHED} (admitted, and the first:
        now latched) for a datagram from C{source} (C{(host, port, ...)}).
        """
        latched = self.latched
        if latched is not None:
            return ADMITTED if source[0] == latched[0] and source[1] == latched[1] else REFUSED
        if self.latch_any or source[0] == self._expected_host:
            self.latched = (source[0], source[1])
            return LATCHED
        return REFUSED

    def destination(self) -> tuple[str, int] | None:
        """Where datagrams for this party go, or None (not reachable yet)."""
        if self.latched is not None:
            return self.latched
        if self.latch_any:
            return None
        return self.expected
