"""
Tests for the IStore providers: one behaviour suite run against both the
in-memory store and the SQLite store, then what only SQLite has (WAL,
durability, sharing a file between processes, schema versions).
"""

import os
import sqlite3
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
)
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from communigate.interfaces import IStore
from communigate.storage import MemoryStore, SQLiteStore, StoreError
from communigate.storage.schema import MIGRATIONS, SCHEMA_VERSION
from communigate.storage.sqlite import DATABASE_NAME


class Boom(Exception):
    """
    Raised inside a transaction to make it roll back.
    """


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        opened = MemoryStore()
    else:
        opened = SQLiteStore(str(tmp_path / "store.sqlite"))
    yield opened
    opened.close()


# -- the shared behaviour ----------------------------------------------------


def test_store_provides_istore(store):
    assert verifyObject(IStore, store)


def test_store_reports_the_current_schema_version(store):
    assert store.schema_version == SCHEMA_VERSION


def test_get_of_a_missing_key_is_none(store):
    assert store.get("account", "nobody") is None


def test_put_then_get_returns_the_text(store):
    store.put("account", "example.com/alice", "{Type = MultiMailbox;}")
    assert store.get("account", "example.com/alice") == "{Type = MultiMailbox;}"


def test_put_replaces_the_previous_value(store):
    store.put("k", "a", "1")
    store.put("k", "a", "2")
    assert store.get("k", "a") == "2"
    assert store.scan("k") == [("a", "2")]


def test_kinds_are_separate_namespaces(store):
    store.put("domain", "x", "domain value")
    store.put("account", "x", "account value")
    assert store.get("domain", "x") == "domain value"
    assert store.get("account", "x") == "account value"
    assert store.scan("domain") == [("x", "domain value")]


def test_empty_text_is_a_value_not_an_absence(store):
    store.put("k", "empty", "")
    assert store.get("k", "empty") == ""
    assert store.scan("k") == [("empty", "")]


def test_put_refuses_values_that_are_not_text(store):
    with pytest.raises(TypeError):
        store.put("k", "a", 5)
    assert store.get("k", "a") is None


def test_delete_reports_whether_something_was_removed(store):
    store.put("k", "a", "1")
    assert store.delete("k", "a") is True
    assert store.get("k", "a") is None
    assert store.delete("k", "a") is False
    assert store.delete("other-kind", "a") is False


def test_scan_returns_pairs_ordered_by_key(store):
    for key in ["b", "a", "c", "aa", "B"]:
        store.put("k", key, key.upper())
    assert store.scan("k") == [
        ("B", "B"),
        ("a", "A"),
        ("aa", "AA"),
        ("b", "B"),
        ("c", "C"),
    ]


def test_scan_of_an_unknown_kind_is_empty(store):
    assert store.scan("nothing") == []
    assert store.scan("nothing", "x") == []


def test_scan_with_prefix_returns_only_keys_starting_with_it(store):
    for key in ["example.com/alice", "example.com/bob", "example.org/carol", "example.com0"]:
        store.put("account", key, "v")
    assert [k for k, _ in store.scan("account", "example.com/")] == [
        "example.com/alice",
        "example.com/bob",
    ]


@pytest.mark.parametrize(
    "prefix, expected",
    [
        # The prefix itself is a key that starts with the prefix.
        ("ab", ["ab", "ab\x00", "abc", "ab\U0010ffff"]),
        # The character after the prefix's last one must not match.
        ("a", ["a", "ab", "ab\x00", "abc", "ab\U0010ffff", "ac"]),
        # A prefix longer than every key matches nothing.
        ("abcd", []),
        # A prefix ending in the highest code point has no "next string".
        ("ab\U0010ffff", ["ab\U0010ffff"]),
        ("\U0010ffff", ["\U0010ffff", "\U0010ffffz"]),
        # Characters that are wildcards in SQL LIKE are literal here.
        ("%", ["%x"]),
        ("_", ["_y"]),
        # Non-ASCII prefixes compare by code point.
        ("é", ["é", "éa"]),
    ],
)
def test_scan_prefix_edge_cases(store, prefix, expected):
    keys = [
        "a", "ab", "ab\x00", "abc", "ab\U0010ffff", "ac", "b", "%x", "_y",
        "é", "éa", "f", "\U0010ffff", "\U0010ffffz",
    ]
    for key in keys:
        store.put("k", key, "v")
    assert [k for k, _ in store.scan("k", prefix)] == sorted(expected)


def test_transaction_commits_on_normal_exit(store):
    with store.transaction():
        store.put("k", "a", "1")
        store.put("k", "b", "2")
        assert store.get("k", "a") == "1"
    assert store.scan("k") == [("a", "1"), ("b", "2")]


