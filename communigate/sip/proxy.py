"""
The stateful proxy: SIP server objects and SIP client objects.

A server object takes a new request from the transaction layer, checks it
(RFC 3261 §16.3, no open relay, 407 for local callers), turns it into a
Signal and answers with whatever the Signal service reports.  Client
objects are the endpoints the Signal service rings: a registered contact
of an account (L{ContactEndpoint}) or a remote SIP destination
(L{RemoteEndpoint}); each runs a client transaction and reports the
responses back.  Requests inside a dialog (and pre-routed ones) skip the
Signal service and go straight to their next hop.  Next hops that are host
names are located by RFC 3263 and their servers tried in turn
(L{communigate.sip.nexthop}), for remote targets and in-dialog requests
alike.
"""

import itertools
import os
import weakref

from twisted.logger import Logger
from zope.interface import implementer

from communigate.directory.errors import DirectoryError
from communigate.interfaces import IDelivery, IEndpoint, IEndpointSource, IRouteHandler
from communigate.routing.route import Module
from communigate.signal.model import Submitter
from communigate.sip import proxy_rules as rules
from communigate.sip.digest import OutcomeKind
from communigate.sip.headers import HeaderError, Via, parse_name_addr
from communigate.sip.media_hook import MediaRefused, MediaRelayPolicy
from communigate.sip.message import Headers, Response, make_response
from communigate.sip.nexthop import NextHops, is_ip, try_in_turn, unresolved
from communigate.sip.transaction import MAGIC_COOKIE, State
from communigate.sip.transport import Flow
from communigate.sip.uri import SIPURI, URIError, parse_uri


class Branch:
    """
    One client transaction of the proxy, reporting to a callback set.
    """

    def __init__(self, on_response, on_failure) -> None:
        self._on_response = on_response
        self._on_failure = on_failure

    def response_received(self, transaction, response) -> None:
        self._on_response(response)

    def timed_out(self, transaction) -> None:
        self._on_failure(408, "Request Timeout")

    def transport_error(self, transaction) -> None:
        self._on_failure(503, "Service Unavailable")


@implementer(IDelivery)
class _Delivery:
    """
    A Signal on its way to one SIP target; C{cancel} sends a CANCEL once
    the target has answered provisionally (RFC 3261 §9.1).
    """

    def __init__(self, proxy, request, flow) -> None:
        self._proxy = proxy
        self.request = request
        self.flow = flow
        self.provisional_seen = False
        self.cancel_wanted = False
        self.done = False

    def cancel(self) -> None:
        if self.done:
            return
        self.cancel_wanted = True
        if self.request is not None and self.request.method == "INVITE" and self.provisional_seen:
            self._send_cancel()

    def _send_cancel(self) -> None:
        cancel = rules.cancel_for(self.request)
        self._proxy.send_request(cancel, self.flow, Branch(lambda r: None, lambda c, r: None))


