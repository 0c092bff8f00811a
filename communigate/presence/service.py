"""
The presence service: every source of every account, one aggregated state
per account, and the watchers of those states.

Sources publish L{PresenceState}s (an XMPP resource's presence, a SIP
PUBLISH, a registered phone, a XIMSS session); the service aggregates them
(L{communigate.presence.state.aggregate}) and tells each watcher of the
account when the aggregated state changes.  Whether a watcher may see the
state is the owner's roster's answer (L{IRoster.is_authorized}); so an
approval given from any protocol (an XMPP C{subscribed}, the CLI) lets a
SIP watcher of the same account in, and a refusal ends it.

State is in memory: sources come back by themselves after a restart (SIP
registrations are reloaded with the bindings, sessions log in again, SIP
publishers refresh and, on 412, publish afresh).  Time comes from the
injected clock only.

Bounds: at most C{max_sources} sources and C{max_watchers} watchers per
account (L{TooManySources}, L{TooManyWatchers}); an account with neither
leaves nothing behind.
"""

from __future__ import annotations

import enum
import itertools

import attrs
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IPresenceService, IPresenceWatch, IRoster
from communigate.presence.roster import bare_address
from communigate.presence.state import OFFLINE, PresenceState, SourceState, aggregate
from communigate.presence.subscription import Kind

DEFAULT_MAX_SOURCES = 64
DEFAULT_MAX_WATCHERS = 1000
MAX_SOURCE_ID = 512


class TooManySources(ValueError):
    """An account has as many sources as the service allows."""


class TooManyWatchers(ValueError):
    """An account has as many watchers as the service allows."""


