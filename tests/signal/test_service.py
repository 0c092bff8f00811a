"""
Tests for the Signal service: routing, Signal Rules, forking, responses.

Time is a Clock; endpoints are the in-memory scripted ones; the Signal
Rules are a small fake that answers each stage from a table.
"""

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.interfaces import (
    IEndpoint,
    IRouteHandler,
    ISignalHook,
    ISignalRules,
    ISignalService,
    ISignalTask,
)
from communigate.routing.route import AddressKind, Module, Route, RoutingError, RoutingLoop
from communigate.signal.memory import MemoryEndpointSource, MemoryRouter, ScriptedEndpoint
from communigate.signal.model import (
    NOTHING,
    Decision,
    Signal,
    SignalState,
    Submitter,
    response,
)
from communigate.signal.ranking import choose_final, rank
from communigate.signal.service import RINGING_LIFETIME, SignalService

BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"
VOICEMAIL = "voicemail@example.com"
ALICE = "alice@example.com"

# ---------------------------------------------------------------------------
# Fakes


@attrs.define
class FakePlan:
    """
    A rule plan answering from tables: C{stages} maps seconds to the
    Decision of that timed stage; C{failure(response)} gives the on-failure
    Decision.
    """

    first: Decision = NOTHING
    stages: dict = attrs.Factory(dict)
    failure: object = None
    asked: list = attrs.Factory(list)

    def immediate(self):
        self.asked.append("immediate")
        return self.first

    def delays(self):
        return tuple(sorted(self.stages))

    def after(self, seconds):
        self.asked.append(("after", seconds))
        return self.stages[seconds]

    def on_failure(self, answer):
        self.asked.append(("on_failure", answer.code))
        return NOTHING if self.failure is None else self.failure(answer)


@implementer(ISignalRules)
class FakeRules:
    """
    Plans by account (L{None}: the server's immediate rules); records every
    C{plan} call's C{(account, facts)}.
    """

    def __init__(self, plans=None):
        self.plans = dict(plans or {})
        self.calls = []

    def plan(self, signal, account, facts):
        self.calls.append((account, facts))
        return self.plans.get(account, FakePlan())


@implementer(IRouteHandler)
@attrs.define
class FixedHandler:
    module: str
    target: object
    asked: list = attrs.Factory(list)

    def endpoint(self, route, signal):
        self.asked.append(route)
        return self.target


@implementer(ISignalHook)
@attrs.define
class RecordingHook:
    name: str
    journal: list
    on_submitted: object = None
    on_routed: object = None

    def submitted(self, signal):
        self.journal.append((self.name, "submitted", signal.targets))
        return self.on_submitted(signal) if self.on_submitted else None

    def routed(self, signal, routes):
        self.journal.append((self.name, "routed", list(routes)))
        return self.on_routed(routes) if self.on_routed else None

    def responded(self, signal, answer):
        self.journal.append((self.name, "responded", answer.code))


@implementer(ISignalHook)
class BrokenHook:
    def submitted(self, signal):
        raise RuntimeError("broken submitted hook")

    def routed(self, signal, routes):
        raise RuntimeError("broken routed hook")

    def responded(self, signal, answer):
        raise RuntimeError("broken responded hook")


@implementer(IEndpoint)
class AnswerInsideDeliver:
    """
    Answers 180 and then C{code} from inside C{deliver}, before returning
    its delivery, and notes what the task looked like at that moment.
    """

    description = "answers at once"

    def __init__(self, code, journal):
        self.code = code
        self.journal = journal
        self.cancelled = 0

    def deliver(self, signal, responder):
        self.journal.append(("deliver", self.code))
        responder.provisional(response(180))
        responder.final(response(self.code))
        self.journal.append(("delivered", self.code))
        return self

    def cancel(self):
        self.cancelled += 1


