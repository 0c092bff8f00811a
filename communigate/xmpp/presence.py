"""
Presence over XMPP (RFC 6121 sections 3 and 4) on top of the shared
roster and presence service.

Subscriptions.  A client's C{subscribe}, C{subscribed}, C{unsubscribe}
and C{unsubscribed} go through L{IRoster.exchange}: both rosters change
when the contact is local, and every change is a L{RosterEvent}.  From
those events this module delivers inbound subscription stanzas to the
owner's available resources (whoever caused them: an XMPP client, a SIP
watcher, the CLI); a request that finds no available resource stays in
the roster and is presented again when the owner next sends initial
presence.  A stanza for another server goes to C{route_remote}.

Broadcast.  Each resource's available presence is published to the
presence service as the source C{("xmpp", full JID)} and withdrawn when
it goes unavailable or disconnects (cleanly or not).  The stanza itself
goes, from the resource's full JID, to the subscribers in the owner's
roster (C{from}/C{both}), to the owner's other available resources, and,
for unavailable, to everyone that got directed presence.

What a user sees of a local contact.  Per RFC 6121 the presence of each
of the contact's available resources, from its full JID (last presence
of each resource on a probe).  On top of that, the contact's account
presence is the aggregated state of every source the account has
(L{communigate.presence.service}): when it does not come from one of the
XMPP resources (a SIP phone PUBLISHed busy, a phone is registered) the
user also gets it as presence from the contact's bare JID, so a phone
that is busy shows as C{<show>dnd</show>}.  The user's account holds a
presence-service watch (C{ask=False}) on each local contact it is
subscribed to (or asking), while it has available resources: the watch
turning active sends the contact's presence (on the next reactor turn,
after the C{subscribed} stanza and roster push), turning terminated sends
unavailable, and every aggregated change refreshes the bare-JID presence.

Bad input: a C{<show/>} that is not one of RFC 6121's four values, a
subscription stanza or probe without C{to}, a contact the roster cannot
hold: C{bad-request} / C{jid-malformed}; a roster at its limit, or
directed presence to more than L{MAX_DIRECTED} addresses from one
resource: C{resource-constraint}.  Presence to accounts that do not exist is
dropped silently (RFC 6121 section 8.5.1).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IXMPPSessionObserver
from communigate.presence.roster import InvalidContact, RosterError, RosterFull, bare_address
from communigate.presence.service import TooManySources, TooManyWatchers, WatchStatus
from communigate.presence.state import SHOWS, PresenceState
from communigate.presence.subscription import Kind
from communigate.xmpp.dispatch import error_reply, presence_priority
from communigate.xmpp.namespaces import NS_CLIENT
from communigate.xmpp.stanzas import child_text, copy_stanza

SOURCE_KIND = "xmpp"
#: JIDs one resource may have sent directed presence to (and that get its
#: unavailable later); one more is refused with resource-constraint.
MAX_DIRECTED = 1000
SUBSCRIPTION_TYPES = frozenset(kind.value for kind in Kind)


class BadPresence(ValueError):
    """A presence stanza the server refuses (the message says why)."""


def state_of(element: domish.Element, available: bool = True) -> PresenceState:
    """
    The L{PresenceState} a presence stanza announces.

    @raise BadPresence: the show value is not one RFC 6121 defines.
    """
    status = child_text(element, "status")
    if not available:
        return PresenceState(available=False, status=status or None)
    show = child_text(element, "show")
    if show is not None:
        show = show.strip()
        if show not in SHOWS:
            raise BadPresence(f"{show[:20]!r} is not a show value (away, chat, dnd, xa)")
    return PresenceState(show=show, status=status or None, priority=presence_priority(element))


def presence_stanza(sender: str, recipient: str | None, state: PresenceState | None = None,
                    type: str | None = None) -> domish.Element:
    """
    A presence stanza from C{sender}: available with C{state}, or of C{type}.
    """
    element = domish.Element((NS_CLIENT, "presence"))
    element["from"] = sender
    if recipient is not None:
        element["to"] = recipient
    if type is not None:
        element["type"] = type
    if state is not None:
        if state.show is not None:
            element.addElement("show", content=state.show)
        if state.status:
            element.addElement("status", content=state.status)
        if state.available and state.priority:
            element.addElement("priority", content=str(state.priority))
    return element


class _Watching:
    """
    One account's watch on one local contact.
    """

    def __init__(self) -> None:
        self.handle = None
        self.active = False
        self.bare_sent: PresenceState | None = None
        self.creating = True


@implementer(IXMPPSessionObserver)
class XMPPPresence:
    """
    The presence handling of one XMPP service.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service
        self._roster = service.context.roster
        self._presence = service.context.presence
        self._sessions = service.sessions
        # full JID -> the last available presence of that resource, as broadcast.
        self._last: dict[str, domish.Element] = {}
        # full JID -> the JIDs (text) it sent directed available presence to.
        self._directed: dict[str, set[str]] = {}
        # account -> contact account -> its watch.
        self._watching: dict[str, dict[str, _Watching]] = {}

    def install(self) -> None:
        self._service.dispatcher.register_kind("presence", self.from_client)
        self._sessions.add_observer(self)

    def start(self) -> None:
        self._roster.add_listener(self.roster_changed)

    def stop(self) -> None:
        self._roster.remove_listener(self.roster_changed)
        for account in list(self._watching):
            self._stop_watching(account)

    # -- from a client -----------------------------------------------------------

    def from_client(self, session, stanza) -> None:
        element = stanza.element
        kind = stanza.type
        try:
            if kind in SUBSCRIPTION_TYPES:
                self._subscription(session, stanza)
            elif kind == "probe":
                self._probe(session, stanza)
            elif kind == "error":
                if stanza.recipient is not None:
                    self._service.route(element)
                else:
                    self._service.metrics.dropped("presence error without addressee")
            elif stanza.recipient is not None:
                self._directed_presence(session, stanza)
            elif kind is None:
                self._available(session, element)
            else:
                self._unavailable(session, element)
        except BadPresence as e:
            session.send(error_reply(element, "bad-request", str(e)))

    def _available(self, session, element: domish.Element) -> None:
        state = state_of(element)
        full = session.jid.full()
        was_available, old_priority = session.available, session.priority
        broadcast = copy_stanza(element, to=None)
        self._last[full] = broadcast
        self._sessions.set_presence(session, True, state.priority)
        self._publish(session, state)
        self._broadcast(session, broadcast)
        if not was_available:
            self._initial(session)
        if state.priority >= 0 and (not was_available or old_priority < 0):
            self._service.messages.deliver_offline(session)

    def _unavailable(self, session, element: domish.Element) -> None:
        full = session.jid.full()
        directed = self._directed.pop(full, set())
        stanza = copy_stanza(element, to=None)
        if not session.available:
            for recipient in directed:
                self._service.route(copy_stanza(stanza, to=recipient))
            return
        self._last.pop(full, None)
        self._sessions.set_presence(session, False, session.priority)
        self._withdraw(session)
        self._broadcast(session, stanza, directed)
        self._account_went_quiet(session.account)

    def _directed_presence(self, session, stanza) -> None:
        element = stanza.element
        if stanza.type is None:
            state_of(element)  # checks the show value
        full = session.jid.full()
        target = stanza.recipient.full()
        recipient_bare = stanza.recipient.userhost()
        subscribed = self._roster.is_authorized(session.account, recipient_bare) and recipient_bare != session.account
        if stanza.type is None and not subscribed:
            directed = self._directed.setdefault(full, set())
            if target not in directed and len(directed) >= MAX_DIRECTED:
                session.send(error_reply(element, "resource-constraint",
                                         f"directed presence to more than {MAX_DIRECTED} addresses"))
                return
            directed.add(target)
        elif stanza.type == "unavailable":
            self._directed.get(full, set()).discard(target)
        self._service.route(element)

    def _probe(self, session, stanza) -> None:
        if stanza.recipient is None:
            raise BadPresence("a probe needs a to address")
        contact = stanza.recipient.userhost()
        account = self._service.local_account(contact)
        if account is None:
            if not self._service.is_local_domain(stanza.recipient.host):
                self._service.route(copy_stanza(stanza.element, to=contact))
            return
        if self._roster.is_authorized(account, session.account):
            self._send_contact_state(account, [session], unavailable_if_none=True)

    def _subscription(self, session, stanza) -> None:
        element = stanza.element
        if stanza.recipient is None:
            raise BadPresence(f"a {stanza.type} needs a to address")
        contact = stanza.recipient.userhost()
        status = child_text(element, "status") if stanza.type == "subscribe" else None
        self._service.metrics.subscription(stanza.type)
        try:
            exchange = self._roster.exchange(session.account, contact, stanza.type, status)
        except RosterFull as e:
            session.send(error_reply(element, "resource-constraint", str(e)))
            return
        except InvalidContact as e:
            session.send(error_reply(element, "jid-malformed", str(e)))
            return
        except RosterError as e:
            session.send(error_reply(element, "not-acceptable", str(e)))
            return
        if exchange.remote:
            if self._service.is_local_domain(stanza.recipient.host):
                # An account that does not exist: RFC 6121 8.5.1 says drop it.
                self._service.metrics.dropped("subscription to an unknown local account")
                return
            if getattr(self._service, "remote", None) is None:
                # The answer would go to the bare JID; this resource asked.
                session.send(error_reply(element, "remote-server-not-found", "no route to that domain"))
                return
            self._send_subscription_remote(session.account, contact, stanza.type, status)
            outbound = exchange.outbound
            if outbound is not None and outbound.send_presence == "available":
                for resource in self._available_sessions(session.account):
                    self._service.route(copy_stanza(self._last_of(resource), to=contact))
            elif outbound is not None and outbound.send_presence == "unavailable":
                self._send_unavailable_of(session.account, contact)

    def send_subscription(self, owner: str, contact: str, kind: str) -> None:
        """
        Send a subscription stanza of C{owner} to a contact on another
        server (a roster removal cancelling both ways, say).
        """
        self._send_subscription_remote(owner, contact, kind, None)

    def _send_subscription_remote(self, owner: str, contact: str, kind: str, status: str | None) -> None:
        element = presence_stanza(owner, contact, type=kind)
        if status:
            element.addElement("status", content=status)
        self._service.route(element)

    # -- bookkeeping of sources and broadcasts ---------------------------------------

    def _publish(self, session, state: PresenceState) -> None:
        presence = self._presence
        if presence is None:
            return
        try:
            presence.publish(session.account, (SOURCE_KIND, session.jid.full()), state)
        except TooManySources as e:
            self.log.warn("XMPP presence of {jid} not aggregated: {error}", jid=session.jid.full(), error=e)

    def _withdraw(self, session) -> None:
        if self._presence is not None:
            self._presence.withdraw(session.account, (SOURCE_KIND, session.jid.full()))

    def _available_sessions(self, account: str) -> list:
        return [s for s in self._sessions.resources(account) if s.available]

    def _last_of(self, session) -> domish.Element:
        last = self._last.get(session.jid.full())
        if last is None:
            last = presence_stanza(session.jid.full(), None, PresenceState(priority=session.priority))
        return last

    def _broadcast(self, session, stanza: domish.Element, extra=()) -> None:
        """
        Send C{stanza} (from C{session}, no C{to}) to the owner's other
        available resources, its subscribers and C{extra} JIDs.
        """
        account = session.account
        full = session.jid.full()
        for other in self._available_sessions(account):
            if other is not session:
                other.send(copy_stanza(stanza, to=other.jid.full()))
        sent = {account}
        for item in self._roster.items(account):
            if item.subscription in ("from", "both") and item.contact not in sent:
                sent.add(item.contact)
                self._service.route(copy_stanza(stanza, to=item.contact))
        for recipient in extra:
            if recipient != full:
                self._service.route(copy_stanza(stanza, to=recipient))

    def _send_unavailable_of(self, account: str, recipient: str) -> None:
        for resource in self._available_sessions(account):
            self._service.route(presence_stanza(resource.jid.full(), recipient, type="unavailable"))

    def _initial(self, session) -> None:
        """
        A resource sent initial presence: it gets its contacts' presence,
        the presence of its own other resources and the waiting requests.
        """
        account = session.account
        full = session.jid.full()
        for other in self._available_sessions(account):
            if other is not session:
                session.send(copy_stanza(self._last_of(other), to=full))
        watching = self._watching.get(account)
        if watching is None:
            self._start_watching(account)
        else:
            for contact, watch in watching.items():
                if watch.active:
                    self._send_contact_state(contact, [session])
        for item in self._roster.items(account):
            if item.subscription in ("to", "both") and not self._service.is_local_domain(_domain_of(item.contact)):
                self._service.route(presence_stanza(account, item.contact, type="probe"))
        for request in self._roster.pending(account):
            element = presence_stanza(request.contact, full, type="subscribe")
            if request.status:
                element.addElement("status", content=request.status)
            session.send(element)

    def _account_went_quiet(self, account: str) -> None:
        if not self._available_sessions(account):
            self._stop_watching(account)

    # -- what a user sees of its local contacts ----------------------------------

    def account_presence(self, account: str) -> PresenceState | None:
        """
        The state of C{account} shown from its bare JID: its aggregated
        state when that does not come from one of its XMPP resources,
        else L{None}.
        """
        if self._presence is None:
            return None
        state = self._presence.state(account)
        if not state.available:
            return None
        for (kind, _), source_state in self._presence.sources(account).items():
            if kind == SOURCE_KIND and source_state == state:
                return None
        return state

    def _send_contact_state(self, contact: str, targets, unavailable_if_none: bool = False) -> None:
        """
        Send C{targets} (sessions) the presence of local account C{contact}:
        each available resource's, and the bare JID's when it says more.
        """
        sent = False
        for resource in self._available_sessions(contact):
            for target in targets:
                target.send(copy_stanza(self._last_of(resource), to=target.jid.full()))
            sent = True
        state = self.account_presence(contact)
        if state is not None:
            for target in targets:
                target.send(presence_stanza(contact, target.jid.full(), state))
            sent = True
        if not sent and unavailable_if_none:
            for target in targets:
                target.send(presence_stanza(contact, target.jid.full(), type="unavailable"))

    def _send_contact_gone(self, contact: str, targets, bare_sent: bool) -> None:
        for resource in self._available_sessions(contact):
            for target in targets:
                target.send(presence_stanza(resource.jid.full(), target.jid.full(), type="unavailable"))
        if bare_sent:
            for target in targets:
                target.send(presence_stanza(contact, target.jid.full(), type="unavailable"))

    def _wants_watch(self, account: str, item) -> str | None:
        """
        The local account to watch for roster C{item} of C{account}, or
        L{None}.
        """
        if item is None or not (item.subscription in ("to", "both") or item.ask):
            return None
        contact = self._service.local_account(item.contact)
        return None if contact is None or contact == account else contact

    def _start_watching(self, account: str) -> None:
        watching = self._watching.setdefault(account, {})
        for item in self._roster.items(account):
            contact = self._wants_watch(account, item)
            if contact is not None and contact not in watching:
                self._watch(account, contact)

    def _watch(self, account: str, contact: str) -> None:
        if self._presence is None:
            return
        watch = _Watching()
        self._watching.setdefault(account, {})[contact] = watch
        try:
            watch.handle = self._presence.watch(
                contact, account, lambda event: self._watch_event(account, contact, watch, event), ask=False
            )
        except TooManyWatchers as e:
            self.log.warn("{account} cannot watch {contact}: {error}", account=account, contact=contact, error=e)
            self._watching[account].pop(contact, None)
            return
        watch.creating = False
        if watch.active:
            self._send_contact_state(contact, self._available_sessions(account))
            watch.bare_sent = self.account_presence(contact)

    def _unwatch(self, account: str, contact: str) -> None:
        watch = self._watching.get(account, {}).pop(contact, None)
        if watch is None:
            return
        if watch.handle is not None:
            watch.handle.cancel()
        if watch.active:
            self._send_contact_gone(contact, self._available_sessions(account), watch.bare_sent is not None)

    def _stop_watching(self, account: str) -> None:
        for watch in self._watching.pop(account, {}).values():
            if watch.handle is not None:
                watch.handle.cancel()

    def _watch_event(self, account: str, contact: str, watch: _Watching, event) -> None:
        if self._watching.get(account, {}).get(contact) is not watch:
            return
        if event.status is WatchStatus.ACTIVE:
            if not watch.active:
                watch.active = True
                if not watch.creating:
                    # After the subscribed stanza and the roster push that
                    # the same change is about to deliver (RFC 6121 3.1.5).
                    self._service.clock.callLater(0, self._now_visible, account, contact, watch)
                return
            self._refresh_bare(account, contact, watch)
        elif event.status is WatchStatus.TERMINATED:
            self._watching[account].pop(contact, None)
            if watch.active:
                watch.active = False
                self._send_contact_gone(contact, self._available_sessions(account), watch.bare_sent is not None)

    def _now_visible(self, account: str, contact: str, watch: _Watching) -> None:
        if self._watching.get(account, {}).get(contact) is not watch or not watch.active:
            return
        self._send_contact_state(contact, self._available_sessions(account))
        watch.bare_sent = self.account_presence(contact)

    def _refresh_bare(self, account: str, contact: str, watch: _Watching) -> None:
        state = self.account_presence(contact)
        if state == watch.bare_sent:
            return
        targets = self._available_sessions(account)
        for target in targets:
            if state is None:
                target.send(presence_stanza(contact, target.jid.full(), type="unavailable"))
            else:
                target.send(presence_stanza(contact, target.jid.full(), state))
        watch.bare_sent = state

    # -- roster events ---------------------------------------------------------

    def roster_changed(self, event) -> None:
        owner = event.owner
        if event.deliver and event.kind is not None:
            for session in self._available_sessions(owner):
                element = presence_stanza(event.contact, session.jid.full(), type=event.kind.value)
                if event.status:
                    element.addElement("status", content=event.status)
                session.send(element)
        if owner not in self._watching:
            return
        wanted = self._wants_watch(owner, event.item)
        contact = self._service.local_account(event.contact)
        if contact is None or contact == owner:
            return
        watching = self._watching[owner]
        if wanted is not None and contact not in watching:
            self._watch(owner, contact)
        elif wanted is None and contact in watching:
            self._unwatch(owner, contact)

    # -- from anywhere to a local account ------------------------------------------

    def deliver(self, element: domish.Element, recipient: JID, account: str | None) -> None:
        """
        A presence stanza for local C{recipient} (account C{account}, or
        L{None} when there is no such account), from a local resource or
        another server.
        """
        kind = element.getAttribute("type")
        if account is None:
            if kind == "probe" and element.getAttribute("from"):
                self._service.route(presence_stanza(recipient.userhost(), element["from"], type="unsubscribed"))
            return
        if kind in SUBSCRIPTION_TYPES:
            self._inbound_subscription(element, account, kind)
        elif kind == "probe":
            self._answer_probe(element, account)
        elif recipient.resource is not None:
            session = self._sessions.resource(account, recipient.resource)
            if session is not None:
                session.send(element)
        elif kind != "error":
            for session in self._available_sessions(account):
                session.send(copy_stanza(element))

    def _inbound_subscription(self, element: domish.Element, account: str, kind: str) -> None:
        sender = element.getAttribute("from")
        try:
            sender = bare_address(sender or "")
        except InvalidContact:
            return
        if self._service.local_account(sender) is not None:
            # Local senders went through IRoster.exchange already.
            return
        self._service.metrics.subscription(kind)
        status = child_text(element, "status") if kind == "subscribe" else None
        try:
            exchange = self._roster.exchange(sender, account, kind, status)
        except RosterError as e:
            self.log.info("Subscription from {sender} to {account} refused: {error}", sender=sender, account=account,
                          error=e)
            return
        inbound = exchange.inbound
        if inbound is None:
            return
        if inbound.reply is not None:
            self._send_subscription_remote(account, sender, inbound.reply.value, None)
        if inbound.send_presence == "unavailable":
            self._send_unavailable_of(account, sender)

    def _answer_probe(self, element: domish.Element, account: str) -> None:
        sender = element.getAttribute("from")
        try:
            watcher = bare_address(sender or "")
        except InvalidContact:
            return
        if not self._roster.is_authorized(account, watcher):
            self._service.route(presence_stanza(account, watcher, type="unsubscribed"))
            return
        resources = self._available_sessions(account)
        for resource in resources:
            self._service.route(copy_stanza(self._last_of(resource), to=sender))
        state = self.account_presence(account)
        if state is not None:
            self._service.route(presence_stanza(account, sender, state))
        elif not resources:
            self._service.route(presence_stanza(account, sender, type="unavailable"))

    # -- IXMPPSessionObserver --------------------------------------------------

    def session_bound(self, session) -> None:
        pass

    def session_unbound(self, session) -> None:
        full = session.jid.full()
        directed = self._directed.pop(full, set())
        if session.available:
            self._last.pop(full, None)
            self._withdraw(session)
            self._broadcast(session, presence_stanza(full, None, type="unavailable"), directed)
            session.available = False
        else:
            for recipient in directed:
                self._service.route(presence_stanza(full, recipient, type="unavailable"))
        self._account_went_quiet(session.account)

    def presence_changed(self, session) -> None:
        pass


def _domain_of(contact: str) -> str:
    return contact.rpartition("@")[2]
