"""
SIP transports (RFC 3261 §18): UDP datagrams and TCP/TLS streams, as one
object that hands every parsed message to the SIP core together with the
I{flow} it travelled on, and sends messages back out.

A flow is (transport, local address, remote address).  Responses go back
over the flow their request came on (the same TCP connection, the same UDP
socket), which is also how requests reach a client behind NAT: the
registrar records the flow, and sending to it reuses the connection or the
NAT mapping the client opened.

Limits: a UDP datagram over C{max_datagram} octets is dropped and counted;
a stream message over C{max_message} gets 513 and the connection is closed
(the framer says so); a non-UTF-8 or unparsable message is the core's to
answer with 400 or to drop.
"""

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, MessageLengthError
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger

from communigate.counters import Labelled
from communigate.sip.framing import FramingError, KeepAlive, Message, StreamFramer
from communigate.sip.log import IN, OUT, SIPLog
from communigate.sip.message import Request, SIPParseError, parse_message, serialize

MAX_DATAGRAM = 65_507
MAX_MESSAGE = 65_536
CRLF = b"\r\n"


@attrs.frozen
class Flow:
    """
    Where a message travelled: C{transport} is C{udp}, C{tcp} or C{tls};
    C{local} and C{remote} are C{(host, port)}.  C{server_name} is the name
    a TLS connection opened for this flow must verify in the server's
    certificate (RFC 5922; see L{communigate.sip.nexthop}); it is not part
    of the flow's identity, and without it the remote address is verified.
    """

    transport: str
    local: tuple[str, int]
    remote: tuple[str, int]
    server_name: str | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


