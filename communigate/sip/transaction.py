"""
SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state): the four
state machines that make an unreliable transport reliable enough for a
request and its responses.

They are sans-IO: a transaction is given a C{send(message)} callable for
its transport, a clock for timers A–M, and a transaction user (the proxy,
the registrar) to report to.  They hold no sockets, so tests drive every
timer with L{twisted.internet.task.Clock}.  State names are the RFC's.

The transaction layer (L{TransactionLayer}) matches incoming messages to
transactions by branch (RFC 3261 §17.1.3, §17.2.3), absorbs
retransmissions, and hands everything else (new requests, stray ACKs,
stray responses) to the transaction user.
"""

import enum

import attrs
from twisted.logger import Logger

from communigate.sip.message import SIPParseError, parse_message
from communigate.sip.timer_queue import FixedDelayQueue

#: RFC 3261 timer defaults, seconds.
T1 = 0.5
T2 = 4.0
T4 = 5.0
#: RFC 3261 §16.6 step 11: how long a proxy lets an INVITE stay in
#: Proceeding before it gives up on it (more than 3 minutes).
TIMER_C = 181.0


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


@attrs.frozen
class Timers:
    """
    The timer base values; a transport that is reliable (TCP, TLS) sets
    C{reliable} and the retransmission and wait timers collapse to zero.
    """

    t1: float = T1
    t2: float = T2
    t4: float = T4
    c: float = TIMER_C


def branch_of(message) -> str:
    return message.top_via().branch or ""


def sent_by_of(message) -> tuple:
    via = message.top_via()
    return (via.host.lower(), via.port)


def cseq_method(message) -> str:
    return message.cseq().method


class _Transaction:
    """
    What all four machines share: a state, timers on the clock, the
    transport callable, and the hand-over to the transaction user.
    """

    log = Logger()

    # Slots: a busy registrar holds tens of thousands of completed
    # transactions; a dictionary each would be most of their memory.
    # C{flow} is where a server transaction's request came from, and
    # C{forward} what the proxy forwards it with; both set from outside.
    # Weak references: the proxy keeps weak sets of its transactions.
    __slots__ = (
        "request", "_send", "_clock", "_user", "reliable", "timers", "state", "_calls",
        "on_terminated", "_key", "flow", "forward", "__weakref__",
    )

    def __init__(
        self, request, send, clock, user, reliable: bool = False, timers: Timers = Timers(), *, key=None
    ) -> None:
        """
        @param key: the transaction key (L{transaction_key}) when the
            caller worked it out already; otherwise it is, when first asked.
        """
        self.request = request
        self._send = send
        self._clock = clock
        self._user = user
        self.reliable = reliable
        self.timers = timers
        self.state = None
        self._calls: dict[str, object] | None = None
        self.on_terminated = None
        self._key = key
        self.flow = None
        self.forward = None

    @property
    def key(self):
        if self._key is None:
            self._key = transaction_key(self.request)
        return self._key

    def _start_timer(self, name: str, delay: float, fire) -> None:
        self._cancel_timer(name)
        if self._calls is None:
            self._calls = {}
        self._calls[name] = self._clock.callLater(delay, self._fired, name, fire)

    def _fired(self, name: str, fire) -> None:
        self._calls.pop(name, None)
        fire()

    def _cancel_timer(self, name: str) -> None:
        if not self._calls:
            return
        call = self._calls.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _timer_pending(self, name: str) -> bool:
        return bool(self._calls) and name in self._calls

    def _transmit(self, message) -> bool:
        try:
            self._send(message)
        except OSError as e:
            self._transmit_failed(e)
            return False
        return True

    def _transmit_failed(self, error: OSError) -> None:
        self.log.warn("transport error in {kind}: {error}", kind=type(self).__name__, error=error)
        self._transport_error()

    def _transport_error(self) -> None:
        self._terminate()
        self._user.transport_error(self)

    def transport_failed(self) -> None:
        """
        The connection this client transaction's request went out on could
        not be opened, or closed before the final response (RFC 3261
        §17.1.4, §18.4): the response can no longer come back, so the
        transaction ends with a transport error instead of waiting for
        Timer B or F.  Once a final response came, nothing happens.
        """
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._transport_error()

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        for name in list(self._calls or ()):
            self._cancel_timer(name)
        if self.on_terminated is not None:
            self.on_terminated(self)