@implementer(IEndpoint)
class _SIPEndpoint:
    """
    What contact and remote endpoints share: build the request, pick the
    flow, run the client transaction, translate the responses.
    """

    log = Logger()

    def __init__(self, proxy) -> None:
        self._proxy = proxy

    # Subclasses say where to: target() -> (target_uri, flow, route_set),
    # raising OSError when there is no way there now.

    def deliver(self, signal, responder):
        try:
            target_uri, flow, route_set = self.target()
        except (OSError, URIError, ValueError) as e:
            responder.final(rules.signal_response(make_response_stub(503, str(e))))
            answered = _Delivery(self._proxy, None, None)
            answered.done = True  # nothing was sent, so there is nothing to cancel
            return answered
        delivery = _Delivery(self._proxy, None, flow)
        self._send(signal, responder, delivery, target_uri, flow, route_set, on_unreachable=None)
        return delivery

    def _deliver_located(self, signal, responder, target_uri, route_set, hop_uri):
        """
        Deliver to C{target_uri} through the next hop C{hop_uri}, located
        by RFC 3263 when it is a name: the servers found are tried in turn
        until one answers (a timeout, a transport error or a 503 moves on
        to the next, RFC 3263 section 4.3).
        """
        delivery = _Delivery(self._proxy, None, None)

        def give_up(status, reason):
            if not delivery.done:
                delivery.done = True
                responder.final(rules.signal_response(make_response_stub(status, reason)))

        def attempt(flow, next_one):
            if delivery.cancel_wanted:
                give_up(487, "Request Terminated")
                return
            self._send(signal, responder, delivery, target_uri, flow, route_set, on_unreachable=next_one)

        def located(flows):
            try_in_turn(flows, attempt, lambda: give_up(503, unresolved(hop_uri.host)))

        def failed(failure):
            if failure.check(OSError, ValueError):
                give_up(503, str(failure.value)[:80])
                return
            self.log.failure("locating {uri} failed", failure, uri=str(hop_uri))
            give_up(503, unresolved(getattr(hop_uri, "host", str(hop_uri))))

        self._proxy.hops.locate(hop_uri).addCallbacks(located, failed)
        return delivery

    def _send(self, signal, responder, delivery, target_uri, flow, route_set, on_unreachable):
        """
        Send C{signal} over C{flow} under C{delivery}; a timeout, transport
        error or 503 goes to C{on_unreachable(status, reason)} when given
        (to try the next server), else it is the final answer.
        """
        request = self._proxy.outgoing(signal, target_uri, flow, route_set)
        try:
            request, media = self._proxy.media.offer(signal, request, flow, getattr(self, "binding", None))
        except MediaRefused as e:
            delivery.done = True
            responder.final(rules.signal_response(make_response_stub(e.status, e.reason)))
            return
        delivery.request = request
        delivery.flow = flow

        def on_response(response):
            if delivery.done:
                return
            if media is not None:
                response = media.response(response)
            if response.status < 200:
                delivery.provisional_seen = True
                if response.status > 100:
                    responder.provisional(rules.signal_response(response, origin=self.description))
                if delivery.cancel_wanted:
                    delivery._send_cancel()
                return
            if response.status == 503 and on_unreachable is not None and not delivery.provisional_seen:
                on_unreachable(503, response.reason)
                return
            delivery.done = True
            responder.final(rules.signal_response(response, origin=self.description))

        def on_failure(status, reason):
            if delivery.done:
                return
            if on_unreachable is not None and not delivery.provisional_seen:
                on_unreachable(status, reason)
                return
            delivery.done = True
            responder.final(rules.signal_response(make_response_stub(status, reason)))

        self._proxy.send_request(request, flow, Branch(on_response, on_failure))


def make_response_stub(status: int, reason: str) -> Response:
    """
    A response the proxy makes up for a branch (timeout, unreachable).
    """
    return Response(status, reason, Headers([]))


class ContactEndpoint(_SIPEndpoint):
    """
    A registered contact of an account: reached over the flow it
    registered from when it is behind NAT or on a stream, else at the
    contact's own address.
    """

    def __init__(self, proxy, binding) -> None:
        super().__init__(proxy)
        self.binding = binding
        self.description = f"{binding.aor} at {binding.contact}"

    def deliver(self, signal, responder):
        binding = self.binding
        if not binding.nat and binding.source[0] == "udp":
            # Reached at its own address, or through the first hop of its
            # Path (RFC 3327): a name there is located like any other.
            try:
                uri = parse_uri(binding.contact)
                hop = parse_name_addr(binding.path[0], "Path").uri if binding.path else uri
            except (URIError, ValueError):
                hop = None
            if hop is not None and not is_ip(getattr(hop, "maddr", None) or getattr(hop, "host", "")):
                return self._deliver_located(signal, responder, uri, binding.path, hop)
        return super().deliver(signal, responder)

    def target(self):
        binding = self.binding
        uri = parse_uri(binding.contact)
        transport, host, port = binding.source
        local = binding.local
        if binding.nat or transport != "udp":
            flow = Flow(transport, (local[1], local[2]), (host, port))
        else:
            hop = parse_name_addr(binding.path[0], "Path").uri if binding.path else uri
            flow = self._proxy.flow_for_uri(hop, local=(local[1], local[2]))
        return uri, flow, binding.path

    def __eq__(self, other):
        return isinstance(other, ContactEndpoint) and other.binding.contact == self.binding.contact \
            and other.binding.aor == self.binding.aor

    def __hash__(self):
        return hash((self.binding.aor, self.binding.contact))


