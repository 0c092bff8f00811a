"""
ENUM (RFC 6116): telephone numbers to URIs through DNS NAPTR records
(RFC 3403) and their regexp rewrite rules (RFC 3402).

C{+15553837461} becomes C{1.6.4.7.3.8.3.5.5.5.1.e164.arpa}, whose NAPTR
records rewrite the number (the application unique string, C{+digits})
with expressions like C{!^.*$!sip:info@example.com!}.

The pure half (L{enum_domain}, L{build_query}, L{parse_answer},
L{select_uri}, L{apply_naptr}) does no I/O and no logging, so the rules
are testable alone; DNS messages are built and parsed by dnspython.
L{EnumResolver} sends each query from its own ephemeral UDP port through
an injected reactor and caches answers by TTL.

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
import ipaddress
import re
import secrets
from collections import OrderedDict

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

#: How long an NXDOMAIN or empty answer is cached when it carries no SOA.
DEFAULT_NEGATIVE_TTL = 60

#: The longest a record is cached, whatever TTL it carries.
MAX_CACHE_TTL = 86400

#: The EDNS payload size advertised in queries (the DNS Flag Day value).
EDNS_PAYLOAD = 1232

_E164 = re.compile(r"\+[0-9]{1,15}")

# POSIX bracket classes that Python's re lacks, as their range text.
_POSIX_CLASSES = {
    "[:digit:]": "0-9", "[:alpha:]": "A-Za-z", "[:alnum:]": "A-Za-z0-9",
    "[:upper:]": "A-Z", "[:lower:]": "a-z", "[:xdigit:]": "0-9A-Fa-f",
    "[:space:]": r" \t\n\r\f\v",
}

# A backslash pair, a lone trailing backslash, or any other character.
_TOKEN = re.compile(r"\\.?|.", re.DOTALL)


class EnumError(Exception):
    """
    A DNS answer that cannot be used: malformed, for another question, a
    server failure (SERVFAIL, REFUSED ...), or truncated.
    """


class EnumTimeout(EnumError):
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
    query = dns.message.make_query(name, dns.rdatatype.NAPTR, use_edns=0, payload=EDNS_PAYLOAD)
    query.id = query_id
    return query.to_wire()


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


def _negative_ttl(response: dns.message.Message) -> int:
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min(rrset.ttl, rrset[0].minimum)
    return DEFAULT_NEGATIVE_TTL


def parse_answer(wire: bytes, query_id: int, name: str) -> EnumAnswer:
    """
    Check that C{wire} answers our NAPTR question for C{name} and take its
    records, following CNAMEs inside the answer.

    @raise EnumError: malformed; wrong id, QR bit or question; truncated;
        any rcode other than NOERROR and NXDOMAIN.
    """
    try:
        response = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError) as e:
        raise EnumError(f"malformed DNS message: {e!r}") from None
    if response.id != query_id:
        raise EnumError(f"answer id {response.id} is not the query id {query_id}")
    if not response.flags & dns.flags.QR:
        raise EnumError("message is a query, not an answer")
    if response.flags & dns.flags.TC:
        raise EnumError("answer truncated (TC); TCP is not tried")
    asked = [(q.name, q.rdtype, q.rdclass) for q in response.question]
    if asked != [(dns.name.from_text(name), dns.rdatatype.NAPTR, dns.rdataclass.IN)]:
        raise EnumError(f"answer is not for the NAPTR question {name}")
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise EnumError(f"server answered {dns.rcode.to_text(rcode)}")
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException as e:
        raise EnumError(f"unusable answer: {e!r}") from None
    cname_ttls = [rrset.ttl for rrset in chain.cnames]
    if chain.answer is None:
        return EnumAnswer((), min([_negative_ttl(response), *cname_ttls]))
    records = tuple(sorted(map(_naptr_from_rdata, chain.answer), key=_rank))
    return EnumAnswer(records, min([chain.answer.ttl, *cname_ttls]))


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
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    return _checked_server(host, int(port) if port.isdigit() else 0, text)


def parse_resolv_conf(text: str) -> list[tuple[str, int]]:
    """
    The C{nameserver} addresses of resolv.conf text, port 53; lines that
    are not IP addresses are left out.
    """
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append((str(ipaddress.ip_address(fields[1])), 53))
            except ValueError:
                continue
    return servers


def servers_from_resolv_conf(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """
    The system's name servers, the default when C{ENUMServers} is empty;
    an unreadable file gives none.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_resolv_conf(f.read())
    except OSError:
        return []


def _checked_server(host: str, port: int, entry=None) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not 0 < port < 65536:
        entry = entry if entry is not None else f"{host}:{port}"
        raise ValueError(f"ENUMServers entry {entry!r} is not ip, ip:port or [ipv6]:port")
    return str(address), port