class Harness:
    """
    A Signal service on a Clock with a MemoryRouter, one in-memory
    endpoint source and FakeRules.
    """

    def __init__(self, rules=None, group_members=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.router = MemoryRouter()
        self.phones = MemoryEndpointSource()
        self.rules = FakeRules() if rules is None else rules
        self.registry = CollectorRegistry()
        self.service = SignalService(
            self.router,
            self.rules,
            self.clock,
            group_members=group_members,
            registry=self.registry,
        )
        self.service.add_endpoint_source(self.phones)

    def account(self, address, *scripts):
        """
        A local account with one scripted endpoint per script.
        """
        self.router.add(address, Route(Module.LOCAL, address))
        endpoints = []
        for index, script in enumerate(scripts):
            endpoint = ScriptedEndpoint(self.clock, script, description=f"{address} #{index}")
            self.phones.register(address, endpoint)
            endpoints.append(endpoint)
        return endpoints

    def submit(self, *targets, method="INVITE", **fields):
        signal = make_signal(*targets, method=method, **fields)
        task = self.service.submit(signal)
        outcome = Outcome(task)
        return outcome

    def metric(self, name, **labels):
        return self.registry.get_sample_value(name, labels)


def make_signal(*targets, method="INVITE", **fields):
    return Signal(
        method=method,
        targets=targets,
        from_address=ALICE,
        to_address=targets[0] if targets else "",
        call_id="call-1@example.com",
        submitter=Submitter("sip", ALICE, ("192.0.2.1", 5060)),
        **fields,
    )


class Outcome:
    """
    A submitted task with its provisional and final responses collected.
    """

    def __init__(self, task):
        self.task = task
        self.provisionals = []
        self.finals = []
        task.on_provisional(self.provisionals.append)
        task.final.addCallback(self.finals.append)

    @property
    def final(self):
        assert len(self.finals) == 1, self.finals
        return self.finals[0]

    @property
    def pending(self):
        return not self.finals


def ring(seconds=None):
    """
    A script that rings (180 at once) and answers nothing else, or 200
    after C{seconds}.
    """
    script = [(0, response(180))]
    if seconds is not None:
        script.append((seconds, response(200)))
    return script


def answer(code, seconds=1, **kwargs):
    return [(0, response(180)), (seconds, response(code, **kwargs))]


# ---------------------------------------------------------------------------
# Interfaces


def test_the_service_and_its_tasks_provide_their_interfaces():
    harness = Harness()
    harness.account(BOB, ring())
    outcome = harness.submit(BOB)
    assert verifyObject(ISignalService, harness.service)
    assert verifyObject(ISignalTask, outcome.task)


# ---------------------------------------------------------------------------
# Forking to an account's endpoints (acceptance tests 9 and 10)


def test_two_registrations_ring_in_parallel_and_the_first_200_wins():
    harness = Harness()
    desk, mobile = harness.account(BOB, ring(3), ring(5))
    outcome = harness.submit(BOB)
    assert len(desk.delivered) == len(mobile.delivered) == 1
    assert outcome.pending
    harness.clock.advance(3)
    assert (outcome.final.code, outcome.final.origin) == (200, f"{BOB} #0")
    assert (desk.cancelled, mobile.cancelled) == (0, 1)
    assert harness.clock.getDelayedCalls() == []


def test_the_answer_of_a_cancelled_branch_is_ignored():
    harness = Harness()
    harness.account(BOB, ring(3), [(4, response(486)), (5, response(200))])
    outcome = harness.submit(BOB)
    harness.clock.advance(10)
    assert [final.code for final in outcome.finals] == [200]


def test_a_busy_device_beats_one_that_times_out():
    harness = Harness()
    harness.account(BOB, answer(408, seconds=5), answer(486, seconds=2))
    outcome = harness.submit(BOB)
    harness.clock.advance(2)
    assert outcome.pending
    harness.clock.advance(3)
    assert outcome.final.code == 486
    assert harness.clock.getDelayedCalls() == []


def test_a_503_from_the_only_device_goes_back_as_500():
    harness = Harness()
    harness.account(BOB, answer(503))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert outcome.final.code == 500


def test_an_account_without_devices_answers_480():
    harness = Harness()
    harness.account(BOB)
    outcome = harness.submit(BOB)
    assert outcome.final.code == 480


def test_an_endpoint_reached_through_two_targets_gets_the_signal_once():
    harness = Harness()
    (phone,) = harness.account(BOB, ring())
    harness.account(CAROL)
    harness.phones.register(CAROL, phone)
    harness.submit(BOB, CAROL)
    assert len(phone.delivered) == 1


def test_every_target_of_the_signal_is_forked_to():
    harness = Harness()
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(2))
    outcome = harness.submit(BOB, CAROL)
    harness.clock.advance(2)
    assert outcome.final.origin == f"{CAROL} #0"
    assert bob.cancelled == 1


def test_provisional_responses_are_forwarded_but_not_100_trying():
    harness = Harness()
    harness.account(
        BOB,
        [(0, response(100)), (1, response(180)), (2, response(183)), (3, response(200))],
    )
    outcome = harness.submit(BOB)
    harness.clock.advance(5)
    assert [provisional.code for provisional in outcome.provisionals] == [180, 183]
    assert outcome.final.code == 200


def test_no_provisional_response_is_forwarded_after_the_final():
    harness = Harness()
    harness.account(BOB, ring(1), [(2, response(180))])
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    count = len(outcome.provisionals)
    harness.clock.advance(5)
    assert len(outcome.provisionals) == count


def test_the_state_moves_forward_to_responded():
    harness = Harness()
    pending = Deferred()
    harness.router.route = lambda address, kind, on_behalf_of=None: pending
    harness.phones.register(BOB, ScriptedEndpoint(harness.clock, ring(1)))
    seen = []
    harness.service.add_hook(
        RecordingHook("h", [], on_routed=lambda routes: seen.append(outcome.task.state))
    )
    outcome = harness.submit(BOB)
    assert outcome.task.state is SignalState.SUBMITTED
    pending.callback(Route(Module.LOCAL, BOB))
    assert seen == [SignalState.ROUTED]
    assert outcome.task.state is SignalState.FORKING
    harness.clock.advance(1)
    assert outcome.task.state is SignalState.RESPONDED


# ---------------------------------------------------------------------------
# Routing


def test_every_target_is_routed_as_a_signal_address_for_the_submitter():
    harness = Harness()
    harness.account(BOB, ring())
    harness.submit(BOB)
    assert harness.router.requests == [(BOB, AddressKind.SIGNAL, ALICE)]


