"""
The C{presence.winfo} event package (RFC 3857) with RFC 3858 bodies: the
owner of an account learns who watches its presence, and who asks to.

The presence core is one for every protocol, so an account's watchers are
[D]:

  - each SIP C{presence} subscription to the account (fetches aside):
    C{sip:watcher}, C{pending} until the roster authorises it, C{active}
    after (event C{subscribe}, or C{approved} when it was pending), and
    C{terminated} when the subscription ends: C{rejected} when the owner
    refused or revoked it, C{timeout} when an active one ran out or was
    unsubscribed, C{giveup} when a pending one did (it stopped waiting for
    an answer), C{deactivated} when the presence service stopped;
  - each contact of the account's roster: C{xmpp:contact}, C{active} when
    the roster gives it the owner's presence (subscription C{from} or
    C{both}: its XMPP clients receive it), C{pending} while its
    subscription request waits for the owner's answer, C{terminated}
    when either goes (C{rejected} when the owner refused or removed it,
    C{timeout}/C{giveup} when the contact itself cancelled).

A SIP watcher that is not authorised files a roster request, so it is
listed twice until the owner answers: its SIP subscription, and the
request the owner answers from any protocol.

Changes are gathered for one turn of the reactor and sent as one
C{partial} document to each C{presence.winfo} subscriber of the account,
C{version} one higher each time.  A subscriber's first NOTIFY, its
refreshes, and any NOTIFY that would replace one still waiting behind
the one in flight (the notifier keeps only the latest) carry the C{full}
state instead, so no partial change is ever lost (RFC 3858 4.4: a full
document is taken whatever its version).
"""

from __future__ import annotations

import hashlib
import itertools

import attrs
from twisted.internet.interfaces import IReactorTime

from communigate.formats import watcherinfo
from communigate.formats.watcherinfo import Watcher, WatcherInfo, WatcherList
from communigate.sip.notifier import Notifier, State, Subscription

EVENT = "presence.winfo"
WATCHED_PACKAGE = "presence"
CONTENT_TYPE = watcherinfo.CONTENT_TYPE
_AUTHORISING = ("from", "both")


def _sip_uri(watcher: str) -> str:
    return watcher if ":" in watcher.partition("@")[0] else f"sip:{watcher}"


def _roster_id(contact: str) -> str:
    return "r" + hashlib.sha256(contact.encode("utf-8")).hexdigest()[:16]


def _ended_event(reason: str | None, was: str) -> str:
    if reason in ("rejected", "deactivated", "noresource", "probation"):
        return reason
    return "timeout" if was == "active" else "giveup"


