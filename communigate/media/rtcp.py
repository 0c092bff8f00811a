"""
RTCP (RFC 3550 §6): sender and receiver reports, source descriptions,
BYE, compound packets, and the report interval.

Packets are immutable values: `SenderReport`, `ReceiverReport` (with
`ReportBlock`s), `SourceDescription` (`SDESChunk`s of ``(type, octets)``
items; `SDES_CNAME` and friends name the types), `Goodbye`, and
`RTCPPacket` for every other type (APP, feedback, XR ...), kept as the
count field and the body octets.  Each has ``serialize()``.

`parse_rtcp(data)` parses a whole compound packet after the validity
checks of RFC 3550 Appendix A.2: version 2 in every packet, the first
packet a SR or RR without padding, padding only in the last packet, and
the length fields adding up to the datagram's length.  Pass
``compound=False`` to accept a lone packet of any type (RFC 5506
reduced-size RTCP).  Anything malformed raises `RTCPError`.

`compound(report, cname, bye=None)` builds the compound packet an
endpoint sends: the SR or RR, an SDES with the CNAME of the report's
SSRC, and optionally a BYE.

`rtcp_interval` is RFC 3550 Appendix A.7's deterministic part and
randomisation as a pure function (the random draw is a parameter).

Numbers: `ReportBlock.cumulative_lost` is signed 24-bit (duplicates can
make it negative) and clamped to that range on output; ``fraction_lost``
is the 8-bit fixed-point fraction (lost / expected × 256); ``jitter`` is
in timestamp units; ``lsr`` is the middle 32 bits of the last SR's NTP
timestamp and ``dlsr`` the delay since then in 1/65536 s.
"""

from __future__ import annotations

import struct

import attrs

__all__ = [
    "RTCPError",
    "ReportBlock",
    "SenderReport",
    "ReceiverReport",
    "SDESChunk",
    "SourceDescription",
    "Goodbye",
    "RTCPPacket",
    "parse_rtcp",
    "serialize_compound",
    "compound",
    "rtcp_interval",
    "average_rtcp_size",
    "ntp_timestamp",
    "ntp_seconds",
    "ntp_middle",
    "SR", "RR", "SDES", "BYE", "APP",
    "SDES_END", "SDES_CNAME", "SDES_NAME", "SDES_EMAIL", "SDES_PHONE",
    "SDES_LOC", "SDES_TOOL", "SDES_NOTE", "SDES_PRIV",
]

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_END, SDES_CNAME, SDES_NAME, SDES_EMAIL, SDES_PHONE = 0, 1, 2, 3, 4
SDES_LOC, SDES_TOOL, SDES_NOTE, SDES_PRIV = 5, 6, 7, 8

