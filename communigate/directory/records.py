"""
How directory objects lie in the store.

Every object is one record of CommuniGate data-format text, so a store dump
reads like CommuniGate's own settings files.  The record kinds:

  server        main-domain, account-defaults, domain-defaults
  domain        name -> {Settings; AccountDefaults; Aliases}
  domain-alias  alias -> domain name
  name          domain/name -> {Kind; Account}: one entry per name in a
                domain, whatever object holds it, so names never collide
  account       domain/name -> {Type; Settings; Aliases; Telnums; SignalRules}
  secrets       domain/name -> the account's derived password secrets, apart
                from the account record that every Signal reads
  forwarder     domain/name -> {Address}
  group         domain/name -> group settings, Members among them
  telnum        number -> user@domain of the owning account
"""

import itertools
import time

import attrs

from communigate.formats.cgdata import dumps, loads
from communigate.interfaces import IStore

SERVER = "server"
DOMAIN = "domain"
DOMAIN_ALIAS = "domain-alias"
NAME = "name"
ACCOUNT = "account"
FORWARDER = "forwarder"
GROUP = "group"
TELNUM = "telnum"
SECRETS = "secrets"


class _Writing:
    def __init__(self, records) -> None:
        self._records = records

    def __enter__(self):
        self._records._writing += 1
        self._records._cache.clear()

    def __exit__(self, *exc_info):
        self._records._writing -= 1
        self._records._cache.clear()
        return False


def object_key(domain: str, local: str) -> str:
    return f"{domain}/{local}"


@attrs.define
class Records:
    """
    Typed reads and writes of directory records over an L{IStore}.

    Parsing a record costs more than reading it, and every SIP REGISTER and
    every Signal reads several, so parsed records are kept while the store's
    generation stays the same (no commit by anyone, this process or
    another).  Reads inside a transaction, whose results the directory
    changes and writes back, always parse afresh.

    Asking the store for its generation is itself a query, so with
    C{recheck_after} seconds the cache trusts a generation it saw that
    recently: commits through this object are seen at once (they clear the
    cache), a commit by another process within C{recheck_after}.

    Cached values are shared: callers must not change what they get outside
    a L{writing} block.
    """

    store: IStore
    cache_size: int = 100_000
    recheck_after: float = 0.0
    clock: object = time.monotonic
    _cache: dict = attrs.field(factory=dict, init=False)
    _generation: object = attrs.field(default=None, init=False)
    _checked_at: float = attrs.field(default=float("-inf"), init=False)
    _writing: int = attrs.field(default=0, init=False)

    def _fresh(self) -> None:
        """
        Drop the cache if the store changed since it was filled.
        """
        if self.recheck_after:
            now = self.clock()
            if now - self._checked_at < self.recheck_after:
                return
            self._checked_at = now
        generation = self.store.generation()
        if generation != self._generation:
            self._cache.clear()
            self._generation = generation

    def load(self, kind: str, key: str, default=None):
        if self._writing:
            text = self.store.get(kind, key)
            return default if text is None else loads(text)
        self._fresh()
        entry = (kind, key)
        try:
            value = self._cache[entry]
        except KeyError:
            text = self.store.get(kind, key)
            value = None if text is None else loads(text)
            self._keep(entry, value)
        return default if value is None else value

    def derived(self, name: str, key, compute):
        """
        C{compute()}, kept under C{(name, key)} as long as the records it is
        derived from are: for values built from several records (effective
        settings, parsed password secrets) that hot paths ask for often.
        """
        if self._writing:
            return compute()
        self._fresh()
        entry = (name, key)
        try:
            return self._cache[entry]
        except KeyError:
            value = compute()
            self._keep(entry, value)
            return value

    def _keep(self, entry, value) -> None:
        cache = self._cache
        if len(cache) >= self.cache_size:
            # Drop the older half (dicts keep insertion order).  Clearing
            # it all made a server with more accounts than fit parse every
            # record again, over and over.
            for old in list(itertools.islice(cache, len(cache) // 2)):
                del cache[old]
        cache[entry] = value

    def writing(self):
        """
        Mark the reads of a transaction: they parse afresh, since the caller
        changes what it loads.
        """
        return _Writing(self)

    def save(self, kind: str, key: str, value) -> None:
        self._cache.clear()
        self.store.put(kind, key, dumps(value))

    def remove(self, kind: str, key: str) -> bool:
        self._cache.clear()
        return self.store.delete(kind, key)

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        return self.store.keys(kind, prefix)

    def items(self, kind: str, prefix: str = "") -> list[tuple[str, object]]:
        return [(key, loads(text)) for key, text in self.store.scan(kind, prefix)]

    def names_in(self, kind: str, domain: str) -> list[str]:
        prefix = object_key(domain, "")
        return [key[len(prefix):] for key in self.keys(kind, prefix)]
