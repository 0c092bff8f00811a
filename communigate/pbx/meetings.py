"""
Meetings (CG/PL C{CreateMeeting}, C{ActivateMeeting}, C{DeactivateMeeting},
C{FindMeeting}, C{ClearMeeting}, C{RemoveMeeting}): keyed rendezvous points
of an account, where one task announces itself and others find it -- a
conference's host, the task holding a parked call, an operator on duty.

A meeting is named by a I{set} and a I{key} within the account.  It keeps
a parameter (data: strings, numbers, booleans, lists and dictionaries of
them) and, while some task has activated it, that task's ID [C].  The
parameter is stored (the meeting outlives a restart, as the rooms or
parking slots it describes do); the activation is not (no task survives a
restart), so a meeting is found without an ID after one.

What each verb does [B]/[D]:
  - C{create}: a new meeting with C{parameter}; an existing one is an
    error (C{meeting exists}), so two tasks cannot both believe they made
    it.
  - C{activate}: the calling task becomes the meeting's active task (the
    meeting is created when missing); C{parameter}, when given, replaces
    the stored one.  A meeting another live task holds active is an error
    (C{meeting is active}).
  - C{deactivate}: the active task lets go (C{parameter}, when given,
    replaces the stored one); by another task: C{not the active task}.
  - C{find}: C{{"parameter": ..., "id": task ID}} (no C{id} when nobody
    holds it active), or L{None}.
  - C{clear}: the activation and the parameter go, the meeting stays.
  - C{remove}: the meeting goes.
A task that ends lets go of the meetings it held active.  A deleted
account's meetings go with it; a renamed account's move.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import IAccountWatcher

__all__ = ["MeetingError", "Meetings", "KIND"]

#: The store kind of meeting records: key C{account TAB set TAB key}.
KIND = "pbx.meetings"
MAX_NAME = 255
MAX_PARAMETER = 64 * 1024


class MeetingError(ValueError):
    """A verb that cannot be done; the message is the error text the program gets."""


def _check_name(value, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable() or "\t" in value:
        raise MeetingError(f"bad meeting {what}")
    return value


def _encoded(parameter) -> str:
    """The stored form of C{parameter}; data only, and not too big."""
    try:
        text = json.dumps({"parameter": parameter}, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError):
        raise MeetingError("a meeting parameter must be data (text, numbers, lists, dictionaries)") from None
    if len(text) > MAX_PARAMETER:
        raise MeetingError("meeting parameter too large")
    return text


@implementer(IAccountWatcher)
class Meetings:
    """
    The meetings of every account, kept in C{store} (see the module
    docstring); C{alive(task_id)} says whether a task still runs.
    """

    log = Logger()

    def __init__(self, store, alive) -> None:
        self._store = store
        self._alive = alive
        self._active: dict[tuple[str, str, str], str] = {}

    @staticmethod
    def _key(account: str, meeting_set: str, key: str) -> str:
        return f"{account}\t{_check_name(meeting_set, 'set')}\t{_check_name(key, 'key')}"

    def _active_task(self, name: tuple[str, str, str]) -> str | None:
        task_id = self._active.get(name)
        if task_id is not None and not self._alive(task_id):
            del self._active[name]
            return None
        return task_id

    def create(self, account: str, meeting_set: str, key: str, parameter=None) -> None:
        record = self._key(account, meeting_set, key)
        text = _encoded(parameter)
        with self._store.transaction():
            if self._store.get(KIND, record) is not None:
                raise MeetingError("meeting exists")
            self._store.put(KIND, record, text)

    def activate(self, account: str, meeting_set: str, key: str, task_id: str, parameter=None,
                 replace: bool = False) -> None:
        record = self._key(account, meeting_set, key)
        name = (account, meeting_set, key)
        holder = self._active_task(name)
        if holder is not None and holder != task_id:
            raise MeetingError("meeting is active")
        with self._store.transaction():
            if replace or self._store.get(KIND, record) is None:
                self._store.put(KIND, record, _encoded(parameter))
        self._active[name] = task_id

    def deactivate(self, account: str, meeting_set: str, key: str, task_id: str, parameter=None,
                   replace: bool = False) -> None:
        record = self._key(account, meeting_set, key)
        name = (account, meeting_set, key)
        if self._active_task(name) != task_id:
            raise MeetingError("not the active task")
        del self._active[name]
        if replace:
            with self._store.transaction():
                if self._store.get(KIND, record) is not None:
                    self._store.put(KIND, record, _encoded(parameter))

    def find(self, account: str, meeting_set: str, key: str) -> dict | None:
        record = self._key(account, meeting_set, key)
        text = self._store.get(KIND, record)
        if text is None:
            return None
        try:
            found = {"parameter": json.loads(text)["parameter"]}
        except (ValueError, KeyError, TypeError):
            self.log.warn("meeting {record!r}: its stored record does not parse; read as empty", record=record)
            found = {"parameter": None}
        task_id = self._active_task((account, meeting_set, key))
        if task_id is not None:
            found["id"] = task_id
        return found

    def clear(self, account: str, meeting_set: str, key: str) -> None:
        record = self._key(account, meeting_set, key)
        with self._store.transaction():
            if self._store.get(KIND, record) is None:
                raise MeetingError("meeting not found")
            self._store.put(KIND, record, _encoded(None))
        self._active.pop((account, meeting_set, key), None)

    def remove(self, account: str, meeting_set: str, key: str) -> None:
        record = self._key(account, meeting_set, key)
        with self._store.transaction():
            if not self._store.delete(KIND, record):
                raise MeetingError("meeting not found")
        self._active.pop((account, meeting_set, key), None)

    def task_ended(self, task_id: str) -> None:
        for name in [name for name, holder in self._active.items() if holder == task_id]:
            del self._active[name]

    def listed(self, account: str) -> list[tuple[str, str, dict]]:
        """Every meeting of C{account}: set, key and what L{find} says of it."""
        found = []
        for record in self._store.keys(KIND, f"{account}\t"):
            _, meeting_set, key = record.split("\t", 2)
            found.append((meeting_set, key, self.find(account, meeting_set, key)))
        return found

    # -- IAccountWatcher ----------------------------------------------------------

    def account_removed(self, address: str) -> None:
        with self._store.transaction():
            for record in list(self._store.keys(KIND, f"{address}\t")):
                self._store.delete(KIND, record)
        for name in [name for name in self._active if name[0] == address]:
            del self._active[name]

    def account_renamed(self, old: str, new: str) -> None:
        with self._store.transaction():
            for record, value in list(self._store.scan(KIND, f"{old}\t")):
                self._store.delete(KIND, record)
                self._store.put(KIND, new + record[len(old):], value)
        for name in [name for name in self._active if name[0] == old]:
            self._active[(new,) + name[1:]] = self._active.pop(name)
