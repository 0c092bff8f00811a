"""
Routing and the Signal service: the Router, endpoints and deliveries, responders, hooks, rules, tasks.
"""

from zope.interface import Attribute, Interface


class IRouter(Interface):
    """
    Turns an address into a L{communigate.routing.route.Route}: the Router
    table, the directory, telephone numbers, E.164 and ENUM.
    """

    def route(address, kind, on_behalf_of=None):
        """
        Route C{address} (text: e-mail form, URI or number) for C{kind}
        (a L{communigate.routing.route.AddressKind}).

        @param on_behalf_of: the account an application address without an
            account (C{#program}) runs for, or L{None}.
        @return: a L{twisted.internet.defer.Deferred} firing with a
            L{communigate.routing.route.Route}, or failing with
            L{communigate.routing.route.RoutingError}.
        """


class IResponder(Interface):
    """
    Receives the responses of one delivery of a Signal.
    """

    def provisional(response):
        """
        A 1xx L{communigate.signal.model.Response}; any number of them.
        """

    def final(response):
        """
        The final L{communigate.signal.model.Response}; exactly once.
        """


class IForkingResponder(IResponder):
    """
    A responder that also takes more targets for its Signal: what an
    application's C{fork_call} (CG/PL C{ForkCall}) needs.  The Signal
    service's branches provide it; an endpoint checks with
    C{IForkingResponder.providedBy} before relying on it.
    """

    def fork(addresses):
        """
        Deliver the Signal to C{addresses} too (routed as the Signal's own
        targets are), while this delivery goes on: the first 2xx of any
        branch wins, and this one is cancelled if another wins.
        """


class IDelivery(Interface):
    """
    A Signal on its way to one endpoint.
    """

    def cancel():
        """
        The answer is no longer wanted (another branch won, the caller gave
        up).  The endpoint should stop ringing and answer 487; responses
        after a cancel are ignored by the service.
        """


class IEndpoint(Interface):
    """
    Something that can receive a Signal: a SIP contact, an XMPP resource, a
    XIMSS session, a PBX task, a remote SIP server.
    """

    description = Attribute("Says what this endpoint is, for logs.")

    def deliver(signal, responder):
        """
        Start delivering C{signal}; report to C{responder} (an
        L{IResponder}); return an L{IDelivery}.
        """


class IEndpointSource(Interface):
    """
    A kind of endpoint that accounts register (SIP registrations, XMPP
    resources, XIMSS sessions): the Signal service asks every source for
    an account's endpoints and rings them all.
    """

    def endpoints(account):
        """
        The L{IEndpoint}s C{account} (C{user@domain}) has now, as a list.
        """


class IRouteHandler(Interface):
    """
    Delivers Signals whose route ends in a module other than a local
    account: C{PBX} (start an application task), C{SIP} (a remote server).
    """

    module = Attribute("The L{communigate.routing.route.Module} name handled.")

    def endpoint(route, signal):
        """
        The L{IEndpoint} that delivers C{signal} along C{route}.
        """


class ISignalHook(Interface):
    """
    A plugin's view of every Signal, to observe it or to impose policy
    without patching the core.  Hooks run in the order they were added.
    """

    def submitted(signal):
        """
        A Signal arrived.  Return L{None} to let it go on, a replacement
        L{communigate.signal.model.Signal}, or a final
        L{communigate.signal.model.Response} to end it here.
        """

    def routed(signal, routes):
        """
        The targets were routed to C{routes} (a list of
        L{communigate.routing.route.Route}).  Return L{None} or a
        replacement list.
        """

    def responded(signal, response):
        """
        The final response was decided; for observation.
        """


class ISignalRules(Interface):
    """
    The Signal Rules in force (server, domain, account levels), as the
    Signal service consults them for an out-of-dialog Signal.
    """

    def plan(signal, account, facts):
        """
        The rule plan for C{signal} sent to local C{account}, or, with
        C{account} L{None}, for the server's immediate rules that run
        before routing.  C{facts} is a
        L{communigate.signal.model.SignalFacts}.  Returns a
        L{communigate.signal.rules.RulePlan}.
        """


class ISignalTask(Interface):
    """
    A submitted Signal, from the submitter's side.
    """

    signal = Attribute("The L{communigate.signal.model.Signal}.")
    state = Attribute("The L{communigate.signal.model.SignalState}.")
    final = Attribute(
        "A Deferred that fires once, with the final Response (never fails)."
    )

    def on_provisional(callback):
        """
        Call C{callback(response)} for each provisional response from now on.
        """

    def cancel():
        """
        Give up: every branch is cancelled and the final response is 487
        unless one was already decided.
        """


class ISignalService(Interface):
    """
    Routes Signals, applies Signal Rules, forks them to endpoints and
    brings back the responses.
    """

    def submit(signal):
        """
        Process C{signal}; returns an L{ISignalTask}.
        """

    def add_endpoint_source(source):
        """
        Ring the endpoints of L{IEndpointSource} C{source} for local accounts.
        """

    def add_route_handler(handler):
        """
        Deliver routes of C{handler.module} through L{IRouteHandler} C{handler}.
        """

    def add_hook(hook):
        """
        Show every Signal to L{ISignalHook} C{hook}.
        """
