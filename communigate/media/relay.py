"""
The media relay: UDP port pairs on the server that carry a call's RTP and
RTCP between its two parties, for parties behind NAT, on the other side
of the LAN, of another IP version, or on request.

`MediaRelay` (`IMediaRelay`) keeps the sessions, allocates port pairs
from the C{PortRange} setting and counts what passes.  A `RelaySession`
(`IRelaySession`) is one call with two legs, the caller's and the
callee's: for each relayed stream (SDP m-line) each leg listens on its
own pair, an even RTP port and the odd RTCP port above it.  What arrives
on the caller's leg goes out of the callee's leg to the callee, and back,
so each party sends to and receives from the one address it was given
(symmetric RTP, RFC 4961).  Nothing is decoded: `latch.classify` checks
the version bits and lengths, `latch.Peer` decides which source is
admitted (latching) and where packets go.

`relay_description(session, side, sdp, latch_any)` is the SDP side: it
records where the party that wrote C{sdp} receives each stream and
returns C{sdp} rewritten (`offer_answer.rewrite`) to point at the other
party's leg, so the other party sends to the relay.  Signalling modules
(the SIP proxy's `communigate.sip.media_hook`, later XIMSS and PBX
bridges) call it with each offer and answer that passes.

Release [D]: by the signalling (BYE, CANCEL, a failed call) through
`release`, when the session has been idle -- no packet admitted in either
direction -- for C{IdleTimeout} seconds once the call is answered (RTCP
counts, so a call on hold that still sends RTCP stays), or, before the
answer, after `SETUP_LIMIT` seconds without packets (more than SIP's
Timer C), so that a session whose call never concluded cannot leak.
Closed ports return to the pool once the reactor has closed them; the
pool is walked round-robin, so a port just released is the last to be
handed out again and late packets of the old call find nothing.

A dropped datagram (`latch.Drop`: malformed, from a wrong source, for a
party that cannot be reached yet, or a failed send) is counted, per
reason, and logged at most once a minute per session and reason.
"""

from __future__ import annotations

import enum

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet import defer
from twisted.internet.error import CannotListenError, MessageLengthError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.interfaces import IMediaRelay, IRelaySession
from communigate.media.latch import LATCHED, Drop, PacketKind, Peer, classify, malformation
from communigate.media.offer_answer import rewrite, streams
from communigate.media.sdp import SDPError, parse_sdp
from communigate.network import OncePerInterval

__all__ = [
    "Side",
    "LegAddress",
    "RelayRefused",
    "MediaRelay",
    "RelaySession",
    "relay_description",
    "RELAYED_PROTOCOLS",
    "MAX_STREAMS",
    "SETUP_LIMIT",
]

#: Seconds a session may go without packets before its call is answered.
SETUP_LIMIT = 300.0
#: m-lines relayed per session; later ones keep their own addresses.
MAX_STREAMS = 4
#: SDP transport protocols whose packets carry RTP/RTCP headers in clear.
RELAYED_PROTOCOLS = frozenset({"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"})
#: Largest datagram read from a relay port.
MAX_DATAGRAM = 8192
_RTCP = PacketKind.RTCP


class Side(enum.IntEnum):
    """The two parties of a relayed call."""

    CALLER = 0
    CALLEE = 1

    @property
    def other(self) -> Side:
        return Side(1 - self)

    @property
    def label(self) -> str:
        return "Caller" if self is Side.CALLER else "Callee"


