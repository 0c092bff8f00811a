"""
Durable storage behind the directory: L{IStore} providers.
"""

from communigate.storage.errors import StoreError
from communigate.storage.memory import MemoryStore
from communigate.storage.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "StoreError", "sidecar_store"]


def sidecar_store(store, filename: str):
    """
    A store of its own beside C{store}'s SQLite file, committed without an
    fsync each (C{synchronous=NORMAL} in WAL mode survives a crash of the
    process, not of the machine), for data written thousands of times a
    second that is cheap to lose a moment of: registrations, call records.
    Its commits do not move the directory's version either, so they leave
    the directory's read cache alone.  A store with no file (memory) is
    shared.
    """
    import os

    path = getattr(store, "path", None)
    if path is None:
        return store
    return SQLiteStore(os.path.join(os.path.dirname(path), filename), power_safe=False)
