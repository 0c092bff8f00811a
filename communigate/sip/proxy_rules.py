"""
The pure rules of the stateful proxy (RFC 3261 §16): a request checked,
turned into a Signal and back into the requests that go out; responses
carried both ways.  No Twisted, no I/O, no clock.  The SIP service core
calls these from its server objects (request in, Signal out, responses
back) and its client objects (Signal in, request out, responses back).

Decisions [D]:

- `check_request` follows §16.3 in order: a Request-URI that is not
  sip/sips/tel gets 416, Max-Forwards 0 gets 483, a loop 482, unknown
  ``Proxy-Require`` tags 420 with ``Unsupported``.  ``Require`` is
  end-to-end and a proxy passes it through.  With ``for_us=True`` (a request
  the core answers itself, such as OPTIONS to our own host) only the scheme and
  ``Require`` are checked (§8.2.2.3).  The core never answers an ACK: it
  drops an ACK that gets a response here.
- Loop detection (§16.3 step 4, §16.6 step 8): our branch is ``z9hG4bKcg``,
  then 20 hex digits of a hash, then ``.`` and the branch index.  The hash
  covers ``our_id``, the Request-URI and the Route values as received,
  the To and From tags, the Call-ID, the CSeq number, ``Proxy-Require``,
  ``Proxy-Authorization``, and the sent-by and branch of the topmost Via
  received.  On a looped request our Via is no longer topmost.  So each of
  our Vias is checked against the Via just below it, which was topmost
  when we forwarded the request.  A true loop recomputes the same hash; a
  spiral (the Request-URI retargeted, a Route changed) does not.  That is
  why forwarded requests keep every received Via under ours, and why the
  core calls `branch_for` on the request *as received*.
- Route pre-processing (§16.4, `preprocess_route`): if the Request-URI is
  one we record-route with (our host, no user, ``lr``) and Route values are
  present, a strict router sent the request, so the last Route value
  replaces the Request-URI.  Then the leading Route values that are ours
  are popped: a SIP URI whose (host, port) is in ``local_hosts``, or whose
  host is a local domain on any port.
- A Signal's target is always the Request-URI text, which is the target
  set of §16.5 for a request we are not responsible for.  If Route values
  remain after ours are popped, the request is pre-routed: the Signal is
  ``in_dialog`` (Signal Rules do not apply) and the core delivers it to
  `next_hop` without the Router.  The Router reads only addresses with a
  user part (``sip:p2.example.net;lr`` has none), and it rebuilds SIP URIs
  without their port or parameters.  ``in_dialog`` is also set when To has
  a tag.
- The Signal's headers are the request's headers, in order, Vias included,
  because a forwarded request must carry them (§16.6 step 8) and loop
  detection depends on them.  Content-Type moves to ``content_type``.
  Max-Forwards is kept as received; `outgoing_request` decrements it, or
  writes 70 when it is absent.
- Record-Route (`needs_record_route`): always for an initial INVITE,
  SUBSCRIBE or REFER (no To tag), whatever the NAT or transports, so that
  every in-dialog request follows the dialog through us.  Never for other
  requests.  The core gives one value, or two for RFC 5658 double
  record-routing; ``lr`` is added when it is missing.
- To tags of responses we make ourselves (`server_to_tag`) are 16 hex
  digits of a hash over the request's raw From, Call-ID, CSeq and first Via
  line.  Retransmissions, and every response we make to one request, get
  the same tag; the hash also works on a `SIPParseError.partial`.  A 100
  gets no tag.
- Relaying (`relay_verdict`): ALLOW for an authenticated caller, and for
  an in-dialog request (To tag) whose top Route is ours (the dialog was
  authorised when we record-routed it).  ALLOW from a trusted source (a
  Client IP of the Network settings: a PBX or gateway on the LAN) to a
  Request-URI that is not ours, without authentication.  CHALLENGE (407,
  whose digest the core does) when the From host is a local domain.
  ALLOW from outside to a local Request-URI host.  DENY (403 "Relaying
  denied") from outside to outside, tel: targets included.  A forged Route
  with a To tag gets past this check; signing Record-Route values would
  close that.  For an ACK, anything but ALLOW means the core drops it.
- The core may remove the Proxy-Authorization of its own realm (§22.3).
  If it does, it computes `branch_for` on the request first.
- A malformed Route, From or To raises `HeaderError` from these functions
  (the message parser checks only Via, From, To, Call-ID, CSeq and
  Max-Forwards).  The core answers such a request 400, naming the header.
"""

