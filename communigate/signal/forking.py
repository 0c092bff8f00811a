"""
The tree a Signal forks into.

A Signal's targets are routed; each route becomes a node of a tree whose
leaves are deliveries to endpoints:

  - a L{_Scope} collects the answers of the nodes below it and, once they
    have all failed, reports the best one (RFC 3261 section 16.7, see
    L{communigate.signal.ranking}) to its parent.  The root scope holds the
    Signal's own targets; a group, or the contacts of a 3xx, get a scope of
    their own;
  - an L{_AccountScope} is a local account: it consults the account's
    Signal Rules (immediately, at each timed stage, on failure) and rings
    every endpoint the account has;
  - a L{_Branch} is one delivery to one endpoint; L{_Fixed} is an answer
    known without delivering anything (404 for an unknown address, 480 for
    an account with no device, the NULL route ...);
  - a L{_RoutingBatch} stands for addresses being routed.

The first 2xx anywhere wins the whole Signal.  Every node reports through
the owning task's event queue (L{communigate.signal.service.SignalTask}):
responses from endpoints, routing results and timers are posted there and
handled one at a time, never re-entrantly.

Loops end instead of hanging: a route already taken by this Signal (an
account redirecting to itself, a 3xx pointing back, two aliases of one
account) is not taken again, an endpoint already rung is not rung again,
and redirections nest at most L{MAX_DEPTH} deep.
"""

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.interfaces import IForkingResponder
from communigate.routing.route import Module, Route, RoutingError, RoutingLoop
from communigate.signal.model import response
from communigate.signal.ranking import best_response

#: How deep redirections (rule redirects and forks, 3xx contacts, groups)
#: may nest below a Signal's own targets.
MAX_DEPTH = 5


def routing_failure(address: str, failure: Failure):
    """
    The answer for an address the router could not route: 482 for a
    routing loop (L{RoutingLoop}), 404 for
    anything else the router refused, 500 for a bug.
    """
    if failure.check(RoutingError):
        reason = str(failure.value) or f"{address} cannot be routed"
        code = 482 if isinstance(failure.value, RoutingLoop) else 404
        return response(code, reason, origin=address)
    return response(500, f"Routing {address} failed", origin=address)


class _Node:
    """
    A part of the tree, below C{parent} (a L{_Scope}, or L{None} at the
    root), C{depth} redirections below the Signal's own targets.
    """

    def __init__(self, task, parent, depth: int) -> None:
        self.task = task
        self.parent = parent
        self.depth = depth
        self.detached = False

    def cancel(self) -> None:
        """
        Stop: the answer of this node is no longer wanted and is ignored.
        """
        self.detached = True

    def _report(self, answer) -> None:
        if self.detached:
            return
        self.detached = True
        self.parent.child_finished(self, answer)


class _Fixed(_Node):
    """
    An answer known without delivering anything, reported as an event of
    its own so that it arrives in order with everything else.
    """

    def __init__(self, task, parent, depth: int, answer) -> None:
        super().__init__(task, parent, depth)
        task.post(self._report, answer)