def test_an_unknown_target_answers_404_with_the_routers_reason():
    harness = Harness()
    outcome = harness.submit("nobody@example.com")
    assert outcome.final.code == 404
    assert "nobody@example.com" in outcome.final.reason


def test_a_routing_loop_answers_482():
    harness = Harness()
    harness.router.add("loop@example.com", RoutingLoop("routing loop for loop@example.com"))
    outcome = harness.submit("loop@example.com")
    assert outcome.final.code == 482


def test_an_unknown_user_whose_name_says_loop_is_still_404():
    harness = Harness()
    harness.router.add("loop@example.com", RoutingError("unknown user loop@example.com"))
    outcome = harness.submit("loop@example.com")
    assert outcome.final.code == 404


def test_an_unroutable_target_does_not_stop_the_others():
    harness = Harness()
    harness.account(BOB, ring(2))
    outcome = harness.submit("nobody@example.com", BOB)
    harness.clock.advance(2)
    assert outcome.final.code == 200


def test_a_router_that_answers_later_is_waited_for():
    harness = Harness()
    later = Deferred()
    harness.router.route = lambda address, kind, on_behalf_of=None: later
    (phone,) = [ScriptedEndpoint(harness.clock, ring(1))]
    harness.phones.register(BOB, phone)
    outcome = harness.submit(BOB)
    assert phone.delivered == []
    harness.clock.advance(10)
    later.callback(Route(Module.LOCAL, BOB))
    assert len(phone.delivered) == 1
    harness.clock.advance(1)
    assert outcome.final.code == 200


def test_a_router_that_raises_answers_500_and_logs():
    harness = Harness()

    def broken(address, kind, on_behalf_of=None):
        raise KeyError(address)

    harness.router.route = broken
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
    assert outcome.final.code == 500
    assert any(event.get("log_failure") for event in events)


def test_a_signal_without_targets_is_a_bad_request():
    harness = Harness()
    outcome = harness.submit()
    assert outcome.final.code == 400


def test_a_group_forks_to_its_members():
    groups = {"sales@example.com": [BOB, CAROL]}
    harness = Harness(group_members=groups.__getitem__)
    harness.router.add("sales@example.com", Route(Module.GROUP, "sales@example.com"))
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(2))
    outcome = harness.submit("sales@example.com")
    assert len(bob.delivered) == len(carol.delivered) == 1
    harness.clock.advance(2)
    assert outcome.final.code == 200
    assert bob.cancelled == 1


def test_a_group_whose_members_all_fail_answers_the_best_failure():
    groups = {"sales@example.com": [BOB, CAROL]}
    harness = Harness(group_members=groups.__getitem__)
    harness.router.add("sales@example.com", Route(Module.GROUP, "sales@example.com"))
    harness.account(BOB, answer(486))
    harness.account(CAROL)
    outcome = harness.submit("sales@example.com")
    harness.clock.advance(1)
    assert outcome.final.code == 486


def test_a_group_without_an_expander_answers_502():
    harness = Harness()
    harness.router.add("sales@example.com", Route(Module.GROUP, "sales@example.com"))
    outcome = harness.submit("sales@example.com")
    assert outcome.final.code == 502


@pytest.mark.parametrize(
    "method, code, reason",
    [("MESSAGE", 200, "Discarded"), ("INVITE", 603, "Decline")],
)
def test_the_null_route_discards(method, code, reason):
    harness = Harness()
    harness.router.add("junk@example.com", Route(Module.SYSTEM, "NULL"))
    outcome = harness.submit("junk@example.com", method=method)
    assert (outcome.final.code, outcome.final.reason) == (code, reason)


def test_a_route_handler_delivers_routes_of_its_module():
    harness = Harness()
    route = Route(Module.PBX, "pbx@example.com", "gatewaycaller{5551234}")
    harness.router.add("5551234@pstn", route)
    gateway = ScriptedEndpoint(harness.clock, ring(1), description="gatewaycaller")
    handler = FixedHandler(Module.PBX, gateway)
    assert verifyObject(IRouteHandler, handler)
    harness.service.add_route_handler(handler)
    outcome = harness.submit("5551234@pstn")
    harness.clock.advance(1)
    assert handler.asked == [route]
    assert outcome.final.origin == "gatewaycaller"


def test_a_module_without_a_route_handler_answers_502_naming_it():
    harness = Harness()
    harness.router.add("bob@example.net", Route(Module.SIP, "example.net", "sip:bob@example.net"))
    with capturedLogs() as events:
        outcome = harness.submit("bob@example.net")
    assert outcome.final.code == 502
    assert "SIP" in outcome.final.reason
    assert any(event.get("module") == "SIP" for event in events)


def test_an_endpoint_that_fails_to_deliver_answers_500():
    harness = Harness()

    @implementer(IEndpoint)
    class Broken:
        description = "broken"

        def deliver(self, signal, responder):
            raise RuntimeError("no line")

    harness.router.add(BOB, Route(Module.LOCAL, BOB))
    harness.phones.register(BOB, Broken())
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
    assert outcome.final.code == 500
    assert any(event.get("log_failure") for event in events)


# ---------------------------------------------------------------------------
# 3xx from a device