from __future__ import annotations

import enum
import hashlib

from communigate.routing.addresses import Address, AddressError, parse_address, sip_uri
from communigate.signal import model
from communigate.signal.model import DEFAULT_LIFETIME, Signal, Submitter
from communigate.sip.headers import (
    MAGIC_COOKIE,
    HeaderError,
    NameAddr,
    Via,
    canonical_name,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
)
from communigate.sip.message import Headers, Request, Response, make_response
from communigate.sip.uri import URI, SIPURI, TelURI, parse_uri

__all__ = [
    "DIALOG_CREATING",
    "DEFAULT_MAX_FORWARDS",
    "RELAY_DENIED",
    "Relay",
    "check_request",
    "refuse",
    "server_to_tag",
    "branch_for",
    "is_looping",
    "preprocess_route",
    "to_signal",
    "next_hop",
    "outgoing_request",
    "cancel_for",
    "ack_for_failure",
    "signal_response",
    "sip_response",
    "needs_record_route",
    "caller_is_local",
    "relay_verdict",
]

DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
DEFAULT_MAX_FORWARDS = 70
RELAY_DENIED = "Relaying denied"
_BRANCH_PREFIX = MAGIC_COOKIE + "cg"
# Headers sip_response takes from the original request, never from a Signal response.
_REQUEST_OWNED = frozenset({"via", "from", "to", "call-id", "cseq", "content-type"})


# ----------------------------------------------------------- local names
def _domain_test(local_domains):
    """``local_domains`` may be a predicate or a collection of names."""
    if callable(local_domains):
        return local_domains
    names = frozenset(name.lower() for name in local_domains)
    return names.__contains__


def _is_local_host(host: str, port: int | None, local_hosts, secure: bool = False) -> bool:
    """Whether (host, port) is one of ours.  A missing port is 5060 (5061
    when secure); an entry of ``local_hosts`` with port None matches any."""
    host = host.lower()
    if port is None:
        port = 5061 if secure else 5060
    return any(
        h.strip("[]").lower() == host and (p is None or p == port) for h, p in local_hosts
    )


def _is_ours(uri, local_hosts, is_domain) -> bool:
    return isinstance(uri, SIPURI) and (
        _is_local_host(uri.host, uri.port, local_hosts, uri.secure) or is_domain(uri.host.lower())
    )


def _digest(*parts: str) -> str:
    text = "\x00".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.sha256(text).hexdigest()


def _tag_of(address: NameAddr | None) -> str:
    return "" if address is None or address.tag is None else address.tag


# ------------------------------------------------------------ validation
def server_to_tag(request: Request) -> str:
    """The To tag of every response we make to ``request`` ourselves."""
    h = request.headers
    via = h.raw_values("Via")
    parts = [h.get(name) or "" for name in ("From", "Call-ID", "CSeq")]
    return _digest(*parts, via[0] if via else "")[:16]


def refuse(request: Request, status: int, reason: str | None = None, headers=()) -> Response:
    """A response of our own to ``request``, with the stable To tag."""
    tag = None if status == 100 else server_to_tag(request)
    return make_response(request, status, reason, to_tag=tag, headers=headers)


def _unsupported(request: Request, header: str, supported) -> Response | None:
    tags = [t for t in request.headers.get_all(header) if t.lower() not in supported]
    if not tags:
        return None
    return refuse(request, 420, headers=[("Unsupported", ", ".join(tags))])


def check_request(
    request: Request, *, local_hosts, our_id: str, for_us: bool = False, supported=()
) -> Response | None:
    """The response §16.3 calls for, or None when the request may go on.

    ``local_hosts``: our (host, port) sent-by values; ``our_id``: the
    secret `branch_for` mixes in; ``supported``: option tags we know.
    """
    if not isinstance(request.uri, (SIPURI, TelURI)):
        return refuse(request, 416)
    supported = {tag.lower() for tag in supported}
    if for_us:
        return _unsupported(request, "Require", supported)
    if request.max_forwards() == 0:
        return refuse(request, 483)
    if is_looping(request, local_hosts, our_id):
        return refuse(request, 482)
    return _unsupported(request, "Proxy-Require", supported)