_COMMON = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SR_HEAD = struct.Struct("!IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_NTP_EPOCH_OFFSET = 2208988800  # 1900-01-01 to 1970-01-01, seconds


class RTCPError(ValueError):
    """The datagram is not a valid RTCP (compound) packet."""


def _header(count: int, packet_type: int, body_length: int) -> bytes:
    if body_length % 4:
        raise ValueError("an RTCP packet is a whole number of 32-bit words")
    return _COMMON.pack(0x80 | count, packet_type, body_length // 4)


# ----------------------------------------------------------- report blocks
@attrs.frozen(slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def serialize(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost {self.fraction_lost} is not 0-255")
        try:
            return _BLOCK.pack(
                self.ssrc, (self.fraction_lost << 24) | lost, self.highest_sequence,
                self.jitter, self.lsr, self.dlsr,
            )
        except struct.error as error:
            raise ValueError(f"report block field out of range: {error}") from None

    @classmethod
    def parse(cls, data: bytes, offset: int) -> "ReportBlock":
        ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)


def _blocks(reports: tuple[ReportBlock, ...]) -> bytes:
    if len(reports) > 31:
        raise ValueError(f"at most 31 report blocks fit in one report, not {len(reports)}")
    return b"".join(block.serialize() for block in reports)


def _parse_blocks(body: bytes, offset: int, count: int, what: str) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise RTCPError(f"{what} with {count} report blocks is too short ({len(body)} octets)")
    return tuple(ReportBlock.parse(body, offset + 24 * i) for i in range(count))


@attrs.frozen(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = SR

    def serialize(self) -> bytes:
        try:
            info = _SR_HEAD.pack(
                self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
            )
        except struct.error as error:
            raise ValueError(f"sender report field out of range: {error}") from None
        body = info + _blocks(self.reports) + self.extension
        return _header(len(self.reports), SR, len(body)) + body


@attrs.frozen(slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RR

    def serialize(self) -> bytes:
        try:
            body = struct.pack("!I", self.ssrc) + _blocks(self.reports) + self.extension
        except struct.error as error:
            raise ValueError(f"receiver report SSRC out of range: {error}") from None
        return _header(len(self.reports), RR, len(body)) + body


# -------------------------------------------------------------------- SDES
@attrs.frozen(slots=True)
class SDESChunk:
    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        parts = [struct.pack("!I", self.ssrc)]
        for kind, value in self.items:
            if not 1 <= kind <= 255 or len(value) > 255:
                raise ValueError(f"SDES item type {kind} or length {len(value)} out of range")
            parts.append(bytes((kind, len(value))) + value)
        chunk = b"".join(parts)
        # At least one null octet ends the item list, then pad to a word.
        return chunk + bytes(4 - len(chunk) % 4)


@attrs.frozen(slots=True)
class SourceDescription:
    chunks: tuple[SDESChunk, ...] = ()

    packet_type = SDES

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> "SourceDescription":
        return cls((SDESChunk(ssrc, ((SDES_CNAME, cname.encode("utf-8")),)),))

    def serialize(self) -> bytes:
        if len(self.chunks) > 31:
            raise ValueError(f"at most 31 SDES chunks fit in one packet, not {len(self.chunks)}")
        body = b"".join(chunk.serialize() for chunk in self.chunks)
        return _header(len(self.chunks), SDES, len(body)) + body


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(body):
            raise RTCPError("SDES chunk runs past the end of the packet")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items = []
        while True:
            if offset >= len(body):
                raise RTCPError("SDES item list is not terminated")
            kind = body[offset]
            if kind == SDES_END:
                offset = (offset + 4) & ~3  # skip the null octet(s) to the next word
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RTCPError("SDES item runs past the end of the packet")
            length = body[offset + 1]
            items.append((kind, bytes(body[offset + 2:offset + 2 + length])))
            offset += 2 + length
        chunks.append(SDESChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


# --------------------------------------------------------------------- BYE
@attrs.frozen(slots=True)
class Goodbye:
    ssrcs: tuple[int, ...]
    reason: str | None = None

    packet_type = BYE

    def serialize(self) -> bytes:
        if len(self.ssrcs) > 31:
            raise ValueError(f"at most 31 sources fit in one BYE, not {len(self.ssrcs)}")
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason is not None:
            reason = self.reason.encode("utf-8")
            if len(reason) > 255:
                raise ValueError("a BYE reason is at most 255 octets")
            body += bytes((len(reason),)) + reason
            body += bytes(-len(body) % 4)
        return _header(len(self.ssrcs), BYE, len(body)) + body


def _parse_bye(body: bytes, count: int) -> Goodbye:
    if 4 * count > len(body):
        raise RTCPError(f"BYE with {count} sources is too short ({len(body)} octets)")
    ssrcs = struct.unpack_from(f"!{count}I", body)
    reason = None
    offset = 4 * count
    if offset < len(body):
        length = body[offset]
        if offset + 1 + length > len(body):
            raise RTCPError("BYE reason runs past the end of the packet")
        reason = bytes(body[offset + 1:offset + 1 + length]).decode("utf-8", "replace")
    return Goodbye(ssrcs, reason)


# ------------------------------------------------------------------- other
@attrs.frozen(slots=True)
class RTCPPacket:
    """Any other RTCP packet, kept as its 5-bit count/subtype field and body."""

    packet_type: int
    count: int = 0
    body: bytes = b""

    def serialize(self) -> bytes:
        if not 0 <= self.count <= 31:
            raise ValueError(f"RTCP count/subtype {self.count} is not 0-31")
        return _header(self.count, self.packet_type, len(self.body)) + self.body


Packet = SenderReport | ReceiverReport | SourceDescription | Goodbye | RTCPPacket


# ------------------------------------------------------------ compound I/O
def parse_rtcp(data: bytes, compound: bool = True) -> tuple[Packet, ...]:
    """Every packet of a compound RTCP packet, after RFC 3550 A.2's checks."""
    length = len(data)
    if length < 4:
        raise RTCPError(f"RTCP packet too short: {length} octets")
    if compound:
        if data[0] & 0xE0 != 0x80 or data[1] not in (SR, RR):
            raise RTCPError("a compound RTCP packet starts with a SR or RR, version 2, no padding")
    packets = []
    offset = 0
    while offset < length:
        if offset + 4 > length:
            raise RTCPError("RTCP packet header runs past the end of the datagram")
        first, packet_type, words = _COMMON.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RTCPError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 + 4 * words
        if end > length:
            raise RTCPError(f"RTCP packet length {words} words runs past the end of the datagram")
        body = bytes(data[offset + 4:end])
        if first & 0x20:
            if end != length:
                raise RTCPError("padding in an RTCP packet that is not the last of the compound")
            pad = body[-1] if body else 0
            if pad == 0 or pad > len(body):
                raise RTCPError(f"RTCP padding count {pad} does not fit the packet")
            body = body[:-pad]
        packets.append(_parse_one(packet_type, first & 0x1F, body))
        offset = end
    return tuple(packets)


def _parse_one(packet_type: int, count: int, body: bytes) -> Packet:
    if packet_type == SR:
        if len(body) < 24:
            raise RTCPError(f"sender report too short ({len(body)} octets)")
        ssrc, ntp, rtp_ts, packets, octets = _SR_HEAD.unpack_from(body)
        reports = _parse_blocks(body, 24, count, "sender report")
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports, body[24 + 24 * count:])
    if packet_type == RR:
        if len(body) < 4:
            raise RTCPError(f"receiver report too short ({len(body)} octets)")
        (ssrc,) = struct.unpack_from("!I", body)
        reports = _parse_blocks(body, 4, count, "receiver report")
        return ReceiverReport(ssrc, reports, body[4 + 24 * count:])
    if packet_type == SDES:
        return _parse_sdes(body, count)
    if packet_type == BYE:
        return _parse_bye(body, count)
    return RTCPPacket(packet_type, count, body)


def serialize_compound(packets) -> bytes:
    """The octets of several packets, the first of which is a SR or RR."""
    packets = tuple(packets)
    if not packets or not isinstance(packets[0], (SenderReport, ReceiverReport)):
        raise ValueError("a compound RTCP packet starts with a sender or receiver report")
    return b"".join(packet.serialize() for packet in packets)


def compound(report: SenderReport | ReceiverReport, cname: str, bye: Goodbye | None = None) -> bytes:
    """SR or RR + SDES (CNAME of the report's SSRC) [+ BYE], as one datagram."""
    packets = [report, SourceDescription.with_cname(report.ssrc, cname)]
    if bye is not None:
        packets.append(bye)
    return serialize_compound(packets)


# -------------------------------------------------------------- NTP times
def ntp_timestamp(unix_seconds: float) -> int:
    """The 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point)."""
    return int(round((unix_seconds + _NTP_EPOCH_OFFSET) * 2**32)) & 0xFFFFFFFFFFFFFFFF


def ntp_seconds(ntp: int) -> float:
    """Unix seconds of a 64-bit NTP timestamp (era 0)."""
    return ntp / 2**32 - _NTP_EPOCH_OFFSET


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: a report block's LSR."""
    return (ntp >> 16) & 0xFFFFFFFF


# ----------------------------------------------------------- A.7 interval
RTCP_MIN_TIME = 5.0
RTCP_SENDER_BW_FRACTION = 0.25
RTCP_RECEIVER_BW_FRACTION = 1 - RTCP_SENDER_BW_FRACTION
COMPENSATION = 2.71828 - 1.5  # e - 3/2, RFC 3550 A.7


def rtcp_interval(
    members: int,
    senders: int,
    rtcp_bw: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    *,
    random: float = 0.5,
    session_kbps: float | None = None,
    unicast: bool = False,
) -> float:
    """Seconds until the next RTCP packet (RFC 3550 A.7).

    ``rtcp_bw`` is the RTCP bandwidth in octets/second (normally 5% of the
    session bandwidth), ``avg_rtcp_size`` the average compound packet size
    in octets including UDP/IP headers, ``random`` a number in [0, 1)
    that becomes the factor 0.5-1.5 (0.5, the default, gives the
    unrandomised interval divided by the compensation e - 3/2).

    The minimum interval is 5 s, halved before the first packet.  Given
    ``session_kbps``, RFC 3550 §6.2's reduced minimum, 360 / kbps seconds
    (if smaller than 5), applies to active senders, and with ``unicast``
    to every participant.
    """
    if members < 1 or rtcp_bw <= 0:
        raise ValueError("members must be at least 1 and the RTCP bandwidth positive")
    minimum = RTCP_MIN_TIME
    if session_kbps and (we_sent or unicast):
        minimum = min(minimum, 360.0 / session_kbps)
    if initial:
        minimum /= 2
    n = members
    if senders <= members * RTCP_SENDER_BW_FRACTION:
        if we_sent:
            rtcp_bw *= RTCP_SENDER_BW_FRACTION
            n = senders
        else:
            rtcp_bw *= RTCP_RECEIVER_BW_FRACTION
            n -= senders
    interval = max(avg_rtcp_size * n / rtcp_bw, minimum)
    return interval * (random + 0.5) / COMPENSATION


def average_rtcp_size(average: float, packet_size: int) -> float:
    """The running average of compound RTCP packet sizes (RFC 3550 §6.3.3:
    1/16 of the new size, in octets with UDP/IP headers)."""
    return packet_size / 16 + average * 15 / 16
