"""
The Signal service: every real-time request goes through here.

A front end (SIP, XMPP, XIMSS, a PBX task) builds a
L{communigate.signal.model.Signal} and calls L{SignalService.submit}; it
gets a L{SignalTask} back, which reports provisional responses and fires
its C{final} Deferred once, with the final response.  In between:

  1. the hooks' C{submitted} (L{ISignalHook}) may replace the Signal or
     answer it;
  2. for a Signal outside a dialog, the server's immediate Signal Rules
     may reject it, redirect it or fork it to more targets;
  3. every target is routed (L{IRouter}); the hooks' C{routed} see the
     routes and may replace them;
  4. each route is delivered (L{communigate.signal.forking}): a local
     account's Signal Rules are consulted and all its endpoints ring in
     parallel; a group forks to its members; NULL discards; other modules
     go to the L{IRouteHandler} registered for them;
  5. the first 2xx wins and every other branch is cancelled; a 3xx is
     followed; when every branch has failed, the best failure goes back
     (L{communigate.signal.ranking}); the hooks' C{responded} see it.

A Signal that has no final response after its C{lifetime} ends with 408;
an INVITE lives on after a provisional response, L{RINGING_LIFETIME}
seconds from the last one (a phone may ring longer than the lifetime); a
task cancelled by its submitter ends with 487.

Time comes only from the injected L{IReactorTime}: stage timers and the
lifetime are C{callLater}s, cancelled as soon as the final response is
known.  Each task is a small state machine with an event queue: routing
results, endpoint responses, timers and cancellation are handled one at a
time, in order, never re-entrantly -- an endpoint that answers from inside
C{deliver} has its answer handled after the current step.

Decisions [D] (the digest leaves these open):

  - C{routed} hooks see every batch of routes the Signal takes, not only
    its own targets: a rule's redirect or fork, a 3xx's contacts and a
    group's members are routed again and shown again, so a policy hook
    cannot be bypassed by redirection;
  - the NULL route (C{SYSTEM}, C{NULL}) discards: 200 "Discarded" for
    anything but an INVITE, 603 Decline for an INVITE;
  - a server rule's redirect or fork retargets the Signal itself
    (C{task.signal.targets} shows it);
  - a redirect (from a rule or a 3xx) to a route this Signal has already
    taken is dropped; if nothing else answers, the final is 482 Loop
    Detected.  Redirections nest at most five deep (482 "Too many
    redirections");
  - an account's rules: a redirect replaces the account's delivery
    (devices and earlier forks are cancelled, no later stage runs, and the
    on-failure stage is not consulted for it); the on-failure stage runs
    at most once per account; if its redirect targets give no answer, the
    failure that triggered it stands;
  - an account with no endpoint answers 480 for its devices, and its timed
    stages run at once;
  - a Signal with no target answers 400; a Signal none of whose branches
    gave any answer (all loops dropped) answers 482, or 480 without a loop.

Metrics, when a registry is given: C{communigate_signals_total{method,
outcome}} (outcome: the final response's class, C{2xx} ... C{6xx}),
C{communigate_signals_active}, C{communigate_signal_branches_total}.
"""

from collections import deque
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from communigate.counters import Labelled
from communigate.interfaces import ISignalService, ISignalTask
from communigate.routing.route import AddressKind, Route
from communigate.signal.forking import _Scope
from communigate.signal.model import (
    NOTHING,
    Decision,
    Response,
    Signal,
    SignalFacts,
    SignalState,
    response,
)
from communigate.signal.ranking import forwarded

__all__ = ["SignalService", "SignalTask"]

#: Methods counted under their own name; anything else is counted as
#: C{other}, so that a peer sending made-up methods cannot grow the
#: metric's label set.
#: Seconds an INVITE Signal lives after each provisional response (RFC
#: 3261 16.6: a proxy's Timer C, more than three minutes): a phone may ring
#: longer than the Signal's lifetime, which bounds the wait for a first
#: answer.
RINGING_LIFETIME = 181.0

COUNTED_METHODS = frozenset(
    {
        "ACK", "BYE", "CANCEL", "INFO", "INVITE", "MESSAGE", "NOTIFY", "OPTIONS",
        "PRACK", "PUBLISH", "REFER", "REGISTER", "SUBSCRIBE", "UPDATE",
    }
)  # fmt: skip

