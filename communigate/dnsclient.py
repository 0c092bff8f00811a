"""
A small non-blocking DNS stub client: one question to a recursive resolver
over UDP, answered from a TTL cache when it can be.

Lookups that need DNS (ENUM's NAPTR records, RFC 3263's NAPTR, SRV, A and
AAAA records for SIP) share this one client rather than each carrying its
own datagram code.  dnspython builds and parses the messages (the pure
half: L{build_query}, L{parse_response}); Twisted UDP carries them through
an injected reactor (L{DNSClient}).

Decisions, and why:
  - Each attempt sends from its own ephemeral UDP port with a fresh random
    id and its own timer, and takes an answer only from the server asked
    with that id, so a forged answer has to guess port and id.  Anything
    else arriving is counted, logged and dropped.
  - A timeout, a server failure (SERVFAIL, REFUSED ...), a malformed or a
    truncated answer moves on to the next server; each query goes round
    the server list C{1 + retries} times.  The server that last answered is
    asked first next time, so a dead first server does not cost every
    query a timeout.
  - Truncated (TC) answers are not retried over TCP.  Queries offer a
    1232-byte EDNS buffer (the DNS Flag Day value), which holds any sane
    NAPTR or SRV set.
  - NOERROR and NXDOMAIN are answers and are cached: positive answers for
    the smallest TTL of the records (and CNAMEs) used, negative ones for the
    SOA minimum (RFC 2308), at most L{MAX_CACHE_TTL}.  Timeouts and errors
    are not cached, so a server that comes back is used at once.  The cache
    is bounded (least recently used entry evicted) and expires lazily, so
    no timers are left behind.
  - The additional section is kept with the answer (RFC 3263 uses the
    addresses a server sends along with SRV records); each additional
    record set keeps its own TTL and is dropped from a cached answer when
    that TTL has passed.
  - A question asked again while the same one is on its way joins it
    rather than being sent again (a SIP location asks for one host's
    addresses from several branches at once; a burst of calls to one
    domain asks for its NAPTR records at once).  Cancelling one asker
    leaves the others waiting; cancelling the last ends the exchange.
    (C{join=False} turns this off: the ENUM resolver documents that its
    concurrent lookups are each sent.)

Metrics: C{communigate_dns_queries_total{rdtype,outcome}} with outcome
C{answer}, C{nodata}, C{nxdomain}, C{timeout} or C{error} for questions
sent, C{cached} for those answered from the cache and C{joined} for those
that joined one on its way (cancelled questions are not counted), and
C{communigate_dns_stray_datagrams_total}.  Several clients may share one
registry (the server's): they then share the counters.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

#: How long an NXDOMAIN or empty answer is cached when it carries no SOA.
DEFAULT_NEGATIVE_TTL = 60

#: The longest an answer is cached, whatever TTL it carries.
MAX_CACHE_TTL = 86400

#: The EDNS payload size advertised in queries (the DNS Flag Day value).
EDNS_PAYLOAD = 1232


class DNSError(Exception):
    """
    A DNS answer that cannot be used: malformed, for another question, a
    server failure (SERVFAIL, REFUSED ...) or truncated; or a name that
    cannot be asked.
    """


class DNSTimeout(DNSError):
    """No answer from a server within the timeout."""


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


@attrs.frozen
class RecordSet:
    """
    The records of one name and type from a message section.

    @ivar name: the owner name, lower case, without the final dot.
    @ivar records: dnspython rdata objects (immutable), e.g. C{.address}
        for A/AAAA, C{.priority .weight .port .target} for SRV.
    """

    name: str
    rdtype: int
    ttl: int
    records: tuple


@attrs.frozen
class Answer:
    """
    The usable content of one DNS answer.

    @ivar name: the name asked, lower case, without the final dot.
    @ivar rdtype: the type asked (a L{dns.rdatatype.RdataType}).
    @ivar rcode: C{dns.rcode.NOERROR} or C{dns.rcode.NXDOMAIN}; other
        rcodes are errors, not answers.
    @ivar records: the rdata of the asked type at the end of any CNAME
        chain inside the answer; empty for NXDOMAIN or no data.
    @ivar ttl: how many more seconds the answer may be used: the smallest
        TTL of the records and CNAMEs used, or for a negative answer the SOA
        minimum (RFC 2308), or L{DEFAULT_NEGATIVE_TTL} without an SOA.
    @ivar additional: the additional section's record sets (glue the
        server chose to send: addresses of SRV targets, for instance).
    @ivar cached: whether the answer came from the cache.
    """

    name: str
    rdtype: int
    rcode: int
    records: tuple
    ttl: int
    additional: tuple[RecordSet, ...] = ()
    cached: bool = False

    @property
    def nxdomain(self) -> bool:
        """Whether the name does not exist (RFC 8020: nor anything below it)."""
        return self.rcode == dns.rcode.NXDOMAIN

    def additional_records(self, name: str, rdtype) -> tuple:
        """The additional-section rdata for C{name} and C{rdtype}, maybe C{()}."""
        name = name.rstrip(".").lower()
        rdtype = dns.rdatatype.RdataType.make(rdtype)
        return tuple(
            record
            for rrset in self.additional
            if rrset.name == name and rrset.rdtype == rdtype
            for record in rrset.records
        )


def question_name(name: str) -> dns.name.Name:
    """
    C{name} as an absolute DNS name.

    @raise DNSError: for a name DNS cannot ask (empty labels, labels over 63
        octets, over 255 octets in all).
    """
    if not isinstance(name, str) or not name.strip("."):
        raise DNSError(f"{name!r} is not a DNS name")
    try:
        return dns.name.from_text(name)
    except (dns.exception.DNSException, ValueError, UnicodeError) as e:
        raise DNSError(f"{name!r} is not a DNS name: {e}") from None


def build_query(name: str, rdtype, query_id: int) -> bytes:
    """A recursive (RD) query for C{name} and C{rdtype} with the given id."""
    query = dns.message.make_query(
        question_name(name), rdtype, use_edns=0, payload=EDNS_PAYLOAD
    )
    query.id = query_id
    return query.to_wire()


def _negative_ttl(response: dns.message.Message) -> int:
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return min(rrset.ttl, rrset[0].minimum)
    return DEFAULT_NEGATIVE_TTL


def parse_response(wire: bytes, query_id: int, name: str, rdtype) -> Answer:
    """
    Check that C{wire} answers our question (C{name}, C{rdtype}, class IN)
    with id C{query_id}, and take its records, following CNAMEs inside the
    answer.

    @raise DNSError: malformed; wrong id, QR bit or question; truncated;
        any rcode other than NOERROR and NXDOMAIN.
    """
    rdtype = dns.rdatatype.RdataType.make(rdtype)
    try:
        response = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError) as e:
        raise DNSError(f"malformed DNS message: {e!r}") from None
    if response.id != query_id:
        raise DNSError(f"answer id {response.id} is not the query id {query_id}")
    if not isinstance(response, dns.message.QueryMessage):
        # Another opcode (UPDATE, NOTIFY ...): never an answer to our query.
        raise DNSError(f"answer has opcode {dns.opcode.to_text(response.opcode())}, not QUERY")
    if not response.flags & dns.flags.QR:
        raise DNSError("message is a query, not an answer")
    if response.flags & dns.flags.TC:
        raise DNSError("answer truncated (TC); TCP is not tried")
    asked = [(q.name, q.rdtype, q.rdclass) for q in response.question]
    wanted = question_name(name)
    if asked != [(wanted, rdtype, dns.rdataclass.IN)]:
        raise DNSError(f"answer is not for the {rdtype.name} question {name}")
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DNSError(f"server answered {dns.rcode.to_text(rcode)}")
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException as e:
        raise DNSError(f"unusable answer: {e!r}") from None
    cname_ttls = [rrset.ttl for rrset in chain.cnames]
    additional = tuple(
        RecordSet(_text(rrset.name), rrset.rdtype, rrset.ttl, tuple(rrset))
        for rrset in response.additional
        if rrset.rdclass == dns.rdataclass.IN
    )
    if chain.answer is None:
        ttl = min([_negative_ttl(response), *cname_ttls])
        return Answer(_text(wanted), rdtype, rcode, (), ttl, additional)
    ttl = min([chain.answer.ttl, *cname_ttls])
    return Answer(_text(wanted), rdtype, rcode, tuple(chain.answer), ttl, additional)


def order_srv(records: Iterable, random) -> list:
    """
    C{records} (anything with C{priority} and C{weight}) in the order to
    try them (RFC 2782): priorities ascending; within one priority, picked
    one by one with probability proportional to weight, zero-weight
    records having a small chance to come first.

    RFC 2782 draws the number from 0 to the sum of the weights inclusive
    and puts zero-weight records first, so that they win the draw of 0.
    Without zero-weight records that extra draw goes to whichever record
    happens to be first, skewing the weights (1 and 3 give 40/60, not
    25/75); so the draw starts at 1 unless a zero-weight record remains.

    Within a priority the records are first sorted (zero weights first, as
    RFC 2782 asks, then by the records themselves) so that the result
    depends only on the random source, not on the order the DNS server
    sent them in.

    @param random: has C{randint(a, b)}, like L{random.Random}.
    """
    by_priority: dict[int, list] = {}
    for record in records:
        by_priority.setdefault(record.priority, []).append(record)
    ordered = []
    for priority in sorted(by_priority):
        remaining = sorted(by_priority[priority], key=lambda r: (r.weight != 0, str(r)))
        while remaining:
            lowest = 0 if remaining[0].weight == 0 else 1
            pick = random.randint(lowest, sum(r.weight for r in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= pick:
                    break
            ordered.append(remaining.pop(index))
    return ordered


def check_server(host: str, port: int, setting: str = "DNS servers", entry=None):
    """
    C{(ip, port)} checked and normalised.

    @raise ValueError: naming C{setting} and the accepted forms.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or not isinstance(port, int) or not 0 < port < 65536:
        entry = entry if entry is not None else f"{host}:{port}"
        raise ValueError(f"{setting} entry {entry!r} is not ip, ip:port or [ipv6]:port")
    return str(address), port


