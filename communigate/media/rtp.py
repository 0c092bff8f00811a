"""
RTP data packets (RFC 3550 §5.1, §5.3.1): `parse_rtp` and
`RTPPacket.serialize`.

```
 0                   1                   2                   3
|V=2|P|X|  CC   |M|     PT      |       sequence number         |
|                           timestamp                           |
|           synchronization source (SSRC) identifier            |
|            contributing source (CSRC) identifiers ×CC         |
|  [X] profile-defined 16 bits  |  [X] length in 32-bit words   |
|  [X] header extension data ...                                |
|  payload ...                  |  [P] padding ... | pad count  |
```

`parse_rtp` raises `RTPError` (a ``ValueError``) naming the fault for a
datagram shorter than the fixed header, a version other than 2, a CSRC
list or header extension running past the end, and a padding count of
zero or longer than what follows the header.  It does not judge the
payload type: use `is_rtcp` first when RTP and RTCP share a port
(RFC 5761 §4).

`RTPPacket.padding` is the number of padding octets (0: no P bit).  A
parsed packet keeps its padding count but not the padding octets
themselves; serialising writes zeros followed by the count, as RFC 3550
§5.1 suggests.  The header extension (`RTPExtension`) keeps its 16-bit
profile value and its data, whose length is a multiple of four octets.
"""

from __future__ import annotations

import struct

import attrs

__all__ = ["RTPError", "RTPExtension", "RTPPacket", "parse_rtp", "is_rtcp", "RTP_VERSION"]

RTP_VERSION = 2
_HEADER = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")


class RTPError(ValueError):
    """The datagram is not a well-formed RTP packet."""


@attrs.frozen(slots=True)
class RTPExtension:
    """The header extension: a profile-defined 16-bit value and data
    whose length is a multiple of 4 octets."""

    profile: int
    data: bytes = b""


@attrs.frozen(slots=True)
class RTPPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RTPExtension | None = None
    padding: int = 0

    def serialize(self) -> bytes:
        """The packet's octets; a field out of its range is a ValueError."""
        csrcs = self.csrcs
        if len(csrcs) > 15:
            raise ValueError(f"at most 15 CSRCs fit in an RTP header, not {len(csrcs)}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is not 0-127")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} is not 0-255 octets")
        first = 0x80 | len(csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        try:
            parts = [_HEADER.pack(
                first, (0x80 if self.marker else 0) | self.payload_type,
                self.sequence, self.timestamp, self.ssrc,
            )]
            if csrcs:
                parts.append(struct.pack(f"!{len(csrcs)}I", *csrcs))
        except struct.error as error:
            raise ValueError(f"RTP header field out of range: {error}") from None
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                raise ValueError(f"header extension data is {len(data)} octets, not a multiple of 4")
            if not 0 <= self.extension.profile <= 0xFFFF or len(data) > 4 * 0xFFFF:
                raise ValueError("header extension profile or length out of range")
            parts.append(_EXTENSION.pack(self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()


def parse_rtp(data: bytes) -> RTPPacket:
    """One RTP packet from a datagram; `RTPError` if it is malformed."""
    length = len(data)
    if length < 12:
        raise RTPError(f"RTP packet too short: {length} octets, the fixed header is 12")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        raise RTPError(f"RTP version {first >> 6}, expected 2")
    offset = 12
    count = first & 0x0F
    csrcs: tuple[int, ...] = ()
    if count:
        offset += 4 * count
        if offset > length:
            raise RTPError(f"CSRC list of {count} runs past the end of a {length}-octet packet")
        csrcs = struct.unpack_from(f"!{count}I", data, 12)
    extension = None
    if first & 0x10:
        if offset + 4 > length:
            raise RTPError("header extension runs past the end of the packet")
        profile, words = _EXTENSION.unpack_from(data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > length:
            raise RTPError(
                f"header extension of {words} words runs past the end of a {length}-octet packet"
            )
        extension = RTPExtension(profile, bytes(data[start:offset]))
    end = length
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if padding == 0:
            raise RTPError("padding bit set with a padding count of 0")
        if padding > length - offset:
            raise RTPError(
                f"padding of {padding} octets is longer than the {length - offset} after the header"
            )
        end -= padding
    return RTPPacket(
        second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]),
        bool(second & 0x80), csrcs, extension, padding,
    )


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram on a shared RTP/RTCP port is RTCP (RFC 5761 §4:
    the second octet is 192-223, payload types 64-95 with the marker
    bit, which RTP profiles leave unassigned for this reason)."""
    return len(data) >= 2 and 192 <= data[1] <= 223
