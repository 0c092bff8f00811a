"""
XEP-0030 Service Discovery, server side, for the server and for the
client's own account.

The features listed are those of the IQ handlers registered in the
L{communigate.xmpp.dispatch.StanzaDispatcher} for the scope asked about,
plus any added with L{ServiceDiscovery.add_feature} (features that are
not IQ handlers, e.g. a stream feature or a message extension).  Items
come from providers added with L{ServiceDiscovery.add_items} (none yet:
later slices add components, rooms, ...).  Another account's bare JID is
not answered for here; whether a user may discover another is for the
presence subscription slice to decide.
"""

from __future__ import annotations

from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.xish import domish

from communigate.xmpp.dispatch import ACCOUNT, SERVER
from communigate.xmpp.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS

#: The identity of each scope: (category, type, name).
IDENTITIES = {
    SERVER: ("server", "im", "communigate"),
    ACCOUNT: ("account", "registered", None),
}


class ServiceDiscovery:
    """
    disco#info and disco#items for a L{StanzaDispatcher}.
    """

    def __init__(self, dispatcher) -> None:
        self._dispatcher = dispatcher
        self._features: dict[str, set[str]] = {SERVER: set(), ACCOUNT: set()}
        self._items: dict[str, list] = {SERVER: [], ACCOUNT: []}

    def install(self) -> None:
        self._dispatcher.register_iq(NS_DISCO_INFO, "query", self.answer_info, scopes=(SERVER, ACCOUNT))
        self._dispatcher.register_iq(NS_DISCO_ITEMS, "query", self.answer_items, scopes=(SERVER, ACCOUNT))

    def add_feature(self, scope: str, namespace: str) -> None:
        """
        List C{namespace} among the features of C{scope}.
        """
        self._features[scope].add(namespace)

    def add_items(self, scope: str, provider) -> None:
        """
        C{provider(session)} returns C{(jid, name or None)} pairs listed as
        items of C{scope}.
        """
        self._items[scope].append(provider)

    def features(self, scope: str) -> list[str]:
        """
        The sorted features of C{scope}.
        """
        return sorted(self._dispatcher.handles_iq(scope) | self._features[scope])

    def _scope(self, session, stanza) -> str:
        return self._dispatcher.scope_of(session, stanza.recipient)

    def answer_info(self, session, stanza):
        query = self._query(stanza, NS_DISCO_INFO)
        scope = self._scope(session, stanza)
        category, kind, name = IDENTITIES[scope]
        identity = query.addElement("identity")
        identity["category"] = category
        identity["type"] = kind
        if name:
            identity["name"] = name
        for feature in self.features(scope):
            query.addElement("feature")["var"] = feature
        return query

    def answer_items(self, session, stanza):
        query = self._query(stanza, NS_DISCO_ITEMS)
        for provider in self._items[self._scope(session, stanza)]:
            for jid, name in provider(session):
                item = query.addElement("item")
                item["jid"] = jid
                if name:
                    item["name"] = name
        return query

    def _query(self, stanza, namespace: str) -> domish.Element:
        if stanza.type != "get":
            raise StanzaError("bad-request", text="disco queries are IQs of type get")
        node = stanza.payload.getAttribute("node")
        if node:
            raise StanzaError("item-not-found", text=f"no node {node[:64]!r} here")
        return domish.Element((namespace, "query"))