def parse_server_address(text: str, setting: str = "DNS servers") -> tuple[str, int]:
    """
    One server entry: C{1.2.3.4}, C{1.2.3.4:5353}, C{::1} or C{[::1]:5353}.
    Names are refused: resolving the resolver's own address would need a
    resolver.

    @raise ValueError: naming C{setting} and the accepted forms.
    """
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    return check_server(host, int(port) if port.isdigit() else 0, setting, text)


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
    """The system's name servers; an unreadable file gives none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_resolv_conf(f.read())
    except OSError:
        return []


@attrs.frozen
class _Metrics:
    queries: Counter
    strays: Counter


# prometheus refuses a name registered twice, and the ENUM resolver's
# client and the SIP locator's client may both count into the server's
# registry: one set of counters per registry, forgotten with it.
_metrics_by_registry: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    metrics = _metrics_by_registry.get(registry)
    if metrics is None:
        metrics = _Metrics(
            Counter(
                "communigate_dns_queries",
                "DNS questions asked of the DNS client, by record type and outcome: "
                "answer, nodata, nxdomain, timeout, error (sent), cached, joined.",
                ["rdtype", "outcome"],
                registry=registry,
            ),
            Counter(
                "communigate_dns_stray_datagrams",
                "DNS datagrams dropped: wrong source, wrong id or too late.",
                registry=registry,
            ),
        )
        _metrics_by_registry[registry] = metrics
    return metrics


class _Exchange(DatagramProtocol):
    """
    One query to one server: its own ephemeral port and timer, and one
    result, after which both are gone.  A fresh port and id per attempt
    make a forged answer guess both.
    """

    def __init__(self, client: DNSClient, server, name: str, rdtype):
        self._client = client
        self._server = server
        self._server_ip = ipaddress.ip_address(server[0])
        self._name = name
        self._rdtype = rdtype
        self._id = secrets.randbelow(65536)
        self._deferred: Deferred | None = None
        self._port = None
        self._timer = None

    def run(self) -> Deferred:
        reactor = self._client.reactor
        interface = "::" if self._server_ip.version == 6 else ""
        try:
            self._port = reactor.listenUDP(0, self, interface=interface)
            self.transport.write(build_query(self._name, self._rdtype, self._id), self._server)
        except (CannotListenError, OSError) as e:
            self._close()
            return fail(DNSError(f"cannot send to {self._server}: {e}"))
        self._deferred = Deferred(canceller=self._cancel)
        self._timer = reactor.callLater(self._client.timeout, self._timed_out)
        return self._deferred

    def datagramReceived(self, data: bytes, addr) -> None:
        if self._deferred is None:
            return self._client._stray(addr, "after the exchange ended")
        try:
            source_ok = (
                ipaddress.ip_address(addr[0]) == self._server_ip
                and addr[1] == self._server[1]
            )
        except ValueError:
            source_ok = False
        if not source_ok:
            return self._client._stray(addr, "not from the server asked")
        if len(data) < 2 or int.from_bytes(data[:2], "big") != self._id:
            return self._client._stray(addr, "id does not match the query")
        try:
            answer = parse_response(data, self._id, self._name, self._rdtype)
        except DNSError as e:
            self._finish(Failure(e))
        else:
            self._finish(answer)

    def _timed_out(self) -> None:
        self._timer = None
        self._finish(Failure(DNSTimeout(f"no answer from {self._server}")))

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


@attrs.define
class _Flight:
    """A question on its way: who waits for it, and its exchange."""

    askers: list[Deferred]
    exchange: Deferred | None = None


@attrs.frozen
class _Entry:
    stored: float
    expires: float
    answer: Answer


class DNSClient:
    """
    Non-blocking DNS questions to recursive resolvers, with a TTL cache.

    @param reactor: L{IReactorUDP} and L{IReactorTime}; the cache's clock.
    @param servers: C{(ip, port)} pairs (L{parse_server_address}); names
        are refused.
    @param timeout: seconds each attempt waits for its answer.
    @param retries: how many more times the server list is gone round
        after the first.
    @param cache_size: how many (name, type) answers are cached; 0
        disables the cache.
    @param registry: where C{communigate_dns_*} metrics are registered; by
        default a private registry.
    @param on_stray: called with C{(address, reason)} for each datagram
        dropped, after it is counted and logged (the ENUM resolver keeps
        its own counter with it).
    @param join: whether a question asked while the same one is on its
        way joins it instead of being sent again.
    """

    log = Logger()

    def __init__(
        self, reactor, servers: list[tuple[str, int]], timeout: float = 2.0,
        retries: int = 1, cache_size: int = 10000,
        registry: CollectorRegistry | None = None,
        on_stray: Callable[[object, str], None] | None = None, join: bool = True,
    ):
        self.reactor = reactor
        self.servers = servers
        self.timeout = timeout
        self.retries = retries
        self.cache_size = cache_size
        self._on_stray = on_stray
        self._join = join
        self._cache: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._in_flight: dict[tuple[str, int], _Flight] = {}
        self._metrics = _metrics_for(CollectorRegistry() if registry is None else registry)

    @property
    def servers(self) -> list[tuple[str, int]]:
        """The servers asked, in order; setting them checks each entry."""
        return list(self._servers)

    @servers.setter
    def servers(self, servers) -> None:
        checked = [check_server(host, port) for host, port in servers]
        if not checked:
            raise ValueError("DNS servers: name at least one ip:port")
        self._servers = checked
        self._first = 0

    def query(self, name: str, rdtype) -> Deferred:
        """
        Ask for C{name}'s records of C{rdtype} (C{"SRV"}, C{dns.rdatatype.A}).

        @raise dns.rdatatype.UnknownRdatatype: for a type that is not one,
            a programming error rather than a lookup outcome.

        @return: a Deferred firing with an L{Answer} (NXDOMAIN and no data
            included), or failing with L{DNSTimeout} when no server answered
            or L{DNSError} when none gave a usable answer or the name
            cannot be asked.  Cancelling it closes the port and timer
            unless another asker joined it.
        """
        rdtype = dns.rdatatype.RdataType.make(rdtype)
        try:
            key = (_text(question_name(name)), int(rdtype))
        except DNSError:
            self._count(rdtype, "error")
            return fail()
        cached = self._cached(key)
        if cached is not None:
            self._count(rdtype, "cached")
            return succeed(cached)
        flight = self._in_flight.get(key) if self._join else None
        joined = flight is not None
        if not joined:
            flight = _Flight([])
        asker = Deferred(canceller=functools.partial(self._leave, flight, key))
        flight.askers.append(asker)
        if joined:
            self._count(rdtype, "joined")
            return asker
        # The asker is in place before the exchange starts, which can end
        # at once (a port that cannot be opened).
        if self._join:
            self._in_flight[key] = flight
        flight.exchange = Deferred.fromCoroutine(self._query(key, rdtype))
        flight.exchange.addBoth(self._land, key, flight)
        return asker

    def _land(self, result, key, flight: _Flight) -> None:
        if self._in_flight.get(key) is flight:
            del self._in_flight[key]
        askers, flight.askers = flight.askers, []
        for asker in askers:
            if isinstance(result, Failure):
                asker.errback(result)
            else:
                asker.callback(result)

    def _leave(self, flight: _Flight, key, asker: Deferred) -> None:
        if asker not in flight.askers:
            return
        flight.askers.remove(asker)
        if not flight.askers:
            if self._in_flight.get(key) is flight:
                del self._in_flight[key]
            flight.exchange.cancel()

    def _cached(self, key) -> Answer | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        now = self.reactor.seconds()
        if entry.expires <= now:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        age = now - entry.stored
        return attrs.evolve(
            entry.answer,
            ttl=math.ceil(entry.expires - now),
            additional=tuple(
                attrs.evolve(rrset, ttl=math.ceil(rrset.ttl - age))
                for rrset in entry.answer.additional
                if rrset.ttl > age
            ),
            cached=True,
        )

    def _store(self, key, answer: Answer) -> None:
        if self.cache_size <= 0 or answer.ttl <= 0:
            return
        now = self.reactor.seconds()
        self._cache.pop(key, None)
        self._cache[key] = _Entry(now, now + min(answer.ttl, MAX_CACHE_TTL), answer)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    async def _query(self, key, rdtype) -> Answer:
        name = key[0]
        servers, first = self._servers, self._first
        error: DNSError | None = None
        for _ in range(1 + self.retries):
            for step in range(len(servers)):
                index = (first + step) % len(servers)
                try:
                    answer = await _Exchange(self, servers[index], name, rdtype).run()
                except DNSError as e:
                    self.log.info(
                        "DNS query {name} {rdtype} to {server} failed: {error}",
                        name=name, rdtype=rdtype.name, server=servers[index], error=str(e),
                    )
                    error = e
                    continue
                if servers is self._servers:
                    self._first = index
                self._store(key, answer)
                outcome = (
                    "nxdomain" if answer.nxdomain else "answer" if answer.records else "nodata"
                )
                self._count(rdtype, outcome)
                return answer
        self._count(rdtype, "timeout" if isinstance(error, DNSTimeout) else "error")
        raise error

    def _count(self, rdtype, outcome: str) -> None:
        self._metrics.queries.labels(rdtype=dns.rdatatype.to_text(rdtype), outcome=outcome).inc()

    def _stray(self, addr, reason: str) -> None:
        """Count and log a datagram an exchange would not take."""
        self._metrics.strays.inc()
        self.log.warn("DNS datagram from {addr} dropped: {reason}", addr=addr, reason=reason)
        if self._on_stray is not None:
            self._on_stray(addr, reason)
