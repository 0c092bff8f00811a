"""
SIP for dialogs whose one end is this server: PBX tasks' calls.

The proxy forwards other dialogs' requests along their Record-Route.  A
task's call is different: the server is the user agent, so the caller's
ACK, BYE and re-INVITE must reach the task, and the task's own BYE,
re-INVITE and REFER must go out as requests of a user agent.
L{SIPDialogCarrier} is that part of the SIP service, kept apart from the
proxy; the service calls it first for every request and every response
(two lines in L{communigate.sip.service}), and it registers with
the core's dialog table (L{communigate.interfaces.ILocalDialogs}) as the
C{sip} carrier.

  - A request with a To tag whose Call-ID and To tag the table knows, and
    no Route left once ours are popped, is the task's: it becomes a Signal
    and goes to the dialog's owner, which answers through the server
    transaction.  An ACK stops our 2xx retransmissions and goes to the
    owner too.
  - A request with a To tag sent to our own address (no user part, no
    Route left) for a dialog the table does not know gets 481, and such an
    ACK is dropped: the dialog has ended, and the proxy would only forward
    it back to us.  In-dialog SUBSCRIBEs are left to presence.
  - Our 2xx to an INVITE (the task's answer, which the proxy sends, or a
    re-INVITE's, which this module sends) is retransmitted over UDP from
    T1 doubling to T2 until its ACK comes; after 64*T1 without one the
    owner is told (RFC 3261 13.3.1.4) and hangs up.
  - Every 2xx to a task's INVITE is shown to the task before the
    transaction layer takes it; one it has acknowledged already comes
    again because its ACK was lost, and the task repeats the ACK.
  - A new INVITE with C{Replaces} (RFC 3891) that the proxy accepted goes
    to the owner of the local dialog it names (L{SIPDialogCarrier.replacing},
    L{communigate.pbx.replaces}); sent to our own address and naming no
    local dialog, it gets 481.
  - What a task sends inside its dialog has our Route values popped and
    goes to the next hop (the first remaining Route, else the peer's
    Contact), located by RFC 3263 like the proxy's in-dialog requests; an
    ACK goes without a transaction.
  - A task's call whose INVITE the proxy's media hook relayed (a leg of
    a transparent bridge, whose SDP is its ingress peer's) stays relayed:
    SDP both ways in the dialog is rewritten by the hook as the proxy's
    in-dialog requests are, and a BYE either way releases the relay.
  - The Contact naming us in a task's 200 is our address for the
    transport the INVITE came over (the WAN address to peers outside the
    LAN); a task placing a call names our UDP address (the proxy
    record-routes that INVITE anyway).

[D] NAT: requests to a caller behind NAT go to its Contact like the
proxy's in-dialog requests do; reaching it over the flow its INVITE came
on is left for later.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IDelivery, IDialogCarrier, IResponder
from communigate.signal.model import Submitter, response
from communigate.sip import proxy_rules as rules
from communigate.sip.headers import HeaderError
from communigate.sip.message import Headers, Request
from communigate.sip.nexthop import try_in_turn, unresolved
from communigate.sip.transaction import T1, T2, State
from communigate.sip.uri import SIPURI, URIError, parse_uri

__all__ = ["SIPDialogCarrier"]


@implementer(IDelivery)
class _Sent:
    """
    An in-dialog request on its way; it is not cancelled (a re-INVITE
    ends with its final response).
    """

    def cancel(self) -> None:
        pass


@implementer(IResponder)
class _TransactionResponder:
    """
    Answers a peer's in-dialog request through its server transaction.
    """

    def __init__(self, carrier: SIPDialogCarrier, request, transaction, flow, relayed=None) -> None:
        self._carrier = carrier
        self._request = request
        self._transaction = transaction
        self._flow = flow
        self._relayed = relayed  # the media relay's rewrite of our answers' SDP, or None
        self._done = False

    def _sip(self, answer):
        sip = rules.sip_response(self._request, answer)
        return sip if self._relayed is None else self._relayed(sip)

    def provisional(self, answer) -> None:
        if not self._done and self._transaction is not None:
            self._transaction.respond(self._sip(answer))

    def final(self, answer) -> None:
        if self._done:
            return
        self._done = True
        sip = self._sip(answer)
        carrier = self._carrier
        if self._transaction is not None:
            self._transaction.respond(sip)
        else:  # an RFC 2543 peer: no transaction to answer through
            carrier.send_response(self._request, self._flow, sip)
        if self._request.method == "INVITE" and answer.success:
            # A new INVITE (one with Replaces) has its tag in our answer only.
            tag = _to_tag(sip) or self._request.to().tag
            carrier.await_ack(self._request, tag, self._flow, sip)


class _Unacknowledged:
    """
    One 2xx waiting for its ACK: retransmitted over UDP, given up after
    64*T1.
    """

    def __init__(self, carrier, key, request, flow, answer=None) -> None:
        self.carrier = carrier
        self.key = key
        self.request = request
        self.flow = flow
        self.answer = answer
        clock = carrier.clock
        self.interval = T1
        self.resend = None if flow is None or flow.reliable else clock.callLater(T1, self._again)
        self.expiry = clock.callLater(64 * T1, self._expired)

    def _again(self) -> None:
        self.resend = None
        answer = self.answer
        if answer is None:
            # The proxy sent the task's 200 through the INVITE's server
            # transaction; take it from there.
            transaction = self.carrier.service.transactions.server_transaction(self.request)
            last = getattr(transaction, "last_response", None)
            if transaction is None or last is None:
                return
            if not 200 <= last.status < 300:
                # The INVITE ended otherwise (the caller cancelled first):
                # nobody will acknowledge the task's 200.
                self.carrier.given_up(self)
                return
            if transaction.state not in (State.ACCEPTED, State.TERMINATED):
                self._schedule(self.interval)
                return
            self.answer = answer = last
        self.carrier.send_response(self.request, self.flow, answer)
        self.interval = min(self.interval * 2, T2)
        self._schedule(self.interval)

    def _schedule(self, delay: float) -> None:
        self.resend = self.carrier.clock.callLater(delay, self._again)

    def _expired(self) -> None:
        self.expiry = None
        self.carrier.given_up(self)

    def stop(self) -> None:
        for call in (self.resend, self.expiry):
            if call is not None and call.active():
                call.cancel()
        self.resend = self.expiry = None


def _ignore(*args) -> None:
    pass


@implementer(IDialogCarrier)
class SIPDialogCarrier:
    """
    The C{sip} carrier of the core's dialog table.

    @param service: the L{communigate.sip.service.SIPService}.
    """

    protocol = "sip"
    log = Logger()

    def __init__(self, service) -> None:
        self.service = service
        self.clock = service.context.reactor
        self.table = getattr(service.context, "dialogs", None)
        self._unacknowledged: dict[tuple[str, str], _Unacknowledged] = {}

    def start(self) -> None:
        if self.table is not None:
            self.table.add_carrier(self)

    def stop(self) -> None:
        if self.table is not None:
            self.table.remove_carrier(self)
        for waiting in list(self._unacknowledged.values()):
            waiting.stop()
        self._unacknowledged.clear()

    # -- from the SIP service --------------------------------------------------------

    def request(self, request, flow, transaction) -> bool:
        """
        Whether C{request} belongs to a local dialog (and was handled).
        """
        table = self.table
        if table is None:
            return False
        try:
            tag = request.to().tag
        except (HeaderError, AttributeError):
            return False
        if tag is None:
            return False
        owner = table.owner(request.call_id, tag)
        if owner is None:
            return self._unknown_dialog(request, transaction)
        try:
            signal = rules.to_signal(
                request,
                submitter=Submitter("sip", None, flow.remote),
                local_hosts=self.service.local_hosts(),
                local_domains=self.service.proxy.is_local_domain,
            )
        except (HeaderError, URIError, ValueError):
            return False
        if signal.header("Route") is not None:
            return False  # pre-routed elsewhere: the proxy's
        # A task's call through the media relay (a transparent bridge's
        # leg): the peer's SDP is the relay's to rewrite, a BYE releases it.
        signal, relayed = self.service.proxy.media.in_dialog(signal)
        if request.method == "ACK":
            waiting = self._unacknowledged.pop((request.call_id, tag), None)
            if waiting is not None:
                waiting.stop()
            table.deliver(signal, _NoAnswer())
            return True
        table.deliver(signal, _TransactionResponder(self, request, transaction, flow, relayed))
        return True

    def _unknown_dialog(self, request, transaction) -> bool:
        if request.method == "SUBSCRIBE" or not self._to_us(request):
            return False
        if request.method != "ACK" and transaction is not None:
            transaction.respond(rules.refuse(request, 481))
        return True

    def _to_us(self, request) -> bool:
        """
        Whether C{request} is sent to our own address (no user part, no
        Route): a Contact of a task's call.
        """
        uri = request.uri
        if not isinstance(uri, SIPURI) or uri.user or (uri.host, uri.port or 5060) not in self.service.local_hosts():
            return False
        try:
            return not request.routes()
        except HeaderError:
            return False

    def replacing(self, request, signal, flow, transaction) -> bool:
        """
        Whether C{request}, a new INVITE the proxy accepted (C{signal}, its
        Signal, names the caller's account when it authenticated), carries
        C{Replaces} (RFC 3891) and was handled here: given to the owner of
        the local dialog it names (L{communigate.pbx.replaces}), or refused
        (400 for a bad or repeated header; 603 when it names a local dialog
        that has ended; 481 when sent to our own address and no local
        dialog matches).  An INVITE to another target naming no
        local dialog is left to the proxy: the dialog may be a phone's.
        """
        values = request.headers.get_all("Replaces")
        if not values or self.table is None or transaction is None:
            return False
        from communigate.sip.replaces import parse_replaces

        if len(values) > 1:
            transaction.respond(rules.refuse(request, 400, "More than one Replaces"))
            return True
        try:
            replaces = parse_replaces(values[0])
        except ValueError as error:
            transaction.respond(rules.refuse(request, 400, str(error)))
            return True
        if self.table.replace(signal, replaces, _TransactionResponder(self, request, transaction, flow)):
            return True
        if self.table.ended(replaces.call_id, replaces.to_tag):
            transaction.respond(rules.refuse(request, 603, "The dialog to replace has ended"))
            return True
        if self._to_us(request):
            transaction.respond(rules.refuse(request, 481, "No dialog to replace"))
            return True
        return False

    def response_seen(self, response) -> None:
        """
        Every response, before the transaction layer: a 2xx to a task's
        INVITE is shown to the task, which acknowledges it again when it
        has acknowledged it before (its ACK was lost).  The proxy's client
        side absorbs such repetitions while the INVITE transaction lasts,
        and after that they are stray, so this is where the task can see
        them.
        """
        table = self.table
        if table is None or not 200 <= response.status < 300:
            return
        try:
            if response.cseq().method != "INVITE":
                return
            tag = response.from_().tag
        except (HeaderError, AttributeError):
            return
        owner = table.owner(response.call_id, tag)
        if owner is not None:
            owner.answer_repeated(rules.signal_response(response))

    def send_response(self, request, flow, answer) -> None:
        from communigate.sip.service import response_flow

        try:
            self.service.transport.send(answer, response_flow(request, flow))
        except OSError as error:
            self.log.info("cannot send a response to {peer}: {error}", peer=flow.remote, error=error)

    # -- 2xx retransmission ------------------------------------------------------------

    def await_ack(self, request, local_tag: str, flow, answer=None) -> None:
        key = (request.call_id, local_tag)
        old = self._unacknowledged.pop(key, None)
        if old is not None:
            old.stop()
        self._unacknowledged[key] = _Unacknowledged(self, key, request, flow, answer)

    def given_up(self, waiting: _Unacknowledged) -> None:
        waiting.stop()
        if self._unacknowledged.get(waiting.key) is waiting:
            del self._unacknowledged[waiting.key]
        owner = None if self.table is None else self.table.owner(*waiting.key)
        if owner is not None:
            owner.unacknowledged()

    # -- IDialogCarrier --------------------------------------------------------------

    def answered(self, signal, local_tag: str) -> None:
        try:
            request = _request_of(signal)
        except (HeaderError, URIError, ValueError):
            return
        transaction = self.service.transactions.server_transaction(request)
        flow = getattr(transaction, "flow", None)
        if flow is None:
            return
        self.await_ack(request, local_tag, flow)

    def contact(self, signal) -> str | None:
        transport = "udp"
        peer = None
        if signal is not None:
            via = signal.header("Via") or ""
            protocol = via.split(None, 1)[0].upper() if via else "SIP/2.0/UDP"
            transport = protocol.rpartition("/")[2].lower() or "udp"
            if signal.submitter.address is not None:
                peer = signal.submitter.address[0]
        kind = "udp" if transport == "udp" else "tcp"
        try:
            if peer is None:
                host, port = self.service.address_for(kind)
            else:
                host, port = self.service.advertised_address(kind, peer)
        except OSError:
            return None
        shown = f"[{host}]" if ":" in host else host
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{shown}:{port}{suffix}"

    def send(self, signal, responder):
        try:
            request = _request_of(signal)
            request = rules.preprocess_route(
                request, local_hosts=self.service.local_hosts(), local_domains=self.service.proxy.is_local_domain
            )
            signal = rules.to_signal(request, submitter=signal.submitter)
            hop = rules.next_hop(signal)
        except (HeaderError, URIError, ValueError) as error:
            if signal.method != "ACK":
                responder.final(response(400, f"Cannot send in the dialog: {error}"[:80]))
            return _Sent()
        proxy = self.service.proxy
        ack = signal.method == "ACK"
        # A task's call that goes through the media relay (a transparent
        # bridge's leg): its SDP both ways is the relay's too.
        signal, relayed = proxy.media.in_dialog(signal)

        def give_up(status, reason):
            if not ack:
                responder.final(response(status, reason))
            else:
                self.log.info("cannot send ACK in dialog {call_id}: {reason}", call_id=signal.call_id, reason=reason)

        def attempt(flow, next_one):
            outgoing = proxy.outgoing(signal, signal.targets[0], flow, (), record_route=False)
            if ack:
                try:
                    self.service.transport.send(outgoing, flow)
                except OSError as error:
                    if next_one is not None:
                        next_one(503, str(error))
                    else:
                        give_up(503, str(error)[:80])
                return
            seen = []

            def on_response(answer):
                if relayed is not None:
                    answer = relayed(answer)
                if answer.status < 200:
                    seen.append(answer.status)
                    if answer.status > 100:
                        responder.provisional(rules.signal_response(answer))
                    return
                if answer.status == 503 and next_one is not None and not seen:
                    next_one(503, answer.reason)
                    return
                responder.final(rules.signal_response(answer))

            def on_failure(status, reason):
                if next_one is not None and not seen:
                    next_one(status, reason)
                    return
                give_up(status, reason)

            from communigate.sip.proxy import Branch

            proxy.send_request(outgoing, flow, Branch(on_response, on_failure))

        def located(flows):
            try_in_turn(flows, attempt, lambda: give_up(503, unresolved(getattr(hop, "host", str(hop)))))

        def failed(failure):
            if not failure.check(OSError, ValueError):
                self.log.failure("locating {hop} failed", failure, hop=str(hop))
            give_up(503, str(failure.value)[:80])

        proxy.hops.locate(hop).addCallbacks(located, failed)
        return _Sent()


@implementer(IResponder)
class _NoAnswer:
    """
    The responder of an ACK: nothing is ever answered.
    """

    provisional = final = staticmethod(_ignore)


def _to_tag(message) -> str | None:
    try:
        return message.to().tag
    except (HeaderError, AttributeError):
        return None


def _request_of(signal) -> Request:
    """
    A Signal in SIP terms back as a request (its headers are SIP's).
    """
    request = Request(signal.method, parse_uri(signal.targets[0]), Headers(list(signal.headers)))
    if signal.body:
        request = request.with_body(signal.body, signal.content_type)
    return request
