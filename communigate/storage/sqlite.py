"""
The embedded default store: one SQLite database in the data directory.

Write-ahead logging lets the admin tool write while the server reads, and
C{synchronous=FULL} makes every commit durable before the call that made it
returns, which is the promise L{IStore} gives.  Transactions start with
C{BEGIN IMMEDIATE} so that a read-check-write (a telnum owned by at most one
account) holds the write lock from its first read, also against another
process.
"""

import contextlib
import os
import sqlite3

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IStore
from communigate.storage.errors import StoreError
from communigate.storage.schema import MIGRATIONS, SCHEMA_VERSION

DATABASE_NAME = "communigate.sqlite"


_LAST_CODE_POINT = chr(0x10FFFF)


def _prefix_end(prefix: str) -> str | None:
    """
    The smallest string greater than every string starting with C{prefix},
    or None when there is none (an empty prefix, or one made only of the
    highest code point, which has no successor).
    """
    stem = prefix.rstrip(_LAST_CODE_POINT)
    if not stem:
        return None
    return stem[:-1] + chr(ord(stem[-1]) + 1)


@implementer(IStore)
class SQLiteStore:
    """
    An L{IStore} in a SQLite file.

    Use it from one thread (the reactor's); another process may share the
    file.
    """

    log = Logger()

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self.schema_version = self._migrate()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {path!r}: {e}") from e
        self._depth = 0
        self._local_commits = 0

    @classmethod
    def in_directory(cls, directory: str, **kwargs) -> "SQLiteStore":
        """
        Open (or create) the store of a data directory.
        """
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(
                f"the data directory {directory!r} is not writable by this "
                f"user; fix its owner or mode, or choose another with --data"
            )
        return cls(os.path.join(directory, DATABASE_NAME), **kwargs)

    def _migrate(self) -> int:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path!r} has schema version {version}, newer than this "
                f"communigate understands ({SCHEMA_VERSION}); run the newer "
                f"release, or restore a backup"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.log.info(
                "store {path} migrated to schema {version}",
                path=self.path,
                version=target,
            )
        return SCHEMA_VERSION

    @contextlib.contextmanager
    def transaction(self):
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._execute("COMMIT")
        self._local_commits += 1

    def _execute(self, sql: str, parameters=()):
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.OperationalError as e:
            raise StoreError(f"the store {self.path!r} failed: {e}") from e

    def _write(self, sql: str, parameters) -> sqlite3.Cursor:
        if self._depth:
            return self._execute(sql, parameters)
        with self.transaction():
            return self._execute(sql, parameters)

    def get(self, kind: str, key: str) -> str | None:
        row = self._execute(
            "SELECT value FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else row[0]

    def put(self, kind: str, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"store values are text, not {type(value).__name__}")
        self._write(
            "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?, ?, ?)",
            (kind, key, value),
        )

    def delete(self, kind: str, key: str) -> bool:
        cursor = self._write(
            "DELETE FROM records WHERE kind = ? AND key = ?", (kind, key)
        )
        return cursor.rowcount > 0

    def scan(self, kind: str, prefix: str = "") -> list[tuple[str, str]]:
        end = _prefix_end(prefix)
        if end is None:
            rows = self._execute(
                "SELECT key, value FROM records"
                " WHERE kind = ? AND key >= ? ORDER BY key",
                (kind, prefix),
            )
        else:
            rows = self._execute(
                "SELECT key, value FROM records"
                " WHERE kind = ? AND key >= ? AND key < ? ORDER BY key",
                (kind, prefix, end),
            )
        return rows.fetchall()

    def generation(self) -> int:
        # data_version moves on commits by other connections only; our own
        # commits are counted locally.  Both only grow, so the sum changes
        # whenever either does.
        (others,) = self._execute("PRAGMA data_version").fetchone()
        return others + self._local_commits

    def close(self) -> None:
        self._db.close()
