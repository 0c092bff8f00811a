"""
Durable storage behind the directory: L{IStore} providers.
"""

from communigate.storage.errors import StoreError
from communigate.storage.memory import MemoryStore
from communigate.storage.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "StoreError"]