class PresenceWatchers:
    """
    The watchers of every account's presence, and the C{presence.winfo}
    subscriptions that follow them.

    @param clock: where a turn's changes are gathered (C{callLater(0)}).
    @param notifier: sends the NOTIFYs.
    @param roster: the L{communigate.interfaces.IRoster}; its listeners
        report XMPP and CLI subscriptions and every approval.
    """

    def __init__(self, clock: IReactorTime, notifier: Notifier, roster) -> None:
        self._clock = clock
        self._notifier = notifier
        self._roster = roster
        self._ids = itertools.count(1)
        self._sip: dict[str, dict[Subscription, Watcher]] = {}
        self._contacts: dict[str, dict[str, Watcher]] = {}
        self._subscribers: dict[str, list[Subscription]] = {}
        self._changes: dict[str, dict[str, Watcher]] = {}
        self._flushes: dict[str, object] = {}
        self._stopped = True

    def start(self) -> None:
        """Follow the roster (with the SIP service)."""
        if self._stopped:
            self._stopped = False
            self._roster.add_listener(self._roster_changed)

    def stop(self) -> None:
        """Stop following; every subscription is about to be forgotten."""
        self._stopped = True
        self._roster.remove_listener(self._roster_changed)
        for call in self._flushes.values():
            if call.active():
                call.cancel()
        self._flushes.clear()
        self._changes.clear()

    # -- SIP presence subscriptions ----------------------------------------------

    def presence_status(self, subscription: Subscription, status: str) -> None:
        """A SIP C{presence} subscription is now C{pending} or C{active}."""
        watchers = self._sip.setdefault(subscription.account, {})
        old = watchers.get(subscription)
        if old is not None and old.status == status:
            return
        if old is None:
            watcher = Watcher(f"s{next(self._ids)}", _sip_uri(subscription.watcher), status, "subscribe")
        else:
            watcher = attrs.evolve(old, status=status, event="approved" if status == "active" else "subscribe")
        watchers[subscription] = watcher
        self._touch(subscription.account, watcher)

    def presence_ended(self, subscription: Subscription) -> None:
        """A SIP C{presence} subscription ended (C{subscription.reason} says why)."""
        watchers = self._sip.get(subscription.account)
        old = None if watchers is None else watchers.pop(subscription, None)
        if old is None:
            return
        if not watchers:
            del self._sip[subscription.account]
        event = _ended_event(subscription.reason, old.status)
        self._touch(subscription.account, attrs.evolve(old, status="terminated", event=event))

    # -- the roster -----------------------------------------------------------------

    def _contact_watchers(self, account: str) -> dict[str, Watcher]:
        known = self._contacts.get(account)
        if known is not None:
            return known
        watchers = {}
        for item in self._roster.items(account):
            if item.subscription in _AUTHORISING:
                watchers[item.contact] = Watcher(_roster_id(item.contact), f"xmpp:{item.contact}", "active",
                                                 "approved", display_name=item.name or None)
        for request in self._roster.pending(account):
            if request.contact not in watchers:
                watchers[request.contact] = Watcher(_roster_id(request.contact), f"xmpp:{request.contact}",
                                                    "pending", "subscribe")
        return watchers

    def _roster_changed(self, event) -> None:
        known = self._contacts.get(event.owner)
        if known is None:
            return
        contact = event.contact
        old = known.get(contact)
        item = event.item
        if item is not None and item.subscription in _AUTHORISING:
            status = "active"
        elif event.pending_in:
            status = "pending"
        else:
            status = None
        if status is None:
            if old is None:
                return
            del known[contact]
            event_name = "rejected" if event.cause != "inbound" else _ended_event(None, old.status)
            self._touch(event.owner, attrs.evolve(old, status="terminated", event=event_name))
            return
        name = (item.name or None) if item is not None else None
        if old is not None and old.status == status and old.display_name == name:
            return
        if old is not None and old.status == status:
            event_name = old.event
        else:
            # A contact the roster lets see the presence was let in by the
            # owner (or the administrator): approved, as a full document
            # built from the roster says too.
            event_name = "approved" if status == "active" else "subscribe"
        watcher = Watcher(_roster_id(contact), f"xmpp:{contact}", status, event_name, display_name=name)
        known[contact] = watcher
        self._touch(event.owner, watcher)

    # -- winfo subscriptions -------------------------------------------------------

    def subscribed(self, subscription: Subscription, fetch: bool) -> None:
        """A C{presence.winfo} subscription begins: the full state at once."""
        account = subscription.account
        self._flush(account)
        if not fetch:
            if account not in self._subscribers:
                self._contacts[account] = self._contact_watchers(account)
            self._subscribers.setdefault(account, []).append(subscription)
            subscription.on_end = lambda: self._unsubscribed(subscription)
        subscription.final = lambda: self._full(subscription)
        self._notifier.notify(subscription, State.ACTIVE, *self._full(subscription))

    def refreshed(self, subscription: Subscription) -> None:
        """A refresh gets the full state again (RFC 3857 5.4)."""
        self._notifier.notify(subscription, State.ACTIVE, *self._full(subscription))

    def _unsubscribed(self, subscription: Subscription) -> None:
        account = subscription.account
        subscribers = self._subscribers.get(account, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._subscribers.pop(account, None)
            self._contacts.pop(account, None)
            self._changes.pop(account, None)
            call = self._flushes.pop(account, None)
            if call is not None and call.active():
                call.cancel()

    def _current(self, account: str) -> list[Watcher]:
        contacts = self._contacts.get(account)
        if contacts is None:
            contacts = self._contact_watchers(account)
        return [*self._sip.get(account, {}).values(), *contacts.values()]

    def _document(self, subscription: Subscription, state: str, watchers) -> tuple[bytes, str]:
        version = subscription.version
        subscription.version += 1
        watcher_list = WatcherList(f"sip:{subscription.account}", WATCHED_PACKAGE, tuple(watchers))
        return watcherinfo.serialize(WatcherInfo(version, state, (watcher_list,))), CONTENT_TYPE

    def _full(self, subscription: Subscription) -> tuple[bytes, str]:
        return self._document(subscription, "full", self._current(subscription.account))

    def _touch(self, account: str, watcher: Watcher) -> None:
        if self._stopped or account not in self._subscribers:
            return
        self._changes.setdefault(account, {})[watcher.id] = watcher
        if account not in self._flushes:
            self._flushes[account] = self._clock.callLater(0, self._flush, account)

    def _flush(self, account: str) -> None:
        call = self._flushes.pop(account, None)
        if call is not None and call.active():
            call.cancel()
        changes = self._changes.pop(account, None)
        if not changes:
            return
        for subscription in list(self._subscribers.get(account, ())):
            if self._notifier.waiting(subscription):
                body = self._full(subscription)
            else:
                body = self._document(subscription, "partial", changes.values())
            self._notifier.notify(subscription, State.ACTIVE, *body)

    def counts(self) -> dict[str, int]:
        """Watchers known by kind, and accounts followed, for tests and metrics."""
        return {
            "sip": sum(len(watchers) for watchers in self._sip.values()),
            "accounts_followed": len(self._subscribers),
        }
