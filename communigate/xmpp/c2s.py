"""
One client-to-server XMPP stream (RFC 6120): header checks, STARTTLS,
SASL, resource binding, then stanzas into the dispatch table.

The stream is an explicit machine over L{StreamState}:

  OPENING ──header──▶ SECURING ──<starttls/>──▶ (restart) OPENING
                  └─▶ AUTHENTICATING ──<auth/> … portal──▶ (restart) OPENING
                  └─▶ BINDING ──bind IQ──▶ ESTABLISHED
  any state ──stream error / close──▶ CLOSED

Which state the header leads to depends on what has been negotiated: TLS
first (when the XMPP setting C{RequireTLS} says so), then SASL, then the
resource.  The XML is parsed by the sans-IO L{StreamParser}, SASL is done
by the sans-IO mechanisms of L{communigate.xmpp.sasl}; the class here only
sequences them, checks stanzas, and talks to the transport and the
portal.  The stream logs in to the core with C{portal.login(credentials,
self, IAccount)}: the stream is the mind, and logs out when it ends.

Once bound, the stream is the resource's L{IXMPPSession}.
"""

from __future__ import annotations

import enum
import functools
import os
from xml.sax.saxutils import quoteattr

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StreamError
from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IXMPPSession
from communigate.xmpp import sasl
from communigate.xmpp.dispatch import IQ_TYPES, PRESENCE_TYPES, Stanza, error_reply
from communigate.xmpp.namespaces import (
    NS_BIND,
    NS_CLIENT,
    NS_SASL,
    NS_SESSION,
    NS_STREAMS,
    NS_TLS,
    STANZA_KINDS,
)
from communigate.xmpp.parser import ElementReceived, StreamClosed, StreamFault, StreamOpened, StreamParser
from communigate.xmpp.sessions import ResourceLimitReached

_PREFIXES = {NS_STREAMS: "stream"}

#: RFC 7622 section 3: each part of a JID is at most 1023 bytes.
_JID_PART_LIMIT = 1023


class StreamState(enum.Enum):
    OPENING = "opening"
    SECURING = "securing"
    AUTHENTICATING = "authenticating"
    AUTHORIZING = "authorizing"
    BINDING = "binding"
    ESTABLISHED = "established"
    CLOSED = "closed"


def parse_jid(text: str) -> JID:
    """
    A JID from a stanza attribute.

    Preparing a JID (stringprep of three parts) costs some 70 us, and a
    message is addressed several times on its way, so the JIDs of short
    addresses are kept in a bounded cache (JIDs are immutable values).

    @raise InvalidFormat: it is not a valid JID, or a part is too long.
    """
    if len(text) <= _CACHED_JID_LENGTH:
        return _cached_jid(text)
    return _prepared_jid(text)


#: Addresses up to this long are cached by L{parse_jid}, at most
#: L{_CACHED_JIDS} of them (the least recently used go first).
_CACHED_JID_LENGTH = 256
_CACHED_JIDS = 4096


def _prepared_jid(text: str) -> JID:
    try:
        parsed = JID(text)
    except (UnicodeError, ValueError, IndexError) as e:
        # IndexError: twisted's nameprep on an empty label ("a@b..c").
        raise InvalidFormat(str(e) or "a JID part is empty") from None
    for part in (parsed.user, parsed.host, parsed.resource):
        if part is not None and len(part.encode("utf-8")) > _JID_PART_LIMIT:
            raise InvalidFormat("a JID part is longer than 1023 bytes")
    return parsed


_cached_jid = functools.lru_cache(maxsize=_CACHED_JIDS)(_prepared_jid)


def prepared_resource(text: str) -> str:
    """
    The resourceprep'ed form of a requested resource.

    @raise InvalidFormat: it is empty after preparation, or invalid.
    """
    from twisted.words.protocols.jabber.xmpp_stringprep import resourceprep

    try:
        resource = resourceprep.prepare(text)
    except (UnicodeError, ValueError):
        raise InvalidFormat("the resource has characters RFC 6122 forbids") from None
    if not resource or len(resource.encode("utf-8")) > _JID_PART_LIMIT:
        raise InvalidFormat("the resource must be 1 to 1023 bytes")
    return resource


