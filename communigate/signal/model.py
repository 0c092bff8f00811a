"""
The Signal: one real-time request, whatever protocol submitted it.

SIP is the internal model: a Signal carries what a SIP request does
(method, target, From, To, Call-ID, header fields, body), plus who
submitted it and how long it may live.  XMPP, XIMSS and PBX tasks build
Signals the same way, so one service routes, applies rules and forks for
all of them.
"""

import enum

import attrs

#: How long a Signal may take to get a final response unless it says
#: otherwise: SIP's Timer B/F, 64 * T1.
DEFAULT_LIFETIME = 32.0


class SignalState(enum.Enum):
    """
    Where a Signal is in its processing.
    """

    SUBMITTED = "submitted"
    ROUTED = "routed"
    RULES_APPLIED = "rules applied"
    FORKING = "forking"
    RESPONDED = "responded"


@attrs.frozen
class Submitter:
    """
    Who handed the Signal in.

    @ivar protocol: C{"sip"}, C{"xmpp"}, C{"ximss"}, C{"pbx"}, C{"cli"} ...
    @ivar account: the authenticated account (C{user@domain}) or L{None}.
    @ivar address: the network source, C{(host, port)}, or L{None}.
    """

    protocol: str
    account: str | None = None
    address: tuple[str, int] | None = None


@attrs.frozen
class Signal:
    """
    One request to deliver.

    @ivar targets: the addresses to route, in e-mail form or as URIs
        (C{sip:}, C{tel:}, C{xmpp:}); usually one, the Request-URI.
    @ivar headers: C{(name, value)} pairs, in order, names as received.
    @ivar in_dialog: a request inside an established dialog; Signal Rules
        are not applied to it.
    @ivar lifetime: seconds until the Signal ends with 408 (an INVITE that
        rings lives on: see L{communigate.signal.service.RINGING_LIFETIME}).
    @ivar ring_limit: seconds an INVITE may last in all, ringing or not
        (a caller's own limit, such as a PBX task's C{start_call} expires);
        L{None}: only the lifetime and Timer C bound it.
    """

    method: str
    targets: tuple[str, ...]
    from_address: str
    to_address: str
    call_id: str
    submitter: Submitter
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    in_dialog: bool = False
    lifetime: float = DEFAULT_LIFETIME
    ring_limit: float | None = None

    def header(self, name: str) -> str | None:
        """
        The first value of header field C{name} (any case), or L{None}.
        """
        wanted = name.lower()
        for field, value in self.headers:
            if field.lower() == wanted:
                return value
        return None

    def retargeted(self, targets) -> "Signal":
        """
        This Signal sent to other targets (a redirection, a forwarder).
        """
        return attrs.evolve(self, targets=tuple(targets))


@attrs.frozen
class Response:
    """
    A response to a Signal, in SIP terms.

    @ivar contacts: for a 3xx, the addresses to redirect to.
    @ivar origin: a description of the endpoint that answered, for logs.
    """

    code: int
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_type: str | None = None
    contacts: tuple[str, ...] = ()
    origin: str = ""

    @property
    def provisional(self) -> bool:
        return 100 <= self.code < 200

    @property
    def success(self) -> bool:
        return 200 <= self.code < 300


REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    302: "Moved Temporarily",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    482: "Loop Detected",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}


def response(code: int, reason: str | None = None, **kwargs) -> Response:
    """
    A L{Response} with the standard reason phrase unless one is given.
    """
    return Response(code=code, reason=reason or REASONS.get(code, ""), **kwargs)


def call_type(method: str, content_type: str | None, body: bytes) -> str:
    """
    The Signal Rules' C{CallType}: C{AV} for a call with audio or video,
    C{IM} for a MESSAGE or a session with an IM channel, else empty.
    """
    if method.upper() == "MESSAGE":
        return "IM"
    if method.upper() != "INVITE" or not body:
        return ""
    if content_type and "sdp" not in content_type.lower():
        return ""
    media = {
        line[2:].split(None, 1)[0].lower()
        for line in body.decode("utf-8", "replace").splitlines()
        if line.startswith("m=") and len(line) > 2
    }
    if media & {"audio", "video"}:
        return "AV"
    if "message" in media:
        return "IM"
    return ""


@attrs.frozen
class SignalFacts:
    """
    What Signal Rule conditions look at, gathered once per Signal and
    target by the Signal service.

    @ivar now: the local wall-clock time, for C{Time Of Day} and
        C{Current Day}, from the injected clock.
    @ivar reg_clients: how many endpoints the target account has now.
    @ivar presence: the target account's presence (C{online}, C{away},
        C{busy}, C{offline} ...).
    """

    method: str
    request_uri: str
    from_address: str
    to_address: str
    call_type: str
    authenticated: str | None
    submit_address: str | None
    headers: tuple[tuple[str, str], ...]
    now: object
    reg_clients: int = 0
    presence: str = "offline"

    @classmethod
    def of(cls, signal: Signal, target: str, now, reg_clients=0, presence="offline"):
        address = signal.submitter.address
        return cls(
            method=signal.method.upper(),
            request_uri=target,
            from_address=signal.from_address,
            to_address=signal.to_address,
            call_type=call_type(signal.method, signal.content_type, signal.body),
            authenticated=signal.submitter.account,
            submit_address=None if address is None else address[0],
            headers=signal.headers,
            now=now,
            reg_clients=reg_clients,
            presence=presence,
        )


@attrs.frozen
class Decision:
    """
    What the Signal Rules of one stage decided.

    @ivar reject: end this target with this final response.
    @ivar redirect: replace this target (and stop its branches) with these
        addresses; L{None} when there is no redirection.
    @ivar fork: add branches to these addresses, keeping the others.
    @ivar log: lines the rules asked to write to the log.
    """

    reject: Response | None = None
    redirect: tuple[str, ...] | None = None
    fork: tuple[str, ...] = ()
    log: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.reject is None and self.redirect is None and not self.fork


NOTHING = Decision()
