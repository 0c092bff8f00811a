"""
A deliberately minimal RTP endpoint over Twisted UDP: enough to put the
sans-IO pieces on a real socket and prove them in a loopback test.

`RTPSession` is a ``DatagramProtocol`` with one remote address and one
outgoing SSRC.  ``send(payload)`` stamps the next sequence number and a
timestamp that advances by ``samples`` per call (a marker bit and another
payload type on request, e.g. for RFC 4733 packets, which keep the
timestamp they are given); received datagrams are parsed, counted per
source in a `ReceiverStats` and handed with their arrival time (from the
injected clock) to ``on_packet(packet, arrival)``.  Malformed datagrams
and datagrams from another address than the remote one are dropped,
counted and logged (debug level: a flood must not flood the log).

Not here, on purpose (the media relay, media channel and mixer slices
build them on these objects): RTCP sending and scheduling, latching to the
observed source address, pacing by the core scheduler, jitter buffering,
SSRC-change handling.
"""

from __future__ import annotations

import random

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from communigate.media.reception import ReceiverStats
from communigate.media.rtp import RTPError, RTPPacket, parse_rtp

__all__ = ["RTPSession"]

_random = random.SystemRandom()


class RTPSession(DatagramProtocol):
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        payload_type: int,
        *,
        remote: tuple[str, int] | None = None,
        on_packet=None,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        clock_rate: int = 8000,
    ):
        self.clock = clock
        self.payload_type = payload_type
        self.remote = remote
        self.on_packet = on_packet
        self.clock_rate = clock_rate
        # RFC 3550 §5.1: random initial SSRC, sequence number and timestamp.
        self.ssrc = _random.getrandbits(32) if ssrc is None else ssrc
        self.sequence = _random.getrandbits(16) if sequence is None else sequence
        self.timestamp = _random.getrandbits(32) if timestamp is None else timestamp
        self.sent_packets = 0
        self.sent_octets = 0
        self.received_packets = 0
        self.malformed = 0
        self.foreign = 0
        self.sources: dict[int, ReceiverStats] = {}

    # ---------------------------------------------------------------- out
    def send(
        self,
        payload: bytes,
        samples: int = 160,
        *,
        marker: bool = False,
        payload_type: int | None = None,
        timestamp: int | None = None,
    ) -> RTPPacket:
        """Send one packet to the remote address; the stream's timestamp
        advances by ``samples`` (unless ``timestamp`` is given, as for
        telephone-events, which keep their event's timestamp)."""
        if self.remote is None or self.transport is None:
            raise RuntimeError("RTP session has no remote address or is not listening")
        packet = RTPPacket(
            self.payload_type if payload_type is None else payload_type,
            self.sequence,
            self.timestamp if timestamp is None else timestamp & 0xFFFFFFFF,
            self.ssrc,
            payload,
            marker,
        )
        data = packet.serialize()
        self.transport.write(data, self.remote)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.sent_packets += 1
        self.sent_octets += len(payload)
        return packet

    # ----------------------------------------------------------------- in
    def datagramReceived(self, data: bytes, address) -> None:
        if self.remote is not None and tuple(address[:2]) != tuple(self.remote):
            self.foreign += 1
            self.log.debug("RTP from {address} dropped: not the remote {remote}",
                           address=address, remote=self.remote)
            return
        try:
            packet = parse_rtp(data)
        except RTPError as error:
            self.malformed += 1
            self.log.debug("malformed RTP from {address} dropped: {error}", address=address, error=error)
            return
        arrival = self.clock.seconds()
        stats = self.sources.get(packet.ssrc)
        if stats is None:
            stats = self.sources[packet.ssrc] = ReceiverStats(packet.ssrc, self.clock_rate)
        stats.received(packet.sequence, packet.timestamp, arrival)
        self.received_packets += 1
        if self.on_packet is not None:
            self.on_packet(packet, arrival)
