"""
ENUM (RFC 6116): telephone numbers to URIs through DNS NAPTR records
(RFC 3403) and their regexp rewrite rules (RFC 3402).

C{+15553837461} becomes C{1.6.4.7.3.8.3.5.5.5.1.e164.arpa}, whose NAPTR
records rewrite the number (the application unique string, C{+digits})
with expressions like C{!^.*$!sip:info@example.com!}.

The pure half (L{enum_domain}, L{build_query}, L{parse_answer},
L{select_uri}, L{apply_naptr}) does no I/O and no logging, so the rules
are testable alone; DNS messages are built and parsed by dnspython.
L{EnumResolver} asks its NAPTR questions through a
L{communigate.dnsclient.DNSClient}, which sends each query from its own
ephemeral UDP port through an injected reactor and caches answers by TTL.

Decisions, and why:
  - Only terminal records (flag C{u}) are used.  Non-terminal ones (empty
    flag, replacement domain) are ignored: RFC 6116 lets clients refuse
    them, they are rare, and following them invites loops.
  - A record whose regexp is malformed is skipped (and logged by the
    resolver); the next record is tried.
  - A truncated (TC) answer fails that server; TCP is not tried.  Queries
    offer a 1232-byte EDNS buffer, so sane NAPTR sets are not truncated.
  - A lookup does not fail for network reasons: a timeout or broken answer
    gives C{None}, as "no ENUM answer" means "go on" to the Router either
    way; C{communigate_enum_lookups_total{outcome}} counts it.

Router settings (the Router builds an L{EnumResolver} only when
C{ENUMRouting} is C{YES}): C{ENUMRouting} C{YES}/C{NO} (default C{NO});
C{ENUMDomains}, suffixes tried in order until one yields a URI (default
C{(e164.arpa)}); C{ENUMServers}, C{ip}, C{ip:port} or C{[ipv6]:port}
entries (L{parse_server_address}), by default L{servers_from_resolv_conf}.
"""

from __future__ import annotations

import functools
import re

import attrs
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from communigate import dnsclient
from communigate.dnsclient import (
    DEFAULT_NEGATIVE_TTL,
    EDNS_PAYLOAD,
    MAX_CACHE_TTL,
    DNSClient,
    DNSError,
    DNSTimeout,
    parse_resolv_conf,
    servers_from_resolv_conf,
)

__all__ = [
    "DEFAULT_NEGATIVE_TTL", "EDNS_PAYLOAD", "MAX_CACHE_TTL", "EnumAnswer", "EnumError",
    "EnumResolver", "EnumTimeout", "Naptr", "Rewrite", "apply_naptr", "build_query",
    "enum_domain", "parse_answer", "parse_naptr_answer", "parse_resolv_conf",
    "parse_server_address", "select_uri", "servers_from_resolv_conf",
]

_E164 = re.compile(r"\+[0-9]{1,15}")

# POSIX bracket classes that Python's re lacks, as their range text.
_POSIX_CLASSES = {
    "[:digit:]": "0-9", "[:alpha:]": "A-Za-z", "[:alnum:]": "A-Za-z0-9",
    "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:xdigit:]": "0-9A-Fa-f",
    "[:space:]": r" \t\n\r\f\v",
}

# A backslash pair, a lone trailing backslash, or any other character.
_TOKEN = re.compile(r"\\.?|.", re.DOTALL)


class EnumError(DNSError):
    """
    A DNS answer that cannot be used: malformed, for another question, a
    server failure (SERVFAIL, REFUSED ...), or truncated.
    """


class EnumTimeout(EnumError, DNSTimeout):
    """No answer from a server within the timeout."""


@attrs.frozen
class Naptr:
    """
    One NAPTR record (RFC 3403 section 4.1), its text fields decoded.

    @ivar replacement: the replacement domain, C{""} for the root C{.}
        (which is what terminal ENUM records carry).
    """

    order: int
    preference: int
    flags: str
    services: str
    regexp: str
    replacement: str = ""


