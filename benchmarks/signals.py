"""
Signals submitted and completed per second through the Signal service.

Each Signal is an INVITE to a local account routed by a MemoryRouter; the
account has one endpoint that answers 200 at once, inside deliver().  So
this measures the service itself: the task's event queue, hooks, routing
through the IRouter seam, the rule plan (none here unless --rules), the
forking tree, ranking and the final Deferred -- not a protocol or a real
router table (benchmarks/router_table.py measures that).

    python benchmarks/signals.py [COUNT] [--endpoints N] [--rules] [--metrics]
"""

import argparse
import gc
import time

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from communigate.routing.route import Module, Route
from communigate.signal.memory import MemoryEndpointSource, MemoryRouter, ScriptedEndpoint
from communigate.signal.model import NOTHING, Signal, Submitter, response
from communigate.signal.service import SignalService


class NoRules:
    """
    A rule plan with nothing in it for every Signal: the cost of asking.
    """

    def plan(self, signal, account, facts):
        return self

    def immediate(self):
        return NOTHING

    def delays(self):
        return ()

    def after(self, seconds):
        return NOTHING

    def on_failure(self, answer):
        return NOTHING


def run(count: int, endpoints: int, rules: bool, metrics: bool) -> tuple[float, int]:
    clock = Clock()
    account = "bob@example.com"
    router = MemoryRouter({account: Route(Module.LOCAL, account)})
    phones = MemoryEndpointSource()
    # The first endpoint answers at once; any others would ring and get
    # cancelled.
    phones.register(account, ScriptedEndpoint(clock, [(0, response(200))], description="answers"))
    for index in range(1, endpoints):
        ringing = ScriptedEndpoint(clock, [(0, response(180))], description=f"rings {index}")
        phones.register(account, ringing)
    service = SignalService(
        router,
        NoRules() if rules else None,
        clock,
        registry=CollectorRegistry() if metrics else None,
    )
    service.add_endpoint_source(phones)
    submitter = Submitter("sip", "alice@example.com", ("192.0.2.1", 5060))
    signals = [
        Signal(
            method="INVITE",
            targets=(account,),
            from_address="alice@example.com",
            to_address=account,
            call_id=f"call-{index}@example.com",
            submitter=submitter,
        )
        for index in range(count)
    ]
    answered = 0

    def done(final):
        nonlocal answered
        if final.code == 200:
            answered += 1

    gc.collect()
    started = time.perf_counter()
    for signal in signals:
        service.submit(signal).final.addCallback(done)
    elapsed = time.perf_counter() - started
    return elapsed, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=20_000)
    parser.add_argument("--endpoints", type=int, default=1, help="endpoints the account has")
    parser.add_argument("--rules", action="store_true", help="consult an empty rule plan")
    parser.add_argument("--metrics", action="store_true", help="count in a Prometheus registry")
    options = parser.parse_args()
    elapsed, answered = run(options.count, options.endpoints, options.rules, options.metrics)
    if answered != options.count:
        raise SystemExit(f"only {answered} of {options.count} Signals were answered 200")
    print(
        f"{options.count} Signals submitted and completed in {elapsed:.2f} s: "
        f"{options.count / elapsed:,.0f} per second "
        f"({options.endpoints} endpoint(s), rules {'on' if options.rules else 'off'}, "
        f"metrics {'on' if options.metrics else 'off'}; "
        f"{elapsed / options.count * 1e6:.1f} us each)"
    )


if __name__ == "__main__":
    main()
