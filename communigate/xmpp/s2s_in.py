"""
An incoming server-to-server stream (RFC 6120, XEP-0220): another server
opened it to send us stanzas.

  OPENING ──header──▶ SECURING ──<starttls/>──▶ (restart) OPENING
                  └─▶ OPEN: dialback requests, SASL EXTERNAL, and stanzas
                      from the domains they proved
  OPEN ──<auth mechanism='EXTERNAL'/> succeeds──▶ (restart) OPENING
  any state ──stream error / close──▶ CLOSED

Certificates (RFC 6120 13.7.2, XEP-0178): the TLS handshake asks the
peer for its certificate (it may have none).  When it presented one that
verifies against the trust store and names the domain of the stream
header's C{from}, the features after TLS offer SASL C{EXTERNAL} beside
dialback; C{<auth mechanism='EXTERNAL'>} succeeds for an authorization
identity (or, with C{=}, the header's C{from}) the certificate proves,
and the pair (that domain, the header's C{to}) is authenticated without
dialback.  Otherwise C{<failure/>} with the RFC 6120 6.5 condition, and
dialback is still possible.

In OPEN the peer may ask C{<db:result/>} for any number of domain pairs
(its domain, one of ours); each is checked by asking the peer domain's
authoritative server over our own outgoing link to it
(L{S2SService.verify_peer}), and answered C{valid}, C{invalid} (then the
stream is closed) or C{error}.  It may also ask C{<db:verify/>} about a
stream one of our outgoing links opened: we are the authoritative server
and check the key we made.

A stanza is accepted only with a C{from} whose domain the stream proved
for the C{to} domain: otherwise the stream ends with the RFC 6120 stream
error that says why.
"""

from __future__ import annotations

import enum

from twisted.internet.interfaces import ITLSTransport
from twisted.words.protocols.jabber.jid import InvalidFormat
from twisted.words.xish import domish

from communigate.xmpp import dialback, s2s_sasl
from communigate.xmpp.c2s import parse_jid
from communigate.xmpp.dispatch import IQ_TYPES, PRESENCE_TYPES, error_reply
from communigate.xmpp.namespaces import (
    NS_DIALBACK,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_SERVER,
    NS_STREAMS,
    NS_TLS,
    STANZA_KINDS,
)
from communigate.xmpp.parser import StreamOpened
from communigate.xmpp.s2s import S2SFailure, ServerStream, new_stream_id, stream_header, to_client_namespace
from communigate.xmpp.s2s_tls import NO_IDENTITY

#: Dialback requests one stream may have waiting for their verification.
MAX_PENDING_DIALBACKS = 10


class InboundState(enum.Enum):
    OPENING = "opening"
    SECURING = "securing"
    OPEN = "open"
    CLOSED = "closed"