@attrs.frozen
class EnumAnswer:
    """
    The usable content of one DNS answer.

    @ivar records: the NAPTR records; empty for NXDOMAIN or no data.
    @ivar ttl: how many seconds the answer may be cached: the smallest TTL
        of the records (and CNAMEs) used, or for a negative answer the SOA
        minimum (RFC 2308), or L{DEFAULT_NEGATIVE_TTL} without an SOA.
    """

    records: tuple[Naptr, ...]
    ttl: int


@attrs.frozen
class Rewrite:
    """
    What L{select_uri} found.

    @ivar uri: the first URI the records produce, or C{None}.
    @ivar skipped: C{(record, reason)} for each wanted record that was
        skipped as malformed, so the caller can log it.
    """

    uri: str | None
    skipped: tuple[tuple[Naptr, str], ...] = ()


def enum_domain(e164: str, suffix: str = "e164.arpa") -> str:
    """
    The ENUM domain of a number (RFC 6116 section 2.4): digits reversed,
    dot-separated, under C{suffix}.

    @param e164: C{+} and 1 to 15 digits, as the E.164 conversion makes it.
    @raise ValueError: for anything else, rather than guess at a national
        number.
    """
    if not _E164.fullmatch(e164):
        raise ValueError(f"{e164!r} is not an E.164 number (+ and 1-15 digits)")
    return ".".join(reversed(e164[1:])) + "." + suffix.strip(".")


def build_query(name: str, query_id: int) -> bytes:
    """A recursive (RD) NAPTR query for C{name} with the given id."""
    return dnsclient.build_query(name, dns.rdatatype.NAPTR, query_id)


def _naptr_from_rdata(rdata) -> Naptr:
    replacement = rdata.replacement.to_text(omit_final_dot=True)
    return Naptr(
        order=rdata.order,
        preference=rdata.preference,
        flags=rdata.flags.decode("ascii", "replace"),
        services=rdata.service.decode("ascii", "replace"),
        regexp=rdata.regexp.decode("utf-8", "replace"),
        replacement="" if replacement == "." else replacement,
    )


def _rank(record: Naptr) -> tuple[int, int]:
    return record.order, record.preference


def _answer_from(answer: dnsclient.Answer) -> EnumAnswer:
    return EnumAnswer(tuple(sorted(map(_naptr_from_rdata, answer.records), key=_rank)), answer.ttl)


def parse_answer(wire: bytes, query_id: int, name: str) -> EnumAnswer:
    """
    Check that C{wire} answers our NAPTR question for C{name} and take its
    records, following CNAMEs inside the answer (L{dnsclient.parse_response}).

    @raise EnumError: malformed; wrong id, QR bit or question; truncated;
        any rcode other than NOERROR and NXDOMAIN.
    """
    try:
        answer = dnsclient.parse_response(wire, query_id, name, dns.rdatatype.NAPTR)
    except DNSError as e:
        raise EnumError(str(e)) from None
    return _answer_from(answer)


def parse_naptr_answer(wire: bytes, query_id: int, name: str) -> list[Naptr]:
    """
    The NAPTR records of an answer (empty for NXDOMAIN); L{parse_answer}
    also gives the TTL.

    @raise EnumError: as L{parse_answer}.
    """
    return list(parse_answer(wire, query_id, name).records)