# -------------------------------------------------------- loop detection
def _loop_hash(request: Request, our_id: str, received_top: Via | None) -> str:
    h = request.headers
    cseq = request.cseq()
    try:
        routes = ",".join(str(route) for route in request.routes())
    except HeaderError:
        routes = ",".join(h.raw_values("Route"))
    top = "" if received_top is None else (
        f"{received_top.host.lower()}:{received_top.port}/{received_top.branch}"
    )
    return _digest(
        our_id,
        str(request.uri),
        routes,
        _tag_of(request.to()),
        _tag_of(request.from_()),
        request.call_id or "",
        "" if cseq is None else str(cseq.number),
        ",".join(tag.lower() for tag in h.get_all("Proxy-Require")),
        "\n".join(h.raw_values("Proxy-Authorization")),
        top,
    )[:20]


def branch_for(request: Request, our_id: str, index: int = 0) -> str:
    """The branch of our Via on the ``index``-th request forwarded for
    ``request`` (as received): one per fork, 3xx recursion or failover."""
    return f"{_BRANCH_PREFIX}{_loop_hash(request, our_id, request.top_via())}.{index}"


def is_looping(request: Request, local_hosts, our_id: str) -> bool:
    """True when a Via of ours carries the hash this request gives again."""
    vias = request.vias()
    for i, via in enumerate(vias):
        branch = via.branch or ""
        if not branch.startswith(_BRANCH_PREFIX):
            continue
        if not _is_local_host(via.host, via.port, local_hosts, via.transport == "TLS"):
            continue
        below = vias[i + 1] if i + 1 < len(vias) else None
        if branch[len(_BRANCH_PREFIX):].partition(".")[0] == _loop_hash(request, our_id, below):
            return True
    return False


# --------------------------------------------------- request -> Signal
def _with_routes(headers: Headers, routes) -> Headers:
    if not routes:
        return headers.without("Route")
    return headers.with_replaced("Route", ", ".join(str(route) for route in routes))


def preprocess_route(request: Request, *, local_hosts=(), local_domains=()) -> Request:
    """§16.4: undo a strict router's rewrite, then pop our Route values."""
    is_domain = _domain_test(local_domains)
    routes = request.routes()
    uri = request.uri
    if routes and isinstance(uri, SIPURI) and uri.user is None and uri.lr and _is_ours(
        uri, local_hosts, is_domain
    ):
        last = routes[-1].uri
        routes = routes[:-1]
        request = request.with_uri(
            last.without_headers() if isinstance(last, SIPURI) else last
        ).with_headers(_with_routes(request.headers, routes))
    headers = request.headers
    for route in routes:
        if not _is_ours(route.uri, local_hosts, is_domain):
            break
        headers = headers.without_first("Route")
    return request if headers is request.headers else request.with_headers(headers)


def _email(uri: URI) -> str:
    """``user@host`` as the Router reads it; the URI text when it is no address."""
    try:
        address = parse_address(str(uri))
    except AddressError:
        return str(uri)
    return address.email() if isinstance(address, Address) else str(uri)


def to_signal(
    request: Request,
    *,
    submitter: Submitter,
    local_hosts=(),
    local_domains=(),
    lifetime: float = DEFAULT_LIFETIME,
) -> Signal:
    """The Signal for a request that passed `check_request` (see [D])."""
    request = preprocess_route(request, local_hosts=local_hosts, local_domains=local_domains)
    headers = request.headers
    to = request.to()
    return Signal(
        method=request.method,
        targets=(str(request.uri),),
        from_address=_email(request.from_().uri),
        to_address=_email(to.uri),
        call_id=request.call_id,
        submitter=submitter,
        headers=headers.without("Content-Type").items(),
        body=request.body,
        content_type=headers.get("Content-Type"),
        in_dialog=to.tag is not None or "Route" in headers,
        lifetime=lifetime,
    )


def next_hop(signal: Signal) -> URI:
    """Where a pre-routed Signal goes: its first Route URI, else its target."""
    for name, value in signal.headers:
        if name.lower() == "route":
            return parse_name_addr_list(value, "Route")[0].uri
    return parse_uri(signal.targets[0])


