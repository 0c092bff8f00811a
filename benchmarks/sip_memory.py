"""
Where the registrar's memory goes: the SIP service over the real core
(SQLite directory with the accounts, bindings store, transaction layer),
fed authenticated registrations as UDP datagrams like
sip_register_cpu.py, on a clock this benchmark moves, so the three parts
of a loaded server's memory can be told apart:

  - the idle baseline: the process with the accounts created, no binding;
  - the lingering transactions: every REGISTER transaction stays in the
    Completed state for Timer J (32 s over UDP) after its answer, so a
    server taking N registrations a second holds 64 N of them (two per
    registration: the 401 and the 200);
  - the bindings themselves, with what registering leaves behind per
    account (directory cache entries, the nonce's replay counter), once
    Timer J has let the transactions go.

    python benchmarks/sip_memory.py [ACCOUNTS] [--trace]

Prints resident memory (RSS) after each step and the bytes per binding
and per lingering transaction.  RSS includes the allocator's overhead and
fragmentation, which is what the operator pays; with C{--trace} the
figures come from tracemalloc (allocated bytes only, slower) and the
allocation sites that grew most are listed.
"""

import gc
import os
import sys
import tempfile
import tracemalloc

from sip_register_cpu import authorization, register

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects, open_data_directory
from communigate.server import build_core
from communigate.sip.service import SIPService
from communigate.sip.transport import Flow
from communigate.tap import tune_garbage_collector
from communigate.testing import MemoryUDPReactor

LOCAL = ("127.0.0.1", 5060)
# Timer J over UDP (64 * T1) and a little more.
TIMER_J = 32.0 + 1.0


class CapturingSocket:
    """Stands in for the UDP listener: keeps the last thing sent."""

    last = b""

    def write(self, data, remote):
        self.last = data


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(trace: bool) -> int:
    gc.collect()
    if trace:
        return tracemalloc.get_traced_memory()[0]
    return rss_bytes()


def build(work: str, accounts: int):
    reactor = MemoryUDPReactor()
    store = open_data_directory(os.path.join(work, "data"))
    context = build_core(Config(data_dir=os.path.join(work, "data"), domain="example.com"), store, reactor)
    create_initial_objects(context.directory, "example.com")
    admin = CommandContext.for_account("postmaster@example.com")
    run = context.interpreter.run
    run(admin, "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}")
    with context.directory.transaction():
        for i in range(accounts):
            run(admin, f"CREATEACCOUNT u{i} {{Password = p{i};}}")
    service = SIPService(context, ())
    tune_garbage_collector()  # as twistd communigate does
    service.startService()
    socket = CapturingSocket()
    service.transport._udp[LOCAL] = socket
    service.rate_limiter.reconfigure(10**9, 10**9)
    return reactor, service, socket


def register_all(reactor, service, socket, accounts: int) -> int:
    """
    One registration per account, 1,000 a second of the fake clock.
    """
    ok = 0
    for user in range(accounts):
        if user % 100 == 0:
            reactor.advance(0.1)
        flow = Flow("udp", LOCAL, ("127.0.0.1", 20000 + user % 40000))
        service.transport.datagram_received(register(user, 1, flow.remote[1]), flow)
        data = register(user, 2, flow.remote[1], authorization(user, socket.last))
        service.transport.datagram_received(data, flow)
        ok += socket.last.startswith(b"SIP/2.0 200")
    return ok


def mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB"


def main(accounts: int = 10_000, trace: bool = False) -> None:
    what = "tracemalloc-traced bytes" if trace else "RSS"
    with tempfile.TemporaryDirectory() as work:
        if trace:
            tracemalloc.start(1)
        reactor, service, socket = build(work, accounts)
        reactor.advance(1)
        idle = measure(trace)
        before = tracemalloc.take_snapshot() if trace else None
        ok = register_all(reactor, service, socket, accounts)
        service.bindings.flush()
        lingering = sum(service.transactions.counts())
        loaded = measure(trace)
        loaded_snapshot = tracemalloc.take_snapshot() if trace else None
        reactor.advance(TIMER_J)
        service.bindings.flush()
        settled = measure(trace)
        settled_snapshot = tracemalloc.take_snapshot() if trace else None
        print(f"{ok}/{accounts} registrations answered 200 ({what})")
        print(f"idle, {accounts} accounts, no bindings:           {mb(idle)}")
        print(f"{ok} bindings and {lingering} completed transactions: {mb(loaded)}")
        print(f"{ok} bindings, transactions gone (after Timer J): {mb(settled)}")
        if trace:
            print(f"per binding (with its account's caches): {(settled - idle) / max(ok, 1):,.0f} bytes")
            print(f"per lingering transaction: {(loaded - settled) / max(lingering, 1):,.0f} bytes")
        else:
            # The allocator keeps what the transactions freed: RSS stays.
            print(
                f"per binding, with its account's caches and its two REGISTER transactions' share of the "
                f"peak: {(settled - idle) / max(ok, 1):,.0f} bytes (--trace tells them apart)"
            )
        print(f"SIP log: {len(service.sip_log)} messages kept")
        if trace:
            for title, old, new in (
                ("bindings and their accounts' caches", before, settled_snapshot),
                ("lingering transactions", settled_snapshot, loaded_snapshot),
            ):
                print(f"\nlargest growth, {title}:")
                for stat in new.compare_to(old, "lineno")[:15]:
                    print(f"  {stat.size_diff / 1e6:8.2f} MB {stat.count_diff:>8} blocks  {stat.traceback[0]}")
        service.stopService()


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(arguments[0]) if arguments else 10_000, "--trace" in sys.argv)