def test_a_redirect_from_a_device_is_followed():
    harness = Harness()
    harness.account(BOB, answer(302, contacts=(CAROL,)))
    (carol,) = harness.account(CAROL, ring(2))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert len(carol.delivered) == 1
    harness.clock.advance(2)
    assert outcome.final.origin == f"{CAROL} #0"


def test_a_failed_redirect_target_answers_with_its_failure():
    harness = Harness()
    harness.account(BOB, answer(302, contacts=(CAROL,)))
    harness.account(CAROL, answer(486))
    outcome = harness.submit(BOB)
    harness.clock.pump([1, 1])
    assert outcome.final.code == 486


def test_a_redirect_back_to_a_target_already_tried_ends_with_482():
    harness = Harness()
    harness.account(BOB, answer(302, contacts=(BOB,)))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert outcome.final.code == 482
    assert harness.clock.getDelayedCalls() == []


def test_a_redirect_loop_between_two_accounts_ends():
    harness = Harness()
    harness.account(BOB, answer(302, contacts=(CAROL,)))
    harness.account(CAROL, answer(302, contacts=(BOB,)))
    outcome = harness.submit(BOB)
    harness.clock.pump([1] * 5)
    assert outcome.final.code == 482


def test_redirections_end_at_the_depth_limit():
    harness = Harness()
    chain = [f"hop{index}@example.com" for index in range(10)]
    for here, there in zip(chain, chain[1:]):
        harness.account(here, [(0, response(302, contacts=(there,)))])
    outcome = harness.submit(chain[0])
    harness.clock.advance(1)
    assert (outcome.final.code, outcome.final.reason) == (482, "Too many redirections")


def test_a_redirect_without_contacts_is_a_plain_failure():
    harness = Harness()
    harness.account(BOB, answer(302), answer(486))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert outcome.final.code == 302


# ---------------------------------------------------------------------------
# Lifetime and cancellation


def test_a_signal_that_outlives_its_lifetime_ends_with_408():
    harness = Harness()
    (phone,) = harness.account(BOB, [])  # never says anything
    outcome = harness.submit(BOB, lifetime=20.0)
    harness.clock.advance(19.9)
    assert outcome.pending
    harness.clock.advance(0.1)
    assert outcome.final.code == 408
    assert phone.cancelled == 1
    assert harness.clock.getDelayedCalls() == []


def test_a_ringing_invite_lives_timer_c_after_its_last_provisional_and_other_methods_do_not():
    harness = Harness()
    (phone,) = harness.account(BOB, ring() + [(100, response(183))])
    outcome = harness.submit(BOB, lifetime=20.0)
    harness.clock.advance(99)
    assert outcome.pending  # the phone rings past the lifetime
    harness.clock.advance(1)  # the 183 at 100 s: Timer C starts again
    harness.clock.advance(RINGING_LIFETIME - 0.1)
    assert outcome.pending
    harness.clock.advance(0.1)
    assert outcome.final.code == 408 and phone.cancelled == 1
    assert harness.clock.getDelayedCalls() == []
    harness = Harness()
    harness.account(BOB, ring())
    message = harness.submit(BOB, method="MESSAGE", lifetime=20.0)
    harness.clock.advance(20)
    assert message.final.code == 408


def test_cancelling_ends_with_487_and_cancels_every_branch():
    harness = Harness()
    desk, mobile = harness.account(BOB, ring(5), ring(6))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    outcome.task.cancel()
    assert outcome.final.code == 487
    assert (desk.cancelled, mobile.cancelled) == (1, 1)
    assert outcome.task.state is SignalState.RESPONDED
    assert harness.clock.getDelayedCalls() == []


def test_cancelling_after_the_final_changes_nothing():
    harness = Harness()
    (phone,) = harness.account(BOB, ring(1))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    outcome.task.cancel()
    assert [final.code for final in outcome.finals] == [200]
    assert phone.cancelled == 0


def test_a_late_answer_from_an_endpoint_is_ignored():
    harness = Harness()
    responders = []

    @implementer(IEndpoint)
    class Keeper:
        description = "keeps its responder"

        def deliver(self, signal, responder):
            responders.append(responder)
            return self

        def cancel(self):
            pass

    harness.router.add(BOB, Route(Module.LOCAL, BOB))
    harness.phones.register(BOB, Keeper())
    outcome = harness.submit(BOB, lifetime=5.0)
    harness.clock.advance(5)
    responders[0].provisional(response(180))
    responders[0].final(response(200))
    assert [final.code for final in outcome.finals] == [408]
    assert outcome.provisionals == []


# ---------------------------------------------------------------------------
# Events in order, never re-entrantly


def test_an_answer_given_inside_deliver_is_handled_after_the_current_step():
    harness = Harness()
    journal = []
    first = AnswerInsideDeliver(200, journal)
    second = ScriptedEndpoint(harness.clock, ring(), description="second")
    harness.router.add(BOB, Route(Module.LOCAL, BOB))
    harness.phones.register(BOB, first)
    harness.phones.register(BOB, second)
    outcome = Outcome.__new__(Outcome)
    outcome.provisionals, outcome.finals = [], []

    def note_final(final):
        journal.append(("final", final.code))
        outcome.finals.append(final)

    task = harness.service.submit(make_signal(BOB))
    task.final.addCallback(note_final)
    # The first endpoint's 200 did not end the Signal inside its own
    # deliver(): the second endpoint was still rung, then cancelled.
    assert journal == [("deliver", 200), ("delivered", 200), ("final", 200)]
    assert len(second.delivered) == 1
    assert second.cancelled == 1
    assert first.cancelled == 0
    assert harness.clock.getDelayedCalls() == []