class RemoteEndpoint(_SIPEndpoint):
    """
    A SIP destination outside this server: an IP literal is reached at
    once; a host name is located by RFC 3263 (NAPTR, SRV, A/AAAA) and the
    servers found are tried in turn until one answers (a timeout, a
    transport error or a 503 moves on to the next, RFC 3263 §4.3).
    """

    def __init__(self, proxy, uri) -> None:
        super().__init__(proxy)
        self.uri = uri
        self.description = str(uri)

    def deliver(self, signal, responder):
        return self._deliver_located(signal, responder, self.uri, (), self.uri)


@implementer(IEndpointSource)
class RegisteredContacts:
    """
    The endpoints of an account: its current SIP bindings.
    """

    def __init__(self, proxy) -> None:
        self._proxy = proxy

    def endpoints(self, account: str) -> list:
        return [ContactEndpoint(self._proxy, b) for b in self._proxy.service.bindings.lookup(account)]


@implementer(IRouteHandler)
class RemoteSIP:
    """
    Routes ending in the SIP module: a remote destination.
    """

    module = Module.SIP

    def __init__(self, proxy) -> None:
        self._proxy = proxy

    def endpoint(self, route, signal):
        return RemoteEndpoint(self._proxy, _as_targeted(parse_uri(route.address), signal))


def _as_targeted(uri, signal):
    """
    C{uri} (the Router's answer, an address: no port, no parameters) as
    the Signal's own target gave it when that is the same user and host:
    C{sip:0301234567@192.0.2.7:5080} keeps its port and parameters.
    """
    if not isinstance(uri, SIPURI):
        return uri
    for target in signal.targets:
        try:
            given = parse_uri(target)
        except (URIError, ValueError):
            continue
        if (
            isinstance(given, SIPURI)
            and given.scheme == uri.scheme
            and given.user == uri.user
            and given.host.lower().strip("[]") == uri.host.lower().strip("[]")
        ):
            return given
    return uri


