"""
The directory's read cache: bounded, keeps what was read last, and
trusts a store version for at most C{recheck_after} seconds.
"""

from communigate.directory.records import Records
from communigate.storage import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self):
        super().__init__()
        self.reads = 0
        self.version_checks = 0

    def get(self, kind, key):
        self.reads += 1
        return super().get(kind, key)

    def generation(self):
        self.version_checks += 1
        return super().generation()


def test_a_full_cache_drops_its_older_half_and_keeps_the_recent():
    store = CountingStore()
    for i in range(100):
        store.put("account", f"a{i}", "{}")
    records = Records(store, cache_size=10)
    for i in range(100):
        records.load("account", f"a{i}")
    assert len(records._cache) <= 10
    reads = store.reads
    records.load("account", "a99")
    assert store.reads == reads  # still cached
    records.load("account", "a0")
    assert store.reads == reads + 1  # long gone


def test_the_store_version_is_asked_at_most_every_recheck_interval():
    store = CountingStore()
    store.put("account", "a", "{X = 1;}")
    now = [0.0]
    records = Records(store, recheck_after=0.02, clock=lambda: now[0])
    for _ in range(50):
        assert records.load("account", "a") == {"X": "1"}
    assert store.version_checks == 1
    store.put("account", "a", "{X = 2;}")  # another writer, not through records
    assert records.load("account", "a") == {"X": "1"}  # within the interval
    now[0] += 0.03
    assert records.load("account", "a") == {"X": "2"}
    assert store.version_checks == 2


def test_derived_values_are_dropped_with_the_records():
    store = CountingStore()
    records = Records(store)
    computed = []
    value = records.derived("x", "k", lambda: computed.append(1) or "first")
    assert value == "first" and records.derived("x", "k", lambda: "again") == "first"
    with store.transaction():
        store.put("account", "b", "{}")
    assert records.derived("x", "k", lambda: "second") == "second"
