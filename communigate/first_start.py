"""
What a new data directory gets on its first start.

The server must be administrable from the moment it runs, so the first
start creates the main domain and its C{postmaster} account with a
generated password.  The password is shown once and kept in a file only
the server's user can read; the store itself holds only derived secrets.
"""

import os

from twisted.logger import Logger

from communigate.auth.passwords import generate_password
from communigate.storage import SQLiteStore, StoreError

PASSWORD_FILE = "postmaster-password"
POSTMASTER = "postmaster"

log = Logger()


def open_data_directory(path: str) -> SQLiteStore:
    """
    The store of data directory C{path}, creating the directory (mode
    0700) if it does not exist yet.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"the data directory {path!r} exists and is not a directory")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the data directory {path!r}: {e.strerror}") from e
    return SQLiteStore.in_directory(path)


def create_initial_objects(directory, main_domain: str, accounts=()) -> dict[str, str]:
    """
    Create the main domain if the store has none, and the postmaster and
    C{accounts} in it if they do not exist; return the generated password
    of each account created now.
    """
    created = {}
    with directory.transaction():
        main = directory.main_domain() or directory.create_domain(main_domain)
        for local in (POSTMASTER, *accounts):
            address = f"{local}@{main}"
            if directory.resolve_account(address) is None:
                password = generate_password()
                directory.create_account(address, {"Password": password})
                created[address] = password
    return created


def write_password_file(data_dir: str, account: str, password: str) -> str:
    """
    Keep a generated password where only the server's user can read it.
    """
    path = os.path.join(data_dir, PASSWORD_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{account} {password}\n")
    return path