def test_transaction_rollback_restores_overwritten_deleted_and_new_keys(store):
    store.put("k", "kept", "old")
    store.put("k", "overwritten", "old")
    store.put("k", "deleted", "old")
    with pytest.raises(Boom):
        with store.transaction():
            store.put("k", "overwritten", "new")
            store.put("k", "overwritten", "newer")
            assert store.delete("k", "deleted")
            store.put("k", "created", "new")
            store.put("k", "created-then-deleted", "new")
            store.delete("k", "created-then-deleted")
            store.put("k", "deleted", "resurrected")
            store.put("fresh-kind", "x", "y")
            raise Boom()
    assert store.scan("k") == [
        ("deleted", "old"),
        ("kept", "old"),
        ("overwritten", "old"),
    ]
    assert store.scan("fresh-kind") == []


def test_rollback_propagates_the_exception(store):
    with pytest.raises(Boom, match="the reason"):
        with store.transaction():
            raise Boom("the reason")


def test_nested_transaction_joins_the_outer_one(store):
    with pytest.raises(Boom):
        with store.transaction():
            store.put("k", "outer", "1")
            with store.transaction():
                store.put("k", "inner", "2")
            # The inner block ended normally, but nothing is committed
            # until the outer one does.
            raise Boom()
    assert store.scan("k") == []


def test_exception_in_nested_transaction_rolls_back_everything(store):
    with pytest.raises(Boom):
        with store.transaction():
            store.put("k", "outer", "1")
            with store.transaction():
                store.put("k", "inner", "2")
                raise Boom()
    assert store.scan("k") == []


def test_nested_transaction_commits_with_the_outer_one(store):
    with store.transaction():
        with store.transaction():
            store.put("k", "inner", "2")
        store.put("k", "outer", "1")
    assert store.scan("k") == [("inner", "2"), ("outer", "1")]


def test_store_is_usable_after_a_rollback(store):
    with pytest.raises(Boom):
        with store.transaction():
            store.put("k", "a", "1")
            raise Boom()
    with store.transaction():
        store.put("k", "b", "2")
    store.put("k", "c", "3")
    assert store.scan("k") == [("b", "2"), ("c", "3")]


def test_generation_changes_after_a_write_outside_a_transaction(store):
    before = store.generation()
    store.put("k", "a", "1")
    after_put = store.generation()
    assert after_put != before
    store.delete("k", "a")
    assert store.generation() != after_put


def test_generation_changes_after_a_committed_transaction(store):
    before = store.generation()
    with store.transaction():
        store.put("k", "a", "1")
    assert store.generation() != before


def test_generation_is_stable_without_changes(store):
    store.put("k", "a", "1")
    before = store.generation()
    store.get("k", "a")
    store.scan("k")
    assert store.generation() == before


# -- SQLite only ---------------------------------------------------------------


def _pragma(path, name):
    db = sqlite3.connect(path)
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def _make_database(path, user_version, journal_mode="delete"):
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA journal_mode={journal_mode}")
    db.execute("CREATE TABLE future (x TEXT)")
    db.execute("INSERT INTO future VALUES ('kept')")
    db.commit()
    db.execute(f"PRAGMA user_version={user_version}")
    db.close()


def _directory_contents(directory):
    return {
        name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))
    }


def test_count_is_the_number_of_records_of_a_kind(store):
    assert store.count("k") == 0
    store.put("k", "a", "1")
    store.put("k", "b", "2")
    store.put("other", "a", "3")
    store.put("k", "a", "4")
    assert store.count("k") == 2
    store.delete("k", "a")
    assert store.count("k") == 1


@pytest.fixture
def database(tmp_path):
    return str(tmp_path / "store.sqlite")


def test_sqlite_store_uses_write_ahead_logging(database):
    SQLiteStore(database).close()
    assert _pragma(database, "journal_mode") == "wal"


def test_sqlite_connection_commits_durably(database):
    store = SQLiteStore(database)
    try:
        found = store.connection_settings()
    finally:
        store.close()
    assert found["journal_mode"] == "wal"
    assert found["synchronous"] == "FULL"


def test_sqlite_write_outside_transaction_is_committed_before_returning(database):
    store = SQLiteStore(database)
    store.put("k", "a", "1")
    # Another connection sees it with no close or flush in between.
    db = sqlite3.connect(database)
    assert db.execute("SELECT value FROM records WHERE kind='k' AND key='a'").fetchall() == [("1",)]
    db.close()
    store.close()