# --------------------------------------------------- Signal -> request
def _name_addr(text: str) -> str:
    """``<sip:...>`` for an address in e-mail form, ``<uri>`` for a URI."""
    try:
        address = parse_address(text)
        if isinstance(address, Address) and address.domain is not None:
            return f"<{sip_uri(address)}>"
    except AddressError:
        pass
    return f"<{text}>"


def _complete(headers: Headers, signal: Signal) -> Headers:
    """From, To, Call-ID and CSeq for a Signal that another protocol made."""
    if "From" not in headers:
        tag = _digest(signal.call_id, signal.from_address)[:10]
        headers = headers.with_added("From", f"{_name_addr(signal.from_address)};tag={tag}")
    if "To" not in headers:
        headers = headers.with_added("To", _name_addr(signal.to_address))
    if "Call-ID" not in headers:
        headers = headers.with_added("Call-ID", signal.call_id)
    if "CSeq" not in headers:
        headers = headers.with_added("CSeq", f"1 {signal.method}")
    return headers


def _to_tag(headers: Headers) -> str | None:
    try:
        return parse_name_addr(headers.get("To", ""), "To").tag
    except HeaderError:
        return None


def _record_route_value(value: str) -> str:
    address = parse_name_addr(value, "Record-Route")
    if isinstance(address.uri, SIPURI) and not address.uri.lr:
        address = address.with_uri(address.uri.with_parameter("lr"))
    return str(address)


def outgoing_request(
    signal: Signal,
    *,
    target_uri: URI | str,
    via: Via,
    record_route=None,
    route_set=(),
    max_forwards: int = DEFAULT_MAX_FORWARDS,
) -> Request:
    """The request a client object sends for ``signal`` to ``target_uri``.

    ``via`` is ours (with a `branch_for` branch) and goes on top of the
    Signal's Vias.  ``route_set`` (a binding's Path: NameAddrs or text) comes
    before the Signal's Route values.  A top Route without ``lr`` is a strict
    router, handled as §16.6 step 6 says.  ``record_route`` (one value or a
    sequence of them) is put on top of Record-Route for an initial
    INVITE/SUBSCRIBE/REFER.  Max-Forwards is the Signal's value minus one, or
    ``max_forwards`` when the Signal has none.
    """
    uri = parse_uri(target_uri) if isinstance(target_uri, str) else target_uri
    headers = _complete(Headers(signal.headers).without("Content-Type"), signal)
    try:
        received = parse_max_forwards(headers.get("Max-Forwards", ""))
        hops = max(received - 1, 0)
    except HeaderError:
        hops = max_forwards
    headers = headers.with_replaced("Max-Forwards", str(hops))

    routes = [str(route) for route in route_set] + headers.get_all("Route")
    if routes:
        first = parse_name_addr(routes[0], "Route").uri
        if isinstance(first, SIPURI) and not first.lr:
            routes = routes[1:] + [f"<{uri}>"]
            uri = first.without_headers()
    headers = _with_routes(headers, routes)

    if record_route and signal.method in DIALOG_CREATING and _to_tag(headers) is None:
        values = [record_route] if isinstance(record_route, str) else list(record_route)
        values = [_record_route_value(value) for value in values]
        values += headers.raw_values("Record-Route")
        headers = headers.with_replaced("Record-Route", ", ".join(values))

    headers = headers.with_added("Via", str(via), first=True)
    return Request(signal.method, uri, headers).with_body(signal.body, signal.content_type)


def _in_transaction_headers(request: Request, method: str, to: str | None) -> list:
    """Top Via, From, To, Call-ID, CSeq with ``method``, Max-Forwards, Route:
    the headers of a CANCEL (§9.1) and of an ACK to a failure (§17.1.1.3)."""
    h = request.headers
    items = [
        ("Via", str(request.top_via())),
        ("From", h.get("From")),
        ("To", to if to is not None else h.get("To")),
        ("Call-ID", h.get("Call-ID")),
        ("CSeq", f"{request.cseq().number} {method}"),
        ("Max-Forwards", str(DEFAULT_MAX_FORWARDS)),
    ]
    return items + [("Route", value) for value in h.raw_values("Route")]