def test_an_endpoint_answering_at_once_completes_the_signal_inside_submit():
    harness = Harness()
    harness.account(BOB, [(0, response(200))])
    outcome = harness.submit(BOB)
    assert outcome.final.code == 200
    assert outcome.task.state is SignalState.RESPONDED


def test_a_final_callback_that_cancels_does_not_reenter():
    harness = Harness()
    harness.account(BOB, [(0, response(486))])
    task = harness.service.submit(make_signal(BOB))
    finals = []

    def cancel_again(final):
        finals.append(final.code)
        task.cancel()

    task.final.addCallback(cancel_again)
    assert finals == [486]


def test_a_second_final_from_one_endpoint_is_ignored_and_logged():
    harness = Harness()

    @implementer(IEndpoint)
    class Twice:
        description = "answers twice"

        def deliver(self, signal, responder):
            responder.final(response(486))
            responder.final(response(200))
            return self

        def cancel(self):
            pass

    harness.router.add(BOB, Route(Module.LOCAL, BOB))
    harness.phones.register(BOB, Twice())
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
    assert outcome.final.code == 486
    assert any("twice" in event.get("log_format", "") for event in events)


# ---------------------------------------------------------------------------
# Hooks


def test_hooks_see_every_stage_in_the_order_they_were_added():
    harness = Harness()
    harness.account(BOB, ring(1))
    journal = []
    harness.service.add_hook(RecordingHook("first", journal))
    harness.service.add_hook(RecordingHook("second", journal))
    harness.submit(BOB)
    harness.clock.advance(1)
    route = Route(Module.LOCAL, BOB)
    assert journal == [
        ("first", "submitted", (BOB,)),
        ("second", "submitted", (BOB,)),
        ("first", "routed", [route]),
        ("second", "routed", [route]),
        ("first", "responded", 200),
        ("second", "responded", 200),
    ]


def test_a_hook_may_replace_the_signal():
    harness = Harness()
    harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(1))
    journal = []
    harness.service.add_hook(
        RecordingHook("swap", journal, on_submitted=lambda signal: signal.retargeted((CAROL,)))
    )
    harness.service.add_hook(RecordingHook("after", journal))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert ("after", "submitted", (CAROL,)) in journal
    assert carol.delivered[0].targets == (CAROL,)
    assert outcome.task.signal.targets == (CAROL,)
    assert outcome.final.code == 200


def test_a_hook_may_end_the_signal_with_a_response():
    harness = Harness()
    (phone,) = harness.account(BOB, ring())
    harness.service.add_hook(
        RecordingHook("deny", [], on_submitted=lambda signal: response(403, "Not today"))
    )
    outcome = harness.submit(BOB)
    assert (outcome.final.code, outcome.final.reason) == (403, "Not today")
    assert harness.router.requests == []
    assert phone.delivered == []
    assert harness.clock.getDelayedCalls() == []


def test_a_hook_may_replace_the_routes():
    harness = Harness()
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(1))
    harness.service.add_hook(
        RecordingHook("reroute", [], on_routed=lambda routes: [Route(Module.LOCAL, CAROL)])
    )
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert bob.delivered == []
    assert len(carol.delivered) == 1
    assert outcome.final.code == 200


def test_a_hook_that_raises_is_logged_and_skipped():
    harness = Harness()
    harness.account(BOB, ring(1))
    journal = []
    harness.service.add_hook(BrokenHook())
    harness.service.add_hook(RecordingHook("fine", journal))
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
        harness.clock.advance(1)
    assert outcome.final.code == 200
    assert [stage for _, stage, _ in journal] == ["submitted", "routed", "responded"]
    assert len([event for event in events if event.get("log_failure")]) == 3


def test_a_hook_returning_nonsense_is_logged_and_ignored():
    harness = Harness()
    harness.account(BOB, ring(1))
    harness.service.add_hook(
        RecordingHook("odd", [], on_submitted=lambda signal: 42, on_routed=lambda routes: [1])
    )
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
        harness.clock.advance(1)
    assert outcome.final.code == 200
    assert len([event for event in events if event.get("hook")]) == 2


# ---------------------------------------------------------------------------
# Signal Rules (acceptance tests 11-14)


def test_rules_are_not_consulted_for_an_in_dialog_request():
    rules = FakeRules({None: FakePlan(Decision(reject=response(403)))})
    harness = Harness(rules)
    harness.account(BOB, [(0, response(200))])
    outcome = harness.submit(BOB, method="BYE", in_dialog=True)
    assert outcome.final.code == 200
    assert rules.calls == []


def test_rules_see_the_facts_of_the_signal_and_its_target():
    rules = FakeRules()
    harness = Harness(rules)
    harness.account(BOB, ring(), ring())
    harness.submit(BOB)
    (server, server_facts), (account, facts) = rules.calls
    assert (server, account) == (None, BOB)
    assert (facts.method, facts.request_uri, facts.reg_clients) == ("INVITE", BOB, 2)
    assert (facts.authenticated, facts.submit_address) == (ALICE, "192.0.2.1")
    assert facts.now.year == 2023


