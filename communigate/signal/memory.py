"""
In-memory endpoints and routes for the Signal service.

The protocol packages add the real endpoint kinds (SIP registrations, XMPP
resources, XIMSS sessions, PBX tasks).  These ones live in memory, answer
from a script on an injected clock and record what they saw, so that the
service -- and anything built on it -- can be tested with
L{twisted.internet.task.Clock} alone:

    clock = Clock()
    router = MemoryRouter({"bob@example.com": Route(Module.LOCAL, "bob@example.com")})
    phones = MemoryEndpointSource()
    phones.register("bob@example.com", ScriptedEndpoint(clock, [(2, response(200))]))
"""

from collections.abc import Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from communigate.interfaces import IDelivery, IEndpoint, IEndpointSource, IRouter
from communigate.routing.route import AddressKind, Route, RoutingError
from communigate.signal.model import Response, Signal, response

__all__ = ["MemoryEndpointSource", "MemoryRouter", "ScriptedEndpoint"]


@implementer(IEndpointSource)
class MemoryEndpointSource:
    """
    Accounts' endpoints kept in a dict: what registrations would be.
    """

    def __init__(self) -> None:
        self._endpoints: dict[str, list] = {}

    def register(self, account: str, endpoint) -> None:
        """
        Ring C{endpoint} (an L{IEndpoint}) for Signals to C{account}.
        Registering the same endpoint twice keeps one registration.
        """
        registered = self._endpoints.setdefault(account, [])
        if not any(known is endpoint for known in registered):
            registered.append(endpoint)

    def unregister(self, account: str, endpoint) -> None:
        """
        Stop ringing C{endpoint} for C{account}; unknown ones are ignored.
        """
        registered = self._endpoints.get(account, [])
        remaining = [known for known in registered if known is not endpoint]
        if remaining:
            self._endpoints[account] = remaining
        else:
            self._endpoints.pop(account, None)

    def endpoints(self, account: str) -> list:
        return list(self._endpoints.get(account, ()))


@implementer(IRouter)
class MemoryRouter:
    """
    Routes from a dict: an address maps to a L{Route}, or to a
    L{RoutingError} to fail with.  Unknown addresses fail with
    C{RoutingError("unknown address ...")}.

    @ivar requests: every C{(address, kind, on_behalf_of)} asked, in order.
    """

    def __init__(self, routes: Mapping[str, Route | RoutingError] | None = None) -> None:
        self.routes: dict[str, Route | RoutingError] = dict(routes or {})
        self.requests: list[tuple[str, AddressKind, str | None]] = []

    def add(self, address: str, route: Route | RoutingError) -> None:
        self.routes[address] = route

    def route(self, address, kind, on_behalf_of=None) -> Deferred:
        self.requests.append((address, kind, on_behalf_of))
        found = self.routes.get(address)
        if found is None:
            return fail(RoutingError(f"unknown address {address!r}"))
        if isinstance(found, RoutingError):
            return fail(found)
        return succeed(found)


@implementer(IDelivery)
class _ScriptedDelivery:
    """
    One Signal delivered to a L{ScriptedEndpoint}: plays the script.
    """

    def __init__(self, endpoint: "ScriptedEndpoint", responder) -> None:
        self._endpoint = endpoint
        self._responder = responder
        self._calls: list[IDelayedCall] = []
        self.answered = False

    def play(self, script) -> None:
        for delay, answer in script:
            if self.answered:
                return
            if delay:
                self._calls.append(self._endpoint.clock.callLater(delay, self._answer, answer))
            else:
                self._answer(answer)

    def _answer(self, answer: Response) -> None:
        if self.answered:
            return
        if answer.provisional:
            self._responder.provisional(answer)
            return
        self.answered = True
        self._stop_timers()
        self._responder.final(answer)

    def _stop_timers(self) -> None:
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []

    def cancel(self) -> None:
        self._endpoint.cancelled += 1
        if not self.answered:
            self._answer(response(487, origin=self._endpoint.description))


@implementer(IEndpoint)
class ScriptedEndpoint:
    """
    An endpoint that answers every Signal delivered to it from a script.

    @param script: C{(delay_seconds, Response)} pairs; each delivery plays
        them, a response C{delay_seconds} after the delivery (0: at once,
        inside C{deliver}, before it returns).  Provisional responses are
        reported as such; the first final response ends the delivery and
        the rest of the script.  A script without a final response rings
        until cancelled.
    @ivar delivered: every Signal delivered, in order.
    @ivar cancelled: how many times a delivery was cancelled.  A cancelled
        delivery that has not answered answers 487.
    """

    def __init__(
        self,
        clock: IReactorTime,
        script: Iterable[tuple[float, Response]] = (),
        description: str = "scripted endpoint",
    ) -> None:
        self.clock = clock
        self.description = description
        # Responses without an origin are stamped with this endpoint's.
        self.script = [
            (delay, answer if answer.origin else attrs.evolve(answer, origin=description))
            for delay, answer in script
        ]
        self.delivered: list[Signal] = []
        self.cancelled = 0

    def deliver(self, signal: Signal, responder) -> IDelivery:
        self.delivered.append(signal)
        delivery = _ScriptedDelivery(self, responder)
        delivery.play(self.script)
        return delivery

    def __repr__(self) -> str:
        return f"<ScriptedEndpoint {self.description!r}>"
