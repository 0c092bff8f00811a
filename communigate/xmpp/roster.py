"""
Roster management over XMPP (RFC 6121 section 2): C{jabber:iq:roster}
get, set and remove, and roster pushes.

The roster itself is the one every protocol shares
(L{communigate.interfaces.IRoster}); this module only speaks XMPP about
it.  Pushes are made from the roster's L{RosterEvent}s, so a change made
by a SIP watcher, the CLI C{ROSTER} command or another resource is pushed
the same way as one made here, to every I{interested} resource of the
owner (one that has asked for the roster, RFC 6121 section 2.1.6).

Roster versioning (RFC 6121 section 2.6): the version is a digest of the
items, so a client whose version is current gets an empty result and
nothing else; any other version gets the whole roster.  Pushes carry the
version after the change.

Errors (RFC 6121 section 2.3.3): a set with other than one item, no
C{jid}, a JID that is not valid or the same group twice is a
C{bad-request}; a name or group that is too long, or an empty group, is
C{not-acceptable}; removing an item that is not there is
C{item-not-found}; a roster at its C{MaxRosterItems} is
C{resource-constraint} (type C{wait}).  A C{subscription} other than
C{remove} and an C{ask} in a set are ignored, as the RFC says.
"""

from __future__ import annotations

import hashlib
import itertools

from twisted.logger import Logger
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import InvalidFormat
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IXMPPSessionObserver
from communigate.presence.roster import MAX_GROUPS, MAX_NAME, InvalidContact, RosterError, RosterFull
from communigate.xmpp.c2s import parse_jid
from communigate.xmpp.dispatch import ACCOUNT
from communigate.xmpp.namespaces import NS_CLIENT

NS_ROSTER = "jabber:iq:roster"
NS_ROSTER_VERSIONING = "urn:xmpp:features:rosterver"
PUSH_PREFIX = "cg-push-"


def roster_version(items) -> str:
    """
    The version string of a roster with C{items}: changes whenever an item
    does.
    """
    digest = hashlib.sha256()
    for item in items:
        digest.update(repr((item.contact, item.name, item.groups, item.subscription, item.ask)).encode("utf-8"))
    return digest.hexdigest()[:20]


def item_element(contact: str, item) -> domish.Element:
    """
    The C{<item/>} of a roster result or push; C{item} L{None} is a removal.
    """
    element = domish.Element((NS_ROSTER, "item"))
    element["jid"] = contact
    if item is None:
        element["subscription"] = "remove"
        return element
    if item.name:
        element["name"] = item.name
    element["subscription"] = item.subscription
    if item.ask:
        element["ask"] = "subscribe"
    for group in item.groups:
        element.addElement("group", content=group)
    return element


