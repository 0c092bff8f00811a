"""
Transparent bridging, the call's half: a task's call whose media flows to
the peer of the bridged call, not to the task's media channel.

A transparently bridged call has no media channel (its ports are released
[D]: a busy B2BUA would otherwise hold two idle port pairs per call, and
nothing can double the audio); the SDP it sends its peer is the other
peer's, and the SDP its peer sends is passed on to the other call.  The
server never touches a media packet.  What the call needs for that,
beyond a plain call (L{TransparentCall}, a part of
L{communigate.pbx.call.Call}):

  - the peer's last SDP (C{peer_sdp});
  - one SDP origin towards its peer (L{SDPOrigin}): RFC 3264 section 8
    wants every SDP a party sends in a session to keep the C{o=} line of
    its first and raise its version, so the other peer's SDP is sent
    with our C{o=} line and the next version, and so is the channel's own
    offer when the media comes back to it;
  - a re-INVITE without SDP (the peer's 2xx carries its offer; our ACK
    carries the answer, later: L{TransparentCall.reinvite_offerless},
    L{TransparentCall.ack_with}), a re-INVITE with a given offer whose
    answer is returned, not applied (L{TransparentCall.reinvite_with}),
    and the way back to a channel (a new channel whose offer continues
    our origin, re-INVITEd: L{communigate.pbx.bridging}).

The task's half (which re-INVITE goes where, fallbacks, the peer's later
re-INVITEs relayed) is L{communigate.pbx.bridging}.
"""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred, fail

from communigate.pbx.events import CallError

__all__ = ["SDPOrigin", "TransparentCall", "glare_delay", "is_sdp"]

SDP = "application/sdp"
_ORIGIN = re.compile(rb"^o=(\S+) (\d+) (\d+) (\S+ \S+ \S+)", re.MULTILINE)


def is_sdp(content_type: str | None, body: bytes) -> bool:
    return bool(body) and (content_type or SDP).split(";", 1)[0].strip().lower() == SDP


def glare_delay(owns_call_id: bool, draw: float) -> float:
    """
    Seconds to wait before sending a re-INVITE again after a 491 (RFC 3261
    section 14.1): 2.1-4 s when we chose the dialog's Call-ID, else 0-2 s,
    in units of 10 ms.  C{draw} is a random number in [0, 1).
    """
    low, high = (2.1, 4.0) if owns_call_id else (0.0, 2.0)
    steps = round((high - low) / 0.01)
    return low + min(steps, int(draw * (steps + 1))) * 0.01


class SDPOrigin:
    """
    The C{o=} line of the SDP one call sends its peer: the first body
    sent fixes it; a later body keeps it when it is ours with a higher
    version (the channel's own offers) or is the very body sent last, else
    gets it with the next version (the other peer's SDP).  Bodies without an C{o=} line pass.
    """

    def __init__(self) -> None:
        self.fixed: bytes | None = None  # "username sess-id" + " net addr" of the line
        self.version = 0
        self._last: bytes | None = None

    def ours(self, body: bytes) -> bytes:
        found = _ORIGIN.search(body)
        if found is None:
            return body
        user, session, version, rest = found.groups()
        version = int(version)
        fixed = b" ".join((user, session, rest))
        if self.fixed is None or (fixed == self.fixed and (
            version > self.version or (version == self.version and body == self._last)
        )):
            # the first, ours and newer, or the very same again
            self.fixed, self.version, self._last = fixed, version, body
            return body
        self.version += 1
        head, _, tail = self.fixed.partition(b" ")
        session_id, _, net = tail.partition(b" ")
        line = b"o=%s %s %d %s" % (head, session_id, self.version, net)
        self._last = body[: found.start()] + line + body[found.end():]
        return self._last

    def continue_in(self, channel) -> None:
        """
        A new media channel for the same call: its offers continue our
        origin (same session ID, the next versions).
        """
        if self.fixed is None:
            return
        session = self.fixed.split(b" ", 2)[1]
        channel.session_id = int(session)
        channel.session_version = self.version