def test_sqlite_second_store_on_the_same_file_sees_commits_at_once(database):
    server = SQLiteStore(database)
    admin_tool = SQLiteStore(database)
    try:
        seen = server.generation()
        admin_tool.put("account", "example.com/alice", "{}")
        assert server.get("account", "example.com/alice") == "{}"
        assert server.generation() != seen

        seen = server.generation()
        with admin_tool.transaction():
            admin_tool.put("account", "example.com/bob", "{}")
            admin_tool.delete("account", "example.com/alice")
            # Not committed yet: the other connection still sees the old state.
            assert server.get("account", "example.com/alice") == "{}"
            assert server.get("account", "example.com/bob") is None
        assert server.generation() != seen
        assert server.scan("account") == [("example.com/bob", "{}")]
    finally:
        server.close()
        admin_tool.close()


def test_sqlite_rolled_back_transaction_is_invisible_to_another_store(database):
    server = SQLiteStore(database)
    admin_tool = SQLiteStore(database)
    try:
        seen = server.generation()
        with pytest.raises(Boom):
            with admin_tool.transaction():
                admin_tool.put("k", "a", "1")
                raise Boom()
        assert server.get("k", "a") is None
        assert server.generation() == seen
    finally:
        server.close()
        admin_tool.close()


def test_sqlite_data_survives_reopening(database):
    store = SQLiteStore(database)
    store.put("k", "a", "1")
    store.close()
    reopened = SQLiteStore(database)
    try:
        assert reopened.get("k", "a") == "1"
    finally:
        reopened.close()


def test_sqlite_migrations_run_from_version_zero_and_set_user_version(database):
    assert not os.path.exists(database)
    SQLiteStore(database).close()
    assert _pragma(database, "user_version") == SCHEMA_VERSION == len(MIGRATIONS)


def test_sqlite_reopening_does_not_run_migrations_again(database):
    SQLiteStore(database).close()
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        store = SQLiteStore(database)
    finally:
        globalLogPublisher.removeObserver(events.append)
    try:
        assert store.schema_version == SCHEMA_VERSION
    finally:
        store.close()
    assert [e for e in events if "migrated" in e.get("log_format", "")] == []


def test_sqlite_first_open_logs_each_migration(database):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        SQLiteStore(database).close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    versions = [e["version"] for e in events if "migrated" in e.get("log_format", "")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_sqlite_later_migration_runs_only_the_steps_not_yet_seen(database):
    SQLiteStore(database).close()
    upgrade = (*MIGRATIONS, ("CREATE TABLE added_later (x TEXT)",))
    store = SQLiteStore(database, migrations=upgrade)
    try:
        assert store.schema_version == SCHEMA_VERSION + 1
    finally:
        store.close()
    assert _pragma(database, "user_version") == SCHEMA_VERSION + 1
    # Reopening with the same list runs nothing (a second CREATE TABLE of
    # the same name would fail).
    SQLiteStore(database, migrations=upgrade).close()


def test_sqlite_failed_migration_step_keeps_the_steps_before_it(database):
    upgrade = (
        *MIGRATIONS,
        ("CREATE TABLE step_two (x TEXT)",),
        ("CREATE TABLE step_three (x TEXT)", "THIS IS NOT SQL"),
    )
    with pytest.raises(StoreError, match="cannot open the store"):
        SQLiteStore(database, migrations=upgrade)
    # Steps up to two are committed; step three rolled back as a whole.
    assert _pragma(database, "user_version") == SCHEMA_VERSION + 1
    db = sqlite3.connect(database)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "step_two" in tables
    assert "step_three" not in tables
    # Fixing step three and reopening resumes at step three.
    fixed = (*upgrade[:-1], ("CREATE TABLE step_three (x TEXT)",))
    SQLiteStore(database, migrations=fixed).close()
    assert _pragma(database, "user_version") == SCHEMA_VERSION + 2


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_sqlite_newer_schema_is_refused_and_the_file_left_unchanged(
    tmp_path, journal_mode
):
    path = str(tmp_path / "store.sqlite")
    newer = SCHEMA_VERSION + 5
    _make_database(path, newer, journal_mode)
    before = _directory_contents(tmp_path)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert f"schema version {newer}" in message
    assert f"({SCHEMA_VERSION})" in message
    assert "newer" in message
    assert _directory_contents(tmp_path) == before
    assert _pragma(path, "user_version") == newer


def test_sqlite_file_that_is_not_a_database_is_refused_unchanged(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is a text file, not SQLite\n" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        SQLiteStore(str(path))
    assert path.read_bytes() == b"this is a text file, not SQLite\n" * 100


def test_in_directory_opens_the_database_inside_the_data_directory(tmp_path):
    store = SQLiteStore.in_directory(str(tmp_path))
    try:
        store.put("k", "a", "1")
    finally:
        store.close()
    assert (tmp_path / DATABASE_NAME).exists()


def test_in_directory_refuses_a_data_directory_inside_a_file(tmp_path):
    not_a_directory = tmp_path / "plain-file"
    not_a_directory.write_text("x")
    with pytest.raises(StoreError) as caught:
        SQLiteStore.in_directory(str(not_a_directory / "data"))
    assert "data directory" in str(caught.value)
    assert str(not_a_directory / "data") in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_in_directory_refuses_a_file_given_as_data_directory(tmp_path):
    not_a_directory = tmp_path / "plain-file"
    not_a_directory.write_text("x")
    with pytest.raises(StoreError, match="is not a directory"):
        SQLiteStore.in_directory(str(not_a_directory))
    assert not_a_directory.read_text() == "x"


def test_in_directory_refuses_a_read_only_data_directory(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        if os.access(data, os.W_OK):
            pytest.skip(
                "running as a user (root) whom the file mode does not stop "
                "from writing, so the directory is writable after all"
            )
        with pytest.raises(StoreError, match="not writable"):
            SQLiteStore.in_directory(str(data))
        assert os.listdir(data) == []
    finally:
        data.chmod(0o700)


# -- the model test ------------------------------------------------------------

KINDS = st.sampled_from(["domain", "account", "name"])
KEYS = st.text(alphabet="ab/é\x00\U0010ffff", max_size=4)
VALUES = st.text(max_size=8)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KINDS, KEYS, VALUES),
        st.tuples(st.just("delete"), KINDS, KEYS),
    ),
    max_size=6,
)