class _Exchange(DatagramProtocol):
    """
    One query to one server: its own ephemeral port and timer, and one
    result, after which both are gone.  A fresh port and id per attempt
    make a forged answer guess both.
    """

    def __init__(self, resolver: EnumResolver, server, name: str):
        self._resolver = resolver
        self._server = server
        self._server_ip = ipaddress.ip_address(server[0])
        self._name = name
        self._id = secrets.randbelow(65536)
        self._deferred: Deferred | None = None
        self._port = None
        self._timer = None

    def run(self) -> Deferred:
        reactor = self._resolver.reactor
        interface = "::" if self._server_ip.version == 6 else ""
        try:
            self._port = reactor.listenUDP(0, self, interface=interface)
            self.transport.write(build_query(self._name, self._id), self._server)
        except (CannotListenError, OSError) as e:
            self._close()
            return fail(EnumError(f"cannot send to {self._server}: {e}"))
        self._deferred = Deferred(canceller=self._cancel)
        self._timer = reactor.callLater(self._resolver.timeout, self._timed_out)
        return self._deferred

    def datagramReceived(self, data: bytes, addr) -> None:
        if self._deferred is None:
            return self._resolver._stray(addr, "after the exchange ended")
        try:
            source_ok = (
                ipaddress.ip_address(addr[0]) == self._server_ip
                and addr[1] == self._server[1]
            )
        except ValueError:
            source_ok = False
        if not source_ok:
            return self._resolver._stray(addr, "not from the server asked")
        if len(data) < 2 or int.from_bytes(data[:2], "big") != self._id:
            return self._resolver._stray(addr, "id does not match the query")
        try:
            answer = parse_answer(data, self._id, self._name)
        except EnumError as e:
            self._finish(Failure(e))
        else:
            self._finish(answer)

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(Failure(EnumTimeout(f"no answer from {self._server}")))

    def _cancel(self, deferred: Deferred) -> None:
        self._deferred = None
        self._close()

    def _close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._port is not None:
            self._port.stopListening()
            self._port = None

    def _finish(self, result) -> None:
        self._close()
        d, self._deferred = self._deferred, None
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)


class EnumResolver:
    """
    Non-blocking ENUM lookups with a TTL cache.

    Each query goes to the servers in turn, C{1 + retries} times round the
    list, each attempt waiting C{timeout} seconds; the first usable answer
    (including NXDOMAIN) ends it.  A failed or timed-out query is not
    cached, so a server that comes back is used at once.  Concurrent
    lookups of one number are not merged.

    @param reactor: L{IReactorUDP} and L{IReactorTime}; the cache's clock.
    @param servers: C{(ip, port)} pairs, see L{parse_server_address}.
    @param cache_size: how many domains are cached (for at most
        L{MAX_CACHE_TTL}); the oldest entry is evicted first; 0 disables
        the cache.
    @param registry: where C{communigate_enum_*} metrics are registered.
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
        self.reactor = reactor
        self.servers = [_checked_server(host, port) for host, port in servers]
        self.suffixes = tuple(suffixes)
        self.timeout = timeout
        self.retries = retries
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, tuple[Naptr, ...]]] = OrderedDict()
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
                records = await self._records(name)
            except EnumError as e:
                failed = failed or ("timeout" if isinstance(e, EnumTimeout) else "error")
                continue
            rewrite = select_uri(records, number, service)
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

    async def _records(self, name: str) -> tuple[Naptr, ...]:
        now = self.reactor.seconds()
        cached = self._cache.get(name)
        if cached is not None:
            expires, records = cached
            if expires > now:
                self._hits.inc()
                return records
            del self._cache[name]
        answer = await self._query(name)
        if self.cache_size > 0 and answer.ttl > 0:
            self._cache.pop(name, None)
            ttl = min(answer.ttl, MAX_CACHE_TTL)
            self._cache[name] = (self.reactor.seconds() + ttl, answer.records)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return answer.records

    async def _query(self, name: str) -> EnumAnswer:
        error = None
        for _ in range(1 + self.retries):
            for server in self.servers:
                try:
                    return await _Exchange(self, server, name).run()
                except EnumError as e:
                    self.log.info(
                        "ENUM query {name} to {server} failed: {error}",
                        name=name, server=server, error=str(e),
                    )
                    error = e
        raise error

    def _stray(self, addr, reason: str) -> None:
        """Count and log a datagram an exchange would not take."""
        self._strays.inc()
        self.log.warn("ENUM datagram from {addr} dropped: {reason}", addr=addr, reason=reason)
