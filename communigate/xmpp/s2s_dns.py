"""
Where a remote XMPP domain's server is (RFC 6120 section 3.2): the SRV
records of C{_xmpp-server._tcp.<domain>} in RFC 2782 order, each target's
A then AAAA addresses; without SRV records the domain's own addresses on
port 5269.

  - A lone SRV record whose target is C{.} says the domain offers no
    server-to-server service: no address, and no fallback (RFC 2782).
  - An SRV answer that is an error (server failure, malformed, timeout)
    counts as no SRV records: the fallback is tried, as RFC 6120 section
    3.2.1 does for a failed lookup.
  - Addresses the SRV answer carries in its additional section are used
    without asking again.
  - A domain that is an IP address literal is connected to directly.

The lookups go through the server's non-blocking L{DNSClient} (its cache
honours the TTLs).
"""

from __future__ import annotations

import ipaddress

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from communigate.dnsclient import DNSError, DNSTimeout, order_srv
from communigate.xmpp.s2s import DEFAULT_PORT, S2SFailure

#: The SRV service label of server-to-server XMPP.
SRV_PREFIX = "_xmpp-server._tcp"

#: The most addresses one domain yields (targets times addresses).
MAX_ADDRESSES = 16

log = Logger()


def locate(dns_client, domain: str, random) -> Deferred:
    """
    The C{(ip, port)} pairs to try for C{domain}, in order.

    @param dns_client: a L{communigate.dnsclient.DNSClient}.
    @param random: the source for SRV weighted selection (C{randint}).
    @return: a Deferred firing with a non-empty list, or failing with
        L{S2SFailure} (C{remote-server-not-found}, or
        C{remote-server-timeout} when DNS did not answer).
    """
    return Deferred.fromCoroutine(_locate(dns_client, domain, random))


def _literal(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


async def _locate(dns_client, domain: str, random) -> list[tuple[str, int]]:
    literal = _literal(domain)
    if literal is not None:
        return [(literal, DEFAULT_PORT)]
    timeouts = []
    try:
        answer = await dns_client.query(f"{SRV_PREFIX}.{domain}", "SRV")
    except DNSTimeout as e:
        log.info("XMPP s2s: SRV of {domain} timed out ({error}); trying its addresses", domain=domain, error=str(e))
        answer = None
        timeouts.append(e)
    except DNSError as e:
        log.info("XMPP s2s: SRV of {domain} failed ({error}); trying its addresses", domain=domain, error=str(e))
        answer = None
    records = list(answer.records) if answer is not None else []
    if len(records) == 1 and records[0].target.to_text(omit_final_dot=True) in ("", "."):
        raise S2SFailure(
            "remote-server-not-found", f"{domain} offers no server-to-server XMPP service (SRV target '.')"
        )
    if records:
        targets = [
            (record.target.to_text(omit_final_dot=True).lower(), record.port)
            for record in order_srv(records, random)
            if record.target.to_text(omit_final_dot=True) not in ("", ".")
        ]
    else:
        targets = [(domain, DEFAULT_PORT)]
    found: list[tuple[str, int]] = []
    for host, port in targets:
        for address in await _addresses(dns_client, host, answer, timeouts):
            if (address, port) not in found:
                found.append((address, port))
        if len(found) >= MAX_ADDRESSES:
            break
    if not found:
        if timeouts:
            raise S2SFailure("remote-server-timeout", f"DNS did not answer for {domain}")
        raise S2SFailure("remote-server-not-found", f"{domain} has no server address in DNS")
    return found[:MAX_ADDRESSES]


async def _addresses(dns_client, host: str, srv_answer, timeouts: list) -> list[str]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    addresses = []
    for rdtype in ("A", "AAAA"):
        glue = srv_answer.additional_records(host, rdtype) if srv_answer is not None else ()
        if glue:
            addresses.extend(record.address for record in glue)
            continue
        try:
            answer = await dns_client.query(host, rdtype)
        except DNSTimeout as e:
            timeouts.append(e)
            continue
        except DNSError as e:
            log.info("XMPP s2s: {rdtype} of {host} failed: {error}", rdtype=rdtype, host=host, error=str(e))
            continue
        addresses.extend(record.address for record in answer.records)
    return addresses
