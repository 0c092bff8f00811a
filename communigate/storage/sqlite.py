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
from collections.abc import Sequence

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IStore
from communigate.storage.errors import StoreError
from communigate.storage.schema import MIGRATIONS

DATABASE_NAME = "communigate.sqlite"

_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


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

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 10.0,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
        power_safe: bool = True,
    ) -> None:
        """
        @param migrations: the schema steps, as in
            L{communigate.storage.schema.MIGRATIONS} (the default); tests
            give a longer list to exercise an upgrade.
        @param power_safe: commit with C{synchronous=FULL} (an fsync per
            commit: nothing acknowledged is lost even to a power cut).
            C{False} gives C{NORMAL}: a commit survives a crash of the
            process but not of the machine; for state that clients restore
            themselves within minutes, such as SIP registrations.
        """
        self.path = path
        self._migrations = tuple(tuple(step) for step in migrations)
        try:
            self._db = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {path!r}: {e}") from e
        try:
            # A database from a newer release is refused before anything
            # is written to it: switching to WAL alone rewrites the header.
            self._refuse_newer(self._user_version())
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=" + ("FULL" if power_safe else "NORMAL"))
            self.schema_version = self._migrate()
        except BaseException as e:
            self._db.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"cannot open the store {path!r}: {e}") from e
            raise
        self._depth = 0
        self._local_commits = 0

    @classmethod
    def in_directory(cls, directory: str, **kwargs) -> "SQLiteStore":
        """
        Open (or create) the store of a data directory, which must exist.
        """
        if not os.path.exists(directory):
            raise StoreError(f"the data directory {directory!r} does not exist")
        if not os.path.isdir(directory):
            raise StoreError(
                f"the data directory {directory!r} is not a directory; "
                f"choose another with --data"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(
                f"the data directory {directory!r} is not writable by this "
                f"user; fix its owner or mode, or choose another with --data"
            )
        return cls(os.path.join(directory, DATABASE_NAME), **kwargs)

    def connection_settings(self) -> dict[str, object]:
        """
        The durability settings in force on this connection, for operators
        and tests: C{journal_mode} (C{wal}), C{synchronous} (C{FULL}) and
        C{busy_timeout} in milliseconds.
        """
        synchronous = self._execute("PRAGMA synchronous").fetchone()[0]
        return {
            "journal_mode": self._execute("PRAGMA journal_mode").fetchone()[0],
            "synchronous": _SYNCHRONOUS_NAMES.get(synchronous, str(synchronous)),
            "busy_timeout": self._execute("PRAGMA busy_timeout").fetchone()[0],
        }

    def _user_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _refuse_newer(self, version: int) -> None:
        known = len(self._migrations)
        if version > known:
            raise StoreError(
                f"{self.path!r} has schema version {version}, newer than this "
                f"communigate understands ({known}); run the newer "
                f"release, or restore a backup"
            )

    def _migrate(self) -> int:
        known = len(self._migrations)
        while True:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Read under the write lock: another process opening the
                # same new data directory may have run this step already.
                version = self._user_version()
                self._refuse_newer(version)
                if version == known:
                    self._db.execute("COMMIT")
                    return known
                target = version + 1
                for statement in self._migrations[target - 1]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self.log.info(
                "store {path} migrated to schema {version}",
                path=self.path,
                version=target,
            )

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
            self._rollback()
            raise
        self._depth = 0
        try:
            self._execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open; without this the
            # next BEGIN would fail and the store be stuck.
            self._rollback()
            raise
        self._local_commits += 1

    def _rollback(self) -> None:
        # SQLite ends the transaction itself on some errors (disk full, I/O
        # error); a second ROLLBACK would hide the error that caused it.
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

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
        return self._select("key, value", kind, prefix).fetchall()

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        return [key for (key,) in self._select("key", kind, prefix).fetchall()]

    def _select(self, columns: str, kind: str, prefix: str):
        end = _prefix_end(prefix)
        if end is None:
            return self._execute(
                f"SELECT {columns} FROM records"
                " WHERE kind = ? AND key >= ? ORDER BY key",
                (kind, prefix),
            )
        return self._execute(
            f"SELECT {columns} FROM records"
            " WHERE kind = ? AND key >= ? AND key < ? ORDER BY key",
            (kind, prefix, end),
        )

    def count(self, kind: str) -> int:
        (number,) = self._execute(
            "SELECT count(*) FROM records WHERE kind = ?", (kind,)
        ).fetchone()
        return number

    def generation(self) -> int:
        # data_version moves on commits by other connections only; our own
        # commits are counted locally.  Both only grow, so the sum changes
        # whenever either does.
        (others,) = self._execute("PRAGMA data_version").fetchone()
        return others + self._local_commits

    def close(self) -> None:
        self._db.close()