def cancel_for(request: Request) -> Request:
    """The CANCEL of a request we sent (same branch, so it is matched)."""
    return Request("CANCEL", request.uri, _in_transaction_headers(request, "CANCEL", None))


def ack_for_failure(request: Request, response: Response) -> Request:
    """The ACK of a non-2xx final response to an INVITE we sent."""
    to = response.headers.get("To")
    return Request("ACK", request.uri, _in_transaction_headers(request, "ACK", to))


# ------------------------------------------------------------- responses
def _q(contact: NameAddr) -> float:
    try:
        q = contact.q
    except HeaderError:
        return 0.0
    return 1.0 if q is None else q


def signal_response(response: Response, *, origin: str = "") -> model.Response:
    """A downstream response as a Signal response: its headers without our
    Via (on top) and Content-Type; a 3xx's Contact URIs, best q first, as
    ``contacts``."""
    contacts = ()
    if response.status_class == 3:
        try:
            found = [c for c in response.contacts() if isinstance(c, NameAddr)]
        except HeaderError:
            found = []
        contacts = tuple(str(c.uri) for c in sorted(found, key=_q, reverse=True))
    return model.Response(
        code=response.status,
        reason=response.reason,
        headers=response.headers.without_first("Via").without("Content-Type").items(),
        body=response.body,
        content_type=response.content_type,
        contacts=contacts,
        origin=origin,
    )


def sip_response(request: Request, answer: model.Response) -> Response:
    """The response to send upstream for ``request``.

    Via, From, Call-ID and CSeq always come from ``request``.  To is the
    answer's To if that has a tag (a downstream UAS's); otherwise it is the
    request's To with `server_to_tag`.  The answer's other headers follow in
    order.  A 3xx the service made itself gets a Contact for its ``contacts``.
    """
    extra = [(n, v) for n, v in answer.headers if canonical_name(n).lower() not in _REQUEST_OWNED]
    if 300 <= answer.code < 400 and answer.contacts:
        if not any(canonical_name(n) == "Contact" for n, _ in extra):
            extra.append(("Contact", ", ".join(_name_addr(c) for c in answer.contacts)))
    to = next((v for n, v in answer.headers if canonical_name(n) == "To"), None)
    try:
        downstream_tag = to is not None and parse_name_addr(to, "To").tag is not None
    except HeaderError:
        downstream_tag = False
    response = refuse(request, answer.code, answer.reason or None, headers=extra)
    if downstream_tag:
        response = response.with_headers(response.headers.with_replaced("To", to))
    return response.with_body(answer.body, answer.content_type)


# ---------------------------------------------------------------- policy
def needs_record_route(request: Request, source=None, via=None) -> bool:
    """Record-Route every initial INVITE, SUBSCRIBE and REFER (see [D]).
    ``source`` and ``via`` are not used by this policy."""
    return request.method in DIALOG_CREATING and _tag_of(request.to()) == ""


def caller_is_local(request: Request, is_local_domain) -> bool:
    """The From URI is a SIP URI in a local domain."""
    uri = request.from_().uri
    return isinstance(uri, SIPURI) and _domain_test(is_local_domain)(uri.host.lower())


class Relay(enum.Enum):
    """What `relay_verdict` says the core should do with a request."""

    ALLOW = "allow"
    CHALLENGE = "challenge"  # 407 with a digest challenge
    DENY = "deny"  # refuse(request, 403, RELAY_DENIED)


def relay_verdict(
    request: Request,
    *,
    is_local_domain,
    local_hosts=(),
    authenticated: bool = False,
    trusted_source: bool = False,
) -> Relay:
    """Whether the request may go through us (no open relay; see [D]).
    ``trusted_source``: the request comes from a Client IP address."""
    if authenticated:
        return Relay.ALLOW
    is_domain = _domain_test(is_local_domain)
    routes = request.routes()
    if _tag_of(request.to()) and routes and _is_ours(routes[0].uri, local_hosts, is_domain):
        return Relay.ALLOW
    if trusted_source and not _is_ours(request.uri, local_hosts, is_domain):
        return Relay.ALLOW
    if caller_is_local(request, is_domain):
        return Relay.CHALLENGE
    if _is_ours(request.uri, local_hosts, is_domain):
        return Relay.ALLOW
    return Relay.DENY