@implementer(IXMPPSessionObserver)
class XMPPRoster:
    """
    The roster IQs and pushes of one XMPP service.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service
        self._roster = service.context.roster
        self._interested: set[str] = set()
        self._pushes = itertools.count(1)

    def install(self) -> None:
        dispatcher = self._service.dispatcher
        dispatcher.register_iq(NS_ROSTER, "query", self.answer, scopes=(ACCOUNT,))
        dispatcher.register_response(PUSH_PREFIX, self._push_answered)
        self._service.sessions.add_observer(self)
        self._service.add_stream_feature(lambda stream: domish.Element((NS_ROSTER_VERSIONING, "ver")))

    def start(self) -> None:
        self._roster.add_listener(self.roster_changed)

    def stop(self) -> None:
        self._roster.remove_listener(self.roster_changed)

    # -- IXMPPSessionObserver --------------------------------------------------

    def session_bound(self, session) -> None:
        pass

    def session_unbound(self, session) -> None:
        self._interested.discard(session.jid.full())

    def presence_changed(self, session) -> None:
        pass

    def is_interested(self, session) -> bool:
        """
        Whether C{session} has asked for the roster.
        """
        return session.jid.full() in self._interested

    # -- IQs -------------------------------------------------------------------

    def answer(self, session, stanza):
        if stanza.recipient is not None and stanza.recipient.userhost() != session.account:
            raise StanzaError("forbidden", text="only one's own roster")
        if stanza.type == "get":
            return self._get(session, stanza.payload)
        return self._set(session, stanza.payload)

    def _get(self, session, query: domish.Element):
        items = self._roster.items(session.account)
        version = roster_version(items)
        self._interested.add(session.jid.full())
        if query.getAttribute("ver") == version:
            # RFC 6121 2.6.3: the client's copy is current; nothing to send.
            return None
        result = domish.Element((NS_ROSTER, "query"))
        result["ver"] = version
        for item in items:
            result.addChild(item_element(item.contact, item))
        return result

    def _set(self, session, query: domish.Element) -> None:
        items = [child for child in query.elements() if child.name == "item" and child.uri == NS_ROSTER]
        if len(items) != 1:
            raise StanzaError("bad-request", text="a roster set has exactly one item")
        (item,) = items
        text = item.getAttribute("jid")
        if not text:
            raise StanzaError("bad-request", text="a roster item needs a jid")
        try:
            contact = parse_jid(text).userhost()
        except InvalidFormat:
            raise StanzaError("bad-request", text="the item's jid is not a valid JID") from None
        owner = session.account
        try:
            if item.getAttribute("subscription") == "remove":
                self._remove(owner, contact)
                return None
            name, groups = _name_and_groups(item)
            self._roster.set_item(owner, contact, name=name, groups=groups)
        except RosterFull as e:
            raise StanzaError("resource-constraint", type="wait", text=str(e)) from None
        except InvalidContact as e:
            raise StanzaError("bad-request", text=str(e)) from None
        except RosterError as e:
            raise StanzaError("not-acceptable", text=str(e)) from None
        return None

    def _remove(self, owner: str, contact: str) -> None:
        if self._roster.item(owner, contact) is None and not any(
            request.contact == contact for request in self._roster.pending(owner)
        ):
            raise StanzaError("item-not-found", text=f"{contact} is not in the roster")
        removal = self._roster.remove_item(owner, contact)
        if removal.remote:
            presence = self._service.presence
            for kind in removal.stanzas:
                presence.send_subscription(owner, contact, kind.value)

    # -- pushes ----------------------------------------------------------------

    def roster_changed(self, event) -> None:
        if not event.item_changed:
            return
        targets = [s for s in self._service.sessions.resources(event.owner) if self.is_interested(s)]
        if not targets:
            return
        version = roster_version(self._roster.items(event.owner))
        for session in targets:
            push = domish.Element((NS_CLIENT, "iq"))
            push["type"] = "set"
            push["id"] = f"{PUSH_PREFIX}{next(self._pushes)}"
            push["to"] = session.jid.full()
            query = push.addElement((NS_ROSTER, "query"))
            query["ver"] = version
            query.addChild(item_element(event.contact, event.item))
            session.send(push)

    def _push_answered(self, session, stanza) -> None:
        if stanza.type == "error":
            self.log.info("XMPP roster push refused by {jid}", jid=session.jid.full())


def _name_and_groups(item: domish.Element) -> tuple[str, list[str]]:
    """
    The name and groups of a roster set's item, checked as RFC 6121 2.3.3
    says.
    """
    name = item.getAttribute("name", "")
    if len(name) > MAX_NAME:
        raise StanzaError("not-acceptable", text=f"a name is at most {MAX_NAME} characters")
    groups = []
    for child in item.elements():
        if child.name != "group" or child.uri != NS_ROSTER:
            continue
        group = str(child)
        if not group:
            raise StanzaError("not-acceptable", text="a group name cannot be empty")
        if len(group) > MAX_NAME:
            raise StanzaError("not-acceptable", text=f"a group name is at most {MAX_NAME} characters")
        if group in groups:
            raise StanzaError("bad-request", text=f"the group {group[:40]!r} is given twice")
        groups.append(group)
    if len(groups) > MAX_GROUPS:
        raise StanzaError("not-acceptable", text=f"an item is in at most {MAX_GROUPS} groups")
    return name, groups
