"""
Router table matches per second: a 1,000-record table (900 records with a
literal domain, 50 with a wildcard domain, 50 local-part records, shuffled)
against random addresses, through the indexed `RouterTable.match` and, on a
sample, through a linear scan of every record for comparison.

    python benchmarks/router_table.py [ADDRESSES]
"""

import random
import sys
import time

from communigate.routing.route import AddressKind
from communigate.routing.table import parse_router_table

KINDS = list(AddressKind)


def make_table(rng: random.Random):
    lines = [f"<*@d{i}.example> = *@host{i}.example" for i in range(900)]
    lines += [f"S:<w{i}-*@*> = gw{i}{{*}}#pbx" for i in range(50)]
    lines += [f"<l{i}-(3-7d)*> = *@telnum" for i in range(50)]
    rng.shuffle(lines)
    return parse_router_table("\n".join(["; benchmark table"] + lines))


def make_addresses(rng: random.Random, count: int):
    """
    (local, domain, kind, domain_is_local): a third to indexed domains, a
    third to domains no record names, a third bare or local names, with
    some wildcard-domain and local-part hits among them.
    """
    out = []
    for _ in range(count):
        roll = rng.random()
        user = f"user{rng.randrange(100_000)}"
        if rng.random() < 0.05:
            user = f"w{rng.randrange(60)}-{user}"
        if roll < 1 / 3:
            out.append((user, f"d{rng.randrange(1000)}.example", rng.choice(KINDS), False))
        elif roll < 2 / 3:
            out.append((user, f"remote{rng.randrange(500)}.net", rng.choice(KINDS), False))
        else:
            local = f"l{rng.randrange(60)}-{rng.randrange(10**6)}" if rng.random() < 0.5 else user
            domain = rng.choice([None, "example.com"])
            out.append((local, domain, rng.choice(KINDS), domain is not None))
    return out


def linear_scan(table, local, domain, kind, domain_is_local):
    full = local if domain is None else f"{local}@{domain}"
    for record in table.records:
        if kind not in record.kinds:
            continue
        if record.compiled.has_at:
            subject = full
        elif domain is None or domain_is_local:
            subject = local
        else:
            continue
        if record.compiled.match(subject) is not None:
            return record
    return None


def rate(function, table, addresses):
    start = time.perf_counter()
    hits = 0
    for local, domain, kind, is_local in addresses:
        if function(table, local, domain, kind, is_local) is not None:
            hits += 1
    seconds = time.perf_counter() - start
    return len(addresses) / seconds, hits


def main(count: int = 100_000) -> None:
    rng = random.Random(20240601)
    table = make_table(rng)
    addresses = make_addresses(rng, count)
    indexed, hits = rate(type(table).match, table, addresses)
    sample = addresses[: max(count // 20, 1)]
    scanned, _ = rate(linear_scan, table, sample)
    print(f"table: {len(table.records)} records; addresses: {count:,}, {hits:,} matched")
    print(f"indexed match: {indexed:,.0f} matches/second")
    print(f"linear scan (on {len(sample):,} of them): {scanned:,.0f} matches/second")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
