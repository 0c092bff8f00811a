"""
The media relay for two connected calls a transparent bridge joins.

A call a task places for a transparent bridge carries its caller's own
offer, so the SIP proxy judges it like the caller's call and relays it
when the two peers need that (`communigate.sip.media_hook`).  Two calls
that were each connected to a task's channel first and are then joined
by re-INVITE never pass that judgement: their peers talked to our
channel, which every peer can reach, and now must reach each other.  A
NATed phone's private address, a LAN phone and a WAN gateway, an IPv4 and
an IPv6 peer would have no audio.  So the join asks the same rule
(`communigate.media.relay_policy.relay_reason`) about the two peers and,
when it says so, opens a relay session of its own; every SDP that crosses
from one call's peer to the other's is pointed at it (L{JoinedMedia}).

What the PBX knows of a peer (L{peer_party}): an incoming call's peer
signals from the INVITE's source; a peer we called is known by its
Contact's host (by its SDP's address when the Contact names a host
name).  A peer is taken to be behind NAT for media when its SDP names an
address that is not routable and is not the one it signals from, the
rule the SIP hook applies to a task's own calls.  A call the SIP proxy
already relays (a call we placed to a NATed phone) needs nothing more:
its in-dialog SDP is rewritten by the proxy, so no join relay is opened
then.

The session lives as long as the transparent bridge: it is released when
the bridge breaks, when either call ends, and by the relay's idle timer.
"""

from __future__ import annotations

import ipaddress

from twisted.logger import Logger

from communigate.directory.errors import DirectoryError
from communigate.media.relay import RelayRefused, Side, relay_description
from communigate.media.relay_policy import (
    Party,
    first_address,
    latch_rule,
    leg_address,
    relay_reason,
    session_key,
)
from communigate.media.sdp import SDPError
from communigate.network import NetworkSettings

__all__ = ["JoinedMedia", "join_media", "peer_party"]

#: The account setting asking for the relay on every call (as in SIP).
SETTING = "MediaRelay"

log = Logger()


def _host_of(uri: str | None) -> str | None:
    """The IP literal of a SIP URI's host part, else L{None}."""
    if not uri:
        return None
    rest = uri.split(":", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1].strip("<>")
    if rest.startswith("["):
        host = rest[1:].split("]", 1)[0]
    else:
        host = rest.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def peer_party(call, network) -> Party | None:
    """
    C{call}'s peer as the relay rule sees it (see the module docstring),
    or L{None} when nothing about it is known.
    """
    leg = call.leg
    media = first_address(call.peer_sdp)
    source = None
    if leg.incoming and leg.invite is not None and leg.invite.submitter.address is not None:
        source = leg.invite.submitter.address[0]
    if source is None:
        source = _host_of(leg.remote_target) or media
    if source is None:
        return None
    nat = media is not None and media != source and network.is_not_routable(media)
    return Party(source, nat, media)


def _account_of(call) -> str | None:
    """The account the peer of C{call} authenticated as (incoming calls)."""
    invite = call.leg.invite
    if call.leg.incoming and invite is not None:
        return invite.submitter.account
    return None


def _relayed_by_sip(relay, call) -> bool:
    """Whether the SIP proxy relays C{call} already (its key: the caller's tag)."""
    leg = call.leg
    caller_tag = leg.remote_tag if leg.incoming else leg.local_tag
    if caller_tag is None:
        return False
    session = relay.get(session_key(leg.call_id, caller_tag))
    return session is not None and not session.closed


class JoinedMedia:
    """
    The relay session of one transparent join: C{first}'s peer is its
    caller side, C{second}'s its callee side.  Each call knows it as
    C{joined_media} while the join lasts.
    """

    def __init__(self, session, first, second, parties: tuple[Party, Party], network) -> None:
        self.session = session
        self._sides = [[first, Side.CALLER, parties[0]], [second, Side.CALLEE, parties[1]]]
        self._network = network
        first.joined_media = second.joined_media = self

    @property
    def closed(self) -> bool:
        return self.session.closed

    def toward(self, call, sdp: bytes) -> bytes:
        """
        C{sdp}, written by the other call's peer, as C{call}'s peer must
        get it: pointed at the relay.  SDP the relay cannot read or carry
        passes unchanged (and is logged): the bridge goes on as it would
        without a relay.
        """
        if self.session.closed or not sdp:
            return sdp
        found = [entry for entry in self._sides if entry[0] is not call]
        if len(found) != 1:
            return sdp
        _, side, party = found[0]
        try:
            body = relay_description(self.session, side, sdp, latch_rule(party, self._network))
        except (SDPError, RelayRefused) as error:
            log.info("media relay {key}: SDP from the {side} passed unchanged: {error}",
                     key=self.session.key, side=side.label.lower(), error=error)
            return sdp
        return sdp if body is None else body

    def hand_over(self, old, new) -> None:
        """
        C{new} (a transfer's call) takes C{old}'s place in the join: its
        peer's SDP crosses through the same relay leg, which follows it to
        its new address.
        """
        for entry in self._sides:
            if entry[0] is old:
                entry[0] = new
                new.joined_media, old.joined_media = self, None

    def answered(self) -> None:
        """The join's offer was answered: the relay's idle timer counts from now."""
        if not self.session.closed:
            self.session.established()

    def release(self, reason: str) -> None:
        for entry in self._sides:
            if entry[0].joined_media is self:
                entry[0].joined_media = None
        self.session.release(reason)


def _requested(directory, account: str | None) -> bool:
    if not account or directory is None:
        return False
    try:
        value = directory.account_effective_settings(account).get(SETTING, "NO")
    except DirectoryError:
        return False
    return str(value).upper() in ("YES", "TRUE", "1")


def _leg(relay, peer: str, network, interface: str):
    """The relay leg facing C{peer}, bound by default where our channels are (same IP version)."""
    default = interface if interface and (":" in interface) == (":" in peer) else ""
    return leg_address(relay.settings, peer, network, default)


def join_media(service, first, second) -> JoinedMedia | None:
    """
    A relay session for joining connected calls C{first} (whose peer's
    offer crosses first) and C{second}, when their peers need one and
    neither call is relayed already; L{None} otherwise (and when the relay
    is refused: the join goes on directly, as it would have without one,
    and the refusal is logged).
    """
    context = service.context
    relay = getattr(context, "media_relay", None)
    if relay is None or _relayed_by_sip(relay, first) or _relayed_by_sip(relay, second):
        return None
    configuration = getattr(context, "network", None)
    network = configuration.current if configuration is not None else NetworkSettings()
    parties = peer_party(first, network), peer_party(second, network)
    if None in parties:
        return None
    directory = getattr(context, "directory", None)
    reason = relay_reason(
        parties[0], parties[1], network,
        lambda: any(_requested(directory, _account_of(call)) for call in (first, second)),
    )
    if reason is None:
        return None
    interface = service.media.interface
    key = f"join;{first.leg.call_id};{second.leg.call_id}"
    try:
        session = relay.open(
            key,
            _leg(relay, parties[0].media or parties[0].source, network, interface),
            _leg(relay, parties[1].source, network, interface),
            reason,
            f"bridge {first.leg.remote} <-> {second.leg.remote}",
        )
    except RelayRefused as error:
        log.info("No media relay for a bridge of {first} and {second}: {error}",
                 first=first.leg.call_id, second=second.leg.call_id, error=error)
        return None
    return JoinedMedia(session, first, second, parties, network)
