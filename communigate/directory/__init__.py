"""
Domains, accounts, aliases, forwarders, groups and telephone numbers.
"""

from communigate.directory.directory import Directory
from communigate.directory.errors import (
    DirectoryError,
    InvalidName,
    InvalidSettings,
    NameInUse,
    ObjectInUse,
    UnknownObject,
)

__all__ = [
    "Directory",
    "DirectoryError",
    "InvalidName",
    "InvalidSettings",
    "NameInUse",
    "ObjectInUse",
    "UnknownObject",
]