class InviteClientTransaction(_Transaction):
    """
    RFC 3261 §17.1.1, with RFC 6026 §7.2's Accepted state so that 2xx
    retransmissions reach the transaction user while it lasts.

    @param build_ack: C{(request, response) -> ACK request} for non-2xx
        final responses, which this transaction acknowledges itself.
    """

    __slots__ = ("_build_ack", "_ack")

    def __init__(self, request, send, clock, user, reliable=False, timers=Timers(), *, build_ack):
        super().__init__(request, send, clock, user, reliable, timers)
        self._build_ack = build_ack
        self._ack = None

    def start(self) -> None:
        self.state = State.CALLING
        if not self._transmit(self.request):
            return
        if not self.reliable:
            self._retransmit_after(self.timers.t1)
        self._start_timer("B", 64 * self.timers.t1, self._timer_b)

    def _retransmit_after(self, interval: float) -> None:
        def timer_a():
            if self.state is State.CALLING and self._transmit(self.request):
                self._retransmit_after(interval * 2)

        self._start_timer("A", interval, timer_a)

    def _timer_b(self) -> None:
        if self.state is State.CALLING:
            self._terminate()
            self._user.timed_out(self)

    def _timer_c(self) -> None:
        # The callee rang too long without a final answer: the user cancels
        # the branch; if even the CANCEL brings no final, give up after
        # another 64*T1 so the table cannot hold the transaction forever.
        if self.state is State.PROCEEDING:
            self._user.timed_out(self)
            self._start_timer("B", 64 * self.timers.t1, self._terminate)

    def receive_response(self, response) -> None:
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            self._cancel_timer("A")
            if status < 200:
                self.state = State.PROCEEDING
                self._cancel_timer("B")
                if status > 100:
                    self._start_timer("C", self.timers.c, self._timer_c)
                elif not self._timer_pending("C"):
                    self._start_timer("C", self.timers.c, self._timer_c)
                self._user.response_received(self, response)
            elif status < 300:
                self.state = State.ACCEPTED
                self._cancel_timer("B")
                self._cancel_timer("C")
                self._start_timer("M", 64 * self.timers.t1, self._terminate)
                self._user.response_received(self, response)
            else:
                self.state = State.COMPLETED
                self._cancel_timer("B")
                self._cancel_timer("C")
                self._ack = self._build_ack(self.request, response)
                self._transmit(self._ack)
                self._start_timer("D", 0 if self.reliable else 32.0, self._terminate)
                self._user.response_received(self, response)
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            self._user.response_received(self, response)
        elif self.state is State.COMPLETED and status >= 300:
            self._transmit(self._ack)