class TransportMetrics:
    """
    The transport counters of one SIP service.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "communigate_sip_messages",
            "SIP messages by direction, transport and kind (request method or response class).",
            ["direction", "transport", "kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "communigate_sip_dropped",
            "SIP input dropped, by reason.",
            ["reason"],
            registry=registry,
        )
        self.connections = Gauge(
            "communigate_sip_connections",
            "Open SIP TCP/TLS connections.",
            ["transport"],
            registry=registry,
        )
        self._message_counts = Labelled(self.messages)

    def count_message(self, direction: str, transport: str, kind: str) -> None:
        """
        One message more (the labelled child looked up once per label set).
        """
        self._message_counts.inc(direction, transport, kind)


# Methods counted under their own name; any other is "other", so that a
# client inventing methods cannot make the metrics grow without bound.
COUNTED_METHODS = frozenset(
    "INVITE ACK CANCEL BYE OPTIONS REGISTER MESSAGE INFO UPDATE PRACK REFER SUBSCRIBE NOTIFY PUBLISH".split()
)


def _kind(message) -> str:
    if isinstance(message, Request):
        return message.method if message.method in COUNTED_METHODS else "other"
    return f"{message.status // 100}xx"


class _Datagrams(DatagramProtocol):
    """
    One listening UDP socket.
    """

    def __init__(self, transport: "SIPTransport", local: tuple[str, int]) -> None:
        self._owner = transport
        self.local = local

    def datagramReceived(self, data: bytes, address) -> None:
        flow = Flow("udp", self.local, (address[0], address[1]))
        self._owner.datagram_received(data, flow)

    def write(self, data: bytes, remote) -> None:
        self.transport.write(data, remote)


class _Stream(Protocol):
    """
    One TCP or TLS connection, accepted or opened.
    """

    def __init__(self, owner: "SIPTransport", kind: str) -> None:
        self._owner = owner
        self._kind = kind
        self._framer = StreamFramer(owner.max_message)
        self.flow = None
        self._pending: list[bytes] = []

    def connectionMade(self) -> None:
        host = self.transport.getHost()
        peer = self.transport.getPeer()
        self.flow = Flow(self._kind, (host.host, host.port), (peer.host, peer.port))
        self._owner.connection_opened(self)
        for data in self._pending:
            self.transport.write(data)
        self._pending = []

    def dataReceived(self, data: bytes) -> None:
        for event in self._framer.feed(data):
            if isinstance(event, Message):
                self._owner.message_received(event.data, self.flow)
            elif isinstance(event, KeepAlive):
                if event.ping:
                    self.transport.write(CRLF)  # RFC 5626 §4.4.1 pong
                self._owner.keepalive_received(self.flow, event)
            elif isinstance(event, FramingError):
                self._owner.framing_failed(event, self.flow, self)
                self.transport.loseConnection()
                return

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self._pending.append(data)
        else:
            self.transport.write(data)

    def connectionLost(self, reason) -> None:
        if self.flow is not None:
            self._owner.connection_lost(self, reason)


class SIPTransport:
    """
    Every SIP listener and connection of one server.

    @param receiver: gets C{received(message, flow)} for each parsed
        message, C{malformed(error, flow)} for a message that failed to
        parse (a L{SIPParseError}; the receiver may answer 400 from
        C{error.partial}), and C{keepalive(flow)} for keep-alive traffic.
    @param client_tls_options: C{name -> IOpenSSLClientConnectionCreator}
        for each outgoing TLS connection (the flow's C{server_name}, else
        the peer address); it may raise L{OSError} to refuse.
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        receiver,
        *,
        sip_log: SIPLog | None = None,
        registry: CollectorRegistry | None = None,
        max_datagram: int = MAX_DATAGRAM,
        max_message: int = MAX_MESSAGE,
        client_tls_options=None,
    ) -> None:
        self._reactor = reactor
        self._receiver = receiver
        self.sip_log = sip_log
        self.metrics = TransportMetrics(registry if registry is not None else CollectorRegistry())
        self.max_datagram = max_datagram
        self.max_message = max_message
        self._client_tls_options = client_tls_options
        self._udp: dict[tuple[str, int], _Datagrams] = {}
        self._streams: dict[tuple[str, tuple[str, int]], _Stream] = {}
        self.ports: list = []

    # -- listening ---------------------------------------------------------

    def listen_udp(self, port: int, interface: str = "") -> object:
        protocol = _Datagrams(self, (interface or "0.0.0.0", port))
        listening = self._reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=self.max_datagram + 1)
        address = listening.getHost()
        protocol.local = (address.host, address.port)
        self._udp[protocol.local] = protocol
        self.ports.append(listening)
        return listening

    def stream_factory(self, kind: str) -> Factory:
        """
        The factory for a TCP (C{kind="tcp"}) or TLS listener.
        """
        return Factory.forProtocol(lambda: _Stream(self, kind))

    def local_addresses(self) -> list[tuple[str, str, int]]:
        """
        C{(transport, host, port)} of every UDP listener.
        """
        return [("udp", host, port) for host, port in self._udp]

    # -- input -------------------------------------------------------------

    def datagram_received(self, data: bytes, flow: Flow) -> None:
        if len(data) > self.max_datagram:
            self.metrics.dropped.labels("oversized datagram").inc()
            self.log.info("dropped a {size}-octet datagram from {peer}", size=len(data), peer=flow.remote)
            return
        if not data.strip(b"\r\n\x00"):
            self._receiver.keepalive(flow)
            return
        self.message_received(data, flow)

    def message_received(self, data: bytes, flow: Flow) -> None:
        try:
            message = parse_message(data)
        except SIPParseError as error:
            self.metrics.dropped.labels("unparsable").inc()
            if self.sip_log is not None:
                self.sip_log.record(IN, flow.transport, flow.remote, data)
            self._receiver.malformed(error, flow)
            return
        self.metrics.count_message("in", flow.transport, _kind(message))
        if self.sip_log is not None:
            self.sip_log.record(IN, flow.transport, flow.remote, data, message)
        self._receiver.received(message, flow)

    def keepalive_received(self, flow: Flow, event) -> None:
        self._receiver.keepalive(flow)

    def framing_failed(self, event, flow: Flow, stream: _Stream) -> None:
        self.metrics.dropped.labels("framing").inc()
        self.log.info(
            "closing {transport} connection from {peer}: {reason}",
            transport=flow.transport, peer=flow.remote, reason=event.reason,
        )
        self._receiver.framing_failed(event, flow)

    def connection_opened(self, stream: _Stream) -> None:
        self._streams[(stream.flow.transport, stream.flow.remote)] = stream
        self.metrics.connections.labels(stream.flow.transport).inc()

    def connection_lost(self, stream: _Stream, reason=None) -> None:
        if reason is not None and not reason.check(ConnectionDone):
            # A TLS handshake that failed (a certificate that does not
            # verify) ends here too: say why.
            self.log.info(
                "{transport} connection with {peer} lost: {reason}",
                transport=stream.flow.transport, peer=stream.flow.remote, reason=reason.getErrorMessage(),
            )
        key = (stream.flow.transport, stream.flow.remote)
        if self._streams.get(key) is stream:
            del self._streams[key]
        self.metrics.connections.labels(stream.flow.transport).dec()
        self._receiver.flow_closed(stream.flow)

    # -- output ------------------------------------------------------------

    def send(self, message, flow: Flow) -> bytes:
        """
        Send C{message} over C{flow}: the UDP socket of C{flow.local} (or
        any), or the open connection to C{flow.remote}, or a new one.

        @return: the octets sent, which a completed transaction keeps in
            place of the message to answer retransmissions with.
        @raise OSError: nothing can carry it now (the caller's transaction
            treats it as a transport error).
        """
        data = serialize(message)
        if flow.transport == "udp":
            socket = self._udp.get(flow.local) or next(iter(self._udp.values()), None)
            if socket is None:
                raise OSError("no UDP listener to send from")
            try:
                socket.write(data, flow.remote)
            except MessageLengthError:
                raise OSError(f"a message of {len(data)} bytes is too long for UDP") from None
        else:
            stream = self._streams.get((flow.transport, flow.remote))
            if stream is None:
                stream = self._connect(flow)
            stream.write(data)
        self.metrics.count_message("out", flow.transport, _kind(message))
        if self.sip_log is not None:
            self.sip_log.record(OUT, flow.transport, flow.remote, data, message)
        return data

    def send_raw(self, data: bytes, flow: Flow) -> None:
        """
        Send octets as they are (a keep-alive CRLF).
        """
        if flow.transport == "udp":
            socket = self._udp.get(flow.local) or next(iter(self._udp.values()), None)
            if socket is not None:
                socket.write(data, flow.remote)
            return
        stream = self._streams.get((flow.transport, flow.remote))
        if stream is not None:
            stream.write(data)

    def has_connection(self, flow: Flow) -> bool:
        return flow.transport == "udp" or (flow.transport, flow.remote) in self._streams

    def _connect(self, flow: Flow) -> _Stream:
        host, port = flow.remote
        if flow.transport == "tls":
            if self._client_tls_options is None:
                raise OSError("no TLS client configuration for outgoing SIP over TLS")
            options = self._client_tls_options(flow.server_name or host)
            endpoint = SSL4ClientEndpoint(self._reactor, host, port, options, timeout=10)
        else:
            endpoint = TCP4ClientEndpoint(self._reactor, host, port, timeout=10)
        stream = _Stream(self, flow.transport)
        self._streams[(flow.transport, flow.remote)] = stream

        def failed(reason):
            if self._streams.get((flow.transport, flow.remote)) is stream:
                del self._streams[(flow.transport, flow.remote)]
            self.log.info("cannot connect to {peer}: {reason}", peer=flow.remote, reason=reason.getErrorMessage())
            self._receiver.flow_closed(flow)

        connectProtocol(endpoint, stream).addErrback(failed)
        return stream

    def stop(self) -> defer.Deferred:
        for stream in list(self._streams.values()):
            if stream.transport is not None:
                stream.transport.loseConnection()
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in self.ports], consumeErrors=True
        )