class _RoutingBatch(_Node):
    """
    Addresses being routed for C{parent}; once all have an answer, the
    routed hooks see the routes and the parent dispatches each.
    """

    def __init__(self, task, parent, depth, addresses, after=None) -> None:
        super().__init__(task, parent, depth)
        self._addresses = list(addresses)
        self._outcomes = [None] * len(self._addresses)
        self._remaining = len(self._addresses)
        self._after = after
        self._lookups = []

    def start(self) -> None:
        if not self._addresses:
            self.task.post(self._dispatch)
            return
        for index, address in enumerate(self._addresses):
            lookup = self.task.route(address)
            lookup.addCallbacks(
                self._arrived, self._arrived, callbackArgs=(index,), errbackArgs=(index,)
            )
            if not lookup.called:
                self._lookups.append(lookup)

    def cancel(self) -> None:
        """
        Stop routing lookups still running (a slow ENUM query, say).
        """
        if self.detached:
            return
        self.detached = True
        lookups, self._lookups = self._lookups, []
        for lookup in lookups:
            if not lookup.called:
                lookup.cancel()

    def _arrived(self, outcome, index: int) -> None:
        self.task.post(self._settle, index, outcome)
        return None

    def _settle(self, index: int, outcome) -> None:
        if self.detached:
            return
        self._outcomes[index] = outcome
        self._remaining -= 1
        if self._remaining == 0:
            self._dispatch()

    def _dispatch(self) -> None:
        if self.detached:
            return
        parent = self.parent
        pairs = []
        for address, outcome in zip(self._addresses, self._outcomes):
            if isinstance(outcome, Route):
                pairs.append((address, outcome))
            elif isinstance(outcome, Failure):
                if not outcome.check(RoutingError):
                    self.task.log.failure(
                        "Routing {address!r} failed", failure=outcome, address=address
                    )
                parent.add_fixed(routing_failure(address, outcome), self.depth)
            else:
                self.task.log.error(
                    "The router answered {outcome!r} for {address!r}, not a Route",
                    outcome=outcome,
                    address=address,
                )
                parent.add_fixed(response(500, f"Routing {address} failed"), self.depth)
        routes = self.task.routed([route for _, route in pairs])
        target_of = {id(route): address for address, route in pairs}
        for route in routes:
            parent.add_route(target_of.get(id(route), route.host), route, self.depth)
        if self._after is not None:
            self._after()
        self._report(None)


@implementer(IForkingResponder)
class _Branch(_Node):
    """
    The Signal delivered to one endpoint; the endpoint reports here.
    """

    log = Logger()

    def __init__(self, task, parent, depth, endpoint) -> None:
        super().__init__(task, parent, depth)
        self.endpoint = endpoint
        self._delivery = None
        self._answered = False

    def deliver(self) -> None:
        task = self.task
        task.branch_started()
        try:
            self._delivery = self.endpoint.deliver(task.signal, self)
        except Exception:
            self.log.failure(
                "Delivering Signal {call_id} to {endpoint} failed",
                call_id=task.signal.call_id,
                endpoint=_describe(self.endpoint),
            )
            self._answered = True
            task.post(self._on_final, response(500, "Delivery failed"))

    # IResponder: called by the endpoint, at any time, even inside deliver().

    def provisional(self, answer) -> None:
        self.task.post(self._on_provisional, answer)

    def final(self, answer) -> None:
        if self._answered:
            self.log.warn(
                "{endpoint} answered Signal {call_id} twice; {code} ignored",
                endpoint=_describe(self.endpoint),
                call_id=self.task.signal.call_id,
                code=answer.code,
            )
            return
        self._answered = True
        self.task.post(self._on_final, answer)

    def fork(self, addresses) -> None:
        """
        The endpoint (an application's C{fork_call}) adds targets: they
        are routed and rung beside this branch, one redirection deeper.
        """
        self.task.post(self._fork, tuple(addresses))

    # Events.

    def _fork(self, addresses) -> None:
        if not self.detached and addresses:
            self.parent.add_targets(addresses, self.depth + 1)

    def _on_provisional(self, answer) -> None:
        if not self.detached:
            self.task.provisional(answer)

    def _on_final(self, answer) -> None:
        if self.detached:
            return
        if answer.code < 200:
            self.log.warn(
                "{endpoint} gave {code} as a final response to Signal {call_id}",
                endpoint=_describe(self.endpoint),
                code=answer.code,
                call_id=self.task.signal.call_id,
            )
            answer = response(500, f"Provisional {answer.code} given as final")
        if 300 <= answer.code < 400 and answer.contacts:
            self.detached = True
            self.parent.follow(self, answer.contacts, self.depth + 1)
            return
        self._report(answer)

    def cancel(self) -> None:
        if self.detached:
            return
        self.detached = True
        if self._delivery is None or self._answered:
            return
        try:
            self._delivery.cancel()
        except Exception:
            self.log.failure(
                "Cancelling Signal {call_id} at {endpoint} failed",
                call_id=self.task.signal.call_id,
                endpoint=_describe(self.endpoint),
            )


def _describe(endpoint) -> str:
    return getattr(endpoint, "description", None) or repr(endpoint)


