"""
One roster per account, shared by every protocol (XMPP, SIP, XIMSS, the
CLI).

A roster holds items (contact, name, groups, subscription, ask) and the
inbound subscription requests that wait for the owner's answer, which RFC
6121 section 3.1.3 keeps apart from the items until they are approved.
Both survive restarts: each roster is one record of kind C{roster}, key
the owner's account name, a JSON value::

  {"items": {"bob@example.com": {"name": "Bob", "groups": ["Work"],
                                 "subscription": "both", "ask": false}},
   "requests": {"carol@example.com": {"status": "hi", "at": 1700000000.0}}}

Subscription stanzas go through the pure state machine of
L{communigate.presence.subscription}.  L{Roster.exchange} carries one
stanza from a sender to a recipient the way two XMPP servers would:
outbound processing on a local sender's roster, inbound processing on a
local recipient's, and the server's automatic answer back; a recipient on
another server is left to the caller to route (C{Exchange.remote}).

Every change is reported to the listeners (L{Roster.add_listener}) as a
L{RosterEvent}, whoever made it: that is how an XMPP session learns about
a request a SIP watcher filed, and how the presence service learns that
an approval authorises a waiting watcher.

Decisions [D]:

  - contacts are bare addresses (C{user@domain}, or a bare domain for a
    server or gateway), kept in lower case; a URI scheme (C{sip:},
    C{xmpp:} ...) and an XMPP resource are dropped.  Aliases are not
    followed: a contact is the address its owner used;
  - C{MaxRosterItems} (account setting, default 500) bounds the items and,
    separately, the waiting requests; a stanza that would go beyond it
    raises L{RosterFull} and changes nothing;
  - the administrator's C{set_subscription} sets a subscription outright
    and, when the contact is a local account, the mirror subscription in
    the contact's roster, so both sides agree.
"""

from __future__ import annotations

import json

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IAccountWatcher, IRoster, IStore
from communigate.presence.subscription import (
    SUBSCRIPTIONS,
    Kind,
    SubscriptionState,
    Transition,
    apply,
    kind_of,
)

KIND = "roster"
MAX_ITEMS_SETTING = "MaxRosterItems"
DEFAULT_MAX_ITEMS = 500
MAX_NAME = 256
MAX_GROUPS = 32
MAX_ADDRESS = 320
_SCHEMES = ("sip:", "sips:", "xmpp:", "pres:", "im:")
_MIRROR = {"none": "none", "to": "from", "from": "to", "both": "both"}


class RosterError(ValueError):
    """A roster change that cannot be made; the message says why."""


class RosterFull(RosterError):
    """The change would take the roster beyond C{MaxRosterItems}."""


class InvalidContact(RosterError):
    """The contact is not an address a roster can hold."""


def bare_address(address: str) -> str:
    """
    C{address} as a roster contact: scheme and resource dropped, lower case.

    @raise InvalidContact: naming what is wrong.
    """
    if not isinstance(address, str):
        raise InvalidContact(f"a contact is an address, not {type(address).__name__}")
    text = address.strip()
    lowered = text.lower()
    for scheme in _SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme):]
            break
    text = text.split("/", 1)[0].split(";", 1)[0].lower()
    local, at, domain = text.rpartition("@")
    if (
        not domain
        or (at and not local)
        or len(text) > MAX_ADDRESS
        or any(c.isspace() or ord(c) < 32 or c in "<>\"," for c in text)
        or "@" in local
    ):
        raise InvalidContact(f"{address!r} is not an address like user@domain")
    return text


