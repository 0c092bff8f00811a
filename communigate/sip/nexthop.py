"""
Next hops: where a request the proxy forwards goes next, as the flows to
try in order, and trying them (RFC 3263 section 4.3).

A next hop is a SIP URI: a remote target the Router chose, or, for a
request inside a dialog, its top Route once ours are popped, else its
Request-URI (the peer's Contact).  An IP literal (the URI's C{maddr}, else
its host) is one flow at once.  A host name is located by RFC 3263 through
the service's L{communigate.sip.locate.Locator} (NAPTR, SRV, A/AAAA,
honouring C{transport=}, an explicit port and C{sips:}) and gives one flow
per server found.  The DNS client caches its answers for their TTLs, so a
dialog's requests to one name ask the DNS once per TTL, not once each.

L{try_in_turn} sends to the flows one after another: the caller's attempt
gets a C{next} callable that moves on (on a timeout, a transport error or
a 503), except for the last flow, whose outcome is final (its own 503 goes
back as it came, Retry-After and all).  No flow at all is the caller's to
answer; RFC 3261 section 16.7 and RFC 3263 section 4.3 make that a 503
(not a 404: a name that does not resolve now is a reachability problem,
and the name is not ours to declare unknown), with the reason
C{cannot resolve HOST}.

TLS names [D]: each flow carries C{server_name}, the name a TLS
connection opened for it verifies in the server's certificate.  It is the
host of the URI being contacted -- the SIP domain of RFC 5922 section
4.1, which is also the name handed to the locator -- never the SRV or
NAPTR target the locator went through, nor the address it ended at: DNS
without DNSSEC cannot vouch for an SRV target, so a certificate for it
would prove nothing about the domain.  A C{maddr} changes where the
request is sent, not the name checked.  For an IP literal host the
certificate must carry that address.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from communigate.sip.transport import Flow
from communigate.sip.uri import SIPURI

#: The transports the proxy sends on.
TRANSPORTS = frozenset({"udp", "tcp", "tls"})


def is_ip(host: str) -> bool:
    """
    Whether C{host} is an IPv4 or IPv6 literal (no brackets).
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def unresolved(host: str) -> str:
    """
    The reason phrase of the 503 for a next hop whose name gave no server.
    """
    return f"cannot resolve {host}"


class NextHops:
    """
    Next-hop URIs to flows, for one SIP service.

    @param service: has C{locator} (a L{Locator} or C{None} when no DNS
        server is known; read at each use, since settings change it) and
        C{address_for(transport) -> (host, port)}, the listener address our
        Via names for C{"udp"} or C{"tcp"} (L{OSError} when there is none).
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service

    def flow_for_uri(self, uri, local=None) -> Flow:
        """
        The flow to an IP-literal URI.

        @raise OSError: the URI is no SIP URI, names a transport we do not
            send on, or a host name (which L{locate} is for).
        """
        if not isinstance(uri, SIPURI):
            raise OSError(f"cannot send to {uri}")
        transport = _transport(uri)
        if transport not in TRANSPORTS:
            raise OSError(f"unsupported transport {transport}")
        host = uri.maddr or uri.host
        if not is_ip(host):
            raise OSError(f"no address for {host}: it is a name to locate")
        port = uri.port or (5061 if transport == "tls" else 5060)
        if local is None:
            local = self._local(transport)
        return Flow(transport, local, (host, port), server_name=uri.host)

    def locate(self, uri) -> Deferred:
        """
        The flows to try for the next-hop URI C{uri}, in order.

        @return: a Deferred firing with a list of L{Flow} -- empty when the
            name gave no server (or no DNS server is configured) -- or
            failing with L{OSError} or L{ValueError} when C{uri} cannot be
            sent to at all (not SIP, an unsupported transport, a port out of
            range).  For an IP literal it has fired already.
        """
        if not isinstance(uri, SIPURI):
            return fail(OSError(f"cannot send to {uri}"))
        if is_ip(uri.maddr or uri.host):
            try:
                return succeed([self.flow_for_uri(uri)])
            except OSError as e:
                return fail(e)
        locator = self._service.locator
        if locator is None:
            self.log.info("cannot locate {host}: no DNS servers (DNSServers setting, resolv.conf)", host=uri.host)
            return succeed([])
        try:
            located = locator.locate(
                uri.host, scheme=uri.scheme, port=uri.port, transport=uri.transport, maddr=uri.maddr
            )
        except ValueError as e:
            return fail(e)
        return located.addCallback(self._flows, uri.host)

    def _flows(self, targets, name: str) -> list[Flow]:
        flows = []
        for target in targets:
            try:
                local = self._local(target.transport)
            except OSError as e:
                self.log.info(
                    "skipping {transport} server {address} for {name}: {error}",
                    transport=target.transport, address=target.address, name=name, error=e,
                )
                continue
            flows.append(Flow(target.transport, local, (target.address, target.port), server_name=name))
        return flows

    def _local(self, transport: str) -> tuple[str, int]:
        return self._service.address_for("udp" if transport == "udp" else "tcp")


def _transport(uri: SIPURI) -> str:
    transport = (uri.transport or "").lower()
    if uri.secure or transport == "tls":
        # sips: is TLS whatever the parameter says (transport=tcp is the
        # usual spelling, RFC 3261 §26.2.2).
        return "tls"
    return transport or "udp"


def try_in_turn(flows, attempt, none_found) -> None:
    """
    Try C{flows} one after another.

    @param attempt: C{(flow, next)}: send over C{flow}; call C{next(status,
        reason)} to give up on it and try the following one.  C{next} is
        C{None} for the last flow: what it answers is final.
    @param none_found: called with no argument when C{flows} is empty.
    """
    flows = list(flows)
    if not flows:
        none_found()
        return

    def step(index: int) -> None:
        flow = flows[index]
        if index == len(flows) - 1:
            attempt(flow, None)
            return

        def next_one(status: int, reason: str) -> None:
            _log.info(
                "{transport} server {remote} unavailable ({status} {reason}); trying the next",
                transport=flow.transport, remote=flow.remote, status=status, reason=reason,
            )
            step(index + 1)

        attempt(flow, next_one)

    step(0)


_log = Logger()
