"""
The SIP service: transports, transactions, the registrar and the proxy as
one Twisted service, the thing C{--sip} listens with.

Everything arriving goes: transport (framing, parsing, flows) → RFC 3581
stamping of the top Via → transaction layer (retransmissions absorbed) →
dispatch by method: C{sip_REGISTER} for the registrar, C{sip_OPTIONS} when
the request is for this server itself, and the proxy for everything else,
which hands new requests to the Signal service.
"""

import ipaddress
import os

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from communigate.directory.errors import DirectoryError
from communigate.sip.bindings import Bindings
from communigate.sip.call_records import SIPCallRecorder
from communigate.storage import sidecar_store
from communigate.sip.digest import DigestVerifier, NonceManager
from communigate.sip.guard import AuthFailureGuard, RateLimiter
from communigate.sip.log import SIPLog
from communigate.core.scheduler import Scheduler
from communigate.dnsclient import DNSClient, servers_from_resolv_conf
from communigate.sip.locate import Locator
from communigate.sip.keepalive import KeepAliveService, KeepAliveSettings
from communigate.sip.local_dialogs import SIPDialogCarrier
from communigate.network import DebugPeers, NetworkConfiguration, NetworkSettings, OncePerInterval
from communigate.sip.headers import HeaderError, NameAddr
from communigate.sip.message import Headers, Request, Response, make_response
from communigate.sip.metrics import SIPStateCollector
from communigate.sip.presence import SIPPresence
from communigate.sip.proxy import Branch, Proxy
from communigate.sip.registrar import Registrar
from communigate.sip.rsip import ALLOWED_SETTING, RSIPSender, RSIPService
from communigate.sip.tls import OutgoingTLS
from communigate.sip.transaction import TransactionLayer
from communigate.sip.transport import Flow, SIPTransport
from communigate.sip.uri import SIPURI, URIError, parse_uri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, INFO, UPDATE, PRACK, REFER, SUBSCRIBE, NOTIFY, PUBLISH"


def parse_udp_description(description: str) -> tuple[int, str]:
    """
    The port and interface of C{udp:PORT[:interface=ADDRESS]}.
    """
    parts = description.split(":")
    if parts[0].lower() != "udp" or len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"{description!r} is not udp:PORT[:interface=ADDRESS]")
    port = int(parts[1])
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    interface = ""
    for option in parts[2:]:
        key, _, value = option.partition("=")
        if key != "interface" or not value:
            raise ValueError(f"{description!r}: unknown option {option!r}; use interface=ADDRESS")
        interface = value
    if interface:
        ipaddress.ip_address(interface)
    return port, interface


def stamped(request: Request, flow: Flow) -> Request:
    """
    The request with its top Via marked as RFC 3261 §18.2.1 and RFC 3581
    say: C{received} when the source differs from the sent-by host, and
    C{rport} filled in when the client asked for it.
    """
    via = request.top_via()
    host, port = flow.remote
    if via.has_rport:
        changed = via.with_parameters(("rport", str(port)), ("received", host))
    elif via.host != host:
        changed = via.with_received(host)
    else:
        return request
    return request.with_top_via(changed)


def response_flow(request: Request, flow: Flow) -> Flow:
    """
    Where the responses to C{request} go (RFC 3261 §18.2.2, RFC 3581 §4):
    back over the connection for streams; for UDP to the received address
    and the rport (or the sent-by port).
    """
    if flow.reliable:
        return flow
    via = request.top_via()
    host = via.received or via.host
    port = via.rport or via.port or 5060
    return Flow("udp", flow.local, (host, port))


_BUILT_IN_NETWORK = NetworkSettings()


def behind_nat(request: Request, flow: Flow, network: NetworkSettings | None = None) -> bool:
    """
    [D] A client is behind NAT when its packets come from somewhere other
    than its Via says (the host, or the port over UDP), or when, coming
    from outside the LAN IPs, its Contact names a NATed address (the
    private ranges, LAN IPs, NATed IPs of C{network}) other than its
    source.  A client on the LAN whose Via is its source is not: it is
    reached at the address it gives.
    """
    if network is None:
        network = _BUILT_IN_NETWORK
    via = request.top_via()
    source_host, source_port = flow.remote
    if via.host != source_host or (via.port or 5060) != source_port and not flow.reliable:
        return True
    if network.is_lan(source_host):
        return False
    try:
        contacts = request.contacts()
    except HeaderError:
        return False
    return any(
        isinstance(contact, NameAddr)
        and isinstance(contact.uri, SIPURI)
        and contact.uri.host != source_host
        and network.is_not_routable(contact.uri.host)
        for contact in contacts
    )