class InboundStream(ServerStream):
    """
    The receiving side of one incoming server connection.

    @ivar stream_id: the id we gave the stream (new after STARTTLS); the
        peer's dialback keys are made for it.
    @ivar authenticated: the C{(remote domain, local domain)} pairs dialback
        proved on this stream.
    """

    direction = "in"

    def __init__(self, service) -> None:
        super().__init__(service)
        self.state = InboundState.OPENING
        self.stream_id: str | None = None
        self.local_domain: str | None = None
        self.header_from: str | None = None
        self.authenticated: set[tuple[str, str]] = set()
        self.stanzas = 0
        self._pending: dict[tuple[str, str], object] = {}
        self._header_sent = False
        self._timer = None
        self._negotiated = False
        #: How each authenticated pair was proved: C{certificate} or C{dialback}.
        self.methods: dict[tuple[str, str], str] = {}
        self.identity = NO_IDENTITY
        self._tls_check = None
        self._identity_read = False
        self._sasl_done = False
        self._awaiting_response = False
        self._sasl_failures = 0

    # -- listing ---------------------------------------------------------------

    @property
    def details(self) -> dict:
        return {
            "Direction": "in",
            "Remote": sorted({remote for remote, _local in self.authenticated})
            or ([self.header_from] if self.header_from else []),
            "Local": sorted({local for _remote, local in self.authenticated})
            or ([self.local_domain] if self.local_domain else []),
            "Address": f"[{self.peer[0]}]:{self.peer[1]}",
            "TLS": "YES" if self.tls else "NO",
            "State": "established" if self.authenticated else self.state.value,
            "Auth": ", ".join(sorted(set(self.methods.values()))),
            "Stanzas": str(self.stanzas),
        }

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        self.service.inbound_opened(self)
        self._arm(self.service.settings.negotiation_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.service.clock.callLater(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self._negotiated:
            self.close("connection-timeout", "the stream did not complete dialback in time")
        else:
            self.log.info("XMPP s2s in stream {peer} idle: closing", peer=self.peer)
            self.end()

    def _active(self) -> None:
        """
        Something useful happened: from now on the stream is timed by the
        idle timeout.
        """
        self._negotiated = True
        self._arm(self.service.settings.s2s_idle_timeout)

    def stream_ended(self) -> None:
        self.state = InboundState.CLOSED
        self._disarm()
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.cancel()

    def connection_gone(self) -> None:
        self.service.inbound_closed(self)

    def before_error(self) -> None:
        self._send_header_once()

    # -- the header ------------------------------------------------------------

    def _send_header_once(self) -> None:
        if self._header_sent:
            return
        self._header_sent = True
        self.stream_id = new_stream_id()
        sender = self.local_domain or self.service.default_domain()
        self.write(stream_header(sender, self.header_from, self.stream_id))

    def header_received(self, header: StreamOpened) -> None:
        if (header.namespace, header.name) != (NS_STREAMS, "stream"):
            self.close("invalid-namespace", "the root element must be stream in the streams namespace")
            return
        if header.content_namespace != NS_SERVER:
            self.close("invalid-namespace", "the content namespace of a server stream is jabber:server")
            return
        sender = dialback.domain_of(header.attributes.get("from"))
        if sender is not None:
            self.header_from = sender
        requested = header.attributes.get("to")
        if requested is not None:
            local = self.service.local_domain(requested)
            if local is None:
                self.close("host-unknown", f"{requested[:100]!r} is not a domain served here")
                return
            self.local_domain = local
        if not _version_supported(header.attributes.get("version", "")):
            self.close("unsupported-version", "this server speaks XMPP 1.0 streams (version='1.0')")
            return
        settings = self.service.settings
        if not settings.s2s:
            self.close("policy-violation", "this server does not accept server-to-server streams")
            return
        if self.tls and self._tls_check is not None and not self._identity_read:
            # The handshake is over once a header arrives through TLS.
            self._identity_read = True
            self.identity = self._tls_check.identity(self.transport)
        self._send_header_once()
        features = domish.Element((NS_STREAMS, "features"))
        if not self.tls and settings.s2s_require_tls:
            features.addElement((NS_TLS, "starttls")).addElement("required")
            self.state = InboundState.SECURING
        else:
            if not self.tls and self.service.tls_context is not None:
                features.addElement((NS_TLS, "starttls"))
            if self.tls and not self._sasl_done and self._certificate_proves(self.header_from):
                features.addChild(s2s_sasl.mechanisms(s2s_sasl.EXTERNAL))
            features.addElement((NS_DIALBACK_FEATURE, "dialback")).addElement("errors")
            self.state = InboundState.OPEN
        self.send_element(features)

    # -- first-level elements --------------------------------------------------

    def element_received(self, element: domish.Element) -> None:
        if element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS:
            if not self.authenticated:
                self.close("not-authorized", "complete dialback before sending stanzas")
            else:
                self._stanza(element)
        elif element.uri == NS_DIALBACK:
            if self.state is InboundState.SECURING:
                self.close("policy-violation", "STARTTLS is required before dialback")
                return
            try:
                request = dialback.read(element)
            except dialback.DialbackFault as fault:
                self.close(fault.condition, fault.text)
                return
            if not request.is_request:
                self.close("unsupported-stanza-type", "dialback answers do not belong on an incoming stream")
            elif request.kind == "result":
                self._dialback_request(request)
            else:
                self._verify_request(request)
        elif element.uri == NS_SASL and self.state is InboundState.OPEN:
            self._sasl(element)
        elif self.state is InboundState.SECURING:
            self.close("policy-violation", "STARTTLS is required before anything else")
        else:
            self.close(
                "unsupported-stanza-type", f"{element.name[:40]!r} in {str(element.uri)[:80]!r} is not expected here"
            )

    def _starttls(self) -> None:
        context = self.service.tls_context
        if self.tls or self.authenticated or self._pending:
            self.close("policy-violation", "STARTTLS is only possible once, before dialback")
            return
        if context is None or not ITLSTransport.providedBy(self.transport):
            self.write(f"<failure xmlns='{NS_TLS}'/>".encode())
            self.log.error("XMPP s2s STARTTLS refused to {peer}: no usable certificate", peer=self.peer)
            self.end()
            return
        self.write(f"<proceed xmlns='{NS_TLS}'/>".encode())
        self._tls_check = self.service.certificates.server()
        self.transport.startTLS(self._tls_check.creator)
        self.tls = True
        self._header_sent = False
        self.state = InboundState.OPENING
        self.restart()

    # -- SASL EXTERNAL (certificates) --------------------------------------------

    def _certificate_proves(self, domain: str | None) -> bool:
        return bool(domain) and self.service.local_domain(domain) is None and self.identity.proves(domain)

    def _sasl(self, element: domish.Element) -> None:
        if self._sasl_done:
            self.close("policy-violation", "SASL is done once per stream")
            return
        if element.name == "abort":
            self._awaiting_response = False
            self._sasl_failed("aborted", "the peer aborted SASL")
            return
        if (element.name == "response") != self._awaiting_response:
            self._awaiting_response = False
            self._sasl_failed("malformed-request", f"{element.name[:40]!r} was not expected now")
            return
        self._awaiting_response = False
        try:
            request = s2s_sasl.read_external(element)
        except s2s_sasl.SASLFault as fault:
            self._sasl_failed(fault.condition, fault.text)
            return
        if self._pending:
            # A success restarts the stream, and the dialback answers still
            # due belong to this one.
            self._sasl_failed("malformed-request", "SASL while dialback requests are being checked")
            return
        if request.authzid is None:
            self._awaiting_response = True
            self.send_element(s2s_sasl.challenge())
            return
        self._external(request.authzid)

    def _external(self, authzid: str) -> None:
        requested = dialback.domain_of(authzid) if authzid else self.header_from
        local = self.local_domain
        if requested is None or local is None:
            self._sasl_failed("not-authorized", "no domain to authenticate (authorization identity, from and to)")
            return
        if not self._certificate_proves(requested):
            self._sasl_failed("not-authorized", f"the certificate does not prove {requested[:100]!r}")
            return
        pair = (requested, local)
        self.authenticated.add(pair)
        self.methods[pair] = "certificate"
        self.service.metrics.auth("in", "certificate", "ok")
        self.log.info(
            "XMPP s2s in {peer}: {remote} authenticated by certificate (SASL EXTERNAL) for {local}",
            peer=self.peer,
            remote=requested,
            local=local,
        )
        self.send_element(s2s_sasl.success())
        self._sasl_done = True
        self._header_sent = False
        self.state = InboundState.OPENING
        self.restart()
        self._active()

    def _sasl_failed(self, condition: str, text: str) -> None:
        self.service.metrics.auth("in", "certificate", "failed")
        self.log.info(
            "XMPP s2s in {peer}: SASL refused with {condition}: {text} ({why})",
            peer=self.peer,
            condition=condition,
            text=text,
            why=self.identity.why_not(self.header_from or "?") if condition == "not-authorized" else "",
        )
        self.send_element(s2s_sasl.failure(condition))
        self._sasl_failures += 1
        if self._sasl_failures >= self.service.settings.max_auth_failures:
            self.close("policy-violation", f"{self._sasl_failures} SASL failures")

    # -- dialback ---------------------------------------------------------------

    def _dialback_request(self, request: dialback.DialbackElement) -> None:
        local = self.service.local_domain(request.recipient)
        if local is None:
            self.close("host-unknown", f"{request.recipient[:100]!r} is not a domain served here")
            return
        remote = request.sender
        if self.service.local_domain(remote) is not None:
            self.close("invalid-from", f"{remote[:100]!r} is a domain of this server")
            return
        pair = (remote, local)
        if pair in self.authenticated:
            self.send_element(dialback.result_answer(request.recipient, remote, dialback.VALID))
            return
        if pair in self._pending:
            self.service.metrics.dropped("dialback request repeated while one is checked")
            self.log.info("XMPP s2s in {peer}: repeated dialback request for {pair} ignored", peer=self.peer, pair=pair)
            return
        if len(self._pending) >= MAX_PENDING_DIALBACKS:
            self.close("policy-violation", f"more than {MAX_PENDING_DIALBACKS} dialback requests at once")
            return
        # Asked as the domain the peer named (maybe an alias of ours): its
        # key was made for that name.
        d = self.service.verify_peer(request.recipient, remote, self.stream_id, request.key)
        self._pending[pair] = d
        d.addCallbacks(self._verified, self._not_verified, callbackArgs=(pair, request), errbackArgs=(pair, request))

    def _verified(self, outcome: str, pair, request: dialback.DialbackElement) -> None:
        self._pending.pop(pair, None)
        if self.closed:
            return
        remote, _local = pair
        self.service.metrics.dialback("incoming", outcome)
        self.send_element(dialback.result_answer(request.recipient, remote, outcome))
        self.service.metrics.auth("in", "dialback", "ok" if outcome == dialback.VALID else "failed")
        if outcome == dialback.VALID:
            self.authenticated.add(pair)
            self.methods.setdefault(pair, "dialback")
            self.log.info(
                "XMPP s2s in {peer}: {remote} authenticated by dialback for {local}",
                peer=self.peer,
                remote=remote,
                local=request.recipient,
            )
            self._active()
        else:
            self.close("not-authorized", f"the dialback key of {remote[:100]!r} is not valid")

    def _not_verified(self, failure, pair, request: dialback.DialbackElement) -> None:
        self._pending.pop(pair, None)
        if self.closed or _cancelled(failure):
            return
        if failure.check(S2SFailure) is None:
            self.log.failure("XMPP s2s dialback check failed", failure)
            self.close("internal-server-error", "the dialback key could not be checked")
            return
        self.service.metrics.dialback("incoming", "error")
        self.send_element(dialback.result_answer(request.recipient, pair[0], dialback.ERROR, failure.value.condition))
        self.log.info(
            "XMPP s2s in {peer}: cannot check {remote}'s key: {error}",
            peer=self.peer,
            remote=pair[0],
            error=failure.value.text,
        )

    def _verify_request(self, request: dialback.DialbackElement) -> None:
        if self.service.local_domain(request.recipient) is None:
            self.close("host-unknown", f"{request.recipient[:100]!r} is not a domain served here")
            return
        outcome = self.service.check_key(
            request.key, receiving=request.sender, originating=request.recipient, stream_id=request.stream_id
        )
        self.service.metrics.dialback("authoritative", outcome)
        self.send_element(dialback.verify_answer(request.recipient, request.sender, request.stream_id, outcome))
        if not self.authenticated:
            self._active()

    # -- stanzas -----------------------------------------------------------------

    def _stanza(self, element: domish.Element) -> None:
        sender, target = element.getAttribute("from"), element.getAttribute("to")
        if not sender or not target:
            self.close("improper-addressing", "a stanza between servers needs from and to")
            return
        try:
            sender_jid, target_jid = parse_jid(sender), parse_jid(target)
        except InvalidFormat:
            self.close("improper-addressing", "the from or to of a stanza is not a valid JID")
            return
        local = self.service.local_domain(target_jid.host)
        if local is None:
            self.close("host-unknown", f"{target_jid.host[:100]!r} is not a domain served here")
            return
        if (sender_jid.host, local) not in self.authenticated:
            self.close(
                "invalid-from", f"{sender_jid.host[:100]!r} has not been authenticated for {target_jid.host[:100]!r}"
            )
            return
        self.stanzas += 1
        self.service.metrics.stanza("in", element.name)
        self._active()
        stanza = to_client_namespace(element)
        problem = stanza_problem(stanza)
        if problem is not None:
            if stanza.getAttribute("type") != "error":
                self.service.route_remote(error_reply(stanza, "bad-request", problem))
            else:
                self.service.metrics.dropped("malformed error stanza from a server")
            return
        try:
            self.service.deliver_inbound(stanza)
        except Exception:
            self.log.failure("XMPP s2s: delivering a stanza from {peer} failed", peer=self.peer)
            if stanza.getAttribute("type") not in ("error", "result"):
                self.service.route_remote(error_reply(stanza, "internal-server-error"))


def stanza_problem(element: domish.Element) -> str | None:
    """
    What is wrong with the type and shape of a stanza, or L{None}.
    """
    kind, kind_type = element.name, element.getAttribute("type")
    if kind == "iq":
        if kind_type not in IQ_TYPES:
            return "an IQ's type must be get, set, result or error"
        if not element.getAttribute("id"):
            return "an IQ needs an id"
        if kind_type in ("get", "set") and len(list(element.elements())) != 1:
            return "an IQ get or set has exactly one child element"
    elif kind == "presence" and kind_type is not None and kind_type not in PRESENCE_TYPES:
        return f"{kind_type[:20]!r} is not a presence type"
    return None


def _version_supported(version: str) -> bool:
    major, dot, minor = version.partition(".")
    return bool(dot) and major.isdigit() and minor.isdigit() and int(major) >= 1


def _cancelled(failure) -> bool:
    from twisted.internet.defer import CancelledError

    return failure.check(CancelledError) is not None