def test_a_server_rule_rejects_before_routing():
    rules = FakeRules({None: FakePlan(Decision(reject=response(403, "Blocked")))})
    harness = Harness(rules)
    harness.account(BOB, ring())
    outcome = harness.submit(BOB)
    assert (outcome.final.code, outcome.final.reason) == (403, "Blocked")
    assert harness.router.requests == []


def test_a_server_rule_redirect_replaces_the_targets():
    rules = FakeRules({None: FakePlan(Decision(redirect=(CAROL,)))})
    harness = Harness(rules)
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring())
    outcome = harness.submit(BOB)
    assert bob.delivered == []
    assert len(carol.delivered) == 1
    assert outcome.task.signal.targets == (CAROL,)


def test_a_server_rule_fork_adds_targets():
    rules = FakeRules({None: FakePlan(Decision(fork=(CAROL,)))})
    harness = Harness(rules)
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring())
    harness.submit(BOB)
    assert len(bob.delivered) == len(carol.delivered) == 1


def test_an_account_rule_redirect_sends_the_call_elsewhere():
    rules = FakeRules({BOB: FakePlan(Decision(redirect=(CAROL,)))})
    harness = Harness(rules)
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(2))
    outcome = harness.submit(BOB)
    assert bob.delivered == []
    harness.clock.advance(2)
    assert outcome.final.origin == f"{CAROL} #0"


def test_an_account_rule_rejects_with_486():
    rules = FakeRules({BOB: FakePlan(Decision(reject=response(486)))})
    harness = Harness(rules)
    (bob,) = harness.account(BOB, ring())
    outcome = harness.submit(BOB)
    assert outcome.final.code == 486
    assert bob.delivered == []
    assert harness.clock.getDelayedCalls() == []


def test_an_immediate_fork_rings_the_extra_target_alongside():
    rules = FakeRules({BOB: FakePlan(Decision(fork=(CAROL,)))})
    harness = Harness(rules)
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring())
    harness.submit(BOB)
    assert len(bob.delivered) == len(carol.delivered) == 1


def test_a_rule_redirecting_to_its_own_account_ends_with_482():
    rules = FakeRules({BOB: FakePlan(Decision(redirect=(BOB,)))})
    harness = Harness(rules)
    harness.account(BOB, ring())
    outcome = harness.submit(BOB)
    assert outcome.final.code == 482
    assert harness.clock.getDelayedCalls() == []


def test_rules_redirecting_two_accounts_to_each_other_end():
    rules = FakeRules(
        {BOB: FakePlan(Decision(redirect=(CAROL,))), CAROL: FakePlan(Decision(redirect=(BOB,)))}
    )
    harness = Harness(rules)
    harness.account(BOB, ring())
    harness.account(CAROL, ring())
    outcome = harness.submit(BOB)
    assert outcome.final.code == 482


def test_a_stage_fork_adds_a_branch_later_while_the_devices_keep_ringing():
    plan = FakePlan(stages={15: Decision(fork=(CAROL,))})
    harness = Harness(FakeRules({BOB: plan}))
    (bob,) = harness.account(BOB, ring())
    (carol,) = harness.account(CAROL, ring(2))
    outcome = harness.submit(BOB)
    harness.clock.advance(14.9)
    assert carol.delivered == []
    harness.clock.advance(0.1)
    assert len(carol.delivered) == 1
    assert bob.cancelled == 0
    harness.clock.advance(2)
    assert outcome.final.origin == f"{CAROL} #0"
    assert bob.cancelled == 1
    assert harness.clock.getDelayedCalls() == []


def test_stages_are_timed_from_the_start_of_the_signal():
    plan = FakePlan(stages={15: Decision(fork=(CAROL,))})
    harness = Harness(FakeRules({BOB: plan}))
    later = Deferred()
    harness.router.route = lambda address, kind, on_behalf_of=None: (
        later if address == BOB else succeed(Route(Module.LOCAL, address))
    )
    bob = ScriptedEndpoint(harness.clock, ring())
    carol = ScriptedEndpoint(harness.clock, ring())
    harness.phones.register(BOB, bob)
    harness.phones.register(CAROL, carol)
    harness.submit(BOB)
    harness.clock.advance(10)
    later.callback(Route(Module.LOCAL, BOB))
    harness.clock.advance(5)
    assert len(carol.delivered) == 1


def test_a_stage_redirect_stops_the_devices_and_replaces_them():
    plan = FakePlan(stages={20: Decision(redirect=(VOICEMAIL,))})
    harness = Harness(FakeRules({BOB: plan}))
    desk, mobile = harness.account(BOB, ring(), ring())
    (voicemail,) = harness.account(VOICEMAIL, [(0, response(200))])
    outcome = harness.submit(BOB)
    harness.clock.advance(20)
    assert (desk.cancelled, mobile.cancelled) == (1, 1)
    assert outcome.final.origin == f"{VOICEMAIL} #0"


