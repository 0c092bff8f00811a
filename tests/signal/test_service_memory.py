"""
Tests for the in-memory endpoints and router the Signal service tests use.
"""

import attrs
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.interfaces import IDelivery, IEndpoint, IEndpointSource, IResponder, IRouter
from communigate.routing.route import AddressKind, Module, Route, RoutingError
from communigate.signal.memory import MemoryEndpointSource, MemoryRouter, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response


@implementer(IResponder)
@attrs.define
class Recorder:
    heard: list = attrs.Factory(list)

    def provisional(self, answer):
        self.heard.append(("provisional", answer.code))

    def final(self, answer):
        self.heard.append(("final", answer.code, answer.origin))


def invite():
    return Signal(
        method="INVITE",
        targets=("bob@example.com",),
        from_address="alice@example.com",
        to_address="bob@example.com",
        call_id="c1",
        submitter=Submitter("sip"),
    )


def test_the_memory_kinds_provide_their_interfaces():
    clock = Clock()
    endpoint = ScriptedEndpoint(clock, [])
    assert verifyObject(IEndpoint, endpoint)
    assert verifyObject(IDelivery, endpoint.deliver(invite(), Recorder()))
    assert verifyObject(IEndpointSource, MemoryEndpointSource())
    assert verifyObject(IRouter, MemoryRouter())
    assert verifyObject(IResponder, Recorder())


def test_a_scripted_endpoint_plays_its_script_on_the_clock():
    clock = Clock()
    endpoint = ScriptedEndpoint(
        clock,
        [(0, response(180)), (2, response(200)), (3, response(486))],
        description="desk",
    )
    recorder = Recorder()
    endpoint.deliver(invite(), recorder)
    assert recorder.heard == [("provisional", 180)]
    clock.advance(2)
    assert recorder.heard == [("provisional", 180), ("final", 200, "desk")]
    assert clock.getDelayedCalls() == []
    assert endpoint.delivered == [invite()]


def test_each_delivery_plays_the_script_again():
    clock = Clock()
    endpoint = ScriptedEndpoint(clock, [(1, response(486))])
    first, second = Recorder(), Recorder()
    endpoint.deliver(invite(), first)
    clock.advance(0.5)
    endpoint.deliver(invite(), second)
    clock.advance(0.5)
    assert (first.heard, second.heard) == ([("final", 486, "scripted endpoint")], [])
    clock.advance(0.5)
    assert second.heard == [("final", 486, "scripted endpoint")]


def test_a_cancelled_delivery_answers_487_and_stops_its_script():
    clock = Clock()
    endpoint = ScriptedEndpoint(clock, [(5, response(200))], description="mobile")
    recorder = Recorder()
    delivery = endpoint.deliver(invite(), recorder)
    delivery.cancel()
    assert recorder.heard == [("final", 487, "mobile")]
    assert endpoint.cancelled == 1
    assert clock.getDelayedCalls() == []


def test_cancelling_an_answered_delivery_sends_nothing_more():
    clock = Clock()
    endpoint = ScriptedEndpoint(clock, [(0, response(200))])
    recorder = Recorder()
    delivery = endpoint.deliver(invite(), recorder)
    delivery.cancel()
    assert recorder.heard == [("final", 200, "scripted endpoint")]
    assert endpoint.cancelled == 1


def test_an_endpoint_source_registers_and_unregisters():
    source = MemoryEndpointSource()
    desk, mobile = object(), object()
    source.register("bob@example.com", desk)
    source.register("bob@example.com", mobile)
    source.register("bob@example.com", desk)
    assert source.endpoints("bob@example.com") == [desk, mobile]
    source.unregister("bob@example.com", desk)
    source.unregister("bob@example.com", object())
    assert source.endpoints("bob@example.com") == [mobile]
    source.unregister("bob@example.com", mobile)
    assert source.endpoints("bob@example.com") == []
    assert source.endpoints("nobody@example.com") == []


def test_the_memory_router_answers_from_its_table():
    route = Route(Module.LOCAL, "bob@example.com")
    router = MemoryRouter({"bob@example.com": route})
    router.add("loop@example.com", RoutingError("routing loop"))
    results = []
    router.route("bob@example.com", AddressKind.SIGNAL, "alice@example.com").addCallback(
        results.append
    )
    router.route("loop@example.com", AddressKind.SIGNAL).addErrback(
        lambda failure: results.append(str(failure.value))
    )
    router.route("x@example.com", AddressKind.MAIL).addErrback(
        lambda failure: results.append(failure.check(RoutingError) and str(failure.value))
    )
    assert results == [route, "routing loop", "unknown address 'x@example.com'"]
    assert router.requests[0] == ("bob@example.com", AddressKind.SIGNAL, "alice@example.com")