class StoresAgreeWithADictionary(RuleBasedStateMachine):
    """
    Both stores, driven by the same random operations, stay equal to a
    plain dictionary of dictionaries; rolled-back transactions leave no
    trace.
    """

    def __init__(self):
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.stores = [
            MemoryStore(),
            SQLiteStore(os.path.join(self.directory.name, "model.sqlite")),
        ]
        self.model: dict[str, dict[str, str]] = {}

    def teardown(self):
        for store in self.stores:
            store.close()
        self.directory.cleanup()

    def _apply(self, model, operation):
        results = []
        for store in self.stores:
            if operation[0] == "put":
                store.put(*operation[1:])
            else:
                results.append(store.delete(*operation[1:]))
        kind, key = operation[1], operation[2]
        if operation[0] == "put":
            model.setdefault(kind, {})[key] = operation[3]
        else:
            expected = model.get(kind, {}).pop(key, None) is not None
            assert results == [expected, expected]

    @rule(kind=KINDS, key=KEYS, value=VALUES)
    def put(self, kind, key, value):
        self._apply(self.model, ("put", kind, key, value))

    @rule(kind=KINDS, key=KEYS)
    def delete(self, kind, key):
        self._apply(self.model, ("delete", kind, key))

    @rule(operations=OPERATIONS, nested=OPERATIONS, fail=st.booleans())
    def transaction(self, operations, nested, fail):
        draft = {kind: dict(records) for kind, records in self.model.items()}
        try:
            with self.stores[0].transaction(), self.stores[1].transaction():
                for operation in operations:
                    self._apply(draft, operation)
                with self.stores[0].transaction(), self.stores[1].transaction():
                    for operation in nested:
                        self._apply(draft, operation)
                if fail:
                    raise Boom()
        except Boom:
            return
        self.model = draft

    @rule(kind=KINDS, prefix=KEYS)
    def scan(self, kind, prefix):
        expected = sorted(
            (key, value)
            for key, value in self.model.get(kind, {}).items()
            if key.startswith(prefix)
        )
        for store in self.stores:
            assert store.scan(kind, prefix) == expected
            assert store.keys(kind, prefix) == [key for key, _ in expected]

    @invariant()
    def contents_equal_the_model(self):
        for kind in ("domain", "account", "name"):
            expected = sorted(self.model.get(kind, {}).items())
            for store in self.stores:
                assert store.scan(kind) == expected
                for key, value in expected:
                    assert store.get(kind, key) == value


StoresAgreeWithADictionary.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_stores_agree_with_a_dictionary_model = StoresAgreeWithADictionary.TestCase


def test_keys_are_the_scanned_keys_without_values(store):
    for key in ["example.com/bob", "example.com/alice", "example.org/carol", "example.com0"]:
        store.put("account", key, "value of " + key)
    assert store.keys("account") == [key for key, _ in store.scan("account")]
    assert store.keys("account", "example.com/") == ["example.com/alice", "example.com/bob"]
    assert store.keys("nothing") == []