@functools.lru_cache(maxsize=1024)
def _compile_regexp(regexp: str) -> tuple[re.Pattern, tuple[str | int, ...]]:
    """
    Parse C{delim ere delim repl delim flags} (RFC 3402 section 3.2).

    @raise ValueError: naming what is wrong with it.
    """
    if not regexp:
        raise ValueError("empty regexp")
    delim = regexp[0]
    if delim == "\\" or delim.isdigit() or delim == "i":
        raise ValueError(f"{delim!r} cannot delimit a regexp")
    parts: list[list[str]] = [[]]
    for token in _TOKEN.findall(regexp[1:]):
        if token == delim:
            parts.append([])
        else:
            parts[-1].append(re.escape(delim) if token == "\\" + delim else token)
    if len(parts) != 3:
        raise ValueError("regexp is not delim-ere-delim-repl-delim-flags")
    ere, repl, flags = "".join(parts[0]), parts[1], "".join(parts[2])
    if flags not in ("", "i"):
        raise ValueError(f"unknown regexp flags {flags!r}")
    for posix, python in _POSIX_CLASSES.items():
        ere = ere.replace(posix, python)
    try:
        pattern = re.compile(ere, re.IGNORECASE if flags else 0)
    except re.error as e:
        raise ValueError(f"bad regular expression: {e}") from None
    replacement: list[str | int] = []
    for token in repl:
        if token == "\\":
            raise ValueError("replacement ends in a lone backslash")
        if token.startswith("\\") and token[1] in "123456789":
            if int(token[1]) > pattern.groups:
                raise ValueError(f"backreference {token} has no group")
            replacement.append(int(token[1]))
        else:
            replacement.append(token[-1])
    return pattern, tuple(replacement)


def _rewrite(regexp: str, aus: str) -> str | None:
    pattern, replacement = _compile_regexp(regexp)
    match = pattern.search(aus)
    if match is None:
        return None
    return "".join(
        (match.group(part) or "") if isinstance(part, int) else part for part in replacement
    )


def _wants(record: Naptr, wanted: frozenset[str]) -> bool:
    # "E2U+sip" (RFC 6116) and "sip+E2U" (RFC 2916) both split to {e2u, sip}.
    return wanted <= set(record.services.lower().split("+"))


def select_uri(
    records: list[Naptr] | tuple[Naptr, ...], number: str, service: str = "E2U+sip"
) -> Rewrite:
    """
    Apply the terminal records offering C{service} to C{number}, lowest
    (order, preference) first, and return the first URI produced.

    The rewrite result is the substitution expression with its
    backreferences filled in (RFC 3402), not a replacement inside the
    number.  A record whose regexp does not match is passed over; one
    whose regexp is malformed is passed over and listed in C{skipped}.
    """
    wanted = frozenset(service.lower().split("+"))
    skipped = []
    for record in sorted(records, key=_rank):
        if record.flags.lower() != "u" or not _wants(record, wanted):
            continue
        try:
            uri = _rewrite(record.regexp, number)
        except ValueError as e:
            skipped.append((record, str(e)))
            continue
        if uri:
            return Rewrite(uri, tuple(skipped))
    return Rewrite(None, tuple(skipped))


def apply_naptr(
    records: list[Naptr] | tuple[Naptr, ...], number: str, service: str = "E2U+sip"
) -> str | None:
    """
    The URI that C{records} give C{number} for C{service}, or C{None}; see
    L{select_uri}.
    """
    return select_uri(records, number, service).uri


def parse_server_address(text: str) -> tuple[str, int]:
    """
    One C{ENUMServers} entry: C{1.2.3.4}, C{1.2.3.4:5353}, C{::1} or
    C{[::1]:5353}.  Names are refused: resolving the resolver's own
    address would need a resolver.

    @raise ValueError: naming the setting and the accepted forms.
    """
    return dnsclient.parse_server_address(text, "ENUMServers")


