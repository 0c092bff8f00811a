"""
The SQLite schema and its migrations.

Every release that changes the schema appends a step here; opening a data
directory runs the steps it has not seen yet, each in its own transaction,
so an interrupted upgrade resumes where it stopped.  A data directory
written by a newer release is refused rather than guessed at.
"""

# Each entry upgrades the schema from version (index) to version (index + 1).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        "CREATE TABLE records ("
        " kind TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " value TEXT NOT NULL,"
        " PRIMARY KEY (kind, key)"
        ") WITHOUT ROWID",
    ),
]

SCHEMA_VERSION = len(MIGRATIONS)