class RelayRefused(Exception):
    """No relay session or port pair can be had now; the message says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class LegAddress:
    """
    Where a leg's ports bind (C{bind}, C{0.0.0.0} or C{::} for every
    interface) and the address its party is told to send to.
    """

    bind: str
    advertise: str


class _RelaySocket(DatagramProtocol):
    """
    One port of a leg: admits what its party sends and hands it to the
    twin socket (the other leg's port of the same kind), which sends it
    to the other party.  The hot path of the relay.
    """

    def __init__(self, session: RelaySession, side: Side) -> None:
        self.session = session
        self.side = side
        self.peer = Peer()
        self.twin: _RelaySocket | None = None
        self.port = None
        self.send = None  # sendto(data, address) of the port, once it listens
        self.number = 0
        self.packets = 0
        self.octets = 0
        self.rtcp_packets = 0  # of the packets above, RTCP (on either port)
        self._seconds = session.relay.clock.seconds

    def datagramReceived(self, data, source) -> None:
        kind = classify(data)
        if kind is None:
            self.session.dropped(Drop.MALFORMED, self, source, malformation(data))
            return
        admitted = self.peer.admit(source)
        if not admitted:
            self.session.dropped(Drop.WRONG_SOURCE, self, source, "")
            return
        if admitted == LATCHED:
            self.session.latched(self, source)
        self.session.last_activity = self._seconds()
        twin = self.twin
        destination = twin.peer.destination()
        if destination is None:
            self.session.dropped(Drop.NO_DESTINATION, self, source, "")
            return
        try:
            twin.send(data, destination)
        except (OSError, MessageLengthError) as e:
            self.session.dropped(Drop.SEND_FAILED, self, source, str(e))
            return
        self.packets += 1
        self.octets += len(data)
        if kind is _RTCP:
            self.rtcp_packets += 1


@implementer(IRelaySession)
class RelaySession:
    """
    One relayed call (see the module docstring and L{IRelaySession}).

    @ivar last_activity: when a packet was last admitted (or the session
        opened, or its call was answered), in the relay clock's seconds.
    @ivar notes: whatever the module that opened the session keeps with
        it (the SIP hook keeps the parties).
    """

    def __init__(self, relay: MediaRelay, key, caller: LegAddress, callee: LegAddress,
                 reason: str, description: str) -> None:
        self.relay = relay
        self.key = key
        self.reason = reason
        self.description = description
        self.legs = (caller, callee)
        self.created = self.last_activity = relay.clock.seconds()
        self.is_established = False
        self.closed = False
        self.notes = None
        self.drops = 0
        self.latches = 0
        self._sockets: dict[tuple[Side, int], tuple[_RelaySocket, _RelaySocket]] = {}
        self._timer = None
        self._schedule()

    # -- IRelaySession ------------------------------------------------------

    def ports(self, side: Side, index: int) -> int:
        pair = self._sockets.get((side, index))
        if pair is None:
            self._open_stream(index)
            pair = self._sockets[(side, index)]
        return pair[0].number

    def address(self, side: Side) -> str:
        return self.legs[side].advertise

    def expect(self, side: Side, index: int, rtp, rtcp, latch_any: bool) -> None:
        pair = self._sockets.get((side, index))
        if pair is None:
            return
        for socket, address in zip(pair, (rtp, rtcp)):
            if socket.peer.expect(address, latch_any):
                self.relay.log.info(
                    "media relay {key}: {side} moved to {address}; latch on port {port} dropped",
                    key=self.key, side=side.label, address=address, port=socket.number,
                )

    def established(self) -> None:
        if self.closed or self.is_established:
            return
        self.is_established = True
        self.last_activity = max(self.last_activity, self.relay.clock.seconds())
        self._schedule()

    def release(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for pair in self._sockets.values():
            for socket in pair:
                self.relay._close(socket)
        self.relay._released(self, reason)

    def summary(self) -> dict:
        now = self.relay.clock.seconds()
        result = {
            "Key": str(self.key),
            "Reason": self.reason,
            "State": "established" if self.is_established else "setup",
            "Age": str(int(now - self.created)),
            "Idle": str(int(now - self.last_activity)),
            "Drops": str(self.drops),
        }
        if self.description:
            result["Description"] = self.description
        for side in Side:
            result[side.label] = self._leg_summary(side)
        return result

    # -- counters ---------------------------------------------------------------

    def packets(self, side: Side) -> tuple[int, int]:
        """Packets and octets forwarded from C{side}'s party."""
        packets = octets = 0
        for (leg, _), pair in self._sockets.items():
            if leg == side:
                for socket in pair:
                    packets += socket.packets
                    octets += socket.octets
        return packets, octets

    def rtcp_packets(self, side: Side) -> int:
        """Of L{packets}, the RTCP packets forwarded from C{side}'s party."""
        return sum(
            socket.rtcp_packets for (leg, _), pair in self._sockets.items() if leg == side for socket in pair
        )

    def open_ports(self) -> int:
        return 0 if self.closed else 2 * len(self._sockets)

    # -- from the sockets -------------------------------------------------------

    def dropped(self, reason: Drop, socket: _RelaySocket, source, detail: str) -> None:
        self.drops += 1
        relay = self.relay
        relay.drops[reason] += 1
        if relay._log_once((self.key, reason)):
            relay.log.info(
                "media relay {key}: {reason} datagram from {source} on port {port} dropped{detail} "
                "(logged once a minute per call and reason)",
                key=self.key, reason=reason.value, source=source[:2], port=socket.number,
                detail=f": {detail}" if detail else "",
            )

    def latched(self, socket: _RelaySocket, source) -> None:
        self.latches += 1
        self.relay.latches += 1
        self.relay.log.debug(
            "media relay {key}: {side} latched to {source} on port {port}",
            key=self.key, side=socket.side.label, source=source[:2], port=socket.number,
        )

    # -- inside -------------------------------------------------------------------

    def _open_stream(self, index: int) -> None:
        if self.closed:
            raise RelayRefused(f"media relay session {self.key} is closed", "closed")
        if not 0 <= index < MAX_STREAMS:
            raise RelayRefused(f"at most {MAX_STREAMS} streams are relayed per call", "streams")
        opened: list[_RelaySocket] = []
        try:
            for side in Side:
                rtp, rtcp = _RelaySocket(self, side), _RelaySocket(self, side)
                self.relay._listen_pair(self.legs[side].bind, rtp, rtcp)
                opened += (rtp, rtcp)
        except RelayRefused:
            for socket in opened:
                self.relay._close(socket)
            raise
        caller_rtp, caller_rtcp, callee_rtp, callee_rtcp = opened
        caller_rtp.twin, callee_rtp.twin = callee_rtp, caller_rtp
        caller_rtcp.twin, callee_rtcp.twin = callee_rtcp, caller_rtcp
        self._sockets[(Side.CALLER, index)] = (caller_rtp, caller_rtcp)
        self._sockets[(Side.CALLEE, index)] = (callee_rtp, callee_rtcp)

    def _leg_summary(self, side: Side) -> dict:
        leg = self.legs[side]
        ports, peers, expected = [], [], []
        nat = False
        for (leg_side, index), (rtp, rtcp) in sorted(self._sockets.items()):
            if leg_side != side:
                continue
            ports.append(f"{rtp.number}/{rtcp.number}")
            nat = nat or rtp.peer.latch_any
            peers.append(_address_text(rtp.peer.latched))
            expected.append(_address_text(rtp.peer.expected))
        packets, octets = self.packets(side)
        return {
            "Address": leg.advertise,
            "Ports": ports,
            "Expected": expected,
            "Latched": peers,
            "NAT": "YES" if nat else "NO",
            "Packets": str(packets),
            "Bytes": str(octets),
            "RTCP": str(self.rtcp_packets(side)),
        }

    def _schedule(self) -> None:
        if self.closed:
            return
        relay = self.relay
        limit = relay.settings.idle_timeout
        if not self.is_established:
            limit = max(limit, SETUP_LIMIT)
        delay = self.last_activity + limit - relay.clock.seconds()
        if delay <= 0:
            self.release("idle")
            return
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = relay.clock.callLater(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._timer = None
        self._schedule()


def _sender(port):
    """
    How a relay socket sends: straight through its socket's C{sendto} when
    the port has one (a reactor's UDP port), else the port's C{write} (the
    memory ports of tests).  Destinations are IP addresses the relay has
    checked already (a latched source, or an SDP address that parsed as
    one), so the address checks C{write} repeats for every datagram -- the
    largest cost of the packet path -- are skipped.
    """
    handle = getattr(port, "getHandle", None)
    return port.write if handle is None else handle().sendto


def _address_text(address) -> str:
    if address is None:
        return ""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(IMediaRelay)
class MediaRelay:
    """
    The relay of one server (see the module docstring).

    @param reactor: provides C{IReactorUDP} and C{IReactorTime}.
    @param configuration: has C{current}, the L{RelaySettings} in force
        (a L{communigate.media.relay_settings.RelayConfiguration}).
    @param registry: the Prometheus registry the counters go to.
    @ivar drops: datagrams dropped, by L{Drop}.
    @ivar latches: sources latched to.
    @ivar refused: sessions and streams refused, by reason (C{limit},
        C{ports}, C{streams}).
    @ivar released: sessions released, by reason.
    """

    log = Logger()

    def __init__(self, reactor, configuration, *, registry=None) -> None:
        self.clock = reactor
        self._reactor = reactor
        self._configuration = configuration
        self._sessions: dict = {}
        self._in_use: set[int] = set()
        self._cursor = 0
        self.drops = {reason: 0 for reason in Drop}
        self.latches = 0
        #: streams left alone because their SDP already named the relay.
        self.loops = 0
        self.refused: dict[str, int] = {}
        self.released: dict[str, int] = {}
        # Packets and octets of released sessions, by the side they came from.
        self._done = {side: [0, 0] for side in Side}
        self._done_rtcp = {side: 0 for side in Side}
        self._log_once = OncePerInterval(reactor, 60.0)
        if registry is not None:
            registry.register(MediaRelayCollector(self))

    @property
    def settings(self):
        return self._configuration.current

    # -- IMediaRelay -------------------------------------------------------------

    def open(self, key, caller: LegAddress, callee: LegAddress, reason: str = "", description: str = ""):
        session = self._sessions.get(key)
        if session is not None:
            return session
        limit = self.settings.max_relays
        if len(self._sessions) >= limit:
            self._refuse("limit")
            raise RelayRefused(f"media relay limit of {limit} sessions reached (MaxRelays)", "limit")
        session = self._sessions[key] = RelaySession(self, key, caller, callee, reason, description)
        self.log.info(
            "media relay {key} opened ({reason}): caller at {caller}, callee at {callee}",
            key=key, reason=reason or "requested", caller=caller.advertise, callee=callee.advertise,
        )
        return session

    def get(self, key):
        return self._sessions.get(key)

    def owns(self, address: str, port: int) -> bool:
        """
        Whether C{(address, port)} is one of this relay's own open ports:
        SDP naming it was already rewritten by us (a call spiralling
        through this server again), and relaying it once more would send
        the stream into the relay itself.
        """
        if port not in self._in_use:
            return False
        return any(address in (leg.advertise, leg.bind) for session in self._sessions.values() for leg in session.legs)

    def sessions(self) -> list:
        return list(self._sessions.values())

    def release(self, key, reason: str) -> None:
        session = self._sessions.get(key)
        if session is not None:
            session.release(reason)

    def stop(self) -> None:
        """Release every session (the server is stopping)."""
        for session in list(self._sessions.values()):
            session.release("shutdown")

    # -- counters ----------------------------------------------------------------

    def forwarded(self, side: Side) -> tuple[int, int]:
        """Packets and octets forwarded from C{side}'s parties, ever."""
        packets, octets = self._done[side]
        for session in self._sessions.values():
            p, o = session.packets(side)
            packets += p
            octets += o
        return packets, octets

    def forwarded_rtcp(self, side: Side) -> int:
        """Of L{forwarded}'s packets, the RTCP ones, ever."""
        return self._done_rtcp[side] + sum(session.rtcp_packets(side) for session in self._sessions.values())

    def open_ports(self) -> int:
        return sum(session.open_ports() for session in self._sessions.values())

    # -- ports -------------------------------------------------------------------

    def _listen_pair(self, host: str, rtp: _RelaySocket, rtcp: _RelaySocket) -> None:
        """
        Bind C{rtp} and C{rtcp} on the next free even/odd pair of the
        range, round-robin; L{RelayRefused} when none is free.
        """
        settings = self.settings
        low = settings.port_low + settings.port_low % 2
        count = settings.pairs
        start = self._cursor % count
        for step in range(count):
            number = low + 2 * ((start + step) % count)
            if number in self._in_use or number + 1 in self._in_use:
                continue
            try:
                first = self._reactor.listenUDP(number, rtp, interface=host, maxPacketSize=MAX_DATAGRAM)
            except CannotListenError:
                continue
            try:
                second = self._reactor.listenUDP(number + 1, rtcp, interface=host, maxPacketSize=MAX_DATAGRAM)
            except CannotListenError:
                first.stopListening()
                continue
            self._cursor = start + step + 1
            self._in_use.update((number, number + 1))
            rtp.port, rtp.number, rtp.send = first, number, _sender(first)
            rtcp.port, rtcp.number, rtcp.send = second, number + 1, _sender(second)
            return
        self._refuse("ports")
        raise RelayRefused(
            f"no free port pair in PortRange {settings.port_low}-{settings.port_high} on {host}", "ports"
        )

    def _close(self, socket: _RelaySocket) -> None:
        port, number = socket.port, socket.number
        if port is None:
            return
        socket.port = None

        def closed(result):
            self._in_use.discard(number)
            if isinstance(result, Failure):
                self.log.failure("closing media relay port {port}", result, port=number)

        defer.maybeDeferred(port.stopListening).addBoth(closed)

    # -- sessions ending -----------------------------------------------------------

    def _released(self, session: RelaySession, reason: str) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        for side in Side:
            packets, octets = session.packets(side)
            self._done[side][0] += packets
            self._done[side][1] += octets
            self._done_rtcp[side] += session.rtcp_packets(side)
        self.released[reason] = self.released.get(reason, 0) + 1
        caller, callee = session.packets(Side.CALLER), session.packets(Side.CALLEE)
        self.log.info(
            "media relay {key} released ({reason}) after {seconds:.0f} s: {caller_packets} packets "
            "from the caller, {callee_packets} from the callee, {drops} dropped",
            key=session.key, reason=reason, seconds=self.clock.seconds() - session.created,
            caller_packets=caller[0], callee_packets=callee[0], drops=session.drops,
        )

    def loop_avoided(self, session, address: str, port: int) -> None:
        self.loops += 1
        if self._log_once(("loop", session.key)):
            self.log.info(
                "media relay {key}: SDP already names relay port {address}:{port} (a spiral); not relayed again",
                key=session.key, address=address, port=port,
            )

    def _refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1


def relay_description(session, side: Side, sdp: bytes, latch_any) -> bytes | None:
    """
    C{sdp}, written by C{side}'s party, as the other party must see it:
    every relayable stream (an m-line over RTP with a port and an address,
    among the first L{MAX_STREAMS}) points at the other party's leg, and
    the session now sends that stream to C{side}'s party where its SDP
    says (until the latch).  C{latch_any(host)} says whether C{side}'s
    party, naming C{host} as its address, is to be latched from anywhere.

    A stream whose SDP already names one of the relay's own ports (the
    call came back through this server: a spiral) is left as it is, so a
    stream never loops through the relay; such SDP is relayed once.

    Returns L{None} when no stream can be relayed (nothing is changed).
    Raises L{communigate.media.sdp.SDPError} for an SDP that does not
    parse, L{RelayRefused} when ports run out.
    """
    description = parse_sdp(sdp)
    other = side.other
    port_map = {}
    for info in streams(description):
        if (
            info.index >= MAX_STREAMS or info.port == 0 or info.address is None
            or info.proto.upper() not in RELAYED_PROTOCOLS
        ):
            continue
        if session.relay.owns(info.address, info.port):
            session.relay.loop_avoided(session, info.address, info.port)
            continue
        port_map[info.index] = session.ports(other, info.index)
        rtcp = None if info.rtcp_port is None else (info.rtcp_address or info.address, info.rtcp_port)
        session.expect(side, info.index, (info.address, info.port), rtcp, latch_any(info.address))
    if not port_map:
        return None
    return rewrite(sdp, session.address(other), port_map)


def names_relay(relay, sdp: bytes) -> bool:
    """
    Whether C{sdp} sends a stream to one of C{relay}'s own ports (it
    was written by the relay: a call spiralling through this server).
    SDP that does not parse names nothing.
    """
    try:
        description = parse_sdp(sdp)
    except SDPError:
        return False
    return any(
        info.address is not None and info.port and relay.owns(info.address, info.port)
        for info in streams(description)
    )


class MediaRelayCollector(Collector):
    """
    The relay's counters for Prometheus, read when it scrapes (the packet
    path only adds to plain integers).
    """

    def __init__(self, relay: MediaRelay) -> None:
        self._relay = relay

    def collect(self):
        relay = self._relay
        yield GaugeMetricFamily(
            "communigate_media_relays", "Open media relay sessions.", value=len(relay.sessions())
        )
        yield GaugeMetricFamily(
            "communigate_media_relay_ports", "Open media relay UDP ports.", value=relay.open_ports()
        )
        packets = CounterMetricFamily(
            "communigate_media_relay_packets", "Datagrams forwarded, by the party they came from.",
            labels=["direction"],
        )
        octets = CounterMetricFamily(
            "communigate_media_relay_bytes", "Octets forwarded, by the party they came from.",
            labels=["direction"],
        )
        for side in Side:
            p, o = relay.forwarded(side)
            label = "from_caller" if side is Side.CALLER else "from_callee"
            packets.add_metric([label], p)
            octets.add_metric([label], o)
        yield packets
        yield octets
        rtcp = CounterMetricFamily(
            "communigate_media_relay_rtcp_packets",
            "Of the datagrams forwarded, RTCP ones, by the party they came from.", labels=["direction"],
        )
        for side in Side:
            rtcp.add_metric(["from_caller" if side is Side.CALLER else "from_callee"], relay.forwarded_rtcp(side))
        yield rtcp
        dropped = CounterMetricFamily(
            "communigate_media_relay_dropped", "Datagrams dropped, by reason.", labels=["reason"]
        )
        for reason, count in relay.drops.items():
            dropped.add_metric([reason.value], count)
        yield dropped
        yield CounterMetricFamily("communigate_media_relay_latches", "Sources latched to.", value=relay.latches)
        yield CounterMetricFamily(
            "communigate_media_relay_loops", "Streams not relayed again: their SDP named the relay.", value=relay.loops
        )
        refused = CounterMetricFamily(
            "communigate_media_relay_refused", "Sessions or streams refused, by reason.", labels=["reason"]
        )
        for reason in ("limit", "ports", "streams"):
            refused.add_metric([reason], relay.refused.get(reason, 0))
        yield refused
        released = CounterMetricFamily(
            "communigate_media_relay_released", "Sessions released, by reason.", labels=["reason"]
        )
        for reason, count in sorted(relay.released.items()):
            released.add_metric([reason], count)
        yield released

    def describe(self):
        return []
