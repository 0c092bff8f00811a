"""
Message routing for local accounts (RFC 6121 section 8.5), offline
delivery, and the sender's side of carbons.

A message for a local JID is handled by L{MessageRouter.deliver} (what
C{XMPPService.deliver_local} calls for messages, whether the sender is a
local resource, another server or anything else):

  - to the server's domain itself: C{service-unavailable};
  - to a full JID whose resource is bound: to that resource, whatever the
    type (8.5.3.1), with C{<received/>} carbons to the account's other
    resources;
  - to a full JID with no such resource (8.5.3.2): C{error} and
    C{headline} are dropped, C{groupchat} gets C{service-unavailable},
    C{normal} and C{chat} are handled as if sent to the bare JID;
  - to a bare JID (8.5.2): C{error} dropped, C{groupchat}
    C{service-unavailable}, C{headline} to every available resource with a
    non-negative priority (dropped when there is none);
  - C{normal} and C{chat} with a C{<body/>} become a MESSAGE Signal
    (L{communigate.xmpp.bridge}): the Signal service routes it, applies the
    account's Signal Rules and rings every endpoint: the account's XMPP
    resources of the highest non-negative priority (all of them when they
    tie, as RFC 6121 8.5.2.1.1 allows for both types) and its registered
    SIP phones.  When no endpoint takes it (480, a timeout, a server
    error), the message is kept offline for the account; when it cannot be
    kept or the Signal is refused (an unknown name, a rule), the sender
    gets C{service-unavailable} -- the same answer for an account that does
    not exist, a full queue or a refusal, so nothing about the account
    leaks (8.5.1);
  - C{normal} and C{chat} without a body (chat states, receipts) go to
    the same resources directly, never to phones; with no such resource
    they are dropped, unless they carry the XEP-0334 C{<store/>} hint.

Offline messages are handed to a resource that sends available presence
with a non-negative priority (XEP-0160), with their XEP-0203 delay.

A message that has no C{to} is for the sender's own bare JID (RFC 6120
section 10.3.1); an unknown C{type} is C{normal} (RFC 6121 section 5.2.2).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from communigate.xmpp.dispatch import MESSAGE_TYPES, error_reply
from communigate.xmpp.stanzas import NS_HINTS, child, copy_stanza, has_child


def message_type(element: domish.Element) -> str:
    kind = element.getAttribute("type", "normal")
    return kind if kind in MESSAGE_TYPES else "normal"


def has_body(element: domish.Element) -> bool:
    body = child(element, "body")
    return body is not None and bool(str(body).strip())


class MessageRouter:
    """
    The message handling of one XMPP service.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service
        self._sessions = service.sessions

    def install(self) -> None:
        self._service.dispatcher.register_kind("message", self.from_client)

    # -- from a client -----------------------------------------------------------

    def from_client(self, session, stanza) -> None:
        element = stanza.element
        if stanza.recipient is None:
            element["to"] = session.jid.userhost()
        self._service.carbons.sent(session, element)
        self._service.route(element)

    # -- to a local JID ----------------------------------------------------------

    def deliver(self, element: domish.Element, recipient: JID, account: str | None) -> None:
        """
        Deliver C{element} to local C{recipient} (C{account} is its
        canonical account, or L{None} when there is none).
        """
        kind = message_type(element)
        if recipient.user is None:
            self._refuse(element, "messages to the server are not handled")
            return
        if account is not None and recipient.resource is not None:
            session = self._sessions.resource(account, recipient.resource)
            if session is not None:
                session.send(element)
                self._service.metrics.message("delivered")
                self._service.carbons.received(account, element, {session.jid.full()})
                return
            if kind in ("error", "headline"):
                self._service.metrics.dropped(f"message {kind} to a resource that is gone")
                return
        if kind == "error":
            self._service.metrics.dropped("message error to a bare JID")
            return
        if kind == "groupchat":
            self._refuse(element)
            return
        if kind == "headline":
            targets = [s for s in self._sessions.available_resources(account)] if account else []
            if not targets:
                self._service.metrics.dropped("headline with no available resource")
            for session in targets:
                session.send(copy_stanza(element))
                self._service.metrics.message("delivered")
            return
        if has_body(element):
            self._service.bridge.submit(element, account)
            return
        self._without_body(element, account)

    def _without_body(self, element: domish.Element, account: str | None) -> None:
        if account is None:
            self._refuse(element)
            return
        targets = self.bare_targets(account)
        for session in targets:
            session.send(copy_stanza(element))
            self._service.metrics.message("delivered")
        if targets:
            self._service.carbons.received(account, element, {s.jid.full() for s in targets})
        elif has_child(element, NS_HINTS, "store"):
            self.store(element, account)
        else:
            self._service.metrics.dropped("message without body for an account with no available resource")

    def bare_targets(self, account: str) -> list:
        """
        The resources a message to C{account}'s bare JID goes to: the
        available ones of the highest non-negative priority.
        """
        available = self._sessions.available_resources(account)
        if not available:
            return []
        top = available[0].priority
        return [session for session in available if session.priority == top]

    # -- offline storage ---------------------------------------------------------

    def store(self, element: domish.Element, account: str) -> bool:
        """
        Keep C{element} offline for C{account}; when it cannot be kept the
        sender gets C{service-unavailable}.  Whether it was kept.
        """
        try:
            kept = self._service.offline.store(account, element)
        except Exception:
            self.log.failure("Storing an offline message for {account} failed", account=account)
            kept = False
        if kept:
            self._service.metrics.message("stored")
            return True
        self._refuse(element)
        return False

    def deliver_offline(self, session) -> None:
        """
        Hand C{session} the messages kept for its account.
        """
        messages = self._service.offline.take(session.account, session.jid.host)
        for element in messages:
            session.send(element)
            self._service.metrics.message("offline delivered")
        if messages:
            self.log.info("{count} offline messages delivered to {jid}", count=len(messages), jid=session.jid.full())

    def _refuse(self, element: domish.Element, text: str | None = None) -> None:
        if element.getAttribute("type") == "error" or not element.getAttribute("from"):
            self._service.metrics.dropped("undeliverable message that cannot be answered")
            return
        self._service.metrics.message("refused")
        self._service.route(error_reply(element, "service-unavailable", text))
