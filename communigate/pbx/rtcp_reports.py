"""
RTCP for a media channel: the channel's half of
L{communigate.media.rtcp_session.RTCPSession} (which decides when to
report and what, and keeps what the peer's reports say), with the
addresses and the socket.

  - B{Where to.}  RTCP goes to the peer's RTCP address: its SDP's
    C{a=rtcp} (RFC 3605), else the RTP port + 1 (RFC 3550 §11).  When
    the channel latched its RTP to another host than the SDP named (a
    peer behind NAT), to that host's RTP port + 1.  Once a valid RTCP
    packet has come to our RTCP port, to wherever it came from (symmetric
    RTCP, RFC 4961).  A new SDP forgets that latch.
  - B{Multiplexed} (RFC 5761, C{a=rtcp-mux} in the offer and the
    answer): ours go out of the RTP port to where the channel's RTP goes
    (the SDP's RTP address until the channel latched, then the latched
    source), so one NAT binding carries both.  The peer's multiplexed
    reports are read on the RTP port; they are read there too when mux was
    not negotiated (some phones do it anyway).  A peer that sends to our
    RTCP port although mux was agreed is answered there (the latch above
    wins): it evidently listens where it sends from.
  - B{When.}  Checked on the channel's 20 ms tick (so every timer is the
    scheduler's, on the injected clock): the session starts on the first
    tick after negotiation and reports when due.  The SR's RTP timestamp
    is the one the frame of that very tick carries.
  - B{What comes in.}  From the peer's host only (its RTP source once
    latched, else the SDP's RTP or RTCP host); from elsewhere: dropped,
    counted with the channel's foreign packets.  Malformed: dropped,
    counted (C{rtcp_malformed}) and logged at debug level.
  - B{Goodbye.}  When the channel closes after reporting began, one last
    compound packet with a BYE (RFC 3550 §6.3.7).
"""

from __future__ import annotations

import secrets

from twisted.logger import Logger

from communigate.media.rtcp import RTCPError
from communigate.media.rtcp_session import RTCPSession

__all__ = ["ChannelRTCP"]


