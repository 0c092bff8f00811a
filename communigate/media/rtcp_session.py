"""
The RTCP of one unicast RTP endpoint (RFC 3550 §6), as a pure object:
when to report, what the report says, and what the peer's reports tell
us.  Time is always an argument (``now``, ``arrival``: seconds of the
caller's injected clock, also the wall time the SR's NTP timestamp is
made of); the random draw comes from an injected callable; nothing here
sends, logs or schedules.  `communigate.pbx.rtcp_reports` wires it to a
media channel.

**When** (§6.2, §6.3, A.7).  `start(now)` begins the session: the first
report is due after `rtcp_interval` with the minimum halved (2.5 s), and
each next one an interval after the last, with RTCP bandwidth 5% of
`bandwidth` (G.711 at 20 ms: 80 kbit/s with headers, so for two parties
the 5 s minimum always wins), randomised by 0.5-1.5 and divided by
e - 3/2.  `is_due(now)` applies timer reconsideration (§6.3.6): when the
time comes, the interval is drawn again and, if the last report plus
the new interval is still ahead, the report waits for it.  Every
interval between two reports is therefore within
``[5 × 0.5, 5 × 1.5] / (e − 3/2)`` = 2.05-6.16 s (half that for the
first), 5 s on average.

**What** (§6.4).  `report(now, rtp_timestamp=..., packets=..., octets=...)`
is the compound packet to send: a SR when we sent RTP since the last
report or the one before (§6.4: "since issuing the last report or the
previous one"), with the NTP time of ``now`` and the RTP timestamp the
stream has at that instant, else a RR; a report block for the peer's
source when RTP came from it since the last report (RFC 3550 A.3, A.8
through `ReceiverStats`, LSR/DLSR from the peer's last SR); an SDES
CNAME; a BYE when asked (the channel closing, §6.3.7: a session this
small says goodbye at once).

**Learning** (§6.4.1).  `rtcp_received(data, now)` parses a compound
packet (`parse_rtcp`: A.2's checks; a malformed one is counted in
``malformed`` and its `RTCPError` raised for the caller to log).  A SR
gives the peer's sender figures and the LSR/DLSR of our next report
block; a report block about our SSRC gives the loss and jitter the peer
sees and, when it carries a LSR, the round-trip time ``A − LSR − DLSR``
(A: the NTP middle 32 bits of ``now``); a BYE from the peer's source is
noted.
"""

from __future__ import annotations

import random as _random_module

import attrs

from communigate.media.reception import ReceiverStats
from communigate.media.rtcp import (
    Goodbye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    average_rtcp_size,
    compound,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    rtcp_interval,
    RTCPError,
)

__all__ = ["RTCPSession", "PeerReport", "PeerSender", "UDP_IP_OVERHEAD", "round_trip"]

#: Octets of IPv4 and UDP headers counted in the average RTCP size (§6.2).
UDP_IP_OVERHEAD = 28
#: The session bandwidth assumed for G.711 at 20 ms with IP/UDP/RTP
#: headers: 50 packets of 200 octets a second.
DEFAULT_BANDWIDTH = 80_000
#: RTCP's share of the session bandwidth (§6.2).
RTCP_FRACTION = 0.05
#: Before any packet is sent, the average RTCP size is a guess: a SR with
#: one report block and a short CNAME, with headers.
INITIAL_AVERAGE = 128.0


@attrs.frozen
class PeerReport:
    """
    What the peer's last report block about our stream said.

    @ivar fraction_lost: lost in the peer's last interval, 0-255 (x/256).
    @ivar cumulative_lost: lost since the start (negative with duplicates).
    @ivar highest_sequence: the extended highest sequence number it saw.
    @ivar jitter: interarrival jitter in timestamp units.
    @ivar rtt: the round-trip time this block gave, in seconds, or None
        (no LSR: the peer had no SR of ours yet).
    @ivar at: when it arrived.
    """

    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    rtt: float | None
    at: float


