"""
Message-waiting counts per account: what a phone's message lamp shows
(RFC 3842 C{message-summary}).

The counts are set by the CLI (C{SETACCOUNTMWI}) and, once it exists, by
the voicemail application, through L{IMessageWaiting}.  They are stored
(kind C{mwi}, key the account, JSON C{{"new": 2, "old": 5, "urgent_new":
0, "urgent_old": 1}}), so a restart keeps them; watchers (SIP
C{message-summary} subscriptions) hear of every change.
"""

from __future__ import annotations

import json

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IAccountWatcher, IMessageWaiting, IStore

KIND = "mwi"
MAX_COUNT = 1_000_000


def _count(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{attribute.name} must be a whole number from 0 to {MAX_COUNT}, not {value!r}")


@attrs.frozen
class MessageCounts:
    """
    Voice messages of an account: new and old, and how many of each are
    urgent.
    """

    new: int = attrs.field(default=0, validator=_count)
    old: int = attrs.field(default=0, validator=_count)
    urgent_new: int = attrs.field(default=0, validator=_count)
    urgent_old: int = attrs.field(default=0, validator=_count)

    def __attrs_post_init__(self) -> None:
        if self.urgent_new > self.new or self.urgent_old > self.old:
            raise ValueError("urgent messages are counted among the new or old ones, so they cannot be more")

    @property
    def waiting(self) -> bool:
        return self.new > 0


NONE = MessageCounts()


class _Watch:
    def __init__(self, owner, account, callback) -> None:
        self._owner = owner
        self.account = account
        self.callback = callback

    def cancel(self) -> None:
        self._owner._forget(self)


@implementer(IMessageWaiting, IAccountWatcher)
class MessageWaiting:
    """
    The message-waiting counts of every account, over an L{IStore}.
    """

    log = Logger()

    def __init__(self, store: IStore) -> None:
        self._store = store
        self._watches: dict[str, list[_Watch]] = {}

    def counts(self, account: str) -> MessageCounts:
        text = self._store.get(KIND, account)
        if text is None:
            return NONE
        try:
            return MessageCounts(**json.loads(text))
        except (ValueError, TypeError) as error:
            self.log.warn("Damaged message counts of {account} ignored: {error}", account=account, error=error)
            return NONE

    def set_counts(self, account: str, counts: MessageCounts) -> None:
        if not isinstance(counts, MessageCounts):
            raise TypeError(f"counts are MessageCounts, not {type(counts).__name__}")
        old = self.counts(account)
        with self._store.transaction():
            if counts == NONE:
                self._store.delete(KIND, account)
            else:
                self._store.put(KIND, account, json.dumps(attrs.asdict(counts), sort_keys=True))
        if counts != old:
            for watch in list(self._watches.get(account, ())):
                self._tell(watch, counts)

    # IAccountWatcher: the counts follow the account (its subscribers are
    # told of the change like any other).
    def account_removed(self, account: str) -> None:
        self.set_counts(account, NONE)

    def account_renamed(self, old: str, new: str) -> None:
        counts = self.counts(old)
        if counts != NONE:
            self.set_counts(new, counts)
            self.set_counts(old, NONE)

    def watch(self, account: str, callback) -> _Watch:
        watch = _Watch(self, account, callback)
        self._watches.setdefault(account, []).append(watch)
        self._tell(watch, self.counts(account))
        return watch

    def _tell(self, watch: _Watch, counts: MessageCounts) -> None:
        try:
            watch.callback(counts)
        except Exception:
            self.log.failure("A message-waiting watcher of {account} failed", account=watch.account)

    def _forget(self, watch: _Watch) -> None:
        watches = self._watches.get(watch.account)
        if watches and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.account]

    def watcher_count(self) -> int:
        return sum(len(watches) for watches in self._watches.values())