def test_a_stage_reject_stops_the_devices_and_ends_the_target():
    plan = FakePlan(stages={10: Decision(reject=response(480, "Nobody home"))})
    harness = Harness(FakeRules({BOB: plan}))
    (desk,) = harness.account(BOB, ring())
    outcome = harness.submit(BOB)
    harness.clock.advance(10)
    assert (outcome.final.code, outcome.final.reason) == (480, "Nobody home")
    assert desk.cancelled == 1
    assert harness.clock.getDelayedCalls() == []


def test_without_devices_the_timed_stages_fire_at_once():
    plan = FakePlan(stages={15: Decision(fork=(CAROL,)), 30: NOTHING})
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB)
    (carol,) = harness.account(CAROL, ring())
    harness.submit(BOB)
    assert len(carol.delivered) == 1
    assert ("after", 15) in plan.asked and ("after", 30) in plan.asked


def _busy_or_no_answer(answer):
    if answer.code in (486, 600, 603):
        return Decision(redirect=(VOICEMAIL,))
    if answer.code in (408, 480):
        return Decision(redirect=(DAVE,))
    return NOTHING


def test_a_busy_device_triggers_the_on_failure_stage():
    plan = FakePlan(failure=_busy_or_no_answer)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(486, seconds=2), answer(408, seconds=3))
    (voicemail,) = harness.account(VOICEMAIL, [(0, response(200))])
    (dave,) = harness.account(DAVE, ring())
    outcome = harness.submit(BOB)
    harness.clock.advance(2)
    assert plan.asked == ["immediate"]
    harness.clock.advance(1)
    assert plan.asked == ["immediate", ("on_failure", 486)]
    assert outcome.final.origin == f"{VOICEMAIL} #0"
    assert dave.delivered == []


def test_no_answer_triggers_the_on_failure_stage_with_the_timeout():
    plan = FakePlan(failure=_busy_or_no_answer)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(408, seconds=25))
    (voicemail,) = harness.account(VOICEMAIL, ring())
    (dave,) = harness.account(DAVE, [(0, response(200))])
    outcome = harness.submit(BOB)
    harness.clock.advance(25)
    assert plan.asked[-1] == ("on_failure", 408)
    assert outcome.final.origin == f"{DAVE} #0"
    assert voicemail.delivered == []


def test_without_devices_on_failure_sees_480():
    plan = FakePlan(failure=_busy_or_no_answer)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB)
    (dave,) = harness.account(DAVE, [(0, response(200))])
    outcome = harness.submit(BOB)
    assert plan.asked[-1] == ("on_failure", 480)
    assert outcome.final.origin == f"{DAVE} #0"


def test_on_failure_is_not_consulted_when_a_device_answers():
    plan = FakePlan(failure=_busy_or_no_answer)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(486), ring(2))
    harness.account(VOICEMAIL, ring())
    outcome = harness.submit(BOB)
    harness.clock.advance(2)
    assert outcome.final.code == 200
    assert plan.asked == ["immediate"]


def test_on_failure_that_does_nothing_lets_the_failure_stand():
    plan = FakePlan(failure=lambda answer: NOTHING)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(603))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert outcome.final.code == 603


def test_on_failure_reject_answers_its_response():
    plan = FakePlan(failure=lambda answer: Decision(reject=response(404, "Gone fishing")))
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(486))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert (outcome.final.code, outcome.final.reason) == (404, "Gone fishing")


def test_on_failure_is_consulted_once_per_account():
    plan = FakePlan(failure=_busy_or_no_answer)
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(486))
    harness.account(VOICEMAIL, answer(486))
    outcome = harness.submit(BOB)
    harness.clock.pump([1] * 5)
    assert outcome.final.code == 486
    assert plan.asked.count(("on_failure", 486)) == 1


def test_a_failed_redirect_target_falls_back_to_the_original_failure():
    plan = FakePlan(failure=lambda answer: Decision(redirect=(BOB,)))
    harness = Harness(FakeRules({BOB: plan}))
    harness.account(BOB, answer(486))
    outcome = harness.submit(BOB)
    harness.clock.advance(1)
    assert outcome.final.code == 486


def test_failing_rules_are_logged_and_the_signal_is_delivered():
    @implementer(ISignalRules)
    class Broken:
        def plan(self, signal, account, facts):
            raise ValueError("bad rule set")

    harness = Harness(Broken())
    (bob,) = harness.account(BOB, ring(1))
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
        harness.clock.advance(1)
    assert outcome.final.code == 200
    assert any(event.get("log_failure") for event in events)


def test_rule_log_lines_are_written_to_the_log():
    rules = FakeRules({BOB: FakePlan(Decision(log=("Bob is busy today",)))})
    harness = Harness(rules)
    harness.account(BOB, ring())
    with capturedLogs() as events:
        harness.submit(BOB)
    assert any(event.get("line") == "Bob is busy today" for event in events)


def test_no_rules_at_all_is_allowed():
    harness = Harness()
    harness.service.rules = None
    harness.account(BOB, [(0, response(200))])
    assert harness.submit(BOB).final.code == 200


# ---------------------------------------------------------------------------
# Metrics


