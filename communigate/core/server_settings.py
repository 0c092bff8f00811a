"""
Server-wide settings dictionaries (SIP, XMPP, network, media server), each
kept as one store record of kind C{server}.

A record holds only the values that differ from the built-in ones, so a
later release's new default reaches every server that never chose
otherwise.  Every change is checked whole before anything is written
(CommuniGate's C{UPDATE…SETTINGS}/C{SET…SETTINGS}: a bad value changes
nothing), and C{default} as a value restores the built-in one.

L{CachedSettings} serves the settings a packet path asks for on every
request: parsed once per change of the record, with the store's
generation looked at no more than once per C{recheck} seconds, so a
change made by the admin tool in another process is seen within that
time and one made here at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
from twisted.logger import Logger

from communigate.directory.settings import replaced, updated
from communigate.formats.cgdata import dumps, loads

__all__ = ["CachedSettings", "SettingsRecord"]

KIND = "server"


@attrs.frozen
class SettingsRecord:
    """
    The record C{server/key} and the built-in values under it.
    """

    key: str
    defaults: Mapping[str, object]

    def explicit(self, store) -> dict:
        """The values stored because they differ from the built-in ones."""
        text = store.get(KIND, self.key)
        return {} if text is None else loads(text)

    def effective(self, store) -> dict:
        """Every setting: the stored values over the built-in ones."""
        return {**self.defaults, **self.explicit(store)}

    def change(self, store, changes: dict, check: Callable[[dict], object], *, merge: bool = True):
        """
        Merge C{changes} into the stored settings (or, without C{merge},
        replace them), in one transaction.  C{check(every_setting)} parses
        the outcome; its L{ValueError} (or subclass) propagates and nothing
        is written.  Returns C{(every_setting, what check returned)}.
        """
        with store.transaction():
            stored = updated(self.explicit(store), changes) if merge else replaced(changes)
            every = {**self.defaults, **stored}
            parsed = check(every)
            explicit = {key: value for key, value in every.items() if self.defaults.get(key) != value}
            store.put(KIND, self.key, dumps(explicit))
        return every, parsed


class CachedSettings:
    """
    The parsed settings of one L{SettingsRecord}, parsed once per change.

    @param parse: every setting (a dict) to the parsed settings; raises
        L{ValueError} for a record that does not parse.
    @param initial: what is in force before (and while) the record does
        not parse: the parsed built-in values.
    @param what: the settings' name for the log (C{"network settings"}).
    @param clock: with a clock, the store's generation is checked at most
        every C{recheck} seconds, so asking on every SIP request costs one
        C{seconds()} call; without one (the admin tool), on every call.
    """

    log = Logger()

    def __init__(self, store, record: SettingsRecord, parse, initial, *, what: str,
                 clock=None, recheck: float = 1.0) -> None:
        self._store = store
        self._record = record
        self._parse = parse
        self._what = what
        self._clock = clock
        self._recheck = recheck
        self._next_check = float("-inf")
        self._generation: object = None
        self._current = initial
        self._stored: dict | None = None

    @property
    def current(self):
        if self._clock is not None:
            now = self._clock.seconds()
            if now < self._next_check:
                return self._current
            self._next_check = now + self._recheck
        generation = self._store.generation()
        if generation != self._generation:
            self._reload(generation)
        return self._current

    def _reload(self, generation) -> None:
        # The generation moves with every commit to the store (phone
        # bindings, call records): parse again only when this record did.
        stored = self._record.explicit(self._store)
        self._generation = generation
        if stored == self._stored:
            return
        try:
            self._current = self._parse({**self._record.defaults, **stored})
        except (ValueError, TypeError) as e:
            # Everything written through SettingsRecord.change was checked
            # first: this is a record edited by hand.  Keep what works.
            self.log.error("stored {what} ignored: {error}", what=self._what, error=e)
            return
        self._stored = stored

    def settings(self) -> dict:
        """Every setting, explicit or built-in, as data."""
        return self._record.effective(self._store)

    def change(self, changes: dict, *, merge: bool = True):
        """
        L{SettingsRecord.change} with this cache's parser; the new
        settings are in force here at once.  Returns them parsed.
        """
        every, parsed = self._record.change(self._store, changes, self._parse, merge=merge)
        self._current = parsed
        self._stored = {key: value for key, value in every.items() if self._record.defaults.get(key) != value}
        self._generation = None
        self._next_check = float("-inf")
        return parsed