class _Scope(_Node):
    """
    Nodes forked in parallel; when they have all failed, their best
    response (or, with none, the C{fallback}) is this scope's answer.
    """

    log = Logger()

    def __init__(self, task, parent, depth) -> None:
        super().__init__(task, parent, depth)
        self.pending: dict[_Node, None] = {}
        self.responses = []
        self.fallback = None

    # Growing the tree.

    def add_targets(self, addresses, depth: int, after=None) -> None:
        """
        Route C{addresses} and fork to them.
        """
        if self.detached:
            return
        if depth > MAX_DEPTH:
            self.log.warn(
                "Signal {call_id}: redirections nest deeper than {limit}; {addresses} not tried",
                call_id=self.task.signal.call_id,
                limit=MAX_DEPTH,
                addresses=list(addresses),
            )
            self.add_fixed(response(482, "Too many redirections"), depth)
            return
        batch = _RoutingBatch(self.task, self, depth, addresses, after)
        self.pending[batch] = None
        batch.start()

    def add_fixed(self, answer, depth: int) -> None:
        if self.detached:
            return
        self.pending[_Fixed(self.task, self, depth, answer)] = None

    def add_route(self, target: str, route: Route, depth: int) -> None:
        if self.detached:
            return
        task = self.task
        if not task.first_visit(route):
            self.log.info(
                "Signal {call_id}: {target} routes to {route} again; not taken twice",
                call_id=task.signal.call_id,
                target=target,
                route=route.as_data(),
            )
            return
        module = route.module
        if module == Module.LOCAL:
            account = _AccountScope(task, self, depth, route.host, target)
            self.pending[account] = None
            account.start()
        elif module == Module.GROUP:
            self._add_group(route, depth)
        elif module == Module.SYSTEM and route.host == "NULL":
            # [D] The NULL route discards: a call is declined, anything else
            # is accepted and dropped, as a mail to NULL is.
            if task.signal.method.upper() == "INVITE":
                self.add_fixed(response(603, "Decline", origin="NULL"), depth)
            else:
                self.add_fixed(response(200, "Discarded", origin="NULL"), depth)
        else:
            self._add_handled(route, depth)

    def _add_group(self, route: Route, depth: int) -> None:
        task = self.task
        try:
            members = task.group_members(route.host)
        except Exception:
            self.log.failure(
                "Signal {call_id}: expanding group {group} failed",
                call_id=task.signal.call_id,
                group=route.host,
            )
            self.add_fixed(response(500, f"Group {route.host} cannot be expanded"), depth)
            return
        if members is None:
            self.log.warn(
                "Signal {call_id}: no group expansion configured for {group}",
                call_id=task.signal.call_id,
                group=route.host,
            )
            self.add_fixed(response(502, f"No handler for {Module.GROUP} routes"), depth)
            return
        group = _Scope(task, self, depth + 1)
        self.pending[group] = None
        group.add_targets(members, depth + 1)

    def _add_handled(self, route: Route, depth: int) -> None:
        task = self.task
        handler = task.route_handler(route.module)
        if handler is None:
            self.log.warn(
                "Signal {call_id}: no route handler for module {module}; {route} answered 502",
                call_id=task.signal.call_id,
                module=route.module,
                route=route.as_data(),
            )
            self.add_fixed(response(502, f"No handler for {route.module} routes"), depth)
            return
        try:
            endpoint = handler.endpoint(route, task.signal)
        except Exception:
            self.log.failure(
                "Signal {call_id}: the {module} route handler failed for {route}",
                call_id=task.signal.call_id,
                module=route.module,
                route=route.as_data(),
            )
            self.add_fixed(response(500, f"{route.module} delivery failed"), depth)
            return
        self.add_endpoint(endpoint, depth)

    def add_endpoint(self, endpoint, depth: int) -> bool:
        """
        Deliver to C{endpoint} unless this Signal was delivered to it
        already; say whether it was.
        """
        if self.detached or not self.task.first_delivery(endpoint):
            return False
        branch = _Branch(self.task, self, depth, endpoint)
        self.pending[branch] = None
        branch.deliver()
        return True

    def follow(self, branch: _Branch, contacts, depth: int) -> None:
        """
        C{branch} answered 3xx: fork to its contacts instead.
        """
        redirection = _Scope(self.task, self, depth)
        self.pending[redirection] = None
        self.pending.pop(branch, None)
        redirection.add_targets(contacts, depth)

    # Answers from below.

    def child_finished(self, child: _Node, answer) -> None:
        if self.detached or child not in self.pending:
            return
        del self.pending[child]
        if answer is not None:
            if answer.success:
                self.task.win(answer)
                return
            self.responses.append(answer)
        if not self.pending:
            self.exhausted()

    def exhausted(self) -> None:
        """
        Every node below failed.
        """
        self.finish(best_response(self.responses) if self.responses else self.fallback)

    def finish(self, answer) -> None:
        if self.detached:
            return
        self.detached = True
        if self.parent is None:
            self.task.all_failed(answer)
        else:
            self.parent.child_finished(self, answer)

    def cancel(self) -> None:
        if self.detached:
            return
        self.detached = True
        self.cancel_children()

    def cancel_children(self) -> None:
        pending, self.pending = self.pending, {}
        for child in pending:
            child.cancel()


