"""
Routes per second through the full Router: a 1,000-record Router table
(mostly literal domains, as the index expects), 100,000 accounts with
telephone numbers in a SQLite store, and a mix of addresses: accounts,
aliases, telnums, table-routed numbers and remote domains.

    python benchmarks/routing.py [ROUTES]
"""

import os
import random
import sys
import tempfile
import time

from communigate.directory import Directory
from communigate.routing.configuration import RouterConfiguration
from communigate.routing.route import AddressKind, RoutingError
from communigate.routing.router import Router
from communigate.storage import SQLiteStore

ACCOUNTS = 100_000


def table_text() -> str:
    lines = ["<+(6-15d)*> = +*@telnum", "<00(6-15d)*> = +*@telnum"]
    lines += [f"S:<*@gw{i}.example> = gatewaycaller{{*}}#postmaster" for i in range(900)]
    lines += [f"<*@*.wild{i}.example> = *@relay{i}.example" for i in range(45)]
    lines += [f"<ext{i}*> = user{i}" for i in range(45)]
    lines += ["S:<+36*@telnum> = 0*@pstn", "S:<+*@telnum> = 00*@pstn", "S:<*@pstn> = gatewaycaller{*}#postmaster"]
    return "\n".join(lines[:1000])


def populate(store) -> Directory:
    directory = Directory(store)
    with store.transaction():
        directory.create_domain("example.com")
        directory.create_account("postmaster@example.com")
        for i in range(ACCOUNTS):
            directory.create_account(f"user{i}@example.com")
            if i % 10 == 0:
                directory.set_account_telnums(f"user{i}@example.com", [f"+1555{i:07d}"])
                directory.set_account_aliases(f"user{i}@example.com", [f"alias{i}"])
    return directory


def addresses(count: int) -> list[str]:
    rng = random.Random(7)
    kinds = [
        lambda: f"user{rng.randrange(ACCOUNTS)}@example.com",
        lambda: f"alias{rng.randrange(0, ACCOUNTS, 10)}",
        lambda: f"+1555{rng.randrange(0, ACCOUNTS, 10):07d}",
        lambda: f"0036{rng.randrange(10**8, 10**9)}",
        lambda: f"{rng.randrange(10**6)}@gw{rng.randrange(900)}.example",
        lambda: f"bob@host.wild{rng.randrange(45)}.example",
        lambda: f"bob@remote{rng.randrange(1000)}.net",
    ]
    return [rng.choice(kinds)() for _ in range(count)]


def main(count: int = 50_000) -> None:
    with tempfile.TemporaryDirectory() as work:
        store = SQLiteStore(os.path.join(work, "bench.sqlite"))
        started = time.perf_counter()
        directory = populate(store)
        print(f"{ACCOUNTS} accounts stored in {time.perf_counter() - started:.1f} s")
        configuration = RouterConfiguration(store)
        configuration.set_table(table_text())
        router = Router(directory, configuration)
        sample = addresses(count)
        errors = 0
        started = time.perf_counter()
        for address in sample:
            try:
                router.route_now(address, AddressKind.SIGNAL)
            except RoutingError:
                errors += 1
        elapsed = time.perf_counter() - started
        print(
            f"routed {count} addresses in {elapsed:.2f} s: {count / elapsed:,.0f} routes/s "
            f"({elapsed / count * 1e6:.0f} us each; {errors} refused)"
        )
        store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
