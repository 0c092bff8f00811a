"""
The proxy's SDP hook: which calls go through the media relay, and the
SDP of those calls rewritten in both directions to point at it.

`MediaRelayPolicy` is consulted by the proxy at five places and nowhere
else: an initial INVITE leaving for a branch (`offer`, which may open a
relay session and answers a `MediaBranch` that rewrites that branch's
responses), the final response to the caller (`concluded`), an in-dialog
request and its responses (`in_dialog`: re-INVITE, UPDATE, PRACK, ACK
with the answer to a late offer, BYE), and a 2xx retransmitted after its
transaction ended (`stray`).  SDP from the caller is rewritten to the
relay's callee-side leg and records where the caller receives; SDP from
the callee the other way round (`communigate.media.relay.relay_description`).

When a call is relayed (`relay_reason` of
`communigate.media.relay_policy`, shared with the PBX's joins; here the
caller is the INVITE's sender and the callee the branch's target) [D]:

- ``nat``: the caller is behind NAT (`behind_nat` of its INVITE) or the
  callee's binding is, unless both are behind the same NAT (the same
  public address), where they reach each other directly;
- ``ipv4-ipv6``: the caller's media address (its SDP, else its source)
  and the callee's signalling address are of different IP versions;
- ``lan-wan``: one side's signalling address is in the LAN IPs and the
  other's is not (Network settings);
- ``requested``: the caller's or the callee's account has the setting
  ``MediaRelay = YES`` (inherited like any account setting, so a domain
  or the whole server can ask for it).

The first that applies names the reason (in that order). Latching
follows `relay_policy.latch_rule`.

Bad SDP [D]: an offer that must be relayed but does not parse gets
``488 Not Acceptable Here`` (the relay cannot point a body it cannot read
at itself, and the call would have no audio); SDP that parses but has no
stream the relay can carry (no RTP m-line with an address: an MSRP
session, a missing ``c=``) passes unchanged and the call proceeds
without a relay.  An answer or re-offer that does not parse passes
unchanged and is logged.  No relay session or no port pair left: the
branch is answered ``500 Media relay unavailable: ...`` (not 503, which
the Signal service turns into a bare 500).

Release: BYE in either direction, a final non-2xx response to the INVITE
(CANCEL ends in 487), a 2xx from a branch that was not relayed, and the
relay's own idle timeout.  Record-Route is on for every initial INVITE
(`proxy_rules.needs_record_route`), so the BYE passes through.
"""

from __future__ import annotations

import attrs
from twisted.logger import Logger

from communigate.directory.errors import DirectoryError
from communigate.media.relay import LegAddress, RelayRefused, Side, names_relay, relay_description
from communigate.media.relay_policy import (
    Party,
    conclude,
    first_address,
    latch_rule,
    leg_address,
    relay_reason,
    session_key,
)
from communigate.media.sdp import SDPError
from communigate.sip.headers import HeaderError, parse_name_addr
from communigate.sip.message import Request
from communigate.sip.transport import Flow

__all__ = ["MediaRefused", "MediaRelayPolicy", "MediaBranch", "Party", "conclude", "relay_reason", "session_key",
           "SETTING"]

#: The account setting that asks for a relay on every call of the account.
SETTING = "MediaRelay"
_WILDCARDS = ("0.0.0.0", "::", "")


