"""
The media channel of a PBX task: the task's own RTP endpoint.

A L{MediaChannel} binds an RTP/RTCP port pair from the configured range,
answers or makes SDP offers (G.711 µ-law and A-law, RFC 4733
telephone-events), and then runs as a machine on the core scheduler
(L{communigate.core.scheduler}): a periodic 20 ms tick is its only event.
On each tick it

  1. takes one frame from its jitter buffer (what the peer sent, in order,
     gaps concealed) and gives it to whoever listens: the echo loop, the
     bridged channel, the recorder, the in-band DTMF detector;
  2. sends one frame to the peer: a telephone-event packet while DTMF is
     being sent, else the next frame of what is playing (a prompt, a
     tone, in-band DTMF), else the echoed or bridged audio, else silence;
     the RTP timestamp advances by 160 a tick (by more when the scheduler
     had to skip ticks, so the peer hears a gap, not compressed time).

Datagrams are read by a thin C{DatagramProtocol} shell that parses them and
fills the jitter buffer; RFC 4733 events are reported at once (one report
per event, through redundancy and loss).  When telephone-event was not
negotiated, the decoded audio goes through the in-band detector
(L{communigate.media.inband}) instead, unless the channel's C{inband_dtmf}
is off: the detector is the costliest thing a channel does (it decodes
every frame and works out tone powers), and a call whose task reads no
keys -- a plain bridge to a gateway -- need not pay for it.

Symmetric RTP: the first packet of a negotiated payload type fixes where
the channel sends (latching), whatever the SDP said; packets from other
sources are then dropped and counted.  A new SDP (re-INVITE) latches
again.  Before any packet arrives the channel sends to the SDP address.

What the channel reports (DTMF, a prompt played to its end, a recording
that reached its limit) goes to the callbacks it was given, which post
events to the task; the channel itself never runs task code.

RTCP (reports on a randomised ~5 s interval, the peer's reports read,
BYE on close) is L{communigate.pbx.rtcp_reports}, called from the tick,
the datagram shells and C{close}.  The SDP side (offers, answers, what
they chose) is L{communigate.pbx.channel_sdp}; the port range and the
address named in SDP, L{communigate.pbx.media_ports}.  Offers and answers carry
C{a=rtcp-mux} (RFC 5761): when both ends agree, RTCP shares the RTP port
both ways; the RTCP port stays bound all the same (an answerer that does
not multiplex sends there), and RTCP arriving on the RTP port is told
from RTP by its second octet (L{communigate.media.rtp.is_rtcp}) whatever
was negotiated.

Not here yet: codecs other than G.711, ptimes other than 20 ms (packets
off the 20 ms grid are refused by the jitter buffer and counted), SRTP.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections import deque

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from communigate.core.scheduler import Machine, Started
from communigate.media import g711, tones
from communigate.media.events import TelephoneEventError, TelephoneEventReceiver, TelephoneEventSender
from communigate.media.inband import DTMFDetector
from communigate.media.jitter import JitterBuffer
from communigate.media.offer_answer import DEFAULT_CAPABILITIES
from communigate.media.rtp import RTPError, RTPPacket, is_rtcp, parse_rtp
from communigate.pbx.channel_sdp import ChannelError, ChannelNegotiation
from communigate.pbx.media_ports import PortRange, address_towards
from communigate.pbx.prompts import FRAME
from communigate.pbx.rtcp_reports import ChannelRTCP

__all__ = [
    "ChannelError",
    "MediaChannel",
    "MediaCounters",
    "NoFreePorts",
    "PortRange",
    "address_towards",
]

#: Seconds between ticks: one 20 ms G.711 frame.
TICK_SECONDS = 0.02
#: Slots of the 20 ms grid channels tick in (see MediaChannel.handle).
PHASES = 4
SAMPLES = 160
#: Frames of echoed or bridged audio held for sending; older ones are
#: dropped so that a late tick cannot build up delay.
MAX_QUEUED_FRAMES = 4
_random = random.SystemRandom()
#: An RTP header without CSRCs or extension (RFC 3550 5.1).
_HEADER = struct.Struct("!BBHII")


class NoFreePorts(ChannelError):
    """
    Every RTP port pair of the range is taken.
    """


class _Tick:
    """
    The periodic event of a channel.
    """

    def __repr__(self) -> str:
        return "<tick>"


TICK = _Tick()


@attrs.define
class MediaCounters:
    """
    What all channels did, read by the metrics at scrape time.
    """

    open: int = 0
    opened: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    events_sent: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0
    rtcp_malformed: int = 0
    malformed: int = 0
    foreign: int = 0
    unexpected_payload: int = 0
    late_or_duplicate: int = 0
    dtmf: dict = attrs.Factory(dict)

    def dtmf_detected(self, method: str) -> None:
        self.dtmf[method] = self.dtmf.get(method, 0) + 1


def _raw_sender(port):
    """
    How a channel sends RTP: straight through its socket's C{sendto} when
    the port has one (a reactor's UDP port), else the port's C{write} (the
    memory ports of tests).  The destination was checked once to be an IP
    address (L{MediaChannel._speak}), so the checks C{write} repeats for
    every datagram (about 6 % of a bridged call's CPU in a profile) are
    skipped.
    """
    handle = getattr(port, "getHandle", None)
    return port.write if handle is None else handle().sendto


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _RTPShell(DatagramProtocol):
    def __init__(self, channel: MediaChannel) -> None:
        self.channel = channel

    def datagramReceived(self, data: bytes, address) -> None:
        self.channel.rtp_received(data, tuple(address[:2]))


class _RTCPShell(DatagramProtocol):
    def __init__(self, channel: MediaChannel) -> None:
        self.channel = channel

    def datagramReceived(self, data: bytes, address) -> None:
        self.channel.rtcp_received(data, tuple(address[:2]))


class MediaChannel(ChannelNegotiation, Machine):
    """
    One RTP endpoint of a task.

    @param reactor: provides C{IReactorUDP} (binding) and C{IReactorTime}.
    @param scheduler: the core scheduler the channel ticks on.
    @param ports: the L{PortRange} to bind from.
    @param interface: the address to bind ("" for every interface).
    @param advertised: the address to put in SDP, or L{None} to use
        C{interface}, or when that is a wildcard the local address towards
        the peer.
    @param on_dtmf: C{on_dtmf(key, method)} for each key the peer pressed
        (C{method}: C{rfc4733} or C{inband}).
    @param on_played: C{on_played(token)} when what C{play} was given
        ran out.
    @param on_recorded: C{on_recorded(token, pcm)} when a recording
        reached its limit.
    @param counters: the L{MediaCounters} shared by all channels.
    @param inband_dtmf: whether to listen for DTMF tones in the audio when
        telephone-event was not negotiated (the C{inband_dtmf} property
        changes it later).

    @ivar codec: C{PCMU} or C{PCMA} once negotiated.
    @ivar remote: where frames go, C{(host, port)}, once known.
    @ivar sending: whether the negotiated direction lets us send.
    @ivar receiving: whether it lets the peer send to us.
    """

    log = Logger()

    def __init__(
        self,
        *,
        reactor,
        scheduler,
        ports: PortRange,
        interface: str = "",
        advertised: str | None = None,
        capabilities=DEFAULT_CAPABILITIES,
        on_dtmf=None,
        on_played=None,
        on_recorded=None,
        counters: MediaCounters | None = None,
        name: str = "",
        inband_dtmf: bool = True,
    ) -> None:
        self.reactor = reactor
        self._scheduler = scheduler
        self.ports = ports
        self.interface = interface
        self.advertised = advertised
        self.capabilities = tuple(capabilities)
        self.on_dtmf = on_dtmf
        self.on_played = on_played
        self.on_recorded = on_recorded
        self.counters = counters if counters is not None else MediaCounters()
        self.name = name
        self.port: int | None = None
        self.address: str | None = None
        self._listening = ()
        self._sendto = None
        self._checked_remote = None
        self._remote_is_ip = False
        self.closed = False
        # negotiation
        self.codec: str | None = None
        self.payload_type: int | None = None
        self.event_payload_type: int | None = None
        self.remote: tuple[str, int] | None = None
        self.latched = False
        self.sending = False
        self.receiving = False
        self.direction = "sendrecv"  # what we ask for (sendonly: holding)
        self.session_id = _random.randrange(1, 2**31)
        self.session_version = 0
        self._offered = False
        # outgoing stream
        self.ssrc = _random.getrandbits(32)
        self.sequence = _random.getrandbits(16)
        self.timestamp = _random.getrandbits(32)
        self._silence = b""
        self._events = TelephoneEventSender(SAMPLES)
        self._inband_keys: deque[bytes] = deque()
        self._player = None
        self._play_token = None
        self._echo: deque[bytes] = deque()
        self._bridged_in: deque[tuple[str, bytes]] = deque()
        self.loopback = False
        self.bridge: MediaChannel | None = None
        # incoming stream
        self._jitter: JitterBuffer | None = None
        self._receiver = TelephoneEventReceiver()
        self._detector: DTMFDetector | None = None
        self._inband_dtmf = bool(inband_dtmf)
        self._heard = False
        self._remote_ssrc: int | None = None
        self._recording: bytearray | None = None
        self._record_limit = 0
        self._record_token = None
        # ticks
        self._timer = None
        self._last_tick = -1
        self.frames_sent = 0
        self.frames_received = 0
        self.octets_sent = 0
        self.rtcp = ChannelRTCP(self)

    def __repr__(self) -> str:
        return f"<MediaChannel {self.name} port {self.port} {self.codec or 'unnegotiated'}>"

    # -- lifecycle ------------------------------------------------------------

    def open(self, peer_host: str | None = None) -> None:
        """
        Bind a port pair from the range and start ticking.

        @param peer_host: the peer's media address when known (from its
            offer), to choose the address SDP names us by.
        @raise NoFreePorts: every pair is taken.
        """
        if self.port is not None:
            return
        for port in self.ports.candidates():
            try:
                rtp = self.reactor.listenUDP(port, _RTPShell(self), interface=self.interface)
            except CannotListenError:
                continue
            try:
                rtcp = self.reactor.listenUDP(port + 1, _RTCPShell(self), interface=self.interface)
            except CannotListenError:
                rtp.stopListening()
                continue
            self.ports.take(port)
            self.port = port
            self._listening = (rtp, rtcp)
            self._sendto = _raw_sender(rtp)
            break
        else:
            raise NoFreePorts(f"no free RTP port pair in {self.ports.low}-{self.ports.high}")
        self.address = self._choose_address(peer_host)
        self.counters.open += 1
        self.counters.opened += 1
        self._scheduler.start(self)

    def _choose_address(self, peer_host: str | None) -> str:
        if self.advertised:
            return self.advertised
        if self.interface and self.interface not in ("0.0.0.0", "::"):
            return self.interface
        return address_towards(peer_host)

    def close(self) -> None:
        """
        Stop ticking, unbind the ports, forget the peer.  Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        self.rtcp.close()
        self.unbridge()
        self.stop()
        for listening in self._listening:
            try:
                listening.stopListening()
            except Exception:
                self.log.failure("Closing RTP port {port} failed", port=self.port)
        self._listening = ()
        if self.port is not None:
            self.ports.release(self.port)
            self.counters.open -= 1
        # a recording stays for stop_recording: what was heard before a hang-up is kept
        self._player = None

    # -- machine ----------------------------------------------------------------

    def handle(self, event) -> None:
        if event is TICK:
            self._tick()
        elif isinstance(event, Started):
            # Channels tick on a 20 ms grid of the clock cut into PHASES
            # slots, each channel in the slot its port number picks: the
            # scheduler wakes PHASES times per 20 ms for all channels (one
            # reactor callback queues every tick due) rather than once per
            # channel at scattered moments, and no slot holds more than
            # about a PHASES-th of them, which bounds how late the last
            # tick of a slot runs.
            slot = TICK_SECONDS / PHASES
            offset = ((self.port or 0) // 2 % PHASES) * slot
            now = self.reactor.seconds()
            first = (offset - now) % TICK_SECONDS
            if first < 1e-6:
                first += TICK_SECONDS
            self._timer = self.every(TICK_SECONDS, TICK, first=first)

    #: Where the peer's packets came from when last latched.
    _latched_from: tuple | None = None
    #: The source of the party before the last L{forget_peer}.
    _stale_source: tuple | None = None

    def forget_peer(self) -> None:
        """
        Another party takes the call over (a replaced or transferred call):
        packets from the one before are refused from now on (unless the new
        SDP names that very address), the channel latches to the next
        sender, and its stream starts afresh in the jitter buffer whatever
        its SSRC.
        """
        self._stale_source = self._latched_from or self.remote
        self._latched_from = None
        self.latched = False
        self._remote_ssrc = None
        if self._jitter is not None:
            self._jitter.reset()

    def _follow(self, host: str | None, port: int, *, sends: bool, receives: bool) -> None:
        self.sending = sends
        self.receiving = receives
        if host and port and host != "0.0.0.0":
            self.remote = (host, port)
        self.latched = False

    # -- what the task asks ---------------------------------------------------

    def play(self, frames, token=None) -> None:
        """
        Play C{frames} (an iterable of 320-octet L16 frames) instead of
        whatever was playing; C{on_played(token)} when it runs out.
        """
        self._player = iter(frames)
        self._play_token = token

    def stop_playing(self) -> bool:
        """
        Stop what is playing, without C{on_played}; whether something was.
        """
        playing = self._player is not None
        self._player = self._play_token = None
        return playing

    @property
    def playing(self) -> bool:
        return self._player is not None

    def record(self, max_seconds: float, token=None) -> None:
        """
        Keep what the peer sends, up to C{max_seconds}; then
        C{on_recorded(token, pcm)}.
        """
        self._recording = bytearray()
        self._record_limit = max(1, round(max_seconds * 8000)) * 2
        self._record_token = token

    def stop_recording(self) -> bytes | None:
        """
        End the recording now and return it (L16), or L{None} when none
        was running.
        """
        recording, self._recording = self._recording, None
        self._record_token = None
        return None if recording is None else bytes(recording)

    def send_dtmf(self, keys: str) -> None:
        """
        Send C{keys} as RFC 4733 events when negotiated, else as tones.

        @raise ValueError: a key that is not 0-9, *, #, A-D.
        """
        if self.telephone_events:
            self._events.send(keys)
            return
        for key in keys:
            pcm = tones.dtmf(key, 0.1) + bytes(1600)
            for start in range(0, len(pcm), FRAME):
                self._inband_keys.append(pcm[start:start + FRAME])

    def bridge_to(self, other: MediaChannel) -> None:
        """
        Send what this channel hears to C{other} and the other way round
        (simple bridging: each side keeps its own codec and RTP stream).
        """
        if other is self:
            raise ChannelError("a channel cannot be bridged to itself")
        self.unbridge()
        other.unbridge()
        self.bridge = other
        other.bridge = self

    def hand_frames_to(self, sink) -> None:
        """
        Hand each frame this channel hears to C{sink.bridged_frame(codec,
        payload)} in place of a bridged channel (a mixer's party,
        L{communigate.pbx.mixing}); what the sink hands back through
        L{bridged_frame} is sent as bridged audio.  L{unbridge} ends it.
        """
        self.unbridge()
        self.bridge = sink

    def unbridge(self) -> None:
        other, self.bridge = self.bridge, None
        self._bridged_in.clear()
        if isinstance(other, MediaChannel) and other.bridge is self:
            other.bridge = None
            other._bridged_in.clear()

    def bridged_frame(self, codec: str, payload: bytes) -> None:
        """
        A frame the bridged channel heard, to send on the next tick.
        """
        queue = self._bridged_in
        queue.append((codec, payload))
        if len(queue) > MAX_QUEUED_FRAMES:
            queue.popleft()

    # -- datagrams in ---------------------------------------------------------

    def rtp_received(self, data: bytes, source: tuple[str, int]) -> None:
        if self.closed:
            return
        if is_rtcp(data):  # RTCP multiplexed on the RTP port (RFC 5761)
            self.rtcp.datagram(data, source, muxed=True)
            return
        try:
            packet = parse_rtp(data)
        except RTPError as error:
            self.counters.malformed += 1
            self.log.debug("malformed RTP from {source} dropped: {error}", source=source, error=error)
            return
        if self.codec is None:
            self.counters.unexpected_payload += 1
            return
        kind = packet.payload_type
        if kind != self.payload_type and kind != self.event_payload_type:
            self.counters.unexpected_payload += 1
            return
        if not self.latched:
            if source == self._stale_source and source != self.remote:
                # The party before (forget_peer) still sending.
                self.counters.foreign += 1
                return
            self.remote = source
            self.latched = True
            self._latched_from = source
        elif source != self.remote:
            self.counters.foreign += 1
            self.log.debug("RTP from {source} dropped: latched to {remote}", source=source, remote=self.remote)
            return
        now = self.reactor.seconds()
        self.rtcp.rtp_received(packet, now, event=kind == self.event_payload_type)
        if kind == self.event_payload_type:
            self._event_packet(packet)
            return
        if packet.ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None:
                self._jitter.reset()
            self._remote_ssrc = packet.ssrc
        self.frames_received += 1
        self.counters.frames_received += 1
        if self._jitter.push(packet.sequence, packet.timestamp, packet.payload, now):
            self._heard = True
        else:
            self.counters.late_or_duplicate += 1

    def _event_packet(self, packet: RTPPacket) -> None:
        try:
            event = self._receiver.packet(packet.timestamp, packet.payload)
        except TelephoneEventError as error:
            self.counters.malformed += 1
            self.log.debug("malformed telephone-event dropped: {error}", error=error)
            return
        if event is not None and event.key is not None:
            self._report_dtmf(event.key, "rfc4733")

    def _report_dtmf(self, key: str, method: str) -> None:
        self.counters.dtmf_detected(method)
        if self.on_dtmf is not None:
            self.on_dtmf(key, method)

    def rtcp_received(self, data: bytes, source) -> None:
        if not self.closed:
            self.rtcp.datagram(data, source)

    @property
    def rtcp_port(self):
        """The listening RTCP port, or None when not bound."""
        return self._listening[1] if self._listening else None

    @property
    def rtp_port(self):
        """The listening RTP port (muxed RTCP goes out of it), or None."""
        return self._listening[0] if self._listening else None

    # -- the tick -------------------------------------------------------------

    def _tick(self) -> None:
        timer = self._timer
        tick = timer.tick if timer is not None else self._last_tick + 1
        advance = max(1, tick - self._last_tick) if self._last_tick >= 0 else 1
        self._last_tick = tick
        if self.codec is None:
            return
        now = self.reactor.seconds()
        if self._heard:
            self._hear(self._jitter.tick(now))
        self._speak()
        self.rtcp.tick(now)
        self.timestamp = (self.timestamp + SAMPLES * advance) & 0xFFFFFFFF

    def _hear(self, frame) -> None:
        payload = frame.payload
        if payload is None:
            return
        codec = self.codec
        if self.loopback:
            self._echo.append(payload)
            if len(self._echo) > MAX_QUEUED_FRAMES:
                self._echo.popleft()
        bridge = self.bridge
        if bridge is not None:
            bridge.bridged_frame(codec, payload)
        if self._recording is None and self._detector is None:
            return
        pcm = g711.decode(codec, payload)
        if self._detector is not None:
            for key in self._detector.feed(pcm):
                self._report_dtmf(key, "inband")
        recording = self._recording
        if recording is not None:
            recording += pcm
            if len(recording) >= self._record_limit:
                token = self._record_token
                done = self.stop_recording()
                if self.on_recorded is not None:
                    self.on_recorded(token, done[: self._record_limit])

    def _speak(self) -> None:
        payload = self._next_payload()
        if not self.sending or self.remote is None:
            return
        event = self._events.tick(self.timestamp) if self.event_payload_type is not None else None
        if event is not None:
            kind = self.event_payload_type | (0x80 if event.marker else 0)
            data = _HEADER.pack(0x80, kind, self.sequence, event.timestamp, self.ssrc) + event.payload
            self.counters.events_sent += 1
        else:
            # The header packed here rather than through RTPPacket: this is
            # the hottest line of a busy PBX (one per call every 20 ms).
            data = _HEADER.pack(0x80, self.payload_type, self.sequence, self.timestamp, self.ssrc) + payload
        if not self._listening:
            return
        remote = self.remote
        if remote is not self._checked_remote:
            # A host name (SDP may give one) is never resolved on the
            # packet path: such a peer is sent to once it has sent.
            self._checked_remote = remote
            self._remote_is_ip = _is_ip(remote[0])
        if not self._remote_is_ip:
            return
        try:
            self._sendto(data, remote)
        except OSError as error:
            self.log.debug("cannot send RTP to {remote}: {error}", remote=self.remote, error=error)
            return
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.frames_sent += 1
        self.octets_sent += len(data) - 12
        self.counters.frames_sent += 1

    def _next_payload(self) -> bytes:
        codec = self.codec
        if self._inband_keys:
            return g711.encode(codec, self._inband_keys.popleft())
        player = self._player
        if player is not None:
            frame = next(player, None)
            if frame is not None:
                if len(frame) != FRAME:
                    frame = (frame + bytes(FRAME))[:FRAME]
                return g711.encode(codec, frame)
            token = self._play_token
            self._player = self._play_token = None
            if self.on_played is not None:
                self.on_played(token)
        if self._echo:
            return self._echo.popleft()
        if self._bridged_in:
            their_codec, payload = self._bridged_in.popleft()
            if their_codec == codec:
                return payload
            return g711.encode(codec, g711.decode(their_codec, payload))
        return self._silence