@attrs.frozen
class RosterItem:
    """
    One contact in a roster, as RFC 6121 section 2.1.2 describes it.

    @ivar ask: the owner asked for the contact's presence and waits
        (C{ask="subscribe"}).
    """

    contact: str
    name: str = ""
    groups: tuple[str, ...] = ()
    subscription: str = "none"
    ask: bool = False

    def state(self, pending_in: bool = False) -> SubscriptionState:
        return SubscriptionState.of(self.subscription, pending_out=self.ask, pending_in=pending_in)

    def as_data(self) -> dict:
        data = {}
        if self.name:
            data["name"] = self.name
        if self.groups:
            data["groups"] = list(self.groups)
        if self.subscription != "none":
            data["subscription"] = self.subscription
        if self.ask:
            data["ask"] = True
        return data

    @classmethod
    def from_data(cls, contact: str, data: dict) -> RosterItem:
        return cls(
            contact=contact,
            name=str(data.get("name", "")),
            groups=tuple(str(group) for group in data.get("groups", ())),
            subscription=str(data.get("subscription", "none")),
            ask=bool(data.get("ask", False)),
        )


@attrs.frozen
class PendingRequest:
    """
    An inbound subscription request waiting for the owner's answer.

    @ivar status: the text the requester sent with it, if any.
    @ivar received_at: when it arrived (clock seconds), or L{None}.
    """

    contact: str
    status: str | None = None
    received_at: float | None = None


@attrs.frozen
class RosterEvent:
    """
    A change of one (owner, contact) pair, for the listeners.

    @ivar item: the owner's item for the contact after the change, or
        L{None} when there is none (removed, or only a request waits).
    @ivar item_changed: the item changed: a roster push is due.
    @ivar pending_in: whether a request from the contact now waits.
    @ivar cause: C{set}, C{remove}, C{admin}, C{outbound} or C{inbound}.
    @ivar kind: the subscription stanza (a L{Kind}) for C{outbound} and
        C{inbound}, else L{None}.
    @ivar deliver: for C{inbound}: deliver the stanza to the owner's
        resources (a new request, an approval, a cancellation).
    @ivar status: the text an inbound C{subscribe} came with.
    """

    owner: str
    contact: str
    item: RosterItem | None
    item_changed: bool
    pending_in: bool
    cause: str
    kind: Kind | None = None
    deliver: bool = False
    status: str | None = None


@attrs.frozen
class SubscriptionOutcome:
    """
    What one subscription stanza did to the owner's roster.

    @ivar forward: outbound: route the stanza to the contact; inbound:
        deliver it to the owner.
    @ivar reply: the stanza the server answers the contact with on the
        owner's behalf, or L{None}.
    @ivar send_presence: C{available} / C{unavailable}: the owner's
        presence is due to the contact now.
    """

    owner: str
    contact: str
    direction: str
    kind: Kind
    transition: Transition
    item: RosterItem | None

    @property
    def forward(self) -> bool:
        return self.transition.forward

    @property
    def reply(self) -> Kind | None:
        return self.transition.reply

    @property
    def send_presence(self) -> str | None:
        return self.transition.send_presence

    @property
    def changed(self) -> bool:
        return self.transition.changed


@attrs.frozen
class Exchange:
    """
    One stanza carried from a sender to a recipient by L{Roster.exchange}.

    @ivar outbound: the sender's side, or L{None} for a sender on another
        server.
    @ivar inbound: the recipient's side, or L{None} when the stanza was not
        routed or the recipient is on another server.
    @ivar reply: the server's automatic answer as the sender's roster took
        it, or L{None}.
    @ivar remote: the stanza must be routed to another server.
    """

    outbound: SubscriptionOutcome | None
    inbound: SubscriptionOutcome | None = None
    reply: SubscriptionOutcome | None = None
    remote: bool = False


@attrs.frozen
class Removal:
    """
    What removing an item did: the stanzas due to the contact (RFC 6121
    section 2.5.2: C{unsubscribe} if the owner was subscribed or asking,
    C{unsubscribed} if the contact was or asked), the contact's side when
    it is a local account, and whether they must be routed to another
    server.
    """

    item: RosterItem | None
    stanzas: tuple[Kind, ...] = ()
    inbound: tuple[SubscriptionOutcome, ...] = ()
    remote: bool = False