_STATE_ORDER = {state: index for index, state in enumerate(SignalState)}


class SignalMetrics:
    """
    The Signal service's counters, on the server's own registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.signals = Counter(
            "communigate_signals",
            "Signals that got their final response, by method and response class.",
            ["method", "outcome"],
            registry=registry,
        )
        self.active = Gauge(
            "communigate_signals_active",
            "Signals submitted and still waiting for their final response.",
            registry=registry,
        )
        self.branches = Counter(
            "communigate_signal_branches",
            "Deliveries of Signals to endpoints (one per forked branch).",
            registry=registry,
        )


@implementer(ISignalService)
class SignalService:
    """
    Routes Signals, applies Signal Rules, forks them to endpoints and
    brings back the responses.

    @param router: the L{IRouter} every target goes through.
    @param rules: the L{ISignalRules} in force, or L{None} for none.
    @param clock: the L{IReactorTime} for stage timers and lifetimes.
    @param group_members: C{group_members(address) -> list of addresses}
        expands a C{GROUP} route; without it, group routes answer 502.
    @param registry: a Prometheus registry for the metrics, or L{None}.
    @param presence_of: C{presence_of(account) -> status word} (C{online},
        C{busy}, C{away}, C{offline}) for the C{Presence} rule condition;
        without it every account is C{offline}.
    """

    log = Logger()

    def __init__(
        self,
        router,
        rules,
        clock: IReactorTime,
        *,
        group_members=None,
        registry: CollectorRegistry | None = None,
        presence_of=None,
    ) -> None:
        self.router = router
        self.presence_of = presence_of
        self.rules = rules
        self.clock = clock
        self.group_members = group_members
        self.metrics = None if registry is None else SignalMetrics(registry)
        self._signal_counts = None if self.metrics is None else Labelled(self.metrics.signals)
        self._hooks = ()
        self._sources = ()
        self._handlers = {}

    def add_hook(self, hook) -> None:
        self._hooks = self._hooks + (hook,)

    def add_endpoint_source(self, source) -> None:
        self._sources = self._sources + (source,)

    def add_route_handler(self, handler) -> None:
        if handler.module in self._handlers:
            self.log.warn(
                "A second route handler for module {module} replaces the first",
                module=handler.module,
            )
        self._handlers[handler.module] = handler

    def route_handler(self, module: str):
        return self._handlers.get(module)

    @property
    def hooks(self) -> tuple:
        return self._hooks

    def endpoints_of(self, account: str) -> list:
        """
        Every endpoint C{account} has now, from every source.  A source
        that fails is logged and skipped.
        """
        found = []
        for source in self._sources:
            try:
                found.extend(source.endpoints(account))
            except Exception:
                self.log.failure(
                    "Endpoint source {source!r} failed for {account}",
                    source=source,
                    account=account,
                )
        return found

    def submit(self, signal: Signal) -> "SignalTask":
        task = SignalTask(self, signal)
        if self.metrics is not None:
            self.metrics.active.inc()
        task.start()
        return task

    def concluded(self, signal: Signal, final: Response) -> None:
        """
        Count a Signal that got its final response.
        """
        if self.metrics is None:
            return
        method = signal.method.upper()
        if method not in COUNTED_METHODS:
            method = "other"
        self._signal_counts.inc(method, f"{final.code // 100}xx")
        self.metrics.active.dec()


class _NoPlan:
    """
    The rule plan of a Signal no rules apply to.
    """

    def immediate(self) -> Decision:
        return NOTHING

    def delays(self) -> tuple:
        return ()

    def after(self, seconds) -> Decision:
        return NOTHING

    def on_failure(self, answer) -> Decision:
        return NOTHING


@implementer(ISignalTask)
class SignalTask:
    """
    One submitted Signal, from the submitter's side, and the state machine
    that processes it.

    @ivar signal: the Signal (the hooks' replacement, or a retargeted one
        after a server rule redirected it).
    @ivar state: where processing is (L{SignalState}); only moves forward.
    @ivar final: fires once with the final L{Response}; never fails.
    """

    log = Logger()

    def __init__(self, service: SignalService, signal: Signal) -> None:
        self.service = service
        self.signal = signal
        self.state = SignalState.SUBMITTED
        self.final = Deferred()
        self._listeners = []
        self._queue = deque()
        self._running = False
        self._decided = False
        self._timers = set()
        self._visited = set()
        self._rung = {}
        self._loop = False
        self._root = None
        self._started = service.clock.seconds()
        self._lifetime = None

    # ISignalTask

    def on_provisional(self, callback) -> None:
        self._listeners.append(callback)

    def cancel(self) -> None:
        self.post(self._conclude, response(487))

    # The event queue.

    def post(self, event, *args) -> None:
        """
        Handle C{event(*args)} after whatever is being handled now.
        """
        self._queue.append((event, args))
        if not self._running:
            self._drain()

    def _drain(self) -> None:
        self._running = True
        queue = self._queue
        try:
            while queue:
                if self._decided:
                    queue.clear()
                    return
                event, args = queue.popleft()
                try:
                    event(*args)
                except Exception:
                    self.log.failure(
                        "Signal {call_id}: processing failed", call_id=self.signal.call_id
                    )
                    self._conclude(response(500, "Signal processing failed"))
        finally:
            self._running = False

    def call_later(self, delay: float, event, *args):
        """
        Post C{event(*args)} after C{delay} seconds, unless the Signal has
        its final response by then.
        """

        def fire():
            self._timers.discard(call)
            self.post(event, *args)

        call = self.service.clock.callLater(delay, fire)
        self._timers.add(call)
        return call

    def cancel_timer(self, call) -> None:
        self._timers.discard(call)
        if call.active():
            call.cancel()

    def elapsed(self) -> float:
        return self.service.clock.seconds() - self._started

    # Processing.

    def start(self) -> None:
        self.post(self._begin)

    def _begin(self) -> None:
        for hook in self.service.hooks:
            outcome = self._call_hook(hook, "submitted", self.signal)
            if isinstance(outcome, Signal):
                self.signal = outcome
            elif isinstance(outcome, Response):
                if outcome.code >= 200:
                    self._conclude(outcome)
                    return
                self._hook_returned(hook, "submitted", outcome)
            elif outcome is not None:
                self._hook_returned(hook, "submitted", outcome)
        signal = self.signal
        self._lifetime = self.call_later(signal.lifetime, self._conclude, response(408))
        if not signal.targets:
            self._conclude(response(400, "The Signal has no target address"))
            return
        if not signal.in_dialog and self.service.rules is not None:
            plan = self.plan_for(None, signal.targets[0], 0)
            decision = self.decide(plan.immediate)
            if decision.reject is not None:
                self._conclude(decision.reject)
                return
            if decision.redirect is not None:
                signal = signal.retargeted(tuple(decision.redirect) + tuple(decision.fork))
            elif decision.fork:
                signal = signal.retargeted(signal.targets + tuple(decision.fork))
            self.signal = signal
        self._root = _Scope(self, None, 0)
        self._root.add_targets(signal.targets, 0, after=self._first_routed)

    def _first_routed(self) -> None:
        self._advance(SignalState.RULES_APPLIED)
        self._advance(SignalState.FORKING)

    def _advance(self, state: SignalState) -> None:
        if _STATE_ORDER[state] > _STATE_ORDER[self.state]:
            self.state = state

    # What the forking tree asks of its task.

    def route(self, address: str) -> Deferred:
        return maybeDeferred(
            self.service.router.route,
            address,
            AddressKind.SIGNAL,
            self.signal.submitter.account,
        )

    def routed(self, routes: list[Route]) -> list[Route]:
        """
        Show C{routes} to the hooks; the routes to take.
        """
        self._advance(SignalState.ROUTED)
        for hook in self.service.hooks:
            outcome = self._call_hook(hook, "routed", self.signal, routes)
            if outcome is None:
                continue
            try:
                replaced = list(outcome)
            except TypeError:
                self._hook_returned(hook, "routed", outcome)
                continue
            if all(isinstance(route, Route) for route in replaced):
                routes = replaced
            else:
                self._hook_returned(hook, "routed", outcome)
        return routes

    def first_visit(self, route: Route) -> bool:
        key = (route.module, route.host, route.address)
        if key in self._visited:
            self._loop = True
            return False
        self._visited.add(key)
        return True

    def first_delivery(self, endpoint) -> bool:
        if id(endpoint) in self._rung:
            return False
        self._rung[id(endpoint)] = endpoint
        return True

    def endpoints_of(self, account: str) -> list:
        return self.service.endpoints_of(account)

    def group_members(self, group: str):
        expand = self.service.group_members
        return None if expand is None else list(expand(group))

    def route_handler(self, module: str):
        return self.service.route_handler(module)

    def plan_for(self, account: str | None, target: str, reg_clients: int):
        """
        The rule plan for C{account} (L{None}: the server's immediate
        rules); a plan without rules when there are none or they fail.
        """
        rules = self.service.rules
        if rules is None:
            return None
        facts = SignalFacts.of(
            self.signal,
            target,
            now=datetime.fromtimestamp(self.service.clock.seconds()),
            reg_clients=reg_clients,
            presence=self.service.presence_of(account)
            if account is not None and self.service.presence_of is not None
            else "offline",
        )
        try:
            plan = rules.plan(self.signal, account, facts)
        except Exception:
            self.log.failure(
                "Signal {call_id}: the Signal Rules for {account} failed; none applied",
                call_id=self.signal.call_id,
                account=account or "the server",
            )
            return _NoPlan()
        return _NoPlan() if plan is None else plan

    def decide(self, stage, *args) -> Decision:
        """
        Run one rule stage; its L{Decision}, or L{NOTHING} if it failed.
        """
        try:
            decision = stage(*args)
        except Exception:
            self.log.failure(
                "Signal {call_id}: a Signal Rule stage failed; nothing done",
                call_id=self.signal.call_id,
            )
            return NOTHING
        if decision is None:
            return NOTHING
        for line in decision.log:
            self.log.info(
                "Signal {call_id} rule: {line}", call_id=self.signal.call_id, line=line
            )
        return decision

    def branch_started(self) -> None:
        if self.service.metrics is not None:
            self.service.metrics.branches.inc()

    def provisional(self, answer: Response) -> None:
        if self._decided or answer.code == 100:
            return
        if self.signal.method == "INVITE":
            self._ringing()
        for listener in tuple(self._listeners):
            try:
                listener(answer)
            except Exception:
                self.log.failure(
                    "Signal {call_id}: a provisional response listener failed",
                    call_id=self.signal.call_id,
                )

    def _ringing(self) -> None:
        """
        A provisional response to an INVITE: something is ringing, so the
        Signal lives on past its lifetime, for L{RINGING_LIFETIME} seconds
        from this response (RFC 3261 16.6 Timer C), and its timed rule
        stages (up to 600 s) and no-answer stage can run -- unless the
        submitter set a C{ring_limit}, whose timer (the lifetime) stands.
        """
        limit = self.signal.ring_limit
        if limit is not None:
            return  # the caller's own limit stands (its lifetime timer)
        lifetime = self._lifetime
        if lifetime is not None and lifetime.active():
            lifetime.cancel()
            self._timers.discard(lifetime)
        self._lifetime = self.call_later(RINGING_LIFETIME, self._conclude, response(408))

    def win(self, answer: Response) -> None:
        self._conclude(answer)

    def all_failed(self, answer: Response | None) -> None:
        if answer is None:
            if self._loop:
                answer = response(482, "Loop Detected")
            else:
                answer = response(480, "No destination answered")
        self._conclude(forwarded(answer))

    def _conclude(self, answer: Response) -> None:
        if self._decided:
            return
        self._decided = True
        if self._root is not None:
            self._root.cancel()
            self._root = None
        self._rung = {}
        self._visited = set()
        timers, self._timers = self._timers, set()
        for call in timers:
            if call.active():
                call.cancel()
        self.state = SignalState.RESPONDED
        self._listeners = []
        self.service.concluded(self.signal, answer)
        for hook in self.service.hooks:
            self._call_hook(hook, "responded", self.signal, answer)
        self.final.callback(answer)

    # Hooks.

    def _call_hook(self, hook, stage: str, *args):
        try:
            return getattr(hook, stage)(*args)
        except Exception:
            self.log.failure(
                "Signal {call_id}: hook {hook!r} failed at {stage}; skipped",
                call_id=self.signal.call_id,
                hook=hook,
                stage=stage,
            )
            return None

    def _hook_returned(self, hook, stage: str, outcome) -> None:
        self.log.warn(
            "Signal {call_id}: hook {hook!r} returned {outcome!r} at {stage}; ignored",
            call_id=self.signal.call_id,
            hook=hook,
            outcome=outcome,
            stage=stage,
        )
