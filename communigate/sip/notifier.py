"""
The notifier side of RFC 6665 event subscriptions: server-side
subscription dialogs, the NOTIFY requests they send, their timers.

A L{Subscription} is one dialog (RFC 6665 4.1.2, 4.2.1): the SUBSCRIBE's
Call-ID, our To tag, the subscriber's From tag, the event package and its
C{id}, the subscriber's Contact and the route set from its Record-Route,
and the flow NOTIFYs go over (the one the SUBSCRIBE came on when the
subscriber is behind NAT or on a stream).  The L{Notifier} keeps the
table of them and:

  - sends NOTIFYs as client transactions, one at a time per subscription:
    a change while one is in flight replaces any change already waiting,
    so a flood of changes costs at most one NOTIFY per round trip;
  - ends a subscription when it expires (C{terminated;reason=timeout}),
    when the subscriber unsubscribes (Expires 0), when its package says so
    (C{rejected}, C{noresource}, C{deactivated}), and silently when a
    NOTIFY fails (481, any other failure, a timeout, a transport error:
    RFC 6665 4.2.2);
  - forgets everything of a subscription as soon as it ends (its watcher
    callback, its timer, its table entries);
  - bounds the table: C{max_per_account} subscriptions to one account (a
    new one gets 403) and C{max_subscriptions} in all (503 with
    Retry-After).

Sans-IO apart from the two callables it is given: C{send_request(request,
flow, user)} starts a client transaction, C{local_address(transport)}
names our host and port for Via.  Time comes from the injected clock.
"""

from __future__ import annotations

import enum
import math
import os

import attrs
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from communigate.sip.message import Headers, Request
from communigate.sip.uri import SIPURI, parse_uri

DEFAULT_MAX_SUBSCRIPTIONS = 20_000
DEFAULT_MAX_PER_ACCOUNT = 100
RETRY_AFTER = 60


