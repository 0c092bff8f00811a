"""
Signals per second through the assembled core: the real Router over a
SQLite directory, the stored Signal Rules (one account rule that does not
match), the Signal service, and one in-memory endpoint answering 200 at
once.  benchmarks/signals.py measures the service alone.

    python benchmarks/signals_core.py [COUNT]
"""

import os
import sys
import tempfile
import time

from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.signal.memory import MemoryEndpointSource, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response
from communigate.storage import SQLiteStore


def main(count: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as work:
        clock = Clock()
        store = SQLiteStore(os.path.join(work, "bench.sqlite"))
        core = build_core(Config(data_dir=work, domain="example.com"), store, clock)
        create_initial_objects(core.directory, "example.com", ("bob",))
        core.interpreter.run(
            CommandContext.for_account("postmaster@example.com"),
            'SETACCOUNTSIGNALRULES bob ((5, spam, ((From, is, "spam@*")), (("Reject with", "403"))))',
        )
        devices = MemoryEndpointSource()
        devices.register("bob@example.com", ScriptedEndpoint(clock, [(0, response(200))]))
        core.signals.add_endpoint_source(devices)
        signals = [
            Signal(
                method="INVITE", targets=("bob@example.com",), from_address="alice@example.com",
                to_address="bob@example.com", call_id=f"call-{i}", submitter=Submitter("sip"),
            )
            for i in range(count)
        ]
        answered = []
        started = time.perf_counter()
        for signal in signals:
            core.signals.submit(signal).final.addCallback(answered.append)
        elapsed = time.perf_counter() - started
        assert len(answered) == count and all(r.code == 200 for r in answered)
        print(
            f"{count} Signals through Router, rules and service in {elapsed:.2f} s: "
            f"{count / elapsed:,.0f} per second ({elapsed / count * 1e6:.0f} us each)"
        )
        store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