class ChannelRTCP:
    """
    The RTCP of one L{communigate.pbx.channel.MediaChannel}.

    @ivar session: the L{RTCPSession}.
    @ivar latched: the source our RTCP port latched to, or None.
    """

    log = Logger()

    def __init__(self, channel, *, random=None) -> None:
        self.channel = channel
        # RFC 7022: a random CNAME per session rather than user@host.
        self.session = RTCPSession(
            channel.ssrc, secrets.token_urlsafe(12), random=random, first_sequence=channel.sequence,
        )
        self.sdp_address: tuple[str, int] | None = None
        self.latched: tuple[str, int] | None = None
        self.muxed = False

    # -- addresses ----------------------------------------------------------

    def follow(self, host: str | None, port: int | None, *, muxed: bool = False) -> None:
        """
        The peer's SDP says its RTCP is at C{host}:C{port}, and whether
        the offer and answer agreed on C{muxed} RTCP; a latch is
        forgotten (a hold address, 0.0.0.0, changes nothing else).
        """
        if host and port and host != "0.0.0.0":
            self.sdp_address = (host, port)
        self.latched = None
        self.muxed = muxed

    @property
    def destination(self) -> tuple[str, int] | None:
        """Where our RTCP goes now, or None when nowhere is known."""
        if self.latched is not None:
            return self.latched
        channel = self.channel
        if self.muxed:
            return channel.remote
        remote, sdp = channel.remote, self.sdp_address
        if channel.latched and remote is not None and (sdp is None or remote[0] != sdp[0]):
            return (remote[0], remote[1] + 1)
        return sdp

    def _admits(self, source: tuple[str, int], muxed: bool) -> bool:
        channel = self.channel
        if not muxed and self.latched is not None:
            return source == self.latched
        hosts = set()
        if channel.remote is not None:
            hosts.add(channel.remote[0])
        if not channel.latched and self.sdp_address is not None:
            hosts.add(self.sdp_address[0])
        return source[0] in hosts

    # -- in -----------------------------------------------------------------

    def rtp_received(self, packet, arrival: float, *, event: bool = False) -> None:
        """An RTP packet of the peer's that the channel accepted."""
        self.session.rtp_received(packet.ssrc, packet.sequence, packet.timestamp, arrival, timing=not event)

    def datagram(self, data: bytes, source: tuple[str, int], *, muxed: bool = False) -> None:
        """
        An RTCP datagram from C{source}, on our RTCP port or (C{muxed}) on
        the RTP port.
        """
        channel = self.channel
        counters = channel.counters
        counters.rtcp_received += 1
        if not self._admits(source, muxed):
            counters.foreign += 1
            self.log.debug("RTCP from {source} dropped: not the peer's", source=source)
            return
        try:
            self.session.rtcp_received(data, channel.reactor.seconds())
        except RTCPError as error:
            counters.rtcp_malformed += 1
            self.log.debug("malformed RTCP from {source} dropped: {error}", source=source, error=error)
            return
        if not muxed and self.latched is None:
            self.latched = source

    # -- out ----------------------------------------------------------------

    def tick(self, now: float) -> None:
        """The channel's tick at C{now}, after it sent its frame."""
        session = self.session
        due = session.due
        if due is None:
            session.start(now)
        elif now >= due and session.is_due(now, self.channel.frames_sent):
            self._send(self._report(now))

    def close(self) -> None:
        """The channel is closing: a last report with a BYE, if we began."""
        session = self.session
        if session.due is None:
            return
        self._send(self._report(self.channel.reactor.seconds(), bye=True))

    def _report(self, now: float, bye: bool = False) -> bytes:
        channel = self.channel
        return self.session.report(
            now, rtp_timestamp=channel.timestamp, packets=channel.frames_sent,
            octets=channel.octets_sent, bye=bye,
        )

    def _send(self, data: bytes) -> None:
        channel = self.channel
        destination = self.destination
        port = channel.rtp_port if self.muxed and self.latched is None else channel.rtcp_port
        if destination is None or port is None:
            return
        try:
            port.write(data, destination)
        except OSError as error:
            self.log.debug("cannot send RTCP to {remote}: {error}", remote=destination, error=error)
            return
        channel.counters.rtcp_sent += 1

    # -- figures --------------------------------------------------------------

    def quality(self) -> dict:
        """
        The call's quality figures from RTCP, those known: C{loss} (the
        peer's packets lost on the way to us, 0-1), C{jitter_ms} (of the
        peer's stream, as we measure it), C{peer_loss} (ours lost on the
        way to the peer, by its reports), C{peer_jitter_ms}, C{rtt_ms}.
        """
        session = self.session
        figures = {}
        if session.loss is not None:
            figures["loss"] = session.loss
        if session.jitter is not None:
            figures["jitter_ms"] = session.jitter * 1000
        if session.peer_loss is not None:
            figures["peer_loss"] = session.peer_loss
        report = session.peer_report
        if report is not None:
            figures["peer_jitter_ms"] = report.jitter / session.clock_rate * 1000
        if session.rtt is not None:
            figures["rtt_ms"] = session.rtt * 1000
        return figures

    def status(self) -> dict:
        """C{READNODESTATUS}'s C{RTCP} dictionary (data-format strings)."""
        session = self.session
        status = {
            "SSRC": f"{session.ssrc:08X}",
            "Sent": str(session.sent),
            "Received": str(session.received),
            "Malformed": str(session.malformed),
        }
        names = {
            "loss": "Loss", "jitter_ms": "Jitter", "peer_loss": "PeerLoss",
            "peer_jitter_ms": "PeerJitter", "rtt_ms": "RTT",
        }
        for key, value in self.quality().items():
            if key.endswith("loss"):
                status[names[key]] = f"{value * 100:.2f}%"
            else:
                status[names[key]] = f"{value:.1f}ms"
        if session.stats is not None:
            status["PeerSSRC"] = f"{session.stats.ssrc:08X}"
        if session.peer_left:
            status["PeerLeft"] = "YES"
        if self.muxed:
            status["Mux"] = "YES"
        return status