@attrs.frozen
class PeerSender:
    """The sender information of the peer's last SR."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packets: int
    octets: int
    at: float


def round_trip(block: ReportBlock, now: float) -> float | None:
    """
    The round-trip time in seconds that C{block} (about our stream,
    arriving at C{now}) gives: A - LSR - DLSR in 1/65536 s (RFC 3550
    §6.4.1), or None when it has no LSR or the result is negative (clocks
    that disagree, a corrupted block).
    """
    if block.lsr == 0:
        return None
    units = (ntp_middle(ntp_timestamp(now)) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if units >= 0x80000000:
        return None
    return units / 65536


class RTCPSession:
    """
    RTCP for one RTP stream we send (SSRC C{ssrc}) and the one peer we
    receive from (see the module docstring).

    @param random: a callable returning a number in [0, 1), for the
        interval's randomisation.
    @param bandwidth: the session bandwidth in bits per second.
    @param first_sequence: the sequence number of our first RTP packet,
        for L{peer_loss}.

    @ivar due: when the next report is due (None before L{start}).
    @ivar sent: compound packets sent; C{received}, C{malformed} likewise.
    @ivar rtt: the last round-trip time measured, in seconds, or None.
    @ivar peer_report: the last L{PeerReport} about our stream, or None.
    @ivar peer_sender: the peer's last SR figures (L{PeerSender}) or None.
    @ivar peer_left: the peer's source sent a BYE.
    """

    def __init__(
        self,
        ssrc: int,
        cname: str,
        *,
        clock_rate: int = 8000,
        bandwidth: float = DEFAULT_BANDWIDTH,
        random=None,
        first_sequence: int | None = None,
    ) -> None:
        self.ssrc = ssrc
        self.first_sequence = first_sequence
        self.cname = cname
        self.clock_rate = clock_rate
        self.rtcp_bandwidth = bandwidth * RTCP_FRACTION / 8  # octets per second
        self._random = random if random is not None else _random_module.Random().random
        self.average_size = INITIAL_AVERAGE
        self.due: float | None = None
        self.last_report: float | None = None
        self.initial = True
        self.sent = 0
        self.received = 0
        self.malformed = 0
        self.rtt: float | None = None
        self.peer_report: PeerReport | None = None
        self.peer_sender: PeerSender | None = None
        self.peer_left = False
        self.stats: ReceiverStats | None = None
        self._pending_sr: tuple[int, int, float] | None = None  # (ssrc, ntp, arrival)
        self._heard_since_report = False
        self._heard_before = False  # RTP from the peer in the interval before
        self._peer_known = False
        # RTP packets we had sent at the last report and the one before.
        self._packets_at = (0, 0)
        self._packets_now = 0

    # -- timing -------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin reporting: the first report is due one initial interval on."""
        if self.due is not None:
            return
        self.last_report = now
        self.due = now + self._interval()

    def _senders(self) -> tuple[int, int, bool]:
        we_sent = self._packets_now > self._packets_at[0]
        peer_sends = self._heard_since_report or self._heard_before
        members = 2 if self._peer_known and not self.peer_left else 1
        return members, int(we_sent) + int(peer_sends and members > 1), we_sent

    def _interval(self) -> float:
        members, senders, we_sent = self._senders()
        return rtcp_interval(
            members, min(senders, members), self.rtcp_bandwidth, we_sent, self.average_size,
            self.initial, random=self._random(),
        )

    def is_due(self, now: float, packets: int | None = None) -> bool:
        """
        Whether a report is to be sent at C{now} (C{packets}: the RTP
        packets we have sent so far).  With reconsideration (§6.3.6): a
        due report whose new interval says "not yet" is put off to the
        last report plus that interval.
        """
        if self.due is None or now < self.due:
            return False
        if packets is not None:
            self._packets_now = packets
        later = self.last_report + self._interval()
        if later > now:
            self.due = later
            return False
        return True

    # -- reporting ----------------------------------------------------------

    def report(
        self,
        now: float,
        *,
        rtp_timestamp: int,
        packets: int,
        octets: int,
        bye: bool = False,
        reason: str | None = None,
    ) -> bytes:
        """
        The compound packet to send at C{now} (see the module docstring),
        and the next report scheduled.  C{rtp_timestamp} is our stream's
        RTP timestamp at C{now}; C{packets} and C{octets} what we have
        sent (RTP packets, payload octets).  C{bye}: end with a BYE (with
        C{reason}).
        """
        self._packets_now = packets
        blocks: tuple[ReportBlock, ...] = ()
        stats = self.stats
        if stats is not None and stats.valid and self._heard_since_report:
            blocks = (stats.report_block(now),)
        if packets > self._packets_at[0]:
            report = SenderReport(
                self.ssrc, ntp_timestamp(now), rtp_timestamp & 0xFFFFFFFF,
                packets & 0xFFFFFFFF, octets & 0xFFFFFFFF, blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        goodbye = Goodbye((self.ssrc,), reason) if bye else None
        data = compound(report, self.cname, goodbye)
        self.sent += 1
        self.average_size = average_rtcp_size(self.average_size, len(data) + UDP_IP_OVERHEAD)
        self._packets_at = (self._packets_at[1], packets)
        self._heard_before, self._heard_since_report = self._heard_since_report, False
        self.initial = False
        self.last_report = now
        self.due = None if bye else now + self._interval()
        return data

    # -- what comes in --------------------------------------------------------

    def rtp_received(self, ssrc: int, sequence: int, timestamp: int, arrival: float, *,
                     timing: bool = True) -> bool:
        """
        Account for an RTP packet of the peer's (see
        L{ReceiverStats.received}); a new SSRC starts new statistics.
        """
        stats = self.stats
        if stats is None or stats.ssrc != ssrc:
            stats = self.stats = ReceiverStats(ssrc, self.clock_rate)
            pending = self._pending_sr
            if pending is not None and pending[0] == ssrc:
                stats.sender_report(pending[1], pending[2])
            self.peer_left = False
        self._peer_known = True
        self._heard_since_report = True
        return stats.received(sequence, timestamp, arrival, timing=timing)

    def rtcp_received(self, data: bytes, now: float):
        """
        Take in the peer's compound packet and return its packets.

        @raise RTCPError: it is malformed (counted in C{malformed}).
        """
        try:
            packets = parse_rtcp(data)
        except RTCPError:
            self.malformed += 1
            raise
        self.received += 1
        self._peer_known = True
        self.average_size = average_rtcp_size(self.average_size, len(data) + UDP_IP_OVERHEAD)
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._sender_report(packet, now)
            if isinstance(packet, (SenderReport, ReceiverReport)):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self._about_us(block, now)
            elif isinstance(packet, Goodbye):
                stats = self.stats
                if stats is not None and stats.ssrc in packet.ssrcs:
                    self.peer_left = True
        return packets

    def _sender_report(self, packet: SenderReport, now: float) -> None:
        self.peer_sender = PeerSender(
            packet.ssrc, packet.ntp_timestamp, packet.rtp_timestamp, packet.packet_count,
            packet.octet_count, now,
        )
        stats = self.stats
        if stats is not None and stats.ssrc == packet.ssrc:
            stats.sender_report(packet.ntp_timestamp, now)
        else:
            self._pending_sr = (packet.ssrc, packet.ntp_timestamp, now)

    def _about_us(self, block: ReportBlock, now: float) -> None:
        rtt = round_trip(block, now)
        if rtt is not None:
            self.rtt = rtt
        self.peer_report = PeerReport(
            block.fraction_lost, block.cumulative_lost, block.highest_sequence, block.jitter, rtt, now,
        )

    # -- figures --------------------------------------------------------------

    @property
    def loss(self) -> float | None:
        """
        The fraction (0-1) of the peer's packets lost on the way to us
        since its stream (re)started, or None before it was valid.
        """
        stats = self.stats
        if stats is None or not stats.valid or stats.expected <= 0:
            return None
        return max(0.0, stats.lost / stats.expected)

    @property
    def jitter(self) -> float | None:
        """The interarrival jitter of the peer's stream in seconds, or None."""
        stats = self.stats
        if stats is None or not stats.valid:
            return None
        return stats.jitter / self.clock_rate

    @property
    def peer_loss(self) -> float | None:
        """
        The fraction (0-1) of our packets the peer's last report says were
        lost since the start (its cumulative loss over the packets it
        expected: its extended highest sequence number from our first),
        or None without a report or without C{first_sequence}.
        """
        report = self.peer_report
        if report is None or self.first_sequence is None:
            return None
        expected = report.highest_sequence - self.first_sequence + 1
        if expected <= 0:
            return None
        return max(0.0, min(1.0, report.cumulative_lost / expected))