class State(enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


class LimitReached(ValueError):
    """
    No room for another subscription: C{status} (403 for one account, 503
    for the server) and C{reason} for the response.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@attrs.define(eq=False)
class Subscription:
    """
    One subscription dialog, on the notifier's side.

    @ivar local_uri: the resource (the SUBSCRIBE's To URI): From of NOTIFYs.
    @ivar remote: the SUBSCRIBE's From value, tag included: To of NOTIFYs.
    @ivar route_set: the SUBSCRIBE's Record-Route values, in order.
    @ivar flow: where NOTIFYs are sent.
    @ivar on_end: called once when the subscription ends (the package
        stops watching its resource).
    @ivar reason: why it ended (the C{Subscription-State} reason), L{None}
        while it lasts and when it was dropped without a word.
    @ivar final: L{None}, or C{() -> (body, content type)} for the final
        NOTIFY of a subscription that ran out, for packages whose last body
        will not do (C{presence.winfo}: partial documents are versioned).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    package: str
    event_id: str | None
    account: str
    watcher: str
    local_uri: str
    remote: str
    remote_target: str
    route_set: tuple[str, ...]
    flow: object
    local_contact: str
    expires_at: float
    remote_cseq: int
    state: State = State.PENDING
    cseq: int = 0
    version: int = 0
    on_end: object = None
    reason: str | None = None
    final: object = None
    timer: object = None
    in_flight: bool = False
    queued: tuple | None = None
    last: tuple = (b"", None)

    @property
    def key(self) -> tuple:
        return (self.call_id, self.local_tag, self.remote_tag, self.package, self.event_id)


class _NotifyUser:
    """
    The transaction user of one NOTIFY.
    """

    def __init__(self, notifier: Notifier, subscription: Subscription) -> None:
        self._notifier = notifier
        self._subscription = subscription

    def response_received(self, transaction, response) -> None:
        if response.status >= 200:
            self._notifier._answered(self._subscription, response.status)

    def timed_out(self, transaction) -> None:
        self._notifier._answered(self._subscription, 408)

    def transport_error(self, transaction) -> None:
        self._notifier._answered(self._subscription, 503)


class Notifier:
    """
    Every subscription this server notifies.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        send_request,
        local_address,
        *,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
        registry=None,
    ) -> None:
        self._clock = clock
        self._send_request = send_request
        self._local_address = local_address
        self.max_subscriptions = max_subscriptions
        self.max_per_account = max_per_account
        self._table: dict[tuple, Subscription] = {}
        self._by_account: dict[str, int] = {}
        self._notifies = None
        if registry is not None:
            self._notifies = Counter(
                "communigate_sip_notifies",
                "NOTIFY requests we sent, by outcome (ok, refused, failed).",
                ["outcome"],
                registry=registry,
            )
            registry.register(_SubscriptionCollector(self))

    # -- the table -------------------------------------------------------------

    def find(self, call_id, local_tag, remote_tag, package, event_id=None) -> Subscription | None:
        return self._table.get((call_id, local_tag, remote_tag, package, event_id))

    def in_dialog(self, call_id, local_tag) -> bool:
        """Whether any subscription has this Call-ID and our tag."""
        return any(key[0] == call_id and key[1] == local_tag for key in self._table)

    def counts(self) -> dict[str, int]:
        by_package: dict[str, int] = {}
        for subscription in self._table.values():
            by_package[subscription.package] = by_package.get(subscription.package, 0) + 1
        return by_package

    def __len__(self) -> int:
        return len(self._table)

    def check_room(self, account: str) -> None:
        """
        @raise LimitReached: no subscription to C{account} can be added now.
        """
        if len(self._table) >= self.max_subscriptions:
            raise LimitReached(503, "Too many subscriptions on this server")
        if self._by_account.get(account, 0) >= self.max_per_account:
            raise LimitReached(403, "Too many subscriptions to this account")

    def add(self, subscription: Subscription, expires: int) -> Subscription:
        """
        Start C{subscription}, held: its NOTIFYs wait (the latest one) until
        L{release}, so that the caller can send the 200 to the SUBSCRIBE
        first (RFC 6665 4.2.1.2).

        @raise LimitReached: see L{check_room}.
        """
        self.check_room(subscription.account)
        if subscription.key in self._table:
            raise ValueError(f"subscription {subscription.key} exists already")
        subscription.in_flight = True
        self._table[subscription.key] = subscription
        self._by_account[subscription.account] = self._by_account.get(subscription.account, 0) + 1
        self.refresh(subscription, expires, subscription.remote_cseq)
        return subscription

    def refresh(self, subscription: Subscription, expires: int, cseq: int) -> None:
        subscription.remote_cseq = cseq
        subscription.expires_at = self._clock.seconds() + expires
        if subscription.timer is not None and subscription.timer.active():
            subscription.timer.reset(expires)
        else:
            subscription.timer = self._clock.callLater(expires, self._expired, subscription)

    def remaining(self, subscription: Subscription) -> int:
        return max(0, math.ceil(subscription.expires_at - self._clock.seconds()))

    def _expired(self, subscription: Subscription) -> None:
        subscription.timer = None
        self.terminate(subscription, "timeout")

    def _remove(self, subscription: Subscription) -> None:
        if self._table.get(subscription.key) is subscription:
            del self._table[subscription.key]
            left = self._by_account.get(subscription.account, 1) - 1
            if left:
                self._by_account[subscription.account] = left
            else:
                self._by_account.pop(subscription.account, None)
        if subscription.timer is not None and subscription.timer.active():
            subscription.timer.cancel()
        subscription.timer = None
        on_end, subscription.on_end = subscription.on_end, None
        if on_end is not None:
            try:
                on_end()
            except Exception:
                self.log.failure("Ending the {package} subscription to {account} failed",
                                 package=subscription.package, account=subscription.account)

    # -- NOTIFY ------------------------------------------------------------------

    def notify(self, subscription: Subscription, state: State, body: bytes = b"", content_type=None,
               reason: str | None = None) -> None:
        """
        Tell the subscriber C{state} (and C{body}); after the NOTIFY in
        flight when there is one.
        """
        if subscription.state is State.TERMINATED:
            return
        subscription.state = state
        if state is not State.TERMINATED:
            subscription.last = (body, content_type)
        if state is State.TERMINATED:
            subscription.reason = reason or "noresource"
            self._remove(subscription)
        if subscription.in_flight:
            subscription.queued = (state, body, content_type, reason)
            return
        self._send(subscription, state, body, content_type, reason)

    def release(self, subscription: Subscription) -> None:
        """Let a held subscription's NOTIFYs go (see L{add})."""
        if subscription.in_flight and subscription.cseq == 0:
            subscription.in_flight = False
            queued, subscription.queued = subscription.queued, None
            if queued is not None:
                self._send(subscription, *queued)

    def waiting(self, subscription: Subscription) -> bool:
        """
        Whether a NOTIFY of C{subscription} waits unsent behind the one in
        flight: the next L{notify} would replace it.
        """
        return subscription.in_flight and subscription.queued is not None

    def renotify(self, subscription: Subscription) -> None:
        """Send the current state again (after a refresh, RFC 6665 4.2.1.2)."""
        self.notify(subscription, subscription.state, *subscription.last)

    def terminate(self, subscription: Subscription, reason: str) -> None:
        """
        End C{subscription} with a final NOTIFY saying C{reason}; one that
        simply ran out (C{timeout}: expired, unsubscribed, a fetch) carries
        the last state too.
        """
        if reason != "timeout":
            body, content_type = b"", None
        elif subscription.final is not None and subscription.state is not State.TERMINATED:
            body, content_type = subscription.final()
        else:
            body, content_type = subscription.last
        self.notify(subscription, State.TERMINATED, body, content_type, reason=reason)

    def drop(self, subscription: Subscription) -> None:
        """End C{subscription} without telling the subscriber anything."""
        subscription.state = State.TERMINATED
        subscription.queued = None
        self._remove(subscription)

    def _subscription_state(self, subscription: Subscription, state: State, reason: str | None) -> str:
        if state is State.TERMINATED:
            return f"terminated;reason={reason or 'noresource'}"
        return f"{state.value};expires={self.remaining(subscription)}"

    def _send(self, subscription, state, body, content_type, reason) -> None:
        subscription.cseq += 1
        transport = subscription.flow.transport
        host, port = self._local_address("udp" if transport == "udp" else "tcp")
        target = parse_uri(subscription.remote_target)
        routes = list(subscription.route_set)
        if routes:
            first = parse_uri(routes[0].strip().lstrip("<").split(">", 1)[0])
            if isinstance(first, SIPURI) and not first.lr:
                # RFC 3261 12.2.1.1: a strict router takes the Request-URI.
                routes = routes[1:] + [f"<{target}>"]
                target = first
        event = subscription.package + (f";id={subscription.event_id}" if subscription.event_id else "")
        headers = [
            ("Via", f"SIP/2.0/{transport.upper()} {host}:{port};branch=z9hG4bKnt{os.urandom(8).hex()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{subscription.local_uri}>;tag={subscription.local_tag}"),
            ("To", subscription.remote),
            ("Call-ID", subscription.call_id),
            ("CSeq", f"{subscription.cseq} NOTIFY"),
            ("Contact", subscription.local_contact),
            ("Event", event),
            ("Subscription-State", self._subscription_state(subscription, state, reason)),
        ]
        headers += [("Route", route) for route in routes]
        request = Request("NOTIFY", target, Headers(headers)).with_body(body, content_type if body else None)
        subscription.in_flight = True
        try:
            self._send_request(request, subscription.flow, _NotifyUser(self, subscription))
        except OSError as error:
            self.log.info("Cannot send a NOTIFY to {watcher}: {error}", watcher=subscription.watcher, error=error)
            self._answered(subscription, 503)

    def _answered(self, subscription: Subscription, status: int) -> None:
        if not subscription.in_flight:
            return
        subscription.in_flight = False
        if self._notifies is not None:
            outcome = "ok" if status < 300 else "refused" if status not in (408, 503) else "failed"
            self._notifies.labels(outcome).inc()
        if status >= 300:
            # RFC 6665 4.2.2: a failed NOTIFY ends the subscription.
            self.log.info(
                "NOTIFY to {watcher} for {account} ({package}) answered {status}: subscription ended",
                watcher=subscription.watcher, account=subscription.account, package=subscription.package,
                status=status,
            )
            self.drop(subscription)
            return
        queued, subscription.queued = subscription.queued, None
        if queued is not None:
            self._send(subscription, *queued)

    def stop(self) -> None:
        """
        Forget every subscription without NOTIFYs (the server stops; the
        subscribers' refreshes will get 481 and subscribe again).
        """
        for subscription in list(self._table.values()):
            self.drop(subscription)


class _SubscriptionCollector(Collector):
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def collect(self):
        family = GaugeMetricFamily(
            "communigate_sip_subscriptions", "SIP event subscriptions we notify, by package.", labels=["event"]
        )
        for package, count in sorted(self._notifier.counts().items()):
            family.add_metric([package], count)
        yield family

    def describe(self):
        yield GaugeMetricFamily(
            "communigate_sip_subscriptions", "SIP event subscriptions we notify, by package.", labels=["event"]
        )
