"""
The directory's size on the metrics endpoint follows the store, including
changes another process made.
"""

from prometheus_client import CollectorRegistry

from communigate.directory import Directory
from communigate.directory.metrics import DirectoryCollector
from communigate.storage import MemoryStore, SQLiteStore


def objects(registry, kind):
    return registry.get_sample_value("communigate_directory_objects", {"kind": kind})


def test_the_gauges_count_each_kind_of_object():
    store = MemoryStore()
    registry = CollectorRegistry()
    registry.register(DirectoryCollector(store))
    directory = Directory(store)
    directory.create_domain("example.com")
    directory.create_account("alice@example.com")
    directory.create_account("bob@example.com")
    directory.set_account_telnums("bob@example.com", ["100", "101"])
    directory.create_group("sales@example.com")
    directory.set_domain_aliases("example.com", ["example.net"])
    assert objects(registry, "domain") == 1
    assert objects(registry, "domain_alias") == 1
    assert objects(registry, "account") == 2
    assert objects(registry, "telnum") == 2
    assert objects(registry, "group") == 1
    assert objects(registry, "forwarder") == 0


def test_the_gauges_see_accounts_another_connection_created(tmp_path):
    path = str(tmp_path / "store.sqlite")
    server_store, admin_store = SQLiteStore(path), SQLiteStore(path)
    registry = CollectorRegistry()
    registry.register(DirectoryCollector(server_store))
    admin = Directory(admin_store)
    admin.create_domain("example.com")
    admin.create_account("carol@example.com")
    assert objects(registry, "account") == 1
    server_store.close()
    admin_store.close()