class EnumResolver:
    """
    Non-blocking ENUM lookups through a L{DNSClient} of its own (the
    C{ENUMServers} are ENUM's, not the SIP locator's), whose TTL cache
    holds the NAPTR answers.

    Each query goes to the servers in turn, C{1 + retries} times round the
    list, each attempt waiting C{timeout} seconds; the first usable answer
    (including NXDOMAIN) ends it.  A failed or timed-out query is not
    cached, so a server that comes back is used at once.  Concurrent
    lookups of one number are not merged.

    @param reactor: L{IReactorUDP} and L{IReactorTime}; the cache's clock.
    @param servers: C{(ip, port)} pairs, see L{parse_server_address}.
    @param cache_size: how many domains are cached (for at most
        L{MAX_CACHE_TTL}); the least recently used entry is evicted first;
        0 disables the cache.
    @param registry: where C{communigate_enum_*} (and the client's
        C{communigate_dns_*}) metrics are registered.
    @ivar client: the L{DNSClient} asked.
    """

    log = Logger()

    def __init__(
        self, reactor, servers: list[tuple[str, int]], suffixes=("e164.arpa",),
        timeout: float = 2.0, retries: int = 1, cache_size: int = 10000,
        registry: CollectorRegistry | None = None,
    ):
        if not servers:
            raise ValueError("ENUMServers is empty: name at least one ip:port")
        if not suffixes:
            raise ValueError("ENUMDomains is empty: name at least one suffix")
        servers = [dnsclient.check_server(host, port, "ENUMServers") for host, port in servers]
        self.reactor = reactor
        self.suffixes = tuple(suffixes)
        # Without a registry the counters still count, on a private one.
        registry = CollectorRegistry() if registry is None else registry
        self._lookups = Counter(
            "communigate_enum_lookups",
            "ENUM lookups, by outcome: found, not_found, timeout, error.",
            ["outcome"],
            registry=registry,
        )
        self._hits = Counter(
            "communigate_enum_cache_hits", "ENUM domains answered from the cache.",
            registry=registry,
        )
        self._strays = Counter(
            "communigate_enum_stray_datagrams",
            "UDP datagrams dropped: wrong source, wrong id or too late.",
            registry=registry,
        )
        self.client = DNSClient(
            reactor, servers, timeout=timeout, retries=retries, cache_size=cache_size,
            registry=registry, on_stray=lambda addr, reason: self._strays.inc(), join=False,
        )

    @property
    def servers(self) -> list[tuple[str, int]]:
        """The C{ENUMServers} asked; setting them checks each entry."""
        return self.client.servers

    @servers.setter
    def servers(self, servers) -> None:
        servers = [dnsclient.check_server(host, port, "ENUMServers") for host, port in servers]
        if not servers:
            raise ValueError("ENUMServers is empty: name at least one ip:port")
        self.client.servers = servers

    @property
    def timeout(self) -> float:
        return self.client.timeout

    @timeout.setter
    def timeout(self, timeout: float) -> None:
        self.client.timeout = timeout

    @property
    def retries(self) -> int:
        return self.client.retries

    @retries.setter
    def retries(self, retries: int) -> None:
        self.client.retries = retries

    @property
    def cache_size(self) -> int:
        return self.client.cache_size

    @cache_size.setter
    def cache_size(self, cache_size: int) -> None:
        self.client.cache_size = cache_size

    def lookup(self, e164: str, service: str = "E2U+sip") -> Deferred:
        """
        The URI the DNS gives C{e164} for C{service}.

        @return: a Deferred firing with the URI, or C{None} when there is
            none or no usable answer came; it fails only with
            L{ValueError} for a number that is not E.164.
        """
        try:
            names = [enum_domain(e164, suffix) for suffix in self.suffixes]
        except ValueError:
            return fail()
        return Deferred.fromCoroutine(self._lookup(e164, names, service))

    async def _lookup(self, number: str, names: list[str], service: str):
        failed = None
        for name in names:
            try:
                answer = await self.client.query(name, dns.rdatatype.NAPTR)
            except DNSError as e:
                failed = failed or ("timeout" if isinstance(e, DNSTimeout) else "error")
                continue
            if answer.cached:
                self._hits.inc()
            rewrite = select_uri(_answer_from(answer).records, number, service)
            for record, reason in rewrite.skipped:
                self.log.warn(
                    "ENUM record at {name} skipped: {reason}: {record}",
                    name=name, reason=reason, record=record,
                )
            if rewrite.uri is not None:
                self._lookups.labels(outcome="found").inc()
                return rewrite.uri
        self._lookups.labels(outcome=failed or "not_found").inc()
        return None
