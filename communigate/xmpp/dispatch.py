"""
Where a client's stanzas go once its resource is bound: the dispatch table
that the XMPP extensions register into.

  - An C{<iq/>} of type C{get} or C{set} goes to the handler registered
    for its child element's C{(namespace, name)} and for the addressee's
    scope: L{SERVER} when it is addressed to a local domain, L{ACCOUNT}
    when it has no C{to} or is addressed to the sender's own bare JID
    (RFC 6120 section 10.3 treats both alike).  A handler returns the
    payload of the C{result} (an element, or L{None} for an empty result),
    or a Deferred of it, or raises L{StanzaError}; with no handler the
    answer is C{service-unavailable}.
  - An C{<iq/>} to another local full JID is passed to that resource.
  - Messages and presence go to the one handler registered for their kind
    (a later slice registers the roster, presence and message handlers);
    until then a message is answered C{service-unavailable} and presence
    without an addressee only updates the session's availability and
    priority in the registry.
  - A stanza addressed to a domain not served here goes to the
    C{route_remote} hook (server-to-server) unless a handler registered
    for its kind takes it (that handler then routes remote stanzas).

Handlers run with the stanza already checked and stamped: C{from} is the
sender's full JID.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from communigate.xmpp.namespaces import NS_CLIENT

SERVER = "server"
ACCOUNT = "account"

IQ_TYPES = ("get", "set", "result", "error")
MESSAGE_TYPES = ("chat", "error", "groupchat", "headline", "normal")
PRESENCE_TYPES = ("error", "probe", "subscribe", "subscribed", "unavailable", "unsubscribe", "unsubscribed")


@attrs.frozen
class Stanza:
    """
    A checked stanza from a bound client.

    @ivar kind: C{iq}, C{message} or C{presence}.
    @ivar type: the C{type} attribute, or L{None}.
    @ivar id: the C{id} attribute, or L{None}.
    @ivar sender: the full JID of the session that sent it.
    @ivar recipient: the C{to} JID, or L{None}.
    @ivar element: the stanza itself, C{from} already stamped.
    """

    kind: str
    type: str | None
    id: str | None
    sender: JID
    recipient: JID | None
    element: domish.Element

    @property
    def payload(self) -> domish.Element | None:
        """
        The first child element (an IQ's request).
        """
        for child in self.element.elements():
            return child
        return None


def error_reply(element: domish.Element, condition: str, text: str | None = None) -> domish.Element:
    """
    The error stanza answering C{element} (RFC 6120 section 8.3): addresses
    swapped, the original payload kept, an C{<error/>} added.
    """
    reply = domish.Element((NS_CLIENT, element.name))
    for name in ("id",):
        if element.getAttribute(name) is not None:
            reply[name] = element[name]
    if element.getAttribute("from") is not None:
        reply["to"] = element["from"]
    if element.getAttribute("to") is not None:
        reply["from"] = element["to"]
    reply["type"] = "error"
    if element.name != "iq":
        for child in element.elements():
            reply.addChild(child)
    else:
        payload = next(iter(element.elements()), None)
        if payload is not None:
            reply.addChild(payload)
    reply.addChild(StanzaError(condition, text=text).getElement())
    return reply


def iq_result(stanza: Stanza, payload: domish.Element | None, sender: str) -> domish.Element:
    """
    The C{result} answering IQ C{stanza}, from C{sender}.
    """
    reply = domish.Element((NS_CLIENT, "iq"))
    reply["type"] = "result"
    reply["id"] = stanza.id
    reply["to"] = stanza.sender.full()
    reply["from"] = sender
    if payload is not None:
        reply.addChild(payload)
    return reply


IQHandler = Callable[[object, Stanza], object]


class StanzaDispatcher:
    """
    The dispatch table of one XMPP service.

    @param sessions: the L{communigate.interfaces.IXMPPSessions}.
    @param is_local_domain: whether a domain name is served here.
    @param count_dropped: called with a reason whenever a stanza is
        dropped on purpose, so no drop goes uncounted.
    @param route_remote: called with a stanza addressed to a domain not
        served here, when no handler registered for its kind takes it.
    """

    log = Logger()

    def __init__(
        self, sessions, is_local_domain: Callable[[str], bool], count_dropped=lambda reason: None, route_remote=None
    ) -> None:
        self._sessions = sessions
        self._is_local_domain = is_local_domain
        self._count_dropped = count_dropped
        self._route_remote = route_remote
        self._iq: dict[tuple[str, str, str], IQHandler] = {}
        self._kinds: dict[str, Callable] = {}
        self._nonzas: dict[tuple[str, str], Callable] = {}
        self._responses: dict[str, Callable] = {}
        self._remote: Callable | None = None

    # -- registration --------------------------------------------------------

    def register_iq(self, namespace: str, name: str, handler: IQHandler, scopes=(SERVER,)) -> None:
        """
        Answer C{get}/C{set} IQs whose child is C{(namespace, name)},
        addressed to any of C{scopes} (L{SERVER}, L{ACCOUNT}), with
        C{handler(session, stanza)}.
        """
        for scope in scopes:
            key = (scope, namespace, name)
            if key in self._iq:
                raise ValueError(f"an IQ handler for {namespace} {name} ({scope}) is already registered")
            self._iq[key] = handler

    def handles_iq(self, scope: str) -> set[str]:
        """
        The namespaces with handlers for C{scope}: the disco#info features.
        """
        return {namespace for (s, namespace, _name) in self._iq if s == scope}

    def register_kind(self, kind: str, handler: Callable) -> None:
        """
        Send every C{message} or C{presence} stanza (C{kind}) to
        C{handler(session, stanza)} instead of the built-in behaviour.
        """
        if kind not in ("message", "presence"):
            raise ValueError(f"kind must be message or presence, not {kind!r}")
        self._kinds[kind] = handler

    def register_nonza(self, namespace: str, name: str, handler: Callable) -> None:
        """
        Pass first-level elements C{(namespace, name)} that are not stanzas
        (XEP-0198's C{<r/>} and C{<a/>}, say) of a bound stream to
        C{handler(session, element)}; without a handler such an element
        ends the stream with C{unsupported-stanza-type}.
        """
        if (namespace, name) in self._nonzas:
            raise ValueError(f"a handler for {namespace} {name} is already registered")
        self._nonzas[(namespace, name)] = handler

    def register_response(self, prefix: str, handler: Callable) -> None:
        """
        Pass the C{result} and C{error} IQs a client sends to the server or
        its own account with an C{id} starting with C{prefix} (the answers
        to requests the server sent it, such as roster pushes) to
        C{handler(session, stanza)}.
        """
        if prefix in self._responses:
            raise ValueError(f"a handler for responses {prefix!r} is already registered")
        self._responses[prefix] = handler

    def set_remote(self, handler: Callable) -> None:
        """
        Hand IQs addressed to a domain not served here to
        C{handler(element)} (server-to-server routing).
        """
        self._remote = handler

    def nonza_handler(self, namespace: str, name: str) -> Callable | None:
        """
        The handler registered for first-level element C{(namespace, name)}.
        """
        return self._nonzas.get((namespace, name))

    # -- dispatch ------------------------------------------------------------

    def scope_of(self, session, recipient: JID | None) -> str | None:
        """
        L{SERVER}, L{ACCOUNT} (the sender's own bare JID), or L{None} for
        any other addressee.
        """
        if recipient is None:
            return ACCOUNT
        if recipient.user is None and recipient.resource is None and self._is_local_domain(recipient.host):
            return SERVER
        if recipient.resource is None and recipient.userhost() == session.jid.userhost():
            return ACCOUNT
        return None

    def dispatch(self, session, stanza: Stanza) -> None:
        """
        Handle one stanza of a bound C{session}.
        """
        custom = self._kinds.get(stanza.kind)
        if custom is not None:
            custom(session, stanza)
        elif self._for_remote_domain(stanza):
            self._route_remote(stanza.element)
        elif stanza.kind == "iq":
            self._iq_stanza(session, stanza)
        elif stanza.kind == "message":
            self._message(session, stanza)
        else:
            self._presence(session, stanza)

    def _for_remote_domain(self, stanza: Stanza) -> bool:
        recipient = stanza.recipient
        return (
            self._route_remote is not None and recipient is not None and not self._is_local_domain(recipient.host)
        )

    def _iq_stanza(self, session, stanza: Stanza) -> None:
        recipient = stanza.recipient
        if recipient is not None and self._remote is not None and not self._is_local_domain(recipient.host):
            self._remote(stanza.element)
            return
        if stanza.type in ("result", "error"):
            target = self._local_resource(recipient)
            if target is not None:
                target.send(stanza.element)
                return
            answered = self._response_handler(session, stanza)
            if answered is not None:
                answered(session, stanza)
            else:
                self._drop(session, stanza, "IQ response to no pending request")
            return
        payload = stanza.payload
        scope = self.scope_of(session, stanza.recipient)
        if scope is None:
            target = self._local_resource(stanza.recipient)
            if target is not None:
                target.send(stanza.element)
            else:
                session.send(error_reply(stanza.element, "service-unavailable"))
            return
        handler = self._iq.get((scope, payload.uri, payload.name))
        if handler is None:
            session.send(error_reply(stanza.element, "service-unavailable"))
            return
        responder = stanza.recipient.full() if stanza.recipient is not None else session.jid.userhost()
        d = defer.maybeDeferred(handler, session, stanza)
        d.addCallback(lambda result: session.send(iq_result(stanza, result, responder)))
        d.addErrback(self._iq_failed, session, stanza)

    def _iq_failed(self, failure, session, stanza: Stanza) -> None:
        if failure.check(StanzaError):
            error = failure.value
            session.send(error_reply(stanza.element, error.condition, error.text))
            return
        self.log.failure("XMPP IQ handler failed for {jid}", failure, jid=session.jid.full())
        session.send(error_reply(stanza.element, "internal-server-error"))

    def _response_handler(self, session, stanza: Stanza) -> Callable | None:
        if stanza.id is None or self.scope_of(session, stanza.recipient) is None:
            return None
        for prefix, handler in self._responses.items():
            if stanza.id.startswith(prefix):
                return handler
        return None

    def _local_resource(self, recipient: JID | None):
        if recipient is None or recipient.resource is None or recipient.user is None:
            return None
        return self._sessions.lookup(recipient)

    def _message(self, session, stanza: Stanza) -> None:
        if stanza.type == "error":
            self._drop(session, stanza, "message error with no handler")
            return
        session.send(error_reply(stanza.element, "service-unavailable", "messages are not handled yet"))

    def _presence(self, session, stanza: Stanza) -> None:
        if stanza.recipient is not None:
            self._drop(session, stanza, "directed presence with no handler")
            return
        if stanza.type is None:
            self._sessions.set_presence(session, True, presence_priority(stanza.element))
        elif stanza.type == "unavailable":
            self._sessions.set_presence(session, False, session.priority)
        else:
            self._drop(session, stanza, f"presence {stanza.type} with no handler")

    def _drop(self, session, stanza: Stanza, reason: str) -> None:
        self._count_dropped(reason)
        self.log.debug("XMPP stanza from {jid} dropped: {reason}", jid=session.jid.full(), reason=reason)


def presence_priority(element: domish.Element) -> int:
    """
    The C{<priority/>} of a presence stanza, 0 when absent or invalid,
    clamped to -128..127 (RFC 6121 section 4.7.2.3).
    """
    for child in element.elements():
        if child.name == "priority" and child.uri == NS_CLIENT:
            try:
                return max(-128, min(127, int(str(child).strip())))
            except ValueError:
                return 0
    return 0
