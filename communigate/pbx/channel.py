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
the datagram shells and C{close}.  Offers and answers carry
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
import socket
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
from communigate.media.offer_answer import (
    DEFAULT_CAPABILITIES,
    NoCommonCodec,
    answer,
    make_offer,
    streams,
)
from communigate.media.rtp import RTPError, RTPPacket, is_rtcp, parse_rtp
from communigate.media.sdp import parse_sdp
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


class ChannelError(Exception):
    """
    The channel cannot do what was asked (no SDP yet, closed ...).
    """


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


_towards_cache: dict[str, str] = {}


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
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            found = probe.getsockname()[0]
    except OSError:
        found = "127.0.0.1"
    if len(_towards_cache) > 1024:
        _towards_cache.clear()
    _towards_cache[host] = found
    return found


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


class MediaChannel(Machine):
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

    # -- SDP --------------------------------------------------------------------

    def answer_offer(self, offer: bytes, direction: str | None = None) -> bytes:
        """
        Our answer to C{offer}; the channel follows it from now on.

        @raise NoCommonCodec: no usable audio stream (488).
        @raise SDPError: the offer does not parse (400 or 488).
        """
        if self.closed:
            raise ChannelError("the media channel is closed")
        offered = parse_sdp(offer)
        if self.port is None:
            infos = streams(offered)
            peer = next((s.address for s in infos if s.media == "audio" and s.address), None)
            self.open(peer)
        if direction is not None:
            self.direction = direction
        self.session_version += 1
        ours = answer(
            offered,
            self.capabilities,
            self.address,
            {index: self.port for index in range(len(offered.media))},
            direction=self.direction,
            session_id=self.session_id,
            session_version=self.session_version,
            rtcp_mux=True,
        )
        mine = next(s for s in streams(ours) if s.accepted)
        theirs = streams(offered)[mine.index]
        self._configure(mine.payload_type, mine.codec.encoding, mine.event_payload_type)
        self._follow(theirs.address, theirs.port, sends=mine.sends and not theirs.old_style_hold,
                     receives=mine.receives)
        self.rtcp.follow(theirs.rtcp_address, theirs.rtcp_port, muxed=mine.rtcp_mux)
        self._offered = False
        return ours.serialize()

    def make_offer(self, direction: str | None = None) -> bytes:
        """
        An offer of one audio stream with every codec we have (C{sendonly}
        to hold the peer, C{inactive} to stop both ways).
        """
        if self.closed:
            raise ChannelError("the media channel is closed")
        if self.port is None:
            self.open(None)
        if direction is not None:
            self.direction = direction
        self.session_version += 1
        self._offered = True
        return make_offer(
            self.capabilities,
            self.address,
            self.port,
            direction=self.direction,
            session_id=self.session_id,
            session_version=self.session_version,
            rtcp_mux=True,
        ).serialize()

    def apply_answer(self, data: bytes) -> None:
        """
        The peer's answer to our last offer.

        @raise NoCommonCodec: it rejected the audio stream.
        @raise SDPError: it does not parse.
        @raise ChannelError: no offer is outstanding.
        """
        if not self._offered:
            raise ChannelError("an SDP answer without an offer")
        described = parse_sdp(data)
        infos = streams(described)
        if not infos or not infos[0].accepted or infos[0].codec is None:
            raise NoCommonCodec("the answer rejected the audio stream")
        stream = infos[0]
        encoding = stream.codec.encoding.upper()
        if encoding not in ("PCMU", "PCMA"):
            raise NoCommonCodec(f"the answer chose {stream.codec.encoding}, which we did not offer")
        self._offered = False
        # The answer's direction is the peer's: it sends when it says
        # sendrecv or sendonly, and we may send when it receives.
        self._configure(stream.payload_type, encoding, stream.event_payload_type)
        ours_send = self.direction in ("sendrecv", "sendonly")
        ours_receive = self.direction in ("sendrecv", "recvonly")
        self._follow(stream.address, stream.port, sends=ours_send and stream.receives,
                     receives=ours_receive and stream.sends)
        # Our offers always ask for rtcp-mux: the answer decides.
        self.rtcp.follow(stream.rtcp_address, stream.rtcp_port, muxed=stream.rtcp_mux)

    @property
    def negotiated(self) -> bool:
        return self.codec is not None

    @property
    def telephone_events(self) -> bool:
        return self.event_payload_type is not None

    def _configure(self, payload_type: int, encoding: str, event_payload_type: int | None) -> None:
        encoding = encoding.upper()
        if encoding != self.codec or self._jitter is None:
            self._jitter = JitterBuffer(silence=g711.silence(encoding))
            self._heard = False
        self.codec = encoding
        self.payload_type = payload_type
        self.event_payload_type = event_payload_type
        self._silence = g711.silence(encoding)
        self._detector = DTMFDetector() if self._inband_dtmf and event_payload_type is None else None

    @property
    def inband_dtmf(self) -> bool:
        """
        Whether tones in the audio are looked for when telephone-event was
        not negotiated (they never are when it was: the keys come as
        events, and a phone sending both would be heard twice).
        """
        return self._inband_dtmf

    @inband_dtmf.setter
    def inband_dtmf(self, flag: bool) -> None:
        self._inband_dtmf = flag = bool(flag)
        if not flag:
            self._detector = None
        elif self._detector is None and self.codec is not None and self.event_payload_type is None:
            # A fresh detector: what it half-heard before it was switched
            # off is gone, so no key is made of two separate tones.
            self._detector = DTMFDetector()

    @property
    def detecting_inband(self) -> bool:
        """Whether the in-band detector runs on what the peer sends now."""
        return self._detector is not None

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
