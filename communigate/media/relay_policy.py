"""
Which calls go through the media relay, and where its legs listen: the
rules every module that opens relay sessions shares (the SIP proxy's hook
for calls it forwards, `communigate.pbx.join_relay` for two calls a PBX
bridge joins), kept here so neither has to import the other.

When a call is relayed (`relay_reason`, CommuniGate's rule: a media proxy
is built for LAN↔WAN calls, for remote-NAT↔not-the-same-NAT, for
IPv4↔IPv6, or on request) [D]:

- ``nat``: one party is behind NAT, unless both are behind the same NAT
  (the same public address), where they reach each other directly;
- ``ipv4-ipv6``: the first party's media address (its SDP, else its
  source) and the second's signalling address are of different IP
  versions;
- ``lan-wan``: one side's signalling address is in the LAN IPs and the
  other's is not (Network settings);
- ``requested``: an account asked for it (``MediaRelay = YES``).

The first that applies names the reason (in that order).

A party is latched from anywhere (`latch_rule`) when it is behind NAT,
or when the address its SDP names is not routable (private, LAN or NATed
IPs) and is not the address it signals from; otherwise only from the
host its SDP names.
"""

from __future__ import annotations

import re
import socket

import attrs

from communigate.media.relay import LegAddress

__all__ = ["Party", "conclude", "first_address", "leg_address", "latch_rule", "local_address_towards", "relay_reason",
           "session_key"]

_WILDCARDS = ("0.0.0.0", "::", "")
_CONNECTION = re.compile(rb"^c=IN IP[46] ([^\s/]+)", re.M)


@attrs.frozen
class Party:
    """
    One side of a call as the relay decision sees it: the IP its
    signalling comes from, whether it is behind NAT, and the address its
    SDP names, when known.
    """

    source: str
    nat: bool = False
    media: str | None = None


def _version(address: str | None) -> int | None:
    """4 or 6 for an IP address (as sockets and SDP write them), else None."""
    if not address:
        return None
    if ":" in address:
        return 6
    return 4 if address[-1:].isdigit() and "." in address else None


def relay_reason(caller: Party, callee: Party, network, requested=False) -> str | None:
    """
    Why the call between C{caller} and C{callee} must be relayed (C{nat},
    C{ipv4-ipv6}, C{lan-wan}, C{requested}), or L{None} (see the module
    docstring).  C{network} is the L{communigate.network.NetworkSettings}
    in force; C{requested} a bool, or a callable asked only when nothing
    else calls for a relay (it reads account settings).
    """
    if caller.nat or callee.nat:
        if not (caller.nat and callee.nat and caller.source == callee.source):
            return "nat"
    caller_version = _version(caller.media) or _version(caller.source)
    callee_version = _version(callee.source)
    if caller_version and callee_version and caller_version != callee_version:
        return "ipv4-ipv6"
    if network.is_lan(caller.source) != network.is_lan(callee.source):
        return "lan-wan"
    if requested() if callable(requested) else requested:
        return "requested"
    return None


def latch_rule(party: Party, network):
    """
    C{latch_any(host)} for L{communigate.media.relay.relay_description}:
    whether C{party}, naming C{host} in its SDP, is latched from anywhere.
    """

    def latch_any(host: str) -> bool:
        return party.nat or (host != party.source and network.is_not_routable(host))

    return latch_any


def session_key(call_id: str, caller_tag: str) -> str:
    """The relay session's key for the SIP call C{call_id} from C{caller_tag}."""
    return f"{call_id};{caller_tag}"


def conclude(session, code: int) -> None:
    """
    The final answer C{code} to the call of relay C{session} reached its
    caller: a failure releases the relay, and so does a success from a
    branch that was not relayed (the opener keeps C{answered} in the
    session's C{notes}).
    """
    if code >= 300:
        session.release("cancel" if code == 487 else "failure")
    elif not session.notes.answered:
        session.release("unused")


def first_address(body: bytes | None) -> str | None:
    """The first connection address of an SDP body, read cheaply (no parse)."""
    found = _CONNECTION.search(body) if body else None
    return None if found is None else found.group(1).decode("ascii", "replace")


def local_address_towards(peer: str) -> str | None:
    """
    The address of our interface that packets to C{peer} leave from (a
    connected UDP socket's name; nothing is sent), or L{None}.
    """
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((peer, 9))
            return probe.getsockname()[0]
    except OSError:
        return None


def leg_address(settings, peer: str, network, default_host: str = "") -> LegAddress:
    """
    Where the relay leg facing C{peer} binds, and the address it is shown
    by: the media server settings' address of C{peer}'s IP version, else
    C{default_host} (the opener's own listening address of that version,
    when it has one); shown as the Network settings' WAN address for
    C{peer} when there is one, else as the bound address, else as our
    interface towards C{peer}.
    """
    v6 = ":" in peer
    bind = (settings.ipv6_address if v6 else settings.address) or default_host
    wan = network.wan_address_for(peer)
    if wan:
        advertise = wan
    elif bind not in _WILDCARDS:
        advertise = bind
    else:
        advertise = local_address_towards(peer) or ("::1" if v6 else "127.0.0.1")
    return LegAddress(bind or ("::" if v6 else "0.0.0.0"), advertise)