class TransparentCall:
    """
    The transparent-bridging part of L{communigate.pbx.call.Call} (see the
    module docstring).

    @ivar transparent: whether the media goes to the bridged peer (no
        channel).
    @ivar peer_sdp: the peer's last SDP (offer or answer), or L{None}.
    """

    transparent = False
    peer_sdp: bytes | None = None
    _origin: SDPOrigin | None = None
    _pending_offer: bytes | None = None  # the peer's offer in a 2xx, not answered yet
    relaying = False  # a peer's offer is being answered by the other peer

    def ours(self, body: bytes) -> bytes:
        """
        C{body} (SDP for our peer) with our origin.
        """
        if self._origin is None:
            self._origin = SDPOrigin()
        return self._origin.ours(body)

    def _channel_made(self, channel) -> None:
        if self._origin is not None:
            self._origin.continue_in(channel)

    def go_transparent(self) -> None:
        """
        From now on the media is the bridged peer's: the channel is
        released.
        """
        self.transparent = True
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()

    def _relay_concluded(self, code: int) -> None:
        """
        The final answer to our transparent INVITE: a media relay session
        the SIP side opened for it is released when the call failed or
        was answered by a branch it did not relay (the proxy does this for
        the calls of SIP callers when it answers them).
        """
        relay = getattr(self.task.service.context, "media_relay", None)
        if relay is None or code < 200 or self._placing is None:
            return
        from communigate.sip.media_hook import conclude, session_key

        session = relay.get(session_key(self.leg.call_id, self.leg.local_tag))
        if session is not None and not session.closed:
            conclude(session, code)

    # -- re-INVITEs of a transparent bridge ---------------------------------------

    def reinvite_offerless(self) -> Deferred:
        """
        A re-INVITE without SDP: fires with the offer of the peer's 2xx, not
        acknowledged yet (L{ack_with} carries the answer), or fails with
        L{CallError} (the refusal; a 2xx without SDP is acknowledged and
        fails with 488).
        """
        signal = self.leg.request("INVITE", self.task.submitter, contact=self._contact())
        try:
            d = self._transact(signal)
        except CallError as error:
            return fail(error)

        def answered(answer):
            if not answer.success:
                raise CallError(f"{answer.code} {answer.reason}".strip(), answer.code)
            if not is_sdp(answer.content_type, answer.body):
                self._ack()
                raise CallError("488 No offer in the answer to a re-INVITE without SDP", 488)
            self._acked = None  # the ACK is still to come
            self._pending_offer = answer.body
            self.peer_sdp = answer.body
            return answer.body

        return d.addCallback(answered)

    def ack_with(self, sdp: bytes | None) -> None:
        """
        Acknowledge the 2xx of L{reinvite_offerless} with our answer C{sdp}
        (sent with our origin).
        """
        self._pending_offer = None
        self._acked = self.leg.invite_cseq
        body = b"" if sdp is None else self.ours(sdp)
        try:
            self._send(self.leg.ack(self.task.submitter, body=body, content_type=SDP if body else None))
        except Exception as error:  # a LegError: nowhere to send
            self.log.info("Call {call_id}: no ACK sent: {error}", call_id=self.leg.call_id, error=error)

    def reinvite_with(self, offer: bytes) -> Deferred:
        """
        A re-INVITE offering C{offer} (the other peer's SDP, sent with our
        origin): fires with the peer's answer (acknowledged, not applied to
        any channel) or fails with L{CallError} (the refusal).
        """
        signal = self.leg.request("INVITE", self.task.submitter, body=self.ours(offer), content_type=SDP,
                                  contact=self._contact())
        try:
            d = self._transact(signal)
        except CallError as error:
            return fail(error)

        def answered(answer):
            if not answer.success:
                raise CallError(f"{answer.code} {answer.reason}".strip(), answer.code)
            self._ack()
            if not is_sdp(answer.content_type, answer.body):
                raise CallError("488 No SDP in the answer", 488)
            self.peer_sdp = answer.body
            return answer.body

        return d.addCallback(answered)
