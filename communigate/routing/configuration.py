"""
The Router's stored configuration: the Router table and the Router
settings (E.164 conversion, ENUM), kept in the store like everything else
and changed through the CLI while the server runs.

Parsing a 1,000-line table for every address would dominate routing, so
the parsed table is kept until the store's generation says something was
committed, and even then parsed again only if its text changed.
"""

import re
import time

from twisted.internet import defer
from twisted.logger import Logger

from communigate.directory.settings import updated
from communigate.formats.cgdata import dumps, loads
from communigate.interfaces import IStore
from communigate.routing.e164 import E164Settings
from communigate.routing.enum import EnumResolver, parse_server_address, servers_from_resolv_conf
from communigate.routing.table import RouterTable, parse_router_table

SERVER = "server"
TABLE_KEY = "router-table"
SETTINGS_KEY = "router-settings"

ENUM_ROUTING = "ENUMRouting"
ENUM_DOMAINS = "ENUMDomains"
ENUM_SERVERS = "ENUMServers"

# An ENUM suffix: DNS labels, short enough to leave room for 15 digits.
_ENUM_SUFFIX = re.compile(r"(?=.{1,200}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                          r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*")


class RouterConfiguration:
    """
    The Router table and settings of one store, parsed once per change.

    Every Signal asks for the table, and asking the store for its
    generation is a query; with C{recheck_after} seconds a generation seen
    that recently is trusted (as the directory's cache does), so a change
    by another process (the admin tool) is seen within that time and one
    made through this object at once.  C{clock} is a callable giving
    seconds.
    """

    def __init__(self, store: IStore, *, recheck_after: float = 0.0, clock=time.monotonic) -> None:
        self._store = store
        self._recheck_after = recheck_after
        self._clock = clock
        self._checked_at = float("-inf")
        self._generation: int | None = None
        self._table = parse_router_table("")
        self._settings: dict = {}
        self._e164 = E164Settings()

    def _refresh(self) -> None:
        if self._recheck_after:
            now = self._clock()
            if now - self._checked_at < self._recheck_after:
                return
            self._checked_at = now
        generation = self._store.generation()
        if generation == self._generation:
            return
        text = self._store.get(SERVER, TABLE_KEY)
        text = "" if text is None else loads(text)
        if text != self._table.text:
            self._table = parse_router_table(text)
        stored = self._store.get(SERVER, SETTINGS_KEY)
        self._settings = {} if stored is None else loads(stored)
        self._e164 = E164Settings.from_settings(self._settings)
        self._generation = generation

    @property
    def table(self) -> RouterTable:
        self._refresh()
        return self._table

    @property
    def settings(self) -> dict:
        self._refresh()
        return dict(self._settings)

    @property
    def e164(self) -> E164Settings:
        self._refresh()
        return self._e164

    def set_table(self, text: str) -> RouterTable:
        """
        Validate the whole table and store it; a bad record raises
        L{communigate.routing.table.RouterTableError} and stores nothing.
        """
        table = parse_router_table(text)
        self._store.put(SERVER, TABLE_KEY, dumps(text))
        self._checked_at = float("-inf")
        return table

    def update_settings(self, changes: dict) -> None:
        """
        Merge C{changes} into the stored settings (a C{default} value
        removes its key), validated as L{set_settings} does; read and
        written in one transaction, so a concurrent change by another
        process is not lost.
        """
        with self._store.transaction():
            stored = self._store.get(SERVER, SETTINGS_KEY)
            current = {} if stored is None else loads(stored)
            self.set_settings(updated(current, changes))

    def set_settings(self, settings: dict) -> None:
        """
        Validate and store the Router settings; a bad value raises
        L{ValueError} naming it and stores nothing.
        """
        E164Settings.from_settings(settings)
        enum_settings(settings)
        self._store.put(SERVER, SETTINGS_KEY, dumps(settings))
        self._checked_at = float("-inf")


def enum_settings(settings: dict) -> tuple[bool, tuple[str, ...], tuple[tuple[str, int], ...]]:
    """
    Whether ENUM routing is on, its domain suffixes and its DNS servers, from
    the Router settings; L{ValueError} naming a bad value.
    """
    given = settings.get(ENUM_ROUTING, "NO")
    enabled = given.strip().upper() if isinstance(given, str) else None
    if enabled not in ("YES", "NO"):
        raise ValueError(f"{ENUM_ROUTING} must be YES or NO, not {given!r}")
    domains = settings.get(ENUM_DOMAINS, ["e164.arpa"])
    if not isinstance(domains, list) or not domains:
        raise ValueError(f"{ENUM_DOMAINS} must be an array of domain names, like (e164.arpa)")
    for domain in domains:
        if not isinstance(domain, str) or not _ENUM_SUFFIX.fullmatch(domain.strip(".")):
            raise ValueError(
                f"{ENUM_DOMAINS} entry {domain!r} is not a domain name; "
                f"use dot-separated labels of letters, digits and hyphens, like e164.arpa"
            )
    domains = [domain.strip(".") for domain in domains]
    servers = settings.get(ENUM_SERVERS, [])
    if not isinstance(servers, list):
        raise ValueError(f"{ENUM_SERVERS} must be an array of ip:port, like (192.0.2.1:53)")
    parsed = tuple(parse_server_address(str(entry)) for entry in servers)
    return enabled == "YES", tuple(domains), parsed


class EnumRouting:
    """
    ENUM lookups as the Router settings say, for the Router's C{telnum}
    step: nothing when C{ENUMRouting} is off, else one resolver, told of
    changed servers and suffixes as the settings change.
    """

    log = Logger()

    def __init__(self, reactor, configuration: RouterConfiguration, registry=None,
                 default_servers=servers_from_resolv_conf) -> None:
        self._reactor = reactor
        self._configuration = configuration
        self._registry = registry
        self._default_servers = default_servers
        self._resolver: EnumResolver | None = None
        self._configured_servers: tuple | None = None

    def lookup(self, number: str) -> defer.Deferred:
        enabled, domains, configured = enum_settings(self._configuration.settings)
        if not enabled:
            return defer.succeed(None)
        resolver = self._resolver_for(domains, configured)
        if resolver is None:
            return defer.succeed(None)
        return resolver.lookup(number)

    def _resolver_for(self, domains, configured) -> EnumResolver | None:
        # The system's servers are read when the resolver is built or the
        # configured servers change, not for every lookup.
        if self._resolver is not None and configured == self._configured_servers:
            self._resolver.suffixes = domains
            return self._resolver
        servers = list(configured) or self._default_servers()
        if not servers:
            self.log.warn(
                "{setting} is YES but there are no DNS servers: set {servers}",
                setting=ENUM_ROUTING, servers=ENUM_SERVERS,
            )
            return None
        if self._resolver is None:
            self._resolver = EnumResolver(
                self._reactor, servers, suffixes=domains, registry=self._registry
            )
        else:
            self._resolver.servers = servers
            self._resolver.suffixes = domains
        self._configured_servers = configured
        return self._resolver