@attrs.define
class _Roster:
    items: dict
    requests: dict

    @classmethod
    def parse(cls, text: str | None) -> _Roster:
        if text is None:
            return cls({}, {})
        data = json.loads(text)
        items = {contact: RosterItem.from_data(contact, value) for contact, value in data.get("items", {}).items()}
        requests = {
            contact: PendingRequest(contact, value.get("status"), value.get("at"))
            for contact, value in data.get("requests", {}).items()
        }
        return cls(items, requests)

    def dumps(self) -> str:
        data = {}
        if self.items:
            data["items"] = {contact: item.as_data() for contact, item in sorted(self.items.items())}
        if self.requests:
            data["requests"] = {
                contact: {"status": request.status, "at": request.received_at}
                for contact, request in sorted(self.requests.items())
            }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    def copy(self) -> _Roster:
        return _Roster(dict(self.items), dict(self.requests))


def _max_items(value) -> int:
    if value is None or value == "":
        return DEFAULT_MAX_ITEMS
    if isinstance(value, str) and value.lower() == "unlimited":
        return 1_000_000
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RosterError(f"{MAX_ITEMS_SETTING} must be a number or unlimited, not {value!r}") from None
    return max(number, 0)


@implementer(IRoster, IAccountWatcher)
class Roster:
    """
    The rosters of every account, over an L{IStore}.

    @param is_local: C{address -> canonical account name or None}: whether
        an address is an account of this server.
    @param max_items: C{owner -> MaxRosterItems value} (the effective
        account setting: a number, a decimal string or C{unlimited}).
    @param clock: stamps when requests arrive; L{None} (the admin tool)
        stamps nothing.
    """

    log = Logger()

    def __init__(self, store: IStore, *, is_local=lambda address: None, max_items=lambda owner: None,
                 clock=None, cache_size: int = 10_000) -> None:
        self._store = store
        self._account_of = is_local
        self._max_items = max_items
        self._clock = clock
        self._listeners: list = []
        self._cache: dict[str, _Roster] = {}
        self._cache_size = cache_size
        self._generation = None

    # -- listeners -------------------------------------------------------------

    def add_listener(self, listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, events) -> None:
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    self.log.failure("A roster listener failed on {owner}/{contact}", owner=event.owner,
                                     contact=event.contact)

    # -- reading ---------------------------------------------------------------

    def _read(self, owner: str) -> _Roster:
        generation = self._store.generation()
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation
        roster = self._cache.get(owner)
        if roster is None:
            roster = _Roster.parse(self._store.get(KIND, owner))
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[owner] = roster
        return roster

    def items(self, owner: str) -> list[RosterItem]:
        return sorted(self._read(owner).items.values(), key=lambda item: item.contact)

    def item(self, owner: str, contact: str) -> RosterItem | None:
        return self._read(owner).items.get(bare_address(contact))

    def pending(self, owner: str) -> list[PendingRequest]:
        return sorted(self._read(owner).requests.values(), key=lambda request: request.contact)

    def is_authorized(self, owner: str, watcher: str) -> bool:
        try:
            watcher = bare_address(watcher)
        except InvalidContact:
            return False
        if watcher == owner:
            return True
        item = self._read(owner).items.get(watcher)
        return item is not None and item.subscription in ("from", "both")

    # -- writing ---------------------------------------------------------------

    def _limit(self, owner: str) -> int:
        return _max_items(self._max_items(owner))

    def _change(self, owner: str, change):
        """
        Run C{change(roster) -> result} on a fresh copy of C{owner}'s
        roster inside one store transaction; save it if it changed.
        """
        with self._store.transaction():
            before = _Roster.parse(self._store.get(KIND, owner))
            roster = before.copy()
            result = change(roster)
            if roster.items != before.items or roster.requests != before.requests:
                if roster.items or roster.requests:
                    self._store.put(KIND, owner, roster.dumps())
                else:
                    self._store.delete(KIND, owner)
        self._cache.pop(owner, None)
        return result

    def _check_room(self, owner: str, roster: _Roster, what: str) -> None:
        limit = self._limit(owner)
        count = len(roster.items) if what == "items" else len(roster.requests)
        if count >= limit:
            noun = "items" if what == "items" else "waiting subscription requests"
            raise RosterFull(f"the roster of {owner} has {limit} {noun}, its {MAX_ITEMS_SETTING}")

    def set_item(self, owner: str, contact: str, name: str | None = None, groups=None) -> RosterItem:
        """
        RFC 6121 section 2.4: add or change an item's name and groups; the
        subscription is not changed by this.
        """
        contact = bare_address(contact)
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
            raise RosterError(f"a roster name is text of at most {MAX_NAME} characters")
        if groups is not None:
            groups = tuple(dict.fromkeys(str(group) for group in groups))
            if len(groups) > MAX_GROUPS or any(not group or len(group) > MAX_NAME for group in groups):
                raise RosterError(f"at most {MAX_GROUPS} groups, each of 1 to {MAX_NAME} characters")

        def change(roster):
            old = roster.items.get(contact)
            if old is None:
                self._check_room(owner, roster, "items")
                old = RosterItem(contact)
            new = attrs.evolve(
                old,
                name=old.name if name is None else name,
                groups=old.groups if groups is None else groups,
            )
            roster.items[contact] = new
            return new, contact in roster.requests

        new, pending_in = self._change(owner, change)
        self._emit([RosterEvent(owner, contact, new, True, pending_in, "set")])
        return new

    def remove_item(self, owner: str, contact: str) -> Removal:
        """
        RFC 6121 section 2.5: remove the item and cancel the subscriptions
        in both directions (a waiting request from the contact is refused
        too).
        """
        contact = bare_address(contact)

        def change(roster):
            item = roster.items.pop(contact, None)
            request = roster.requests.pop(contact, None)
            return item, request is not None

        item, had_request = self._change(owner, change)
        if item is None and not had_request:
            return Removal(None)
        stanzas = []
        if item is not None and (item.subscription in ("to", "both") or item.ask):
            stanzas.append(Kind.UNSUBSCRIBE)
        if had_request or (item is not None and item.subscription in ("from", "both")):
            stanzas.append(Kind.UNSUBSCRIBED)
        self._emit([RosterEvent(owner, contact, None, item is not None, False, "remove")])
        recipient = self._account_of(contact)
        if recipient is None:
            return Removal(item, tuple(stanzas), (), remote=bool(stanzas))
        inbound = tuple(self.inbound(recipient, owner, kind) for kind in stanzas)
        return Removal(item, tuple(stanzas), inbound)

    def _apply(self, owner: str, contact: str, direction: str, kind, status=None) -> SubscriptionOutcome:
        kind = kind_of(kind)
        contact = bare_address(contact)
        if status is not None:
            status = str(status)[:MAX_NAME * 4]

        def change(roster):
            item = roster.items.get(contact)
            pending_in = contact in roster.requests
            state = item.state(pending_in) if item is not None else SubscriptionState(pending_in=pending_in)
            transition = apply(state, direction, kind)
            after = transition.after
            new_item = item
            if item is not None:
                new_item = attrs.evolve(item, subscription=after.subscription, ask=after.pending_out)
            elif after.to or after.from_ or after.pending_out:
                self._check_room(owner, roster, "items")
                new_item = RosterItem(contact, subscription=after.subscription, ask=after.pending_out)
            if after.pending_in and not pending_in:
                self._check_room(owner, roster, "requests")
                now = None if self._clock is None else self._clock.seconds()
                roster.requests[contact] = PendingRequest(contact, status, now)
            elif pending_in and not after.pending_in:
                del roster.requests[contact]
            if new_item is not None:
                roster.items[contact] = new_item
            return transition, new_item, new_item != item

        transition, item, item_changed = self._change(owner, change)
        outcome = SubscriptionOutcome(owner, contact, direction, kind, transition, item)
        if transition.changed or transition.forward:
            self._emit([
                RosterEvent(
                    owner, contact, item, item_changed, transition.after.pending_in, direction, kind,
                    deliver=direction == "inbound" and transition.forward,
                    status=status if kind is Kind.SUBSCRIBE else None,
                )
            ])
        return outcome

    def outbound(self, owner: str, contact: str, kind) -> SubscriptionOutcome:
        """
        The owner sends a subscription stanza to the contact: the owner's
        side only (RFC 6121 A.2).
        """
        return self._apply(owner, contact, "outbound", kind)

    def inbound(self, owner: str, contact: str, kind, status=None) -> SubscriptionOutcome:
        """
        A subscription stanza from the contact arrives for the owner: the
        owner's side only (RFC 6121 A.3).
        """
        return self._apply(owner, contact, "inbound", kind, status)

    def exchange(self, sender: str, recipient: str, kind, status=None) -> Exchange:
        """
        Carry a stanza from C{sender} to C{recipient} (addresses; local
        accounts are processed here, others left to the caller).
        """
        kind = kind_of(kind)
        sender_account = self._account_of(bare_address(sender))
        recipient_account = self._account_of(bare_address(recipient))
        sender_address = sender_account or bare_address(sender)
        recipient_address = recipient_account or bare_address(recipient)
        out = None
        forward = True
        if sender_account is not None:
            out = self.outbound(sender_account, recipient_address, kind)
            forward = out.forward
        if not forward:
            return Exchange(out)
        if recipient_account is None:
            return Exchange(out, remote=True)
        inbound = self.inbound(recipient_account, sender_address, kind, status)
        reply = None
        if inbound.reply is not None and sender_account is not None:
            reply = self.inbound(sender_account, recipient_address, inbound.reply)
        return Exchange(out, inbound, reply)

    def set_subscription(self, owner: str, contact: str, subscription: str) -> RosterItem:
        """
        The administrator sets the subscription outright (CLI C{ROSTER
        Update}); a request it grants stops waiting.  A local contact gets
        the mirror subscription.
        """
        if subscription not in SUBSCRIPTIONS:
            raise RosterError(f"subscription must be one of {', '.join(SUBSCRIPTIONS)}, not {subscription!r}")
        contact = bare_address(contact)
        item = self._set_subscription(owner, contact, subscription)
        peer = self._account_of(contact)
        if peer is not None and peer != owner:
            self._set_subscription(peer, owner, _MIRROR[subscription])
        return item

    def _set_subscription(self, owner: str, contact: str, subscription: str) -> RosterItem:
        state = SubscriptionState.of(subscription)

        def change(roster):
            old = roster.items.get(contact)
            if old is None:
                self._check_room(owner, roster, "items")
                old = RosterItem(contact)
            new = attrs.evolve(old, subscription=subscription, ask=old.ask and not state.to)
            if state.from_:
                roster.requests.pop(contact, None)
            roster.items[contact] = new
            return new, contact in roster.requests

        new, pending_in = self._change(owner, change)
        self._emit([RosterEvent(owner, contact, new, True, pending_in, "admin")])
        return new

    def forget(self, owner: str) -> None:
        """
        Drop C{owner}'s roster (the account is gone).
        """
        with self._store.transaction():
            self._store.delete(KIND, owner)
        self._cache.pop(owner, None)

    # IAccountWatcher: a deleted account's roster goes with it (another
    # account created with the name later starts empty); a renamed one's
    # follows it.  Other rosters that list the account keep their items:
    # they are those users' data, and the contact simply stays offline.
    account_removed = forget

    def account_renamed(self, old: str, new: str) -> None:
        with self._store.transaction():
            text = self._store.get(KIND, old)
            if text is not None:
                self._store.put(KIND, new, text)
                self._store.delete(KIND, old)
        self._cache.pop(old, None)
        self._cache.pop(new, None)

    def count(self) -> int:
        """How many rosters are stored."""
        return self._store.count(KIND)