class MediaRefused(Exception):
    """The branch cannot go out: answer it C{status} with C{reason}."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _is_sdp(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower() == "application/sdp"


def _tag(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return parse_name_addr(value, name).tag
    except HeaderError:
        return None


_key = session_key


@attrs.define
class _Call:
    """What the hook keeps with a relay session (its C{notes})."""

    caller: Party
    callee: Party
    answered: bool = False


class MediaBranch:
    """
    One INVITE branch that goes through the relay: the SDP of its
    responses (its callee's) is rewritten towards the caller.  The branch
    that answers 2xx becomes the call's callee for the rest of the dialog.
    """

    def __init__(self, policy: MediaRelayPolicy, session, callee: Party) -> None:
        self._policy = policy
        self.session = session
        self.callee = callee

    def response(self, response):
        session = self.session
        if 200 <= response.status < 300 and not session.closed:
            session.notes.answered = True
            session.notes.callee = self.callee
            session.established()
        return self._policy.rewritten(response, session, Side.CALLEE, self.callee)


class MediaRelayPolicy:
    """
    The hook (see the module docstring).

    @param service: the SIP service: its network settings, directory and
        listeners.
    @param relay: the L{communigate.interfaces.IMediaRelay}, or L{None}
        (no relay: every method passes messages through unchanged).
    """

    log = Logger()

    def __init__(self, service, relay) -> None:
        self._service = service
        self.relay = relay

    # -- initial INVITE -----------------------------------------------------

    def offer(self, signal, request, flow: Flow, binding=None):
        """
        C{request} (an initial INVITE for C{signal}, about to leave over
        C{flow} to C{binding}'s contact or a remote server) as it must
        leave, and the L{MediaBranch} for its responses (L{None}: not
        relayed).  Raises L{MediaRefused}.
        """
        relay = self.relay
        if relay is None or signal.method != "INVITE":
            return request, None
        submitter = signal.submitter
        if submitter.protocol not in ("sip", "pbx") or submitter.address is None or (
            request.body and not _is_sdp(request.content_type)
        ):
            return request, None
        caller_tag = _tag(request.headers.get("From"), "From")
        if caller_tag is None or request.call_id is None:
            return request, None
        network = self._service.network.current
        media = first_address(request.body) if request.body else None
        if submitter.protocol == "pbx":
            # A PBX task's transparently bridged call: the offer is its
            # ingress peer's, from the address the submitter names; that
            # peer is behind NAT for media when its SDP names an address
            # that is not routable and not the one it signals from.
            nat = media is not None and media != submitter.address[0] and network.is_not_routable(media)
        else:
            nat = self._caller_nat(request, submitter.address, network)
        caller = Party(submitter.address[0], nat, media)
        callee = Party(flow.remote[0], bool(binding is not None and binding.nat))
        reason = relay_reason(
            caller, callee, network,
            lambda: self._requested(submitter.account) or (binding is not None and self._requested(binding.aor)),
        )
        if reason is None:
            return request, None
        key = _key(request.call_id, caller_tag)
        session = relay.get(key)
        opened = session is None
        if opened:
            try:
                # A leg's IP version is its party's: the caller's media
                # address (its SDP), the callee's signalling address.
                session = relay.open(
                    key,
                    self._leg(caller.media or caller.source, network),
                    self._leg(callee.source, network),
                    reason,
                    f"{signal.from_address} -> {signal.to_address}",
                )
            except RelayRefused as e:
                raise MediaRefused(500, f"Media relay unavailable: {e}") from e
            session.notes = _Call(caller, callee)
        if not request.body:
            return request, MediaBranch(self, session, callee)  # a late offer: SDP in the 2xx and ACK
        try:
            body = relay_description(session, Side.CALLER, request.body, self._latch(caller, network))
        except SDPError as e:
            if opened:
                session.release("failure")
            raise MediaRefused(488, f"Bad SDP: {str(e)[:60]}") from e
        except RelayRefused as e:
            if opened:
                session.release("failure")
            raise MediaRefused(500, f"Media relay unavailable: {e}") from e
        if body is None:
            if opened:
                session.release("no-media")
            return request, None
        return request.with_body(body, request.content_type), MediaBranch(self, session, callee)

    def concluded(self, request, answer) -> None:
        """
        The final response C{answer} (a Signal response) goes back to the
        caller of C{request}: a failure releases the call's relay, and so
        does a success from a branch that was not relayed.
        """
        if self.relay is None or request.method != "INVITE":
            return
        session = self.relay.get(_key(request.call_id, _tag(request.headers.get("From"), "From")))
        if session is None:
            return
        if request.body and names_relay(self.relay, request.body):
            # An inner pass of a call spiralling through this server: the
            # outer pass, which opened the session, decides its fate.
            return
        conclude(session, answer.code)

    # -- inside the dialog ----------------------------------------------------

    def in_dialog(self, signal):
        """
        C{signal} (a request forwarded inside a dialog, or a 2xx ACK) as
        it must leave, and a function rewriting its responses, or L{None}.
        A BYE releases the call's relay.
        """
        if self.relay is None:
            return signal, None
        found = self._session_of(signal.call_id, _tag(signal.header("From"), "From"),
                                 _tag(signal.header("To"), "To"))
        if found is None:
            return signal, None
        session, side = found
        if signal.method == "BYE":
            session.release("bye")
            return signal, None
        if signal.body and _is_sdp(signal.content_type):
            body = self._relayed_body(session, side, signal.body)
            if body is not None:
                signal = attrs.evolve(signal, body=body)
        return signal, lambda response: self.rewritten(response, session, side.other)

    def stray(self, response):
        """A 2xx retransmission passed upstream without its transaction."""
        if self.relay is None or not response.body:
            return response
        found = self._session_of(response.call_id, _tag(response.headers.get("From"), "From"),
                                 _tag(response.headers.get("To"), "To"))
        if found is None:
            return response
        session, request_side = found
        return self.rewritten(response, session, request_side.other)

    # -- SDP ----------------------------------------------------------------------

    def rewritten(self, message, session, side: Side, party: Party | None = None):
        """C{message} (with SDP from C{side}'s party) pointed at the relay."""
        if session.closed or not message.body or not _is_sdp(message.content_type):
            return message
        body = self._relayed_body(session, side, message.body, party)
        return message if body is None else message.with_body(body, message.content_type)

    def _relayed_body(self, session, side: Side, body: bytes, party: Party | None = None) -> bytes | None:
        if party is None:
            notes = session.notes
            party = notes.caller if side is Side.CALLER else notes.callee
        try:
            return relay_description(session, side, body, self._latch(party, self._service.network.current))
        except (SDPError, RelayRefused) as e:
            self.log.info(
                "media relay {key}: SDP from the {side} passed unchanged: {error}",
                key=session.key, side=side.label.lower(), error=e,
            )
            return None

    def _session_of(self, call_id, from_tag, to_tag):
        """The call's session and the side that sent a request with these tags."""
        if call_id is None:
            return None
        for tag, side in ((from_tag, Side.CALLER), (to_tag, Side.CALLEE)):
            if tag is not None:
                session = self.relay.get(_key(call_id, tag))
                if session is not None and not session.closed:
                    return session, side
        return None

    # -- decisions ------------------------------------------------------------------

    def _caller_nat(self, request, source, network) -> bool:
        from communigate.sip.service import behind_nat

        received = Request(request.method, request.uri, request.headers.without_first("Via"))
        try:
            via = received.top_via()
        except HeaderError:
            return False
        if via is None:
            return False
        return behind_nat(received, Flow(via.transport.lower(), ("", 0), tuple(source)), network)

    def _requested(self, account: str | None) -> bool:
        if not account:
            return False
        try:
            value = self._service.context.directory.account_effective_settings(account).get(SETTING, "NO")
        except DirectoryError:
            return False
        return str(value).upper() in ("YES", "TRUE", "1")

    @staticmethod
    def _latch(party: Party, network):
        return latch_rule(party, network)

    def _leg(self, peer: str, network) -> LegAddress:
        """Where the leg facing C{peer} binds, and the address it is shown by."""
        return leg_address(self.relay.settings, peer, network, self._listener_host(":" in peer))

    def _listener_host(self, v6: bool) -> str:
        """The SIP UDP listener's address of that IP version, when it is one."""
        for port in self._service.transport.ports:
            host = port.getHost().host
            if (":" in host) == v6 and host not in _WILDCARDS:
                return host
        return ""