class _AccountScope(_Scope):
    """
    A local account: its Signal Rules and its endpoints.
    """

    def __init__(self, task, parent, depth, account: str, target: str) -> None:
        super().__init__(task, parent, depth)
        self.account = account
        self.target = target
        self._plan = None
        self._timers = []
        self._redirected = False
        self._consulted = False

    def start(self) -> None:
        task = self.task
        endpoints = task.endpoints_of(self.account)
        if not task.signal.in_dialog:
            self._plan = task.plan_for(self.account, self.target, len(endpoints))
        plan = self._plan
        if plan is not None:
            decision = task.decide(plan.immediate)
            if self._apply(decision):
                return
        if endpoints:
            for endpoint in endpoints:
                self.add_endpoint(endpoint, self.depth)
        else:
            self.add_fixed(response(480, origin=self.account), self.depth)
        if plan is not None:
            self._schedule(_delays(task, plan), endpoints)
        if not self.pending and not self.detached:
            self.exhausted()

    def _schedule(self, delays, endpoints) -> None:
        task = self.task
        if not endpoints:
            # With no device to ring, the timed stages do not wait.
            for seconds in delays:
                self._stage(seconds)
                if self.detached or self._redirected:
                    return
            return
        elapsed = task.elapsed()
        for seconds in delays:
            self._timers.append(task.call_later(max(0.0, seconds - elapsed), self._stage, seconds))

    def _stage(self, seconds) -> None:
        if self.detached or self._redirected:
            return
        self._apply(self.task.decide(self._plan.after, seconds))

    def _apply(self, decision) -> bool:
        """
        Act on a rule stage's C{decision}; say whether it ended or replaced
        this account's own delivery.
        """
        if decision.reject is not None:
            self._stop_timers()
            self.cancel_children()
            self.finish(decision.reject)
            return True
        if decision.redirect is not None:
            self._redirected = True
            self._stop_timers()
            self.cancel_children()
            if self.responses:
                self.fallback = best_response(self.responses)
                self.responses = []
            self.add_targets(tuple(decision.redirect) + tuple(decision.fork), self.depth + 1)
            return True
        if decision.fork:
            self.add_targets(decision.fork, self.depth + 1)
        return False

    def exhausted(self) -> None:
        if (
            self._plan is not None
            and self.responses
            and not self._redirected
            and not self._consulted
        ):
            self._consulted = True
            self._stop_timers()
            decision = self.task.decide(self._plan.on_failure, best_response(self.responses))
            self._apply(decision)
            if self.detached or self.pending:
                return
        super().exhausted()

    def finish(self, answer) -> None:
        self._stop_timers()
        super().finish(answer)

    def cancel(self) -> None:
        self._stop_timers()
        super().cancel()

    def _stop_timers(self) -> None:
        timers, self._timers = self._timers, []
        for call in timers:
            self.task.cancel_timer(call)


def _delays(task, plan) -> tuple:
    try:
        return tuple(plan.delays())
    except Exception:
        task.log.failure(
            "Signal {call_id}: the rule plan's stages cannot be read",
            call_id=task.signal.call_id,
        )
        return ()