class NonInviteClientTransaction(_Transaction):
    """
    RFC 3261 §17.1.2.
    """

    __slots__ = ()

    def start(self) -> None:
        self.state = State.TRYING
        if not self._transmit(self.request):
            return
        if not self.reliable:
            self._retransmit_after(self.timers.t1)
        self._start_timer("F", 64 * self.timers.t1, self._timer_f)

    def _retransmit_after(self, interval: float) -> None:
        def timer_e():
            if self.state in (State.TRYING, State.PROCEEDING) and self._transmit(self.request):
                following = self.timers.t2 if self.state is State.PROCEEDING else interval * 2
                self._retransmit_after(min(following, self.timers.t2))

        self._start_timer("E", interval, timer_e)

    def _timer_f(self) -> None:
        if self.state in (State.TRYING, State.PROCEEDING):
            self._terminate()
            self._user.timed_out(self)

    def receive_response(self, response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._cancel_timer("E")
            self._cancel_timer("F")
            self._start_timer("K", 0 if self.reliable else self.timers.t4, self._terminate)
        self._user.response_received(self, response)


class InviteServerTransaction(_Transaction):
    """
    RFC 3261 §17.2.1 with RFC 6026's Accepted state: a retransmitted INVITE
    after a 2xx is absorbed instead of looking like a new request.
    """

    __slots__ = ("last_response",)

    def start(self, trying) -> None:
        """
        Enter Proceeding and answer 100 Trying at once: as a proxy we never
        answer within 200 ms ourselves, so waiting would only cost
        retransmissions.
        """
        self.state = State.PROCEEDING
        self.last_response = trying
        self._transmit(trying)

    def respond(self, response) -> None:
        status = response.status
        if self.state is not State.PROCEEDING:
            return
        self.last_response = response
        if not self._transmit(response):
            return
        if status < 200:
            return
        if status < 300:
            self.state = State.ACCEPTED
            self._start_timer("L", 64 * self.timers.t1, self._terminate)
            return
        self.state = State.COMPLETED
        if not self.reliable:
            self._retransmit_after(self.timers.t1)
        self._start_timer("H", 64 * self.timers.t1, self._timer_h)

    def _retransmit_after(self, interval: float) -> None:
        def timer_g():
            if self.state is State.COMPLETED and self._transmit(self.last_response):
                self._retransmit_after(min(interval * 2, self.timers.t2))

        self._start_timer("G", interval, timer_g)

    def _timer_h(self) -> None:
        if self.state is State.COMPLETED:
            self._terminate()
            self._user.timed_out(self)

    def receive_request(self, request) -> None:
        """
        A retransmission of the INVITE, or the ACK for a non-2xx final.
        """
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel_timer("G")
                self._cancel_timer("H")
                self._start_timer("I", 0 if self.reliable else self.timers.t4, self._terminate)
            return
        if self.state in (State.PROCEEDING, State.COMPLETED):
            self._transmit(self.last_response)


class NonInviteServerTransaction(_Transaction):
    """
    RFC 3261 §17.2.2.

    In Completed (Timer J: 32 s over UDP) the transaction does nothing but
    answer retransmissions of its request with its final response, and a
    busy registrar holds tens of thousands of them, so that is all it
    keeps: the request is let go, and when the C{send} callable returns
    the octets it sent (the SIP transport's does) the response is kept as
    those octets, a fifth of the memory of the parsed message, and parsed
    again only when a retransmission asks for it, into a message that is
    sent as the same octets.

    @param timer_j: a L{FixedDelayQueue} of 64*T1 shared by the layer's
        transactions, or L{None} for a clock call of this one's own.
    """

    __slots__ = ("_response", "_sent", "_timer_j")

    def __init__(
        self, request, send, clock, user, reliable=False, timers=Timers(), *, key=None, timer_j=None
    ) -> None:
        super().__init__(request, send, clock, user, reliable, timers, key=key)
        self._response = None
        self._sent = None
        self._timer_j = timer_j

    @property
    def last_response(self):
        """
        The response sent last, or L{None} before the first.
        """
        if self._response is None and self._sent is not None:
            try:
                return parse_message(self._sent)
            except SIPParseError as error:
                self.log.error("a response this server sent does not parse again: {reason}", reason=error.reason)
                return None
        return self._response

    def start(self) -> None:
        self.state = State.TRYING
        self._response = None

    def respond(self, response) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._response = response
        try:
            sent = self._send(response)
        except OSError as error:
            self._transmit_failed(error)
            return
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self.key
        self.request = None
        if isinstance(sent, bytes):
            self._sent = sent
            self._response = None
        else:
            compact = getattr(getattr(response, "headers", None), "compact", None)
            if compact is not None:
                compact()
        if self.reliable:
            self._start_timer("J", 0, self._terminate)
        elif self._timer_j is not None:
            self._timer_j.call_later(self._terminate)
        else:
            self._start_timer("J", 64 * self.timers.t1, self._terminate)

    def receive_request(self, request) -> None:
        if self.state in (State.PROCEEDING, State.COMPLETED):
            response = self.last_response
            if response is not None:
                self._transmit(response)


def transaction_key(message) -> tuple:
    """
    The RFC 3261 §17.2.3 key: branch, sent-by, and the method with ACK
    matching its INVITE.  Used for server transactions (requests) and,
    with the CSeq method, for client transactions (responses).
    """
    method = cseq_method(message)
    if method == "ACK":
        method = "INVITE"
    return (branch_of(message), sent_by_of(message), method)


MAGIC_COOKIE = "z9hG4bK"


class TransactionLayer:
    """
    Matches incoming messages to transactions and keeps the table.

    @param user: the transaction user: C{request_received(request, flow,
        transaction)} for each new request (the transaction is L{None} for
        an ACK that matched nothing, i.e. the ACK of a 2xx), and
        C{stray_response(response, flow)} for responses that match no
        client transaction; plus the per-transaction callbacks
        C{response_received}, C{timed_out}, C{transport_error}.
    @param max_transactions: a bound on the table; past it new requests
        are refused by the caller with 503 (see L{full}).
    """

    log = Logger()

    def __init__(self, clock, user, *, timers: Timers = Timers(), max_transactions: int = 100_000):
        self._clock = clock
        self._user = user
        self.timers = timers
        self.max_transactions = max_transactions
        self._server: dict[tuple, _Transaction] = {}
        self._client: dict[tuple, _Transaction] = {}
        # One bound method for every server transaction, not one each.
        self._forget_server_call = self._forget_server
        # Every completed non-INVITE server transaction waits out the same
        # Timer J: one queue and one clock call for all of them.
        self._timer_j = FixedDelayQueue(clock, 64 * timers.t1)

    @property
    def full(self) -> bool:
        return len(self._server) + len(self._client) >= self.max_transactions

    def counts(self) -> tuple[int, int]:
        """
        The numbers of live server and client transactions.
        """
        return len(self._server), len(self._client)

    def server_transaction(self, request):
        return self._server.get(transaction_key(request))

    def receive_request(self, request, flow, send, reliable: bool, trying=None) -> None:
        """
        An incoming request: absorbed by its transaction, or a new one
        created (with C{trying} sent for an INVITE) and handed to the user.
        """
        branch = branch_of(request)
        if not branch.startswith(MAGIC_COOKIE):
            # RFC 2543 peers have no usable branch; their requests are
            # handled without transaction matching (no absorption).
            self._user.request_received(request, flow, None)
            return
        key = transaction_key(request)
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_request(request)
            return
        if request.method == "ACK":
            self._user.request_received(request, flow, None)
            return
        if request.method == "INVITE":
            transaction = InviteServerTransaction(
                request, send, self._clock, self._user, reliable, self.timers, key=key
            )
        else:
            transaction = NonInviteServerTransaction(
                request, send, self._clock, self._user, reliable, self.timers, key=key, timer_j=self._timer_j
            )
        self._server[key] = transaction
        transaction.on_terminated = self._forget_server_call
        transaction.flow = flow
        if request.method == "INVITE":
            transaction.start(trying(request))
        else:
            transaction.start()
        self._user.request_received(request, flow, transaction)

    def _forget_server(self, transaction) -> None:
        self._server.pop(transaction.key, None)

    def invite_for_cancel(self, cancel):
        """
        The INVITE server transaction a CANCEL refers to (same branch and
        sent-by, RFC 3261 §9.2), or L{None}.
        """
        return self._server.get((branch_of(cancel), sent_by_of(cancel), "INVITE"))

    def send_request(self, request, send, reliable: bool, user, build_ack=None):
        """
        Start a client transaction for C{request} (its top Via carries a
        fresh branch); C{user} gets its responses.
        """
        if request.method == "INVITE":
            transaction = InviteClientTransaction(
                request, send, self._clock, user, reliable, self.timers, build_ack=build_ack
            )
        else:
            transaction = NonInviteClientTransaction(request, send, self._clock, user, reliable, self.timers)
        key = (branch_of(request), cseq_method(request))
        self._client[key] = transaction
        transaction.on_terminated = lambda t: self._client.pop(key, None)
        transaction.start()
        return transaction

    def receive_response(self, response, flow) -> None:
        key = (branch_of(response), cseq_method(response))
        transaction = self._client.get(key)
        if transaction is None:
            self._user.stray_response(response, flow)
            return
        transaction.receive_response(response)