class SIPService(Service):
    """
    The SIP side of one server.

    @ivar bindings: the registrar's location store.
    @ivar sip_log: the searchable log of recent messages.
    @ivar keepalives: the keep-alive machines of NATed flows (not
        C{keepalive}, which is the transport's callback for keep-alive
        traffic from a client).
    @ivar network: the server's L{communigate.network.NetworkConfiguration}.
    """

    log = Logger()

    def __init__(self, context, descriptions, *, secret: bytes | None = None) -> None:
        self.context = context
        self.descriptions = tuple(descriptions)
        reactor = context.reactor
        self.network = context.network
        if self.network is None:
            self.network = NetworkConfiguration(context.store, clock=reactor)
        self.sip_log = SIPLog(reactor)
        self.outgoing_tls = OutgoingTLS()
        # Messages to and from Debug IPs go to the server log in full.
        recorder = DebugPeers(self.sip_log, lambda: self.network.current)
        self.transport = SIPTransport(
            reactor, self, sip_log=recorder, registry=context.metrics,
            client_tls_options=self.outgoing_tls.options_for,
        )
        self._blacklist_logged = OncePerInterval(reactor, 60.0)
        self.transactions = TransactionLayer(reactor, self)
        directory = context.directory
        self._bindings_store = _bindings_store(context.store)
        self.bindings = Bindings(
            self._bindings_store,
            reactor,
            max_per_aor_setting=lambda aor: directory.account_effective_settings(aor).get(
                "MaxSignalContacts", "10"
            ),
            write_delay=BINDINGS_WRITE_DELAY,
        )
        self.nonces = NonceManager(reactor, secret or os.urandom(32))
        self.verifier = DigestVerifier(
            context.portal,
            self.nonces,
            algorithms_for=lambda realm: directory.domain_effective_settings(realm).get(
                "SIPDigestAlgorithms"
            ),
            also_accept_uri=self._names_this_server,
        )
        self.guard = AuthFailureGuard(reactor, registry=context.metrics)
        self.rate_limiter = RateLimiter(reactor, registry=context.metrics)
        self.registrar = Registrar(directory, self.bindings, self.verifier, guard=self.guard, clock=reactor)
        self.proxy = Proxy(self)
        self.rsip = RSIPService(context.store, reactor, RSIPSender(self), self._rsip_allowed)
        self._rsip_start = None
        directory.watch_accounts(self.bindings)
        directory.watch_accounts(self.rsip)
        # Dialogs this server holds as a user agent (PBX tasks' calls).
        self.local_dialogs = SIPDialogCarrier(self)
        self.presence = SIPPresence(self)
        self.bindings.add_aor_listener(self.presence.registrations_changed)
        self.proxy.add_observer(self.presence.calls)
        if context.call_records is not None:
            self.proxy.add_observer(SIPCallRecorder(context.call_records, reactor))
        # The core's one scheduler when there is one (DESIGN "One
        # scheduler"); a SIP service built on a bare context has its own.
        self._own_scheduler = getattr(context, "scheduler", None) is None
        self.scheduler = Scheduler(reactor, registry=context.metrics) if self._own_scheduler else context.scheduler
        self.keepalives = KeepAliveService(
            self.scheduler, self._ping, self._flow_dead, registry=context.metrics
        )
        context.metrics.register(SIPStateCollector(self))
        self.dns = None
        self.locator = None
        self._listening = []
        self._local_hosts: set[tuple[str, int]] | None = None
        self._local_hosts_network: NetworkSettings | None = None

    # -- lifecycle ---------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        from communigate.sip.commands import checked_sip_settings, sip_settings

        self.apply_settings(sip_settings(self.context.store))
        self.bindings.load()
        reactor = self.context.reactor
        for description in self.descriptions:
            kind = description.split(":", 1)[0].lower()
            if kind == "udp":
                port, interface = parse_udp_description(description)
                self._listened(self.transport.listen_udp(port, interface))
            else:
                endpoint = serverFromString(reactor, _stream_description(description))
                factory = self.transport.stream_factory("tls" if kind in ("tls", "ssl") else "tcp")
                d = endpoint.listen(factory)
                d.addCallback(self._listened)
                d.addErrback(self._listen_failed, description)
        self.proxy.start()
        self.local_dialogs.start()
        self.presence.start()
        # Registering out waits for this turn of the reactor, when the
        # stream listeners have their ports too.
        self._rsip_start = self.context.reactor.callLater(0, self.rsip.start)

    def apply_settings(self, settings: dict) -> None:
        """
        Put the SIP settings in force (at start and when they change).
        """
        from communigate.sip.commands import checked_sip_settings, dns_servers

        rate, burst, interval = checked_sip_settings(settings)
        self.rate_limiter.reconfigure(rate, burst)
        self.keepalives.update_settings(KeepAliveSettings(interval=interval))
        self.outgoing_tls.apply(settings)
        servers = dns_servers(settings) or servers_from_resolv_conf()
        if not servers:
            self.dns = self.locator = None
        elif self.dns is None:
            self.dns = DNSClient(self.context.reactor, servers, registry=self.context.metrics)
            self.locator = Locator(self.dns)
        else:
            self.dns.servers = servers

    def _ping(self, flow: Flow, kind: str) -> None:
        """
        One keep-alive to a client behind NAT: CRLFCRLF, or an OPTIONS
        request whose answer (any answer) proves the mapping is still open.
        """
        if kind == "crlf":
            self.transport.send_raw(b"\r\n\r\n", flow)
            return
        host, port = self.advertised_address("udp" if flow.transport == "udp" else "tcp", flow.remote[0])
        host = f"[{host}]" if ":" in host else host
        branch = f"z9hG4bKka{os.urandom(6).hex()}"
        target = f"sip:{flow.remote[0]}:{flow.remote[1]}"
        request = Request(
            "OPTIONS",
            parse_uri(target),
            Headers(
                [
                    ("Via", f"SIP/2.0/{flow.transport.upper()} {host}:{port};branch={branch};rport"),
                    ("From", f"<sip:keepalive@{host}:{port}>;tag={os.urandom(4).hex()}"),
                    ("To", f"<{target}>"),
                    ("Call-ID", f"{os.urandom(8).hex()}@{host}"),
                    ("CSeq", "1 OPTIONS"),
                    ("Max-Forwards", "70"),
                ]
            ),
        )
        # Any final answer, even an error, proves the mapping is open.
        pong = Branch(
            lambda response: response.status >= 200 and self.keepalives.pong(flow),
            lambda status, reason: self.keepalives.failed(flow),
        )
        self.transactions.send_request(
            request, lambda message: self.transport.send(message, flow), flow.reliable, pong
        )

    def _flow_dead(self, flow: Flow) -> None:
        removed = self.bindings.remove_flow(
            (flow.transport, flow.remote[0], flow.remote[1]),
            (flow.transport, flow.local[0], flow.local[1]),
        )
        self.log.info(
            "NAT flow {remote} stopped answering; {count} registrations removed",
            remote=flow.remote,
            count=len(removed),
        )

    def _listen_failed(self, failure, description) -> None:
        self.log.failure("cannot listen on {description}", failure, description=description)

    def stopService(self):
        super().stopService()
        if self._rsip_start is not None and self._rsip_start.active():
            self._rsip_start.cancel()
        self.rsip.stop()
        self.presence.stop()
        self.local_dialogs.stop()
        self.proxy.stop()
        self.keepalives.forget_all()
        if self._own_scheduler:
            self.scheduler.stop_all()
        self.bindings.stop()
        try:
            self.bindings.flush()
        except Exception:
            self.log.failure("Could not write the last binding changes at shutdown")
        ports = [p for p in self._listening if p not in self.transport.ports]
        stopping = [defer.maybeDeferred(p.stopListening) for p in ports]
        stopping.append(self.transport.stop())
        d = defer.gatherResults(stopping, consumeErrors=True)
        if self._bindings_store is not self.context.store:
            d.addBoth(lambda result: (self._bindings_store.close(), result)[1])
        return d

    def _rsip_allowed(self, account: str) -> bool:
        try:
            value = self.context.directory.account_effective_settings(account).get(ALLOWED_SETTING)
        except DirectoryError:
            return False
        return str(value).upper() == "YES"

    def _names_this_server(self, text: str) -> bool:
        try:
            uri = parse_uri(text)
        except URIError:
            return False
        return isinstance(uri, SIPURI) and not uri.user and (uri.host, uri.port or 5060) in self.local_hosts()

    def _listened(self, port) -> None:
        self._listening.append(port)
        self._local_hosts = None

    def local_hosts(self) -> set[tuple[str, int]]:
        """
        The (host, port) pairs this server listens on, as Via sent-by and
        Route values name it (the WAN addresses included); worked out once
        per change of listeners or network settings, not per request (each
        address is a system call).
        """
        network = self.network.current
        if self._local_hosts is None or self._local_hosts_network is not network:
            wan = [a for a in (network.wan_address, network.wan_ipv6_address) if a]
            hosts = set()
            for port in self._listening:
                address = port.getHost()
                hosts.add((address.host, address.port))
                if address.host in ("0.0.0.0", "::"):
                    hosts.add(("127.0.0.1", address.port))
                hosts.update((host, address.port) for host in wan)
            self._local_hosts = hosts
            self._local_hosts_network = network
        return self._local_hosts

    def address_for(self, transport: str) -> tuple[str, int]:
        """
        The address to put in our own Via and Record-Route for C{transport}.
        """
        for port in self._listening:
            address = port.getHost()
            is_udp = port in self.transport.ports
            if (transport == "udp") == is_udp:
                host = address.host if address.host not in ("0.0.0.0", "::") else "127.0.0.1"
                return host, address.port
        raise OSError(f"no {transport} listener")

    def advertised_address(self, transport: str, peer: str) -> tuple[str, int]:
        """
        The address to name ourselves by in a request to C{peer}: the WAN
        address (Network settings) for a peer outside the LAN when one is
        set, else L{address_for}'s.
        """
        host, port = self.address_for(transport)
        wan = self.network.current.wan_address_for(peer)
        return (host, port) if wan is None else (wan, port)

    def _blacklisted(self, flow: Flow) -> bool:
        """
        Whether C{flow} comes from a Blacklisted IP; such input is dropped,
        counted, and logged once a minute per address.
        """
        blacklisted = self.network.current.blacklisted
        if not blacklisted or not blacklisted.contains(flow.remote[0]):
            return False
        self.transport.metrics.dropped.labels("blacklisted").inc()
        if self._blacklist_logged(flow.remote[0]):
            self.log.info(
                "ignoring SIP from blacklisted address {peer} (logged once a minute per address)",
                peer=flow.remote[0],
            )
        return True

    # -- from the transport -------------------------------------------------

    def received(self, message, flow: Flow) -> None:
        if self._blacklisted(flow):
            return
        if isinstance(message, Response):
            if len(message.vias()) < 1:
                return
            self.local_dialogs.response_seen(message)
            self.transactions.receive_response(message, flow)
            return
        request = stamped(message, flow)
        allowed, retry_after = self.rate_limiter.allow(flow.remote[0])
        if not allowed:
            if request.method != "ACK":
                self._answer(request, flow, 503, headers=[("Retry-After", str(retry_after))])
            return
        send = self._sender(request, flow)
        self.transactions.receive_request(
            request, flow, send, flow.reliable, trying=lambda r: make_response(r, 100)
        )

    def _sender(self, request: Request, flow: Flow):
        return _SendTo(self.transport, response_flow(request, flow))

    def _answer(self, request: Request, flow: Flow, status: int, reason=None, headers=()) -> None:
        response = make_response(request, status, reason, to_tag=self.proxy.to_tag(request), headers=headers)
        self._sender(request, flow)(response)

    def malformed(self, error, flow: Flow) -> None:
        if not error.is_request or error.partial is None or self._blacklisted(flow):
            return
        try:
            response = make_response(error.partial, error.status, error.reason)
            self.transport.send(response, response_flow(error.partial, flow) if error.partial.vias() else flow)
        except (ValueError, OSError) as e:
            self.log.info("cannot answer a malformed request from {peer}: {error}", peer=flow.remote, error=e)

    def framing_failed(self, event, flow: Flow) -> None:
        self.log.info("framing lost with {peer}: {reason}", peer=flow.remote, reason=event.reason)

    def keepalive(self, flow: Flow) -> None:
        if not self._blacklisted(flow):
            self.proxy.keepalive(flow)

    def flow_closed(self, flow: Flow) -> None:
        self.proxy.flow_closed(flow)

    # -- transaction user ------------------------------------------------------

    def request_received(self, request: Request, flow: Flow, transaction) -> None:
        if self.local_dialogs.request(request, flow, transaction):
            return
        if self.rsip.registered_out:
            # A call for a contact registered out (RSIP) goes to its target.
            target = self.rsip.target_for(request.uri)
            if target is not None:
                try:
                    request = request.with_uri(parse_uri(f"sip:{target}"))
                except URIError:
                    self.log.warn("RSIP target {target!r} is no SIP address", target=target)
        handler = getattr(self, f"sip_{request.method}", None)
        if handler is not None and handler(request, flow, transaction):
            return
        self.proxy.request(request, flow, transaction)

    def sip_REGISTER(self, request: Request, flow: Flow, transaction) -> bool:
        if not self.proxy.is_us(request.uri):
            return False
        if transaction is None:
            return True
        source = (flow.transport, flow.remote[0], flow.remote[1])
        local = (flow.transport, flow.local[0], flow.local[1])
        nat = behind_nat(request, flow, self.network.current)
        d = self.registrar.handle(request, source, local, nat)

        def failed(failure):
            self.log.failure("REGISTER failed", failure)
            return make_response(request, 500, "Server Internal Error")

        d.addErrback(failed)

        def answer(response):
            transaction.respond(response)
            if nat and response.status == 200:
                self.proxy.watch_flow(flow)

        d.addCallback(answer)
        return True

    def sip_SUBSCRIBE(self, request: Request, flow: Flow, transaction) -> bool:
        return self.presence.subscribe(request, flow, transaction, nat=behind_nat(request, flow))

    def sip_PUBLISH(self, request: Request, flow: Flow, transaction) -> bool:
        return self.presence.publish(request, flow, transaction)

    def sip_OPTIONS(self, request: Request, flow: Flow, transaction) -> bool:
        uri = request.uri
        if not isinstance(uri, SIPURI) or uri.user or not self.proxy.is_us(uri):
            return False
        if transaction is not None:
            transaction.respond(
                make_response(request, 200, to_tag=self.proxy.to_tag(request), headers=[("Allow", ALLOW)])
            )
        return True

    def response_received(self, transaction, response) -> None:
        self.proxy.response_received(transaction, response)

    def timed_out(self, transaction) -> None:
        self.proxy.timed_out(transaction)

    def transport_error(self, transaction) -> None:
        self.proxy.transport_error(transaction)

    def stray_response(self, response: Response, flow: Flow) -> None:
        self.proxy.stray_response(response, flow)


class _SendTo:
    """
    C{send(message)} over one flow: what a server transaction answers
    with.  A completed REGISTER transaction keeps it for Timer J, so it is
    a two-slot object rather than a closure (a fifth of the memory).
    """

    __slots__ = ("_transport", "_flow")

    def __init__(self, transport: SIPTransport, flow: Flow) -> None:
        self._transport = transport
        self._flow = flow

    def __call__(self, message) -> bytes:
        return self._transport.send(message, self._flow)


BINDINGS_DATABASE = "sip-bindings.sqlite"
# Registrations reach the bindings file in batches, at most this late.
BINDINGS_WRITE_DELAY = 0.05


def _bindings_store(store):
    """
    Where registrations are kept: beside the directory's SQLite file, in a
    sidecar store of their own (L{sidecar_store}), so that thousands of
    REGISTERs a second do not wait for the disk.
    """
    return sidecar_store(store, BINDINGS_DATABASE)


def _stream_description(description: str) -> str:
    """
    Our C{tls:PORT:privateKey=...} spelling as Twisted's C{ssl:} endpoint.
    """
    kind, _, rest = description.partition(":")
    if kind.lower() == "tls" and rest[:1].isdigit():
        return "ssl:" + rest
    return description