class Proxy:
    """
    The proxy half of the SIP service.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self.service = service
        self.our_id = os.urandom(6).hex()
        self._counter = itertools.count()
        self._tasks: dict = {}
        self.hops = NextHops(service)
        # Client transactions waiting on a TCP/TLS connection, by
        # (transport, remote): when it fails or closes they end at once.
        self._on_streams: dict[tuple, weakref.WeakSet] = {}
        self._observers: tuple = ()
        # The SDP hook: calls that need the media relay (NAT, LAN/WAN,
        # IPv4/IPv6, on request) get their SDP pointed at it.
        self.media = MediaRelayPolicy(service, getattr(service.context, "media_relay", None))

    def add_observer(self, observer) -> None:
        """
        Show C{observer} the calls going through: C{call_started(request,
        caller_account)} for an initial INVITE, C{call_progress(request,
        response)} for each response sent back for it, C{in_dialog(request)}
        for each request forwarded inside a dialog.  (The dialog event
        package watches calls this way.)
        """
        self._observers = self._observers + (observer,)

    def _observe(self, event: str, *args) -> None:
        for observer in self._observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                self.log.failure("A call observer failed on {event}", event=event)

    # -- wiring --------------------------------------------------------------

    def start(self) -> None:
        signals = self.service.context.signals
        if signals is not None:
            signals.add_endpoint_source(RegisteredContacts(self))
            signals.add_route_handler(RemoteSIP(self))

    def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    # -- what is ours --------------------------------------------------------

    def is_local_domain(self, host: str) -> bool:
        try:
            self.service.context.directory.real_domain(host)
        except DirectoryError:
            return False
        return True

    def is_us(self, uri) -> bool:
        return isinstance(uri, SIPURI) and (
            (uri.host, uri.port or 5060) in self.service.local_hosts() or self.is_local_domain(uri.host)
        )

    def to_tag(self, request) -> str:
        return rules.server_to_tag(request)

    # -- server objects --------------------------------------------------------

    def request(self, request, flow: Flow, transaction) -> None:
        try:
            self._request(request, flow, transaction)
        except (HeaderError, URIError, ValueError) as e:
            self.log.info("bad {method} from {peer}: {error}", method=request.method, peer=flow.remote, error=e)
            if transaction is not None:
                transaction.respond(rules.refuse(request, 400, str(e)[:80] or "Bad Request"))

    def _request(self, request, flow: Flow, transaction) -> None:
        local_hosts = self.service.local_hosts()
        if request.method == "CANCEL":
            self._cancel(request, transaction)
            return
        problem = rules.check_request(request, local_hosts=local_hosts, our_id=self.our_id)
        if problem is not None:
            if transaction is not None:
                transaction.respond(problem)
            return
        verdict = rules.relay_verdict(
            request,
            is_local_domain=self.is_local_domain,
            local_hosts=local_hosts,
            trusted_source=self.service.network.current.clients.contains(flow.remote[0]),
        )
        if request.method == "ACK":
            if verdict is not rules.Relay.DENY:
                self._forward_stateless(request, local_hosts)
            return
        if verdict is rules.Relay.DENY:
            transaction.respond(rules.refuse(request, 403, rules.RELAY_DENIED))
            return
        if verdict is rules.Relay.CHALLENGE:
            self._authenticate(request, flow, transaction)
            return
        self._proceed(request, flow, transaction, None)

    def _authenticate(self, request, flow: Flow, transaction) -> None:
        caller_domain = request.from_().uri.host
        realm = self.service.context.directory.real_domain(caller_domain)
        source = (flow.transport, flow.remote[0], flow.remote[1])
        guard = self.service.guard
        if guard.blocked(flow.remote[0]):
            transaction.respond(rules.refuse(request, 403, "Too many failed authentications"))
            return
        d = self.service.verifier.verify(
            request.headers.get("Proxy-Authorization"),
            request.method,
            str(request.uri),
            request.body,
            realm,
            source,
            proxy=True,
        )

        def decided(outcome):
            if outcome.kind is OutcomeKind.ACCEPTED:
                guard.succeeded(flow.remote[0])
                self._proceed(request, flow, transaction, outcome.account)
            elif outcome.kind in (OutcomeKind.CHALLENGE, OutcomeKind.STALE):
                transaction.respond(rules.refuse(request, 407, headers=outcome.headers))
            elif outcome.kind is OutcomeKind.MALFORMED:
                transaction.respond(rules.refuse(request, 400, outcome.reason))
            else:
                guard.failed(flow.remote[0])
                transaction.respond(rules.refuse(request, 403, "Authentication failed"))

        def failed(failure):
            self.log.failure("proxy authentication failed", failure)
            transaction.respond(rules.refuse(request, 500))

        d.addCallbacks(decided, failed)

    def _proceed(self, request, flow: Flow, transaction, account) -> None:
        submitter = Submitter("sip", account, flow.remote)
        local_hosts = self.service.local_hosts()
        signal = rules.to_signal(
            request, submitter=submitter, local_hosts=local_hosts, local_domains=self.is_local_domain
        )
        if signal.in_dialog:
            self._forward_in_dialog(request, signal, transaction)
            return
        if request.method == "INVITE" and self.service.local_dialogs.replacing(request, signal, flow, transaction):
            return  # Replaces naming a PBX task's call (RFC 3891)
        signals = self.service.context.signals
        task = signals.submit(signal)
        self._tasks[transaction] = task
        observed = bool(self._observers) and request.method == "INVITE"
        if observed:
            self._observe("call_started", request, account)

        def provisional(answer):
            response = rules.sip_response(request, answer)
            transaction.respond(response)
            if observed:
                self._observe("call_progress", request, response)

        def final(answer):
            self._tasks.pop(transaction, None)
            self.media.concluded(request, answer)
            response = rules.sip_response(request, answer)
            transaction.respond(response)
            if observed:
                self._observe("call_progress", request, response)

        task.on_provisional(provisional)
        task.final.addCallback(final)

    def _cancel(self, cancel, transaction) -> None:
        if transaction is None:
            return
        invite = self.service.transactions.invite_for_cancel(cancel)
        if invite is None:
            transaction.respond(rules.refuse(cancel, 481))
            return
        transaction.respond(make_response(cancel, 200, to_tag=rules.server_to_tag(cancel)))
        task = self._tasks.get(invite)
        if task is not None:
            task.cancel()
        elif getattr(invite, "forward", None) is not None:
            invite.forward.cancel()

    # -- in-dialog and stateless forwarding ------------------------------------

    def _forward_in_dialog(self, request, signal, transaction) -> None:
        """
        A pre-routed request (in a dialog, or with Route values left after
        ours): statefully to its next hop, located when it is a name.
        """
        if self._observers:
            self._observe("in_dialog", request)
        signal, media = self.media.in_dialog(signal)
        try:
            hop = rules.next_hop(signal)
        except (URIError, ValueError) as e:
            transaction.respond(rules.refuse(request, 404 if isinstance(e, URIError) else 503, str(e)[:80]))
            return
        delivery = _Delivery(self, None, None)
        transaction.forward = delivery

        def answer(status, reason):
            if transaction.state not in (State.COMPLETED, State.TERMINATED, State.ACCEPTED):
                transaction.respond(rules.refuse(request, status, reason))

        def attempt(flow, next_one):
            if delivery.cancel_wanted:  # a re-INVITE cancelled while its hop was located
                answer(487, "Request Terminated")
                return
            outgoing = self.outgoing(signal, signal.targets[0], flow, (), record_route=False)
            delivery.request, delivery.flow = outgoing, flow

            def on_response(response):
                if response.status == 100:
                    return
                if media is not None:
                    response = media(response)
                if response.status < 200:
                    delivery.provisional_seen = True
                elif response.status == 503 and next_one is not None and not delivery.provisional_seen:
                    next_one(503, response.reason)
                    return
                transaction.respond(rules.sip_response(request, rules.signal_response(response)))

            def on_failure(status, reason):
                if next_one is not None and not delivery.provisional_seen:
                    next_one(status, reason)
                    return
                answer(status, reason)

            self.send_request(outgoing, flow, Branch(on_response, on_failure))

        def located(flows):
            try_in_turn(flows, attempt, lambda: answer(503, unresolved(hop.host)))

        def failed(failure):
            if not failure.check(OSError, ValueError):
                self.log.failure("locating {hop} failed", failure, hop=str(hop))
            answer(503, str(failure.value)[:80])

        self.hops.locate(hop).addCallbacks(located, failed)

    def _forward_stateless(self, request, local_hosts) -> None:
        """
        An ACK to a 2xx (RFC 3261 §16.11): to its next hop, located first
        when it is a name, without a transaction; a server that cannot be
        sent to now gives way to the next one found.
        """
        signal = rules.to_signal(
            request, submitter=Submitter("sip"), local_hosts=local_hosts, local_domains=self.is_local_domain
        )
        try:
            hop = rules.next_hop(signal)
        except (URIError, ValueError) as e:
            self.log.info("cannot forward ACK: {error}", error=e)
            return
        signal, _ = self.media.in_dialog(signal)  # the answer to a late offer

        def send(flows):
            for flow in flows:
                outgoing = self.outgoing(signal, signal.targets[0], flow, (), record_route=False)
                try:
                    self.service.transport.send(outgoing, flow)
                    return
                except OSError as e:
                    self.log.info("cannot forward ACK to {remote}: {error}", remote=flow.remote, error=e)
            if not flows:
                self.log.info("cannot forward ACK: {reason}", reason=unresolved(hop.host))

        def failed(failure):
            if not failure.check(OSError, ValueError):
                self.log.failure("locating {hop} failed", failure, hop=str(hop))
                return
            self.log.info("cannot forward ACK: {error}", error=failure.value)

        self.hops.locate(hop).addCallbacks(send, failed)

    def stray_response(self, response, flow: Flow) -> None:
        """
        A response no client transaction wants (a 2xx retransmission after
        the transaction ended): pass it up statelessly (RFC 3261 §16.11).
        """
        vias = response.vias()
        if len(vias) < 2 or not (vias[0].branch or "").startswith(MAGIC_COOKIE + "cg"):
            return
        upstream = self.media.stray(response.with_headers(response.headers.without_first("Via")))
        via = vias[1]
        host = via.received or via.host
        port = via.rport or via.port or 5060
        transport = via.transport.lower()
        try:
            self.service.transport.send(upstream, Flow(transport, self.service.address_for("udp"), (host, port)))
        except OSError as e:
            self.log.info("cannot pass a stray response upstream: {error}", error=e)

    # -- client side -------------------------------------------------------------

    def flow_for_uri(self, uri, local=None) -> Flow:
        return self.hops.flow_for_uri(uri, local=local)

    def outgoing(self, signal, target_uri, flow: Flow, route_set, record_route=True):
        # The WAN address (Network settings) towards peers outside the LAN.
        kind = "udp" if flow.transport == "udp" else "tcp"
        host, port = self.service.advertised_address(kind, flow.remote[0])
        index = next(self._counter)
        branch = f"{MAGIC_COOKIE}cg{self.our_id}{index:x}"
        via = Via(flow.transport.upper(), host, port, (("branch", branch), ("rport", None)))
        record = None
        if record_route:
            shown = f"[{host}]" if ":" in host else host
            record = f"<sip:{shown}:{port};transport={flow.transport};lr>"
        return rules.outgoing_request(
            signal, target_uri=target_uri, via=via, record_route=record, route_set=route_set
        )

    def send_request(self, request, flow: Flow, branch_user) -> None:
        transport = self.service.transport
        transaction = self.service.transactions.send_request(
            request,
            lambda message: transport.send(message, flow),
            flow.reliable,
            branch_user,
            build_ack=rules.ack_for_failure,
        )
        if flow.reliable and transaction.state is not State.TERMINATED:
            self._on_streams.setdefault((flow.transport, flow.remote), weakref.WeakSet()).add(transaction)

    # -- flows -------------------------------------------------------------------

    def keepalive(self, flow: Flow) -> None:
        """
        Keep-alive traffic from a client: its NAT mapping is alive.
        """
        self.service.keepalives.pong(flow)

    def flow_closed(self, flow: Flow) -> None:
        """
        A TCP/TLS connection closed, or could not be opened (refused, a
        TLS certificate that does not verify): its pinger stops;
        registrations made over it stay until they expire or the client
        registers again; requests sent over it that have no final
        response yet end with a transport error (503, or the next server).
        """
        self.service.keepalives.forget(flow)
        waiting = [
            transaction for transaction in self._on_streams.pop((flow.transport, flow.remote), ())
            if transaction.state in (State.CALLING, State.TRYING, State.PROCEEDING)
        ]
        if waiting:
            self.log.info(
                "{transport} connection to {remote} closed with {count} requests unanswered",
                transport=flow.transport, remote=flow.remote, count=len(waiting),
            )
        for transaction in waiting:
            transaction.transport_failed()

    def watch_flow(self, flow: Flow) -> None:
        """
        A client behind NAT registered over C{flow}: keep the mapping open.
        """
        self.service.keepalives.watch(flow)

    # -- server transactions ending badly ---------------------------------------

    def response_received(self, transaction, response) -> None:
        pass

    def timed_out(self, transaction) -> None:
        self._tasks.pop(transaction, None)

    def transport_error(self, transaction) -> None:
        task = self._tasks.pop(transaction, None)
        if task is not None:
            task.cancel()
