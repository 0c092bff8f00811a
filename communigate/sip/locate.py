"""
Locating SIP servers (RFC 3263 section 4): a SIP or SIPS URI's target to
the ordered list of C{(transport, address, port)} to try, through NAPTR,
SRV (RFC 2782) and A/AAAA records.

The input is the URI's parts as plain values, not a URI object, so this
module stands apart from the message classes: the scheme, the host (or
the C{maddr} parameter, which replaces it as the target), the port, the
C{transport} parameter.

The procedure (L{Locator.locate}):
  1. An IP literal is used as it is: the port given or 5060 (5061 for
     TLS), the transport given or UDP (TLS for sips).
  2. A name with an explicit port: A/AAAA only, no SRV (section 4.2).
  3. A name with a transport parameter but no port: the SRV records of
     that transport (C{_sip._udp}, C{_sip._tcp}, C{_sips._tcp}); without
     any, A/AAAA with the default port.
  4. Otherwise NAPTR: records with flag C{s} and service C{SIP+D2U},
     C{SIP+D2T} or C{SIPS+D2T} for a transport we support (for sips, only
     C{SIPS+D2T}), by order then preference; their replacements' SRV
     records give the targets.  As RFC 3403 says, records of a higher
     order are considered only when none of the lowest order led anywhere.
  5. No usable NAPTR record: the SRV records of every supported transport
     (for sips only TLS), asked at once, their targets concatenated in the
     Locator's transport preference order.
  6. No SRV record either: A/AAAA of the name with the default port and
     UDP (TLS for sips).

SRV records are ordered by priority, and within a priority by RFC 2782's
weighted random selection (L{communigate.dnsclient.order_srv}, whose random source is injected
so tests are reproducible).  A lone SRV record whose target is C{.} says
the service is decidedly not available: no targets, and no A fallback.

Addresses: each host's IPv4 addresses come before its IPv6 ones.  Servers
this is written for reach far more peers over IPv4, and an IPv6 address
on a host without working IPv6 costs a transaction timeout before the
failover; with C{ipv6=False} AAAA records are not asked at all.  When an
answer's additional section carries an SRV target's A (or AAAA) records,
or a NAPTR replacement's SRV records, those are used and not asked again;
a family the additional section leaves out is still asked, since a
resolver sends only what it has at hand.

Failures: NXDOMAIN or a timeout of the NAPTR question ends the search with
an empty list (the domain does not exist, or the resolvers do not answer
and every further question would wait as long again).  Any other failed
question counts as "no records of that type" and the search goes on.
Answers are cached for their TTLs by the L{DNSClient}.
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections.abc import Sequence

import attrs
import dns.name
import dns.rdatatype
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from communigate.dnsclient import DNSError, DNSTimeout, order_srv

#: The transports a Locator can return, in its default preference order.
TRANSPORTS = ("udp", "tcp", "tls")

#: The port used when neither the URI nor an SRV record gives one.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

#: NAPTR service field -> (the URI scheme it serves, our transport).
NAPTR_SERVICES = {
    "SIP+D2U": ("sip", "udp"),
    "SIP+D2T": ("sip", "tcp"),
    "SIPS+D2T": ("sips", "tls"),
}

#: Our transport -> the SRV service and protocol labels (RFC 3263 4.1).
SRV_PREFIXES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}

#: The longest failover list returned.
MAX_TARGETS = 32


@attrs.frozen
class Target:
    """
    One place to send a request: the transport, an IP address (no
    brackets) and a port.
    """

    transport: str
    address: str
    port: int


def _name(name) -> str:
    if isinstance(name, dns.name.Name):
        name = name.to_text(omit_final_dot=True)
    return name.rstrip(".").lower()


def _service(naptr) -> str:
    return naptr.service.decode("ascii", "replace").upper()


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


@attrs.frozen
class _Glue:
    """
    Records that came in the additional sections of the answers on one
    branch of the search (a NAPTR answer, then one SRV answer), by (name,
    type): used instead of asking for them.  Each branch has its own, so
    what one branch gets does not depend on how fast another's answer
    came.
    """

    records: tuple = ()

    def with_answer(self, answer) -> _Glue:
        return _Glue(self.records + tuple(
            (_name(rrset.name), int(rrset.rdtype), record)
            for rrset in answer.additional
            for record in rrset.records
        ))

    def get(self, name: str, rdtype) -> tuple:
        name, rdtype = _name(name), int(rdtype)
        return tuple(record for n, t, record in self.records if (n, t) == (name, rdtype))


class Locator:
    """
    RFC 3263 server location over a DNS client.

    @param dns_client: has C{query(name, rdtype) -> Deferred[Answer]}, as
        L{communigate.dnsclient.DNSClient} (whose cache honours the TTLs).
    @param random: the source for SRV weighted selection (C{randint}); by
        default a fresh L{random.Random}.
    @param transports: the transports we can send on, in preference order
        for SRV lookups without NAPTR, a subset of L{TRANSPORTS}.
    @param ipv6: whether AAAA records are asked and used.
    @param max_targets: the longest list returned.
    """

    log = Logger()

    def __init__(
        self, dns_client, random=None, transports: Sequence[str] = TRANSPORTS,
        ipv6: bool = True, max_targets: int = MAX_TARGETS,
    ):
        unknown = [t for t in transports if t not in TRANSPORTS]
        if unknown or not transports:
            raise ValueError(
                f"transports {tuple(transports)!r}: choose one or more of {TRANSPORTS}"
            )
        self._dns = dns_client
        self._random = _random.Random() if random is None else random
        self.transports = tuple(transports)
        self.ipv6 = ipv6
        self.max_targets = max_targets

    def locate(
        self, host: str, *, scheme: str = "sip", port: int | None = None,
        transport: str | None = None, host_is_ip: bool | None = None,
        maddr: str | None = None,
    ) -> Deferred:
        """
        The servers to try for a URI, in order: on a transport error or a
        503 from one, the next (RFC 3263 section 4.3).

        @param host: the URI's host: a name, an IPv4 address or an IPv6
            reference (brackets allowed).
        @param scheme: C{"sip"} or C{"sips"}.
        @param port: the URI's port, or C{None}.
        @param transport: the URI's C{transport} parameter, or C{None}.
        @param host_is_ip: whether C{host} is an IP literal, as the URI
            parser saw it; C{None} to decide here.  A literal that cannot
            be read gives no targets; with C{False} the host is looked up
            as a name (an IP-shaped name or SRV target is still taken as
            the address it spells).
        @param maddr: the URI's C{maddr} parameter, which is then the
            target instead of C{host} (RFC 3263 section 4).

        @return: a Deferred firing with a C{list} of L{Target}, never
            failing for DNS reasons.  An empty list means no server could
            be found (unknown domain, DNS not answering, a transport we do
            not support, C{sips} over UDP): the caller treats the branch as
            RFC 3261 section 8.1.3.1 treats a transport failure, as a
            I{503 Service Unavailable}, not a 404 -- the domain is not
            ours to declare unknown, and a DNS outage is temporary.
        @raise ValueError: for a scheme other than sip/sips or a port out
            of range (programming errors, not DNS outcomes).
        """
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            raise ValueError(f"scheme {scheme!r} is not sip or sips")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port!r} is out of range")
        if not (maddr or host):
            return succeed(self._done(host, []))
        if maddr:
            target, numeric = maddr, _ip(maddr)
        else:
            target, numeric = host, (_ip(host) if host_is_ip is not False else None)
            if host_is_ip and numeric is None:
                self.log.info("SIP location: cannot read IP literal {host!r}", host=host)
                return succeed(self._done(host, []))
        if transport is not None:
            transport = self._transport_param(scheme, transport.lower())
            if transport is None:
                return succeed(self._done(target, []))
        if numeric is not None:
            transport = transport or self._default_transport(scheme)
            if transport is None:
                return succeed(self._done(target, []))
            targets = [Target(transport, numeric, port or DEFAULT_PORTS[transport])]
            return succeed(self._done(target, targets))
        return Deferred.fromCoroutine(self._locate_name(_name(target), scheme, port, transport))

    # -- the steps ----------------------------------------------------

    async def _locate_name(self, name, scheme, port, transport) -> list[Target]:
        if port is not None:
            transport = transport or self._default_transport(scheme)
            if transport is None:
                return self._done(name, [])
            return self._done(name, await self._host_targets(name, transport, port))
        if transport is not None:
            srv_name = f"{SRV_PREFIXES[transport]}.{name}"
            targets = await self._srv_targets(srv_name, transport, _Glue())
            if targets is None:
                targets = await self._host_targets(name, transport, DEFAULT_PORTS[transport])
            return self._done(name, targets)
        try:
            naptr = await self._dns.query(name, dns.rdatatype.NAPTR)
        except DNSTimeout:
            self.log.info("SIP location of {name}: NAPTR question timed out", name=name)
            return self._done(name, [])
        except DNSError as e:
            self.log.info("SIP location of {name}: NAPTR failed: {error}", name=name, error=str(e))
            naptr = None
        if naptr is not None and naptr.nxdomain:
            return self._done(name, [])
        records = self._usable_naptr(scheme, naptr.records if naptr is not None else ())
        if records:
            return self._done(name, await self._naptr_targets(records, _Glue().with_answer(naptr)))
        targets = await self._srv_fallback(name, scheme)
        if targets is None:
            transport = self._default_transport(scheme)
            targets = (
                await self._host_targets(name, transport, DEFAULT_PORTS[transport])
                if transport is not None else []
            )
        return self._done(name, targets)

    def _usable_naptr(self, scheme, records) -> list:
        usable = []
        for record in records:
            served = NAPTR_SERVICES.get(_service(record))
            if (
                record.flags.lower() != b"s"
                or served is None
                or served[1] not in self.transports
                or (scheme == "sips" and served[0] != "sips")
                or not _name(record.replacement)
            ):
                continue
            usable.append(record)
        return sorted(usable, key=lambda r: (r.order, r.preference))

    async def _naptr_targets(self, records, glue: _Glue) -> list[Target]:
        orders = sorted({record.order for record in records})
        for order in orders:
            group = [record for record in records if record.order == order]
            results = await self._all(
                self._srv_targets(
                    _name(record.replacement),
                    NAPTR_SERVICES[_service(record)][1],
                    glue,
                )
                for record in group
            )
            targets = [target for found in results if found for target in found]
            if targets:
                return targets
        return []

    async def _srv_fallback(self, name, scheme) -> list[Target] | None:
        transports = [
            t for t in self.transports if scheme == "sip" or t == "tls"
        ]
        results = await self._all(
            self._srv_targets(f"{SRV_PREFIXES[t]}.{name}", t, _Glue()) for t in transports
        )
        if all(found is None for found in results):
            return None
        return [target for found in results if found for target in found]

    async def _srv_targets(self, name, transport, glue: _Glue) -> list[Target] | None:
        """
        The targets of C{name}'s SRV records; C{None} when there are none
        (the caller may fall back to A/AAAA), C{[]} when the records say
        the service is not available or their hosts have no address.
        """
        records = glue.get(name, dns.rdatatype.SRV)
        if not records:
            try:
                answer = await self._dns.query(name, dns.rdatatype.SRV)
            except DNSError as e:
                self.log.info("SRV {name} failed: {error}", name=name, error=str(e))
                return None
            records = answer.records
            glue = glue.with_answer(answer)
        if not records:
            return None
        usable = [record for record in records if _name(record.target)]
        ordered = order_srv(usable, self._random)[: self.max_targets]
        addresses = await self._all(
            self._addresses(_name(record.target), glue) for record in ordered
        )
        return [
            Target(transport, address, record.port)
            for record, found in zip(ordered, addresses)
            for address in found
        ]

    async def _host_targets(self, name, transport, port) -> list[Target]:
        addresses = await self._addresses(name, _Glue())
        return [Target(transport, address, port) for address in addresses]

    async def _addresses(self, host: str, glue: _Glue) -> list[str]:
        """
        C{host}'s IPv4 then IPv6 addresses; of each family, the glue's when
        it has some, else asked (A and AAAA at once).
        """
        literal = _ip(host)
        if literal is not None:
            return [literal]
        types = [dns.rdatatype.A] + ([dns.rdatatype.AAAA] if self.ipv6 else [])
        found = await self._all(self._records(host, rdtype, glue) for rdtype in types)
        return [_ip(record.address) or record.address for records in found for record in records]

    async def _records(self, name, rdtype, glue: _Glue) -> tuple:
        known = glue.get(name, rdtype)
        if known:
            return known
        try:
            return (await self._dns.query(name, rdtype)).records
        except DNSError as e:
            self.log.info(
                "{rdtype} {name} failed: {error}",
                rdtype=dns.rdatatype.to_text(rdtype), name=name, error=str(e),
            )
            return ()

    # -- helpers ------------------------------------------------------

    def _transport_param(self, scheme, transport) -> str | None:
        # sips:...;transport=tcp is TLS over TCP; transport=tls is the
        # deprecated spelling of the same.  SIPS over UDP does not exist.
        if transport == "tls" or (scheme == "sips" and transport == "tcp"):
            transport = "tls"
        if scheme == "sips" and transport != "tls":
            self.log.info("SIP location: sips over {transport} refused", transport=transport)
            return None
        if transport not in self.transports:
            self.log.info("SIP location: transport {transport} not supported", transport=transport)
            return None
        return transport

    def _default_transport(self, scheme) -> str | None:
        if scheme == "sips":
            return "tls" if "tls" in self.transports else None
        for transport in TRANSPORTS:
            if transport in self.transports:
                return transport
        return None

    async def _all(self, coroutines) -> list:
        return await gatherResults(
            [Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True
        )

    def _done(self, name, targets: list[Target]) -> list[Target]:
        unique = list(dict.fromkeys(targets))[: self.max_targets]
        if not unique:
            self.log.info("SIP location of {name}: no servers found", name=name)
        return unique
