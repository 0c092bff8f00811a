"""
A store that lives in memory, for tests and for embedders that keep their
own persistence.  It honours the same transaction rules as the SQLite
store, so tests of the directory mean what they say.
"""

import contextlib

from zope.interface import implementer

from communigate.interfaces import IStore
from communigate.storage.schema import SCHEMA_VERSION


@implementer(IStore)
class MemoryStore:
    """
    An L{IStore} in a dictionary; a transaction keeps an undo log of the
    values it overwrote, which a rollback replays backwards.
    """

    schema_version = SCHEMA_VERSION

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, str]] = {}
        self._depth = 0
        self._undo: list[tuple[str, str, str | None]] = []
        self._generation = 0

    @contextlib.contextmanager
    def transaction(self):
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            yield self
        except BaseException:
            for kind, key, old in reversed(self._undo):
                if old is None:
                    self._kinds[kind].pop(key, None)
                else:
                    self._kinds[kind][key] = old
            raise
        finally:
            self._depth = 0
            self._undo = []
        self._generation += 1

    def get(self, kind: str, key: str) -> str | None:
        return self._kinds.get(kind, {}).get(key)

    def put(self, kind: str, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"store values are text, not {type(value).__name__}")
        records = self._kinds.setdefault(kind, {})
        if self._depth:
            self._undo.append((kind, key, records.get(key)))
        records[key] = value
        if not self._depth:
            self._generation += 1

    def delete(self, kind: str, key: str) -> bool:
        old = self._kinds.get(kind, {}).pop(key, None)
        removed = old is not None
        if removed and self._depth:
            self._undo.append((kind, key, old))
        if removed and not self._depth:
            self._generation += 1
        return removed

    def scan(self, kind: str, prefix: str = "") -> list[tuple[str, str]]:
        return sorted(
            (key, value)
            for key, value in self._kinds.get(kind, {}).items()
            if key.startswith(prefix)
        )

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        return sorted(key for key in self._kinds.get(kind, {}) if key.startswith(prefix))

    def count(self, kind: str) -> int:
        return len(self._kinds.get(kind, {}))

    def generation(self) -> int:
        return self._generation

    def close(self) -> None:
        self._kinds = {}
