"""
Offline messages (RFC 6121 section 8.5.2.2, XEP-0160): messages for an
account none of whose resources could take them, kept in the store until
the account next sends available presence with a non-negative priority.

Each message is one record of kind L{KIND}, key C{account/sequence} (ten
digits, so the store's key order is the arrival order), value a JSON
object: C{{"at": seconds, "stanza": "<message …/>"}}.  Storing is
committed before the sender is told anything, so a crash loses no stored
message; delivery reads and deletes a batch in one transaction and adds
the XEP-0203 C{<delay/>} with the time it was stored.

The queue of each account is bounded by the XMPP setting
C{MaxOfflineMessages} (0 turns storage off); a message beyond it is not
stored, and the caller answers the sender C{service-unavailable}, the same
answer an unknown account gets (RFC 6121 section 8.5.1 leaks nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.logger import Logger
from twisted.words.xish import domish
from zope.interface import implementer

from communigate.interfaces import IAccountWatcher
from communigate.xmpp.stanzas import delay, parse_stored, serialized

KIND = "xmpp-offline"


@implementer(IAccountWatcher)
class OfflineMessages:
    """
    The offline queues of every account, over an L{IStore}.

    @param limit: returns the C{MaxOfflineMessages} in force.
    @param clock: stamps when a message was stored.
    """

    log = Logger()

    def __init__(self, store, clock, limit: Callable[[], int]) -> None:
        self._store = store
        self._clock = clock
        self._limit = limit

    def store(self, account: str, element: domish.Element) -> bool:
        """
        Keep C{element} for C{account}; whether it was kept (L{False} when
        the queue is full or storage is off).
        """
        limit = self._limit()
        if limit <= 0:
            return False
        value = json.dumps({"at": self._clock.seconds(), "stanza": serialized(element)}, separators=(",", ":"))
        with self._store.transaction():
            keys = self._store.keys(KIND, account + "/")
            if len(keys) >= limit:
                self.log.info("Offline queue of {account} is full ({limit})", account=account, limit=limit)
                return False
            sequence = int(keys[-1].rsplit("/", 1)[1]) + 1 if keys else 1
            self._store.put(KIND, f"{account}/{sequence:010d}", value)
        return True

    def count(self, account: str) -> int:
        """
        How many messages wait for C{account}.
        """
        return len(self._store.scan(KIND, account + "/"))

    def total(self) -> int:
        """
        How many messages wait, for every account together.
        """
        return self._store.count(KIND)

    def take(self, account: str, origin: str) -> list[domish.Element]:
        """
        Remove and return the messages waiting for C{account}, oldest first,
        each with a C{<delay/>} from C{origin} (the domain).  A record that
        does not parse is logged and dropped.
        """
        messages = []
        with self._store.transaction():
            for key, value in self._store.scan(KIND, account + "/"):
                self._store.delete(KIND, key)
                try:
                    record = json.loads(value)
                    element = parse_stored(record["stanza"])
                    stored_at = float(record["at"])
                except (KeyError, TypeError, ValueError) as e:
                    self.log.error("Offline message {key} is unreadable and dropped: {error}", key=key, error=e)
                    continue
                element.addChild(delay(stored_at, origin, "Offline Storage"))
                messages.append(element)
        return messages

    def forget(self, account: str) -> int:
        """
        Drop every message waiting for C{account} (the account is gone).
        """
        with self._store.transaction():
            keys = self._store.keys(KIND, account + "/")
            for key in keys:
                self._store.delete(KIND, key)
        return len(keys)

    # IAccountWatcher
    def account_removed(self, account: str) -> None:
        dropped = self.forget(account)
        if dropped:
            self.log.info("Dropped {count} offline messages of deleted {account}", count=dropped, account=account)

    def account_renamed(self, old: str, new: str) -> None:
        with self._store.transaction():
            for key, value in self._store.scan(KIND, old + "/"):
                self._store.put(KIND, new + key[len(old):], value)
                self._store.delete(KIND, key)
