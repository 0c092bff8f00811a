"""
XEP-0280 Message Carbons: every resource of an account that enabled them
sees the account's conversations, also those held on another resource.

  - C{<enable xmlns='urn:xmpp:carbons:2'/>} and C{<disable/>} IQs (type
    C{set}, to the server or one's own account) switch them per resource;
  - a message a resource sends gets a C{<sent/>} copy, from the account's
    bare JID, to each other carbons-enabled resource;
  - a message delivered to one or some of an account's resources gets a
    C{<received/>} copy to each other carbons-enabled resource that did
    not get it (the Signal bridge and full-JID delivery both ask here).

What is copied (XEP-0280 section 6): messages of type C{chat}, and of
type C{normal} with a C{<body/>}; not one with the C{<private/>} element
or the XEP-0334 C{<no-copy/>} hint, not a carbon itself, not a MUC
private message (C{<x xmlns='…muc#user'/>}).
"""

from __future__ import annotations

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IXMPPSessionObserver
from communigate.xmpp.dispatch import ACCOUNT, SERVER
from communigate.xmpp.namespaces import NS_CLIENT
from communigate.xmpp.stanzas import NS_HINTS, child, has_child

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"


def eligible(element: domish.Element) -> bool:
    """
    Whether a message is one that carbons copy.
    """
    kind = element.getAttribute("type", "normal")
    if kind == "chat":
        pass
    elif kind == "normal":
        if child(element, "body") is None:
            return False
    else:
        return False
    if has_child(element, NS_CARBONS):
        return False  # private, or already a carbon
    if has_child(element, NS_HINTS, "no-copy") or has_child(element, NS_MUC_USER):
        return False
    return True


def wrapped(direction: str, account: str, recipient: str, element: domish.Element) -> domish.Element:
    """
    The carbon copy of C{element} (C{direction} C{sent} or C{received}) for
    C{recipient}, from the account's bare JID.
    """
    carbon = domish.Element((NS_CLIENT, "message"))
    carbon["from"] = account
    carbon["to"] = recipient
    carbon["type"] = element.getAttribute("type", "normal")
    forwarded = carbon.addElement((NS_CARBONS, direction)).addElement((NS_FORWARD, "forwarded"))
    forwarded.addChild(element)
    return carbon


@implementer(IXMPPSessionObserver)
class Carbons:
    """
    Message Carbons for one XMPP service.
    """

    def __init__(self, service) -> None:
        self._service = service
        self._enabled: set[str] = set()

    def install(self) -> None:
        dispatcher = self._service.dispatcher
        dispatcher.register_iq(NS_CARBONS, "enable", self._enable, scopes=(SERVER, ACCOUNT))
        dispatcher.register_iq(NS_CARBONS, "disable", self._disable, scopes=(SERVER, ACCOUNT))
        self._service.sessions.add_observer(self)

    def enabled(self, session) -> bool:
        return session.jid.full() in self._enabled

    def _enable(self, session, stanza):
        if stanza.type != "set":
            raise StanzaError("bad-request", text="carbons are enabled with an IQ of type set")
        self._enabled.add(session.jid.full())
        return None

    def _disable(self, session, stanza):
        if stanza.type != "set":
            raise StanzaError("bad-request", text="carbons are disabled with an IQ of type set")
        self._enabled.discard(session.jid.full())
        return None

    def _copies_for(self, account: str, exclude) -> list:
        return [
            s for s in self._service.sessions.resources(account)
            if s.jid.full() in self._enabled and s.jid.full() not in exclude
        ]

    def sent(self, session, element: domish.Element) -> None:
        """
        C{session} sent C{element}: copy it to the account's other
        carbons-enabled resources.
        """
        if not self._enabled or not eligible(element):
            return
        for other in self._copies_for(session.account, {session.jid.full()}):
            other.send(wrapped("sent", session.account, other.jid.full(), element))
            self._service.metrics.carbon("sent")

    def received(self, account: str, element: domish.Element, delivered_to) -> None:
        """
        C{element} was delivered to C{account}'s resources C{delivered_to}
        (full JIDs): copy it to the other carbons-enabled ones.
        """
        if not self._enabled or not eligible(element):
            return
        for other in self._copies_for(account, set(delivered_to)):
            other.send(wrapped("received", account, other.jid.full(), element))
            self._service.metrics.carbon("received")

    # -- IXMPPSessionObserver --------------------------------------------------

    def session_bound(self, session) -> None:
        pass

    def session_unbound(self, session) -> None:
        self._enabled.discard(session.jid.full())

    def presence_changed(self, session) -> None:
        pass