class WatchStatus(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


@attrs.frozen
class WatchEvent:
    """
    What a watcher is told.

    @ivar state: the aggregated state, when C{status} is C{ACTIVE}.
    @ivar reason: why, when C{status} is C{TERMINATED}: C{rejected} (the
        owner refused or revoked) or C{deactivated} (the service stopped).
    """

    account: str
    watcher: str
    status: WatchStatus
    state: PresenceState | None = None
    reason: str | None = None


def _check_source(source) -> tuple[str, str]:
    if (
        not isinstance(source, tuple)
        or len(source) != 2
        or not all(isinstance(part, str) and part for part in source)
        or len(source[1]) > MAX_SOURCE_ID
    ):
        raise ValueError(f"a presence source is (kind, id), two non-empty strings, not {source!r}")
    return source


@implementer(IPresenceWatch)
class Watch:
    """
    One watcher of one account; L{cancel} ends it.
    """

    def __init__(self, service, account: str, watcher: str, callback, ask: bool) -> None:
        self._service = service
        self.account = account
        self.watcher = watcher
        self.ask = ask
        self.status = WatchStatus.PENDING
        self._callback = callback
        self._last = None

    def cancel(self) -> None:
        if self.status is not WatchStatus.TERMINATED:
            self.status = WatchStatus.TERMINATED
            self._service._forget_watch(self)

    def _deliver(self, event: WatchEvent, log) -> None:
        key = (event.status, event.state, event.reason)
        if key == self._last:
            return
        self._last = key
        self.status = event.status
        try:
            self._callback(event)
        except Exception:
            log.failure("A presence watcher of {account} failed", account=self.account)


@attrs.define
class _Source:
    state: PresenceState
    sequence: int
    timer: object = None


@implementer(IPresenceService)
class PresenceService:
    """
    The L{IPresenceService} of one server.
    """

    log = Logger()

    def __init__(
        self,
        roster: IRoster,
        clock: IReactorTime,
        *,
        registry=None,
        max_sources: int = DEFAULT_MAX_SOURCES,
        max_watchers: int = DEFAULT_MAX_WATCHERS,
    ) -> None:
        self._roster = roster
        self._clock = clock
        self.max_sources = max_sources
        self.max_watchers = max_watchers
        self._sources: dict[str, dict[tuple, _Source]] = {}
        self._current: dict[str, PresenceState] = {}
        self._watches: dict[str, dict[int, Watch]] = {}
        self._sequence = itertools.count(1)
        self._changes = None
        roster.add_listener(self._roster_changed)
        if registry is not None:
            self._changes = Counter(
                "communigate_presence_changes",
                "Changes of an account's aggregated presence.",
                registry=registry,
            )
            registry.register(_PresenceCollector(self))

    # -- sources ---------------------------------------------------------------

    def publish(self, account: str, source, state: PresenceState, expires: float | None = None) -> None:
        source = _check_source(source)
        if not isinstance(state, PresenceState):
            raise TypeError(f"a presence state is a PresenceState, not {type(state).__name__}")
        if expires is not None and not expires > 0:
            raise ValueError(f"expires must be a positive number of seconds, not {expires!r}")
        sources = self._sources.get(account, {})
        old = sources.get(source)
        if old is None and len(sources) >= self.max_sources:
            raise TooManySources(f"{account} has {self.max_sources} presence sources already")
        if old is not None and old.timer is not None and old.timer.active():
            old.timer.cancel()
        entry = _Source(state, next(self._sequence))
        if expires is not None:
            entry.timer = self._clock.callLater(expires, self._expired, account, source, entry.sequence)
        self._sources.setdefault(account, {})[source] = entry
        self._changed(account)

    def withdraw(self, account: str, source) -> bool:
        sources = self._sources.get(account)
        if not sources or source not in sources:
            return False
        entry = sources.pop(source)
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        if not sources:
            del self._sources[account]
        self._changed(account)
        return True

    def _expired(self, account: str, source, sequence: int) -> None:
        entry = self._sources.get(account, {}).get(source)
        if entry is not None and entry.sequence == sequence:
            entry.timer = None
            self.log.debug("Presence source {source} of {account} expired", source=source, account=account)
            self.withdraw(account, source)

    def state(self, account: str) -> PresenceState:
        return self._current.get(account, OFFLINE)

    def status(self, account: str):
        if account not in self._sources:
            return None
        state = self.state(account)
        return state.status_string, state.status

    def sources(self, account: str) -> dict:
        return {source: entry.state for source, entry in self._sources.get(account, {}).items()}

    def _changed(self, account: str) -> None:
        sources = self._sources.get(account)
        new = OFFLINE if not sources else aggregate(
            SourceState(source, entry.state, entry.sequence) for source, entry in sources.items()
        )
        old = self._current.get(account, OFFLINE)
        if sources:
            self._current[account] = new
        else:
            self._current.pop(account, None)
        if new == old:
            return
        if self._changes is not None:
            self._changes.inc()
        for watch in list(self._watches.get(account, {}).values()):
            if watch.status is WatchStatus.ACTIVE:
                watch._deliver(WatchEvent(account, watch.watcher, WatchStatus.ACTIVE, new), self.log)

    # -- watchers --------------------------------------------------------------

    def watch(self, account: str, watcher: str, callback, ask: bool = True) -> Watch:
        watcher = bare_address(watcher)
        watches = self._watches.get(account, {})
        if len(watches) >= self.max_watchers:
            raise TooManyWatchers(f"{account} has {self.max_watchers} presence watchers already")
        if ask and not self._roster.is_authorized(account, watcher):
            # RFC 3856 5.1 / RFC 6121 3.1.3: the subscription is a request
            # the owner answers; the roster keeps it across logins.
            self._roster.exchange(watcher, account, Kind.SUBSCRIBE)
        watch = Watch(self, account, watcher, callback, ask)
        self._watches.setdefault(account, {})[id(watch)] = watch
        self._evaluate(watch, pending_in=None)
        return watch

    def _forget_watch(self, watch: Watch) -> None:
        watches = self._watches.get(watch.account)
        if watches is not None:
            watches.pop(id(watch), None)
            if not watches:
                del self._watches[watch.account]

    def _evaluate(self, watch: Watch, pending_in: bool | None) -> None:
        if watch.status is WatchStatus.TERMINATED:
            return
        account = watch.account
        if self._roster.is_authorized(account, watch.watcher):
            watch._deliver(WatchEvent(account, watch.watcher, WatchStatus.ACTIVE, self.state(account)), self.log)
            return
        if pending_in is None:
            pending_in = any(request.contact == watch.watcher for request in self._roster.pending(account))
        if watch.status is WatchStatus.ACTIVE or (watch.ask and not pending_in and watch._last is not None):
            self._terminate(watch, "rejected")
            return
        watch._deliver(WatchEvent(account, watch.watcher, WatchStatus.PENDING), self.log)

    def _terminate(self, watch: Watch, reason: str) -> None:
        self._forget_watch(watch)
        watch._deliver(WatchEvent(watch.account, watch.watcher, WatchStatus.TERMINATED, reason=reason), self.log)
        watch.status = WatchStatus.TERMINATED

    def _roster_changed(self, event) -> None:
        for watch in list(self._watches.get(event.owner, {}).values()):
            if watch.watcher == event.contact:
                self._evaluate(watch, pending_in=event.pending_in)

    # -- the whole service ---------------------------------------------------------

    def counts(self) -> dict:
        """
        Sources by kind and watchers by status, for metrics and tests.
        """
        sources: dict[str, int] = {}
        for by_source in self._sources.values():
            for kind, _ in by_source:
                sources[kind] = sources.get(kind, 0) + 1
        watchers = {"pending": 0, "active": 0}
        for by_id in self._watches.values():
            for watch in by_id.values():
                if watch.status.value in watchers:
                    watchers[watch.status.value] += 1
        return {"accounts": len(self._sources), "sources": sources, "watchers": watchers}

    def stop(self) -> None:
        """
        End every watcher (C{deactivated}) and cancel every expiry timer.
        """
        for watches in list(self._watches.values()):
            for watch in list(watches.values()):
                self._terminate(watch, "deactivated")
        for sources in self._sources.values():
            for entry in sources.values():
                if entry.timer is not None and entry.timer.active():
                    entry.timer.cancel()
                entry.timer = None


class _PresenceCollector(Collector):
    """
    C{communigate_presence_sources{kind}}, C{communigate_presence_watchers{status}}
    and C{communigate_presence_accounts}, read at scrape time.
    """

    def __init__(self, service: PresenceService) -> None:
        self._service = service

    def collect(self):
        counts = self._service.counts()
        sources = GaugeMetricFamily(
            "communigate_presence_sources", "Published presence sources, by kind.", labels=["kind"]
        )
        for kind, count in sorted(counts["sources"].items()):
            sources.add_metric([kind], count)
        yield sources
        watchers = GaugeMetricFamily(
            "communigate_presence_watchers", "Presence watchers (subscriptions), by status.", labels=["status"]
        )
        for status, count in sorted(counts["watchers"].items()):
            watchers.add_metric([status], count)
        yield watchers
        yield GaugeMetricFamily(
            "communigate_presence_accounts", "Accounts with at least one presence source.", value=counts["accounts"]
        )

    def describe(self):
        yield GaugeMetricFamily("communigate_presence_sources", "Published presence sources, by kind.", labels=["kind"])
        yield GaugeMetricFamily(
            "communigate_presence_watchers", "Presence watchers (subscriptions), by status.", labels=["status"]
        )
        yield GaugeMetricFamily("communigate_presence_accounts", "Accounts with at least one presence source.")