@implementer(IXMPPSession)
class ClientStream(Protocol):
    """
    The server side of one client connection.

    @ivar service: the L{communigate.xmpp.service.XMPPService} that owns it.
    @ivar state: a L{StreamState}.
    @ivar jid: the full JID once bound, else L{None}.
    @ivar account: the canonical account name once authenticated.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self.service = service
        self.state = StreamState.OPENING
        self.jid: JID | None = None
        self.account: str | None = None
        self.priority = 0
        self.available = False
        self.peer = ("", 0)
        self.started = 0.0
        self.tls = False
        self.mechanism: str | None = None
        self.domain: str | None = None
        self._header_sent = False
        self._parser: StreamParser | None = None
        self._exchange: sasl.SASLMechanism | None = None
        self._failures = 0
        self._logout = None
        self._timeout = None
        self._pending_login = None
        self._ended = False
        #: The XEP-0198 state (L{communigate.xmpp.sm.ManagedStream}) once
        #: stream management is enabled, else L{None}.
        self.management = None

    # -- IXMPPSession ----------------------------------------------------------

    @property
    def details(self) -> dict:
        return {
            "JID": self.jid.full() if self.jid is not None else "",
            "Address": f"[{self.peer[0]}]:{self.peer[1]}",
            "TLS": "YES" if self.tls else "NO",
            "Mechanism": self.mechanism or "",
            "Priority": str(self.priority),
            "Available": "YES" if self.available else "NO",
            "StreamManagement": _management_state(self.management),
        }

    def send(self, element: domish.Element) -> None:
        stanza = element.name in STANZA_KINDS and element.uri == NS_CLIENT
        if stanza and self.management is not None:
            # Counted and kept until acknowledged, also while the session
            # waits for its client to resume (XEP-0198).
            self.management.sending(element)
        if self.state is StreamState.CLOSED:
            return
        if stanza:
            self.service.metrics.stanza("out", element.name)
        self._write(element.toXml(prefixes=_PREFIXES, prefixesInScope=["stream"], defaultUri=NS_CLIENT).encode("utf-8"))

    def close(self, condition: str, text: str, app_condition: domish.Element | None = None) -> None:
        """
        End the stream with a stream error (and an application-specific
        condition element, if given).  A session waiting for resumption
        ends at once.
        """
        if self.state is StreamState.CLOSED:
            if self.management is not None and self.management.hibernating:
                self.management.end_hibernation()
            return
        self._send_header_once()
        self.service.metrics.stream_error(condition)
        self.log.info(
            "XMPP stream from {peer} closed with {condition}: {text}", peer=self.peer, condition=condition, text=text
        )
        error = StreamError(condition, text=text, appCondition=app_condition).getElement()
        self._write(error.toXml(prefixes=_PREFIXES, prefixesInScope=["stream"]).encode("utf-8"))
        self._end()

    # -- connection ----------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = (getattr(peer, "host", ""), getattr(peer, "port", 0))
        self._parser = StreamParser(self.service.settings.max_stanza_size)
        self.service.stream_opened(self)
        self._timeout = self.service.clock.callLater(self.service.settings.negotiation_timeout, self._timed_out)

    def connectionLost(self, reason=None) -> None:
        self.state = StreamState.CLOSED
        self._cancel_timeout()
        if self._pending_login is not None:
            pending, self._pending_login = self._pending_login, None
            pending.cancel()
        self.service.stream_closed(self)
        if self.management is not None and not self._ended and self.management.hibernate():
            # Lost without a closing tag: the session waits for its client
            # to resume it (XEP-0198) and ends by finish_session later.
            return
        self.finish_session()

    def finish_session(self) -> None:
        """
        The session is over for good: unbound, logged out, and what stream
        management still holds unacknowledged is kept.
        """
        self.service.sessions.unbind(self)
        management, self.management = self.management, None
        if management is not None:
            management.ended()
        if self._logout is not None:
            logout, self._logout = self._logout, None
            logout()

    def take_over(self, old) -> None:
        """
        Continue C{old}'s session on this freshly authenticated stream
        (XEP-0198 resumption): its full JID, presence and registry entry
        move here without the resource ever looking unbound.
        """
        self.jid = old.jid
        self.priority = old.priority
        self.available = old.available
        self.started = old.started
        self.service.sessions.replace(old, self)
        if old._logout is not None:
            # This stream logged in itself; the old login ends here.
            logout, old._logout = old._logout, None
            logout()
        self.state = StreamState.ESTABLISHED
        self._cancel_timeout()

    def _timed_out(self) -> None:
        self._timeout = None
        if self.state is not StreamState.ESTABLISHED:
            self.close("connection-timeout", "the stream did not authenticate and bind in time")

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _write(self, data: bytes) -> None:
        self.transport.write(data)

    def _end(self) -> None:
        self._ended = True
        self._write(b"</stream:stream>")
        self.state = StreamState.CLOSED
        self._cancel_timeout()
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.state is StreamState.CLOSED:
            return
        try:
            events = self._parser.feed(data)
        except StreamFault as fault:
            self.close(fault.condition, fault.text)
            return
        parser = self._parser
        for event in events:
            # A restart (STARTTLS, SASL success) or a close discards what
            # followed in the same read: RFC 6120 section 5.3.3 forbids
            # acting on data sent before the restart.
            if self.state is StreamState.CLOSED or self._parser is not parser:
                return
            if isinstance(event, StreamOpened):
                self._header(event)
            elif isinstance(event, ElementReceived):
                self._element(event.element)
            elif isinstance(event, StreamClosed):
                self.log.debug("XMPP client {peer} closed its stream", peer=self.peer)
                self._end()

    # -- the header ----------------------------------------------------------

    def _send_header_once(self) -> None:
        if self._header_sent:
            return
        self._header_sent = True
        domain = self.domain or self.service.default_domain()
        stream_id = os.urandom(12).hex()
        self._write(
            (
                "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                f"xmlns:stream='{NS_STREAMS}' id='{stream_id}' from={quoteattr(domain)} "
                "version='1.0' xml:lang='en'>"
            ).encode("utf-8")
        )

    def _header(self, header: StreamOpened) -> None:
        if (header.namespace, header.name) != (NS_STREAMS, "stream"):
            self.close("invalid-namespace", "the root element must be stream in the streams namespace")
            return
        if header.content_namespace != NS_CLIENT:
            self.close("invalid-namespace", "the content namespace of a client stream is jabber:client")
            return
        requested = header.attributes.get("to", "")
        domain = self.service.local_domain(requested)
        if domain is None:
            self.close("host-unknown", f"{requested[:100]!r} is not a domain served here")
            return
        if self.domain is not None and domain != self.domain:
            self.close("host-unknown", "a restarted stream must address the same domain")
            return
        self.domain = domain
        version = header.attributes.get("version", "")
        if not _version_supported(version):
            self.close("unsupported-version", "this server speaks XMPP 1.0 streams (version='1.0')")
            return
        self._send_header_once()
        features = domish.Element((NS_STREAMS, "features"))
        settings = self.service.settings
        if self.account is not None:
            features.addElement((NS_BIND, "bind"))
            features.addElement((NS_SESSION, "session")).addElement("optional")
            for feature in self.service.stream_features(self):
                features.addChild(feature)
            self.state = StreamState.BINDING
        elif not self.tls and settings.require_tls:
            features.addElement((NS_TLS, "starttls")).addElement("required")
            self.state = StreamState.SECURING
        else:
            if not self.tls and self.service.tls_context is not None:
                features.addElement((NS_TLS, "starttls"))
            mechanisms = features.addElement((NS_SASL, "mechanisms"))
            for name in sasl.offered_mechanisms(self.tls):
                mechanisms.addElement("mechanism", content=name)
            self.state = StreamState.AUTHENTICATING
        self._write(features.toXml(prefixes=_PREFIXES, prefixesInScope=["stream"]).encode("utf-8"))

    def _restart(self) -> None:
        self._parser = StreamParser(self.service.settings.max_stanza_size)
        self._header_sent = False
        self.state = StreamState.OPENING

    # -- first-level elements ------------------------------------------------

    def _element(self, element: domish.Element) -> None:
        state = self.state
        if state is StreamState.ESTABLISHED:
            self._stanza(element)
        elif element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_CLIENT and element.name in STANZA_KINDS:
            if state is StreamState.BINDING:
                self._binding_stanza(element)
            else:
                self.close("not-authorized", "authenticate before sending stanzas")
        elif state is StreamState.BINDING and self.service.dispatcher.nonza_handler(element.uri, element.name):
            # XEP-0198 resumption takes the place of binding.
            self.service.dispatcher.nonza_handler(element.uri, element.name)(self, element)
        elif state is StreamState.SECURING:
            self.close("policy-violation", "STARTTLS is required before anything else")
        elif state is StreamState.AUTHENTICATING and element.uri == NS_SASL:
            self._sasl(element)
        elif state is StreamState.AUTHORIZING:
            self.close("policy-violation", "wait for the outcome of the authentication")
        else:
            self.close("unsupported-stanza-type", f"{element.name[:40]!r} is not expected here")

    def _starttls(self) -> None:
        context = self.service.tls_context
        if self.tls or self.state not in (StreamState.SECURING, StreamState.AUTHENTICATING):
            self.close("policy-violation", "STARTTLS is only possible once, before authentication")
            return
        if context is None or not ITLSTransport.providedBy(self.transport):
            self._write(f"<failure xmlns='{NS_TLS}'/>".encode())
            self.log.error("XMPP STARTTLS refused to {peer}: no usable certificate", peer=self.peer)
            self._end()
            return
        self._write(f"<proceed xmlns='{NS_TLS}'/>".encode())
        self.transport.startTLS(context)
        self.tls = True
        self._restart()

    # -- SASL ------------------------------------------------------------------

    def _sasl(self, element: domish.Element) -> None:
        if element.name == "auth":
            if self._exchange is not None:
                self._exchange = None
                self._sasl_failed(sasl.SASLFailure("malformed-request", "an exchange is already running"), "unknown")
                return
            name = element.getAttribute("mechanism", "")
            try:
                self._exchange = self.service.new_mechanism(name, tls=self.tls, domain=self.domain)
                self._sasl_step(sasl.decode_payload(_text_of(element)))
            except sasl.SASLFailure as failure:
                self._exchange = None
                self._sasl_failed(failure, name if name in sasl.ALL_MECHANISMS else "unknown")
        elif element.name == "response":
            if self._exchange is None:
                self._sasl_failed(sasl.SASLFailure("malformed-request", "no exchange is running"), "unknown")
                return
            try:
                self._sasl_step(sasl.decode_payload(_text_of(element)) or b"")
            except sasl.SASLFailure as failure:
                name, self._exchange = self._exchange.name, None
                self._sasl_failed(failure, name)
        elif element.name == "abort":
            name = self._exchange.name if self._exchange is not None else "unknown"
            self._exchange = None
            self._sasl_failed(sasl.SASLFailure("aborted", "the client aborted"), name)
        else:
            self._sasl_failed(sasl.SASLFailure("malformed-request", f"unknown SASL element {element.name[:40]!r}"), "unknown")

    def _sasl_step(self, data: bytes | None) -> None:
        outcome = self._exchange.step(data)
        if isinstance(outcome, sasl.Challenge):
            challenge = domish.Element((NS_SASL, "challenge"))
            text = sasl.encode_payload(outcome.data)
            if text:
                challenge.addContent(text)
            self._write(challenge.toXml().encode("utf-8"))
            return
        self.state = StreamState.AUTHORIZING
        d = self.service.login(outcome.credentials, self, self.peer[0])
        self._pending_login = d
        d.addCallbacks(self._logged_in, self._login_refused, callbackArgs=(outcome,), errbackArgs=(outcome,))
        d.addErrback(self._login_crashed)

    def _logged_in(self, result, outcome: sasl.Verify) -> None:
        self._pending_login = None
        _interface, avatar, logout = result
        exchange, self._exchange = self._exchange, None
        if self.state is StreamState.CLOSED:
            logout()
            return
        if outcome.authzid is not None and self.service.resolve_account(outcome.authzid, self.domain) != avatar.name:
            logout()
            self.service.record_login_failure(self.peer[0])
            self._sasl_failed(sasl.SASLFailure("invalid-authzid", "you may only act as yourself"), exchange.name)
            return
        self._logout = logout
        self.account = avatar.name
        self.mechanism = exchange.name
        self.service.metrics.login(exchange.name, "ok")
        self.log.info("XMPP login {account} from {peer} with {mechanism}", account=avatar.name, peer=self.peer, mechanism=exchange.name)
        success = domish.Element((NS_SASL, "success"))
        text = sasl.encode_payload(exchange.success_data())
        if text:
            success.addContent(text)
        self._write(success.toXml().encode("utf-8"))
        self._restart()

    def _login_refused(self, failure, outcome: sasl.Verify) -> None:
        self._pending_login = None
        failure.trap(UnauthorizedLogin, defer.CancelledError)
        if failure.check(defer.CancelledError) or self.state is StreamState.CLOSED:
            return
        name, self._exchange = self._exchange.name, None
        self.state = StreamState.AUTHENTICATING
        self._sasl_failed(sasl.SASLFailure("not-authorized", "wrong user name or password"), name)

    def _login_crashed(self, failure) -> None:
        self._pending_login = None
        self.log.failure("XMPP login failed unexpectedly for {peer}", failure, peer=self.peer)
        self._exchange = None
        if self.state is not StreamState.CLOSED:
            self.close("internal-server-error", "the login could not be checked")

    def _sasl_failed(self, failure: sasl.SASLFailure, mechanism: str) -> None:
        self.state = StreamState.AUTHENTICATING
        self._failures += 1
        self.service.metrics.login(mechanism, failure.condition)
        reply = domish.Element((NS_SASL, "failure"))
        reply.addElement(failure.condition)
        if failure.text:
            reply.addElement("text", content=failure.text)
        self._write(reply.toXml().encode("utf-8"))
        self.log.info(
            "XMPP login from {peer} failed ({mechanism}): {condition}",
            peer=self.peer,
            mechanism=mechanism,
            condition=failure.condition,
        )
        if self._failures >= self.service.settings.max_auth_failures:
            self.close("policy-violation", f"{self._failures} failed authentication attempts")

    # -- binding ---------------------------------------------------------------

    def _binding_stanza(self, element: domish.Element) -> None:
        payload = next(iter(element.elements()), None)
        if element.name != "iq" or payload is None or element.getAttribute("type") != "set":
            self.close("not-authorized", "bind a resource before sending stanzas")
            return
        if (payload.uri, payload.name) == (NS_BIND, "bind"):
            self._bind(element, payload)
        elif (payload.uri, payload.name) == (NS_SESSION, "session"):
            self._write_raw_stanza(_empty_result(element))
        else:
            self.close("not-authorized", "bind a resource before sending stanzas")

    def _bind(self, element: domish.Element, payload: domish.Element) -> None:
        requested = None
        for child in payload.elements():
            if child.name == "resource" and child.uri == NS_BIND:
                requested = str(child).strip() or None
        try:
            resource = prepared_resource(requested) if requested is not None else None
        except InvalidFormat as e:
            self._write_raw_stanza(error_reply(element, "bad-request", str(e)))
            return
        try:
            full = self.service.sessions.bind(self, self.account, resource)
        except ResourceLimitReached as e:
            self._write_raw_stanza(error_reply(element, "resource-constraint", str(e)))
            return
        self.started = self.service.clock.seconds()
        self.state = StreamState.ESTABLISHED
        self._cancel_timeout()
        self.service.metrics.bound()
        result = _empty_result(element)
        result.addElement((NS_BIND, "bind")).addElement("jid", content=full.full())
        self._write_raw_stanza(result)
        self.log.info("XMPP resource {jid} bound from {peer}", jid=full.full(), peer=self.peer)

    def _write_raw_stanza(self, element: domish.Element) -> None:
        # Answers before binding carry no addresses the client could check.
        self.send(element)

    # -- stanzas -------------------------------------------------------------

    def _stanza(self, element: domish.Element) -> None:
        if element.uri != NS_CLIENT or element.name not in STANZA_KINDS:
            handler = self.service.dispatcher.nonza_handler(element.uri, element.name)
            if handler is not None:
                handler(self, element)
                return
            self.close("unsupported-stanza-type", f"{element.name[:40]!r} in {str(element.uri)[:80]!r} is not a stanza")
            return
        kind = element.name
        self.service.metrics.stanza("in", kind)
        if self.management is not None:
            self.management.received()
        sender = element.getAttribute("from")
        if sender is not None:
            try:
                claimed = parse_jid(sender)
            except InvalidFormat:
                claimed = None
            if claimed is None or claimed.userhost() != self.jid.userhost() or claimed.resource not in (None, self.jid.resource):
                self.close("invalid-from", "the from address is not this session's")
                return
        element["from"] = self.jid.full()
        stanza_type = element.getAttribute("type")
        recipient = None
        target = element.getAttribute("to")
        if target is not None:
            try:
                recipient = parse_jid(target)
            except InvalidFormat:
                self._refuse(element, "jid-malformed", "the to address is not a valid JID")
                return
        problem = _check_stanza(kind, element, stanza_type)
        if problem is not None:
            self._refuse(element, "bad-request", problem)
            return
        stanza = Stanza(kind, stanza_type, element.getAttribute("id"), self.jid, recipient, element)
        try:
            self.service.dispatcher.dispatch(self, stanza)
        except Exception:
            self.log.failure("XMPP stanza handling failed for {jid}", jid=self.jid.full())
            self._refuse(element, "internal-server-error", None)

    def _refuse(self, element: domish.Element, condition: str, text: str | None) -> None:
        if element.getAttribute("type") == "error":
            self.service.metrics.dropped("error stanza that could not be handled")
            return
        reply = error_reply(element, condition, text)
        reply["from"] = self.domain
        reply["to"] = self.jid.full()
        self.send(reply)


def _management_state(management) -> str:
    """
    XEP-0198 for operators: C{NO}, C{YES}, C{resumable} or C{waiting}
    (the connection is gone; the session waits to be resumed).
    """
    if management is None:
        return "NO"
    if management.hibernating:
        return "waiting"
    return "resumable" if management.resumable else "YES"


def _check_stanza(kind: str, element: domish.Element, stanza_type: str | None) -> str | None:
    """
    What is wrong with a stanza's type and shape, or L{None}.
    """
    if kind == "iq":
        if stanza_type not in IQ_TYPES:
            return "an IQ's type must be get, set, result or error"
        if not element.getAttribute("id"):
            return "an IQ needs an id"
        if stanza_type in ("get", "set") and len(list(element.elements())) != 1:
            return "an IQ get or set has exactly one child element"
    elif kind == "presence" and stanza_type is not None and stanza_type not in PRESENCE_TYPES:
        return f"{stanza_type[:20]!r} is not a presence type"
    return None


def _version_supported(version: str) -> bool:
    major, dot, minor = version.partition(".")
    if not dot or not major.isdigit() or not minor.isdigit():
        return False
    return int(major) >= 1


def _text_of(element: domish.Element) -> str | None:
    text = "".join(child for child in element.children if isinstance(child, str))
    return text or None


def _empty_result(element: domish.Element) -> domish.Element:
    result = domish.Element((NS_CLIENT, "iq"))
    result["type"] = "result"
    if element.getAttribute("id") is not None:
        result["id"] = element["id"]
    return result