def test_signals_are_counted_by_method_and_outcome():
    harness = Harness()
    harness.account(BOB, ring(1), ring())
    harness.submit(BOB)
    assert harness.metric("communigate_signals_active") == 1
    harness.clock.advance(1)
    harness.submit("nobody@example.com", method="MESSAGE")
    harness.submit("nobody@example.com", method="X-MADE-UP")
    assert harness.metric("communigate_signals_total", method="INVITE", outcome="2xx") == 1
    assert harness.metric("communigate_signals_total", method="MESSAGE", outcome="4xx") == 1
    assert harness.metric("communigate_signals_total", method="other", outcome="4xx") == 1
    assert harness.metric("communigate_signals_active") == 0
    assert harness.metric("communigate_signal_branches_total") == 2


def test_a_service_without_a_registry_counts_nothing():
    clock = Clock()
    service = SignalService(MemoryRouter(), None, clock)
    task = service.submit(make_signal(BOB))
    finals = []
    task.final.addCallback(finals.append)
    assert finals[0].code == 404


# ---------------------------------------------------------------------------
# More routing seams


def test_routed_hooks_also_see_the_routes_of_a_redirection():
    harness = Harness()
    harness.account(BOB, answer(302, contacts=(CAROL,)))
    harness.account(CAROL, ring())
    journal = []
    harness.service.add_hook(RecordingHook("policy", journal))
    harness.submit(BOB)
    harness.clock.advance(1)
    routed = [routes for _, stage, routes in journal if stage == "routed"]
    assert routed == [[Route(Module.LOCAL, BOB)], [Route(Module.LOCAL, CAROL)]]


def test_a_route_handler_that_raises_answers_500_and_logs():
    harness = Harness()

    @implementer(IRouteHandler)
    class Broken:
        module = Module.PBX

        def endpoint(self, route, signal):
            raise RuntimeError("no such application")

    harness.router.add("app@example.com", Route(Module.PBX, "pbx@example.com", "app"))
    harness.service.add_route_handler(Broken())
    with capturedLogs() as events:
        outcome = harness.submit("app@example.com")
    assert outcome.final.code == 500
    assert any(event.get("log_failure") for event in events)


def test_an_endpoint_source_that_fails_is_skipped():
    harness = Harness()

    class Broken:
        def endpoints(self, account):
            raise OSError("registrations unavailable")

    harness.service.add_endpoint_source(Broken())
    harness.account(BOB, ring(1))
    with capturedLogs() as events:
        outcome = harness.submit(BOB)
        harness.clock.advance(1)
    assert outcome.final.code == 200
    assert any(event.get("log_failure") for event in events)


def test_a_second_route_handler_for_a_module_replaces_the_first():
    harness = Harness()
    harness.router.add("app@example.com", Route(Module.PBX, "pbx@example.com", "app"))
    old = FixedHandler(Module.PBX, ScriptedEndpoint(harness.clock, [(0, response(486))]))
    new = FixedHandler(Module.PBX, ScriptedEndpoint(harness.clock, [(0, response(200))]))
    harness.service.add_route_handler(old)
    with capturedLogs() as events:
        harness.service.add_route_handler(new)
    assert any(event.get("module") == Module.PBX for event in events)
    assert harness.submit("app@example.com").final.code == 200


# ---------------------------------------------------------------------------
# Properties over random forks


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=200),
            st.sampled_from([200, 302, 404, 408, 480, 486, 487, 500, 503, 600, 603]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_fork_ends_once_with_the_first_success_or_the_best_failure(answers):
    assume(all(delay != RINGING_LIFETIME for delay, _ in answers))  # a tie with the timer is either
    harness = Harness()
    scripts = [[(0, response(180)), (delay, response(code))] for delay, code in answers]
    endpoints = harness.account(BOB, *scripts)
    outcome = harness.submit(BOB)
    harness.clock.pump([1] * 210)
    # every branch rings at once: the Signal lives Timer C from that 180
    in_time = sorted(
        ((delay, index), code) for index, (delay, code) in enumerate(answers) if delay < RINGING_LIFETIME
    )
    successes = [code for _, code in in_time if 200 <= code < 300]
    final = outcome.final
    if successes:
        assert final.code == 200
        winner = next(index for (_, index), code in in_time if code == 200)
        assert final.origin == endpoints[winner].description
        won_at = answers[winner][0]
        for index, endpoint in enumerate(endpoints):
            if answers[index][0] > won_at:
                assert endpoint.cancelled == 1
            elif answers[index][0] < won_at:
                assert endpoint.cancelled == 0
    elif len(in_time) == len(answers):
        expected = choose_final([response(code) for _, code in in_time])
        assert rank(final) == rank(expected)
        assert final.code != 503
    else:
        assert final.code == 408
    assert harness.clock.getDelayedCalls() == []


def test_routing_still_running_when_the_signal_ends_is_cancelled():
    harness = Harness()
    lookup = Deferred()
    harness.router.route = lambda address, kind, on_behalf_of=None: lookup
    outcome = harness.submit(BOB, lifetime=10.0)
    harness.clock.advance(10)
    assert outcome.final.code == 408
    assert lookup.called


def test_a_ring_limit_set_by_the_submitter_stands_while_it_rings():
    harness = Harness()
    (phone,) = harness.account(BOB, ring())
    outcome = harness.submit(BOB, lifetime=5.0, ring_limit=5.0)
    harness.clock.advance(5)
    assert outcome.final.code == 408 and phone.cancelled == 1
