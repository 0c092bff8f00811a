"""
Transparent bridging: a task's call whose media flows to the peer of the
bridged call, not to the task's media channel.

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
    our origin, re-INVITEd).

The task's half (L{TransparentBridging}, a part of the bridging verbs in
L{communigate.pbx.bridging}): which re-INVITE goes where, fallbacks, the
peers' later offers relayed, the media coming back.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail

from communigate.media.offer_answer import NoCommonCodec
from communigate.media.relay_policy import conclude, session_key
from communigate.media.sdp import SDPError
from communigate.pbx.channel import ChannelError
from communigate.pbx.events import CallError, CallState
from communigate.pbx.join_relay import join_media
from communigate.signal.model import response

if TYPE_CHECKING:
    from communigate.pbx.task import Task

__all__ = ["SDPOrigin", "TransparentBridging", "TransparentCall", "glare_delay", "is_sdp"]

SDP = "application/sdp"
#: Seconds between looks for the ACK of our 200 before a join's re-INVITE
#: (an unacknowledged 200 hangs the call up after 64*T1 anyway).
_ACK_WAIT = 0.05
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
    fell_back = False  # placed again with our own offer after the callee's 488
    may_fall_back = True  # whether a 488 to the bridged offer may do that
    ack_goes_to = None  # the task whose peer waits for the answer our peer's ACK brings
    awaiting_ack = False  # our 200 to the peer's INVITE is not acknowledged yet
    joined_media = None  # the media relay of our join (communigate.pbx.join_relay), if any

    @property
    def connected(self) -> bool:
        return self.state == CallState.CONNECTED

    def ours(self, body: bytes) -> bytes:
        """
        C{body} (SDP for our peer) with our origin.
        """
        if self._origin is None:
            self._origin = SDPOrigin()
        return self._origin.ours(body)

    def from_bridge(self, sdp: bytes | None) -> bytes | None:
        """
        C{sdp} from the bridged peer as our peer must get it: pointed at
        the media relay of our join when there is one.
        """
        joined = self.joined_media
        if joined is None or sdp is None:
            return sdp
        return joined.toward(self, sdp)

    def release_joined_media(self, reason: str) -> None:
        """The bridge is over: the relay of our join (both sides) is released."""
        joined = self.joined_media
        if joined is not None:
            joined.release(reason)

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
            # A prompt or a recording of the task's stops (play_file returns
            # False, record what it had, none); the media verbs raise from
            # now on until the media comes back.
            self.task._interrupt()
            channel.close()

    def _offer_refused(self) -> bool:
        """
        The callee refused the bridged peer's offer we placed the call with
        (488): place it again, same Call-ID and tag, with our channel's
        offer (the bridge falls back to simple, which transcodes between
        the G.711 laws).  Whether we did.
        """
        if not self.transparent or self._placing is None or self.fell_back or not self.may_fall_back:
            return False
        try:
            offer = self.ours(self._new_channel().make_offer())
        except ChannelError:
            return False
        self.log.info("Call {call_id}: the callee refused the bridged offer; placing it with our own",
                      call_id=self.leg.call_id)
        self.transparent = False
        self.fell_back = True
        self.peer_sdp = None
        destination, submitter, headers, lifetime, _ = self._placing
        self._placing = (destination, submitter, headers, lifetime, offer)
        self._submit(())
        return True

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

        def answered(answer):
            if not is_sdp(answer.content_type, answer.body):
                self._ack()
                raise CallError("488 No offer in the answer to a re-INVITE without SDP", 488)
            self._acked = None  # the ACK is still to come
            self._pending_offer = answer.body
            self.peer_sdp = answer.body
            return answer.body

        return self._accepted(signal).addCallback(answered)

    def ack_with(self, sdp: bytes | None) -> None:
        """
        Acknowledge the 2xx of L{reinvite_offerless} with our answer C{sdp}
        (sent with our origin).
        """
        self._pending_offer = None
        self._ack(b"" if sdp is None else self.ours(sdp))

    def reinvite_with(self, offer: bytes) -> Deferred:
        """
        A re-INVITE offering C{offer} (the other peer's SDP, sent with our
        origin): fires with the peer's answer (acknowledged, not applied to
        any channel) or fails with L{CallError} (the refusal).
        """
        signal = self.leg.request("INVITE", self.task.submitter, body=self.ours(offer), content_type=SDP,
                                  contact=self._contact())

        def answered(answer):
            self._ack()
            if not is_sdp(answer.content_type, answer.body):
                raise CallError("488 No SDP in the answer", 488)
            self.peer_sdp = answer.body
            return answer.body

        return self._accepted(signal).addCallback(answered)

    def _accepted(self, signal) -> Deferred:
        """
        Send re-INVITE C{signal}: fires with the peer's 2xx, or fails with
        L{CallError} (its refusal, or ours when a request of ours is out).
        """
        try:
            d = self._transact(signal)
        except CallError as error:
            return fail(error)

        def succeeded(answer):
            if not answer.success:
                raise CallError(f"{answer.code} {answer.reason}".strip(), answer.code)
            return answer

        return d.addCallback(succeeded)


class TransparentBridging:
    """
    The transparent exchanges of a task's bridge, a part of
    L{communigate.pbx.bridging.BridgeVerbs} (so of the task): joining two
    connected calls, a peer's later offers answered by the other peer,
    and the media coming back to the channels when the bridge ends.  Each
    step runs in the turn of the task whose call it touches; the tasks
    hand each other the next step through C{later}.
    """

    def _join(self, other: Task, attempt: int) -> None:
        """
        Join our connected call with C{other}'s transparently (RFC 3264 by
        re-INVITE): a re-INVITE without SDP to our peer, whose 2xx carries
        its offer; that offer re-INVITEd to the other peer
        (L{_join_offer}); its answer in our peer's ACK (L{_join_answered}).
        A refusal falls back to simple bridging (L{_join_refused}); a 491
        is tried again once after RFC 3261 14.1's delay.
        """
        call = self.call
        if call.awaiting_ack:
            # We have just answered our peer: a re-INVITE before its ACK
            # would meet an INVITE transaction still open (RFC 3261 14.1).
            self.service.clock.callLater(_ACK_WAIT, self.later, self._join_after_ack, other, attempt)
            return
        d = call.reinvite_offerless()

        def offered(offer):
            if not self._bridge_wanted(other):
                call.ack_with(None if call.channel is None else self._channel_answer(call, offer))
                return
            if other.call is None:
                call.ack_with(None if call.channel is None else self._channel_answer(call, offer))
                self._wake(None, "bridge", error=CallError("the other task has no media"))
                return
            joined = join_media(self.service, call, other.call)
            other.later(other._join_offer, self, offer if joined is None else joined.toward(other.call, offer))

        def refused(failure):
            failure.trap(CallError)
            error = failure.value
            if error.code == 491 and attempt == 1 and self._bridge_wanted(other):
                self._after_glare(call, self._join_again, other)
                return
            self._join_fallback(other, error)

        d.addCallbacks(offered, refused)

    def _join_after_ack(self, other: Task, attempt: int) -> None:
        if self._bridge_wanted(other) and self.call is not None and self.call.connected:
            self._join(other, attempt)

    def _join_again(self, other: Task) -> None:
        if self._bridge_wanted(other) and self.call is not None and self.call.connected:
            self._join(other, attempt=2)

    def _after_glare(self, call, fn, *args) -> None:
        delay = glare_delay(not call.leg.incoming, random.random())
        self.service.clock.callLater(delay, self.later, fn, *args)

    @staticmethod
    def _channel_answer(call, offer: bytes) -> bytes | None:
        try:
            return call.channel.answer_offer(offer)
        except (NoCommonCodec, SDPError, ChannelError) as error:
            call.log.info("Call {call_id}: our channel cannot answer {error}", call_id=call.leg.call_id, error=error)
            return None

    def _join_fallback(self, other: Task, error: CallError) -> None:
        """
        The transparent join failed before our peer's offer went anywhere:
        bridge simply when both channels are there.
        """
        if self.call is not None:
            self.call.release_joined_media("bridge refused")
        if not self._bridge_wanted(other):
            return
        call, theirs = self.call, other.call
        if call is None or call.channel is None or theirs is None or theirs.channel is None:
            other.later(other._bridge_broken, self)
            self._wake(None, "bridge", error=error if call is None else CallError("the other task has no media"))
            return
        self.log.info("Task {id}: transparent bridge refused ({error}); bridging through the channels",
                      id=self.id, error=error)
        call.channel.bridge_to(theirs.channel)
        self._bridge_formed(other, "fallback")

    def _join_offer(self, starter: Task, offer: bytes) -> None:
        """
        (The accepting side.)  Offer the starter's peer's SDP to our peer.
        """
        call = self.call
        if self.bridge is not starter or call is None or not call.connected:
            starter.later(starter._join_refused, self, offer, CallError("disconnected"))
            return

        def answered(sdp):
            call.go_transparent()
            if self.bridge is not starter:
                self._media_back_later()
            starter.later(starter._join_answered, self, sdp)

        def refused(failure):
            failure.trap(CallError)
            starter.later(starter._join_refused, self, offer, failure.value)

        call.reinvite_with(offer).addCallbacks(answered, refused)

    def _join_answered(self, other: Task, sdp: bytes) -> None:
        call = self.call
        if call is None or not call.is_live:
            # our peer hung up meanwhile; the other side gets its media back
            if other.bridge is self:
                other.later(other._bridge_broken, self)
            return
        call.ack_with(call.from_bridge(sdp))
        if call.joined_media is not None:
            call.joined_media.answered()
        call.go_transparent()
        if not self._bridge_wanted(other):
            self._media_back_later()
            return
        self._bridge_formed(other, "transparent")

    def _join_refused(self, other: Task, offer: bytes, error: CallError) -> None:
        """
        The other peer refused our peer's offer: our channel answers it in
        the ACK, and the bridge falls back to simple (or fails).
        """
        call = self.call
        if call is None or not call.is_live:
            return
        if call.joined_media is not None:
            offer = call.peer_sdp or offer  # our peer's own, not the relay's rewrite
            call.release_joined_media("bridge refused")
        answer = None if call.channel is None else self._channel_answer(call, offer)
        call.ack_with(answer)
        if answer is None:
            call.hang_up(488, "No usable media")
            self._call_ended(call, "no usable media")
            return
        self._join_fallback(other, error)

    def _peer_offer(self, call, signal, responder, expect_ack: bool) -> None:
        """
        Our transparently bridged peer sent an offer (re-INVITE, UPDATE):
        the other peer answers it (by re-INVITE), and its answer is ours.
        A peer re-INVITE without SDP gets the other peer's last SDP as our
        offer.
        """
        other = self.bridge
        if other is None or other.ended:
            # The bridge is gone and the media not back yet: our channel answers.
            call.transparent = False
            call.release_joined_media("bridge ended")
            try:
                call._new_channel()
            except ChannelError:
                responder.final(response(480, "No media port"))
                return
            call._answer_offer(signal, responder, expect_ack)
            return
        if not is_sdp(signal.content_type, signal.body):
            if not expect_ack:  # an UPDATE without SDP: nothing to negotiate
                responder.final(call.leg.answer(200, "OK", contact=call._contact()))
                return
            # A re-INVITE without SDP: the other peer's fresh offer (its 2xx
            # to our offerless re-INVITE) is ours; the answer in our peer's
            # ACK goes back in the other peer's ACK.
            call.relaying = True

            def offered(code, reason, sdp):
                self.later(self._peer_offerless_answered, call, responder, other, code, reason, sdp)

            other.later(other._bridged_offerless, self, offered)
            return
        call.relaying = True
        offer = signal.body

        def reply(code, reason, sdp):
            self.later(self._peer_offer_answered, call, responder, offer, code, reason, sdp)

        other.later(other._bridged_offer, self, offer, reply)

    def _bridged_offer(self, origin: Task, offer: bytes, reply) -> None:
        call = self.call
        if self.bridge is not origin or call is None or not call.transparent or not call.connected:
            reply(491, "Request Pending", None)
            return
        def refused(failure):
            failure.trap(CallError)
            error = failure.value
            reply(error.code or 500, str(error)[4:] if error.code else str(error), None)

        call.reinvite_with(call.from_bridge(offer)).addCallbacks(lambda sdp: reply(200, "OK", sdp), refused)

    def _bridged_offerless(self, origin: Task, reply) -> None:
        call = self.call
        if self.bridge is not origin or call is None or not call.transparent or not call.connected:
            reply(491, "Request Pending", None)
            return

        def refused(failure):
            failure.trap(CallError)
            error = failure.value
            reply(error.code or 500, str(error)[4:] if error.code else str(error), None)

        call.reinvite_offerless().addCallbacks(lambda sdp: reply(200, "OK", sdp), refused)

    def _peer_offerless_answered(self, call, responder, other: Task, code: int, reason, sdp) -> None:
        call.relaying = False
        if not call.is_live or code >= 300 or sdp is None:
            if code < 300:
                other.later(other._bridged_ack, None)
            if call.is_live:
                responder.final(response(code if code >= 300 else 500, reason))
            return
        call.ack_goes_to = other
        responder.final(call.leg.answer(200, "OK", body=call.ours(call.from_bridge(sdp)), content_type=SDP,
                                        contact=call._contact()))

    def _peer_ack_answer(self, call, sdp: bytes | None) -> None:
        """
        Our peer's ACK answered the other peer's offer we passed on: the
        other peer's ACK carries it.
        """
        other, call.ack_goes_to = call.ack_goes_to, None
        if other is not None:
            other.later(other._bridged_ack, sdp)

    def _bridged_ack(self, sdp: bytes | None) -> None:
        call = self.call
        if call is not None and call.is_live and call._pending_offer is not None:
            call.ack_with(call.from_bridge(sdp))

    def _peer_offer_answered(self, call, responder, offer: bytes, code: int, reason, sdp) -> None:
        from communigate.pbx.transparent import SDP
        call.relaying = False
        if not call.is_live:
            return
        if code >= 300 or sdp is None:
            responder.final(response(code if code >= 300 else 500, reason))
            return
        call.peer_sdp = offer
        responder.final(call.leg.answer(200, "OK", body=call.ours(call.from_bridge(sdp)), content_type=SDP,
                                        contact=call._contact()))

    def _turn_simple(self, other: Task) -> None:
        """
        (The far side of a transparent bridge whose other call was taken
        over by a party the far peer would not exchange SDP with:
        L{communigate.pbx.transparent_transfers}.)  The bridge with
        C{other} goes on through the channels: ours comes back by
        re-INVITE and is joined to the other call's channel.
        """
        call, theirs = self.call, other.call
        if self.bridge is not other or call is None or not call.is_live or not call.connected:
            return
        if theirs is None or theirs.channel is None:
            return
        if call.transparent and not self._take_media_back(call, "for a simple bridge"):
            return
        call.channel.bridge_to(theirs.channel)
        self.service.bridges["fallback"] = self.service.bridges.get("fallback", 0) + 1

    def _media_back_later(self) -> None:
        """
        The bridge is gone: a transparent call of ours gets its own media
        back in the task's next turn (a program that hangs up on
        C{BreakBridge} spares the peer a re-INVITE), or at once when the
        program asks for media first (L{_media_back_now}).
        """
        call = self.call
        if call is not None and call.transparent:
            self.later(self._media_back_now, call)

    def _media_back_now(self, call) -> None:
        if call is not self.call or not call.is_live or not call.transparent or self.bridge is not None:
            return
        if not call.connected:
            return
        self._take_media_back(call, "to take the call back")

    def _take_media_back(self, call, purpose: str) -> bool:
        """
        A new channel for transparent C{call}, its peer brought to it: our
        peer's offer still waiting for its answer (in a 2xx) is answered by
        the channel in the ACK, else the peer is re-INVITEd with the
        channel's offer.  False when the call had to be hung up (no port
        pair free, no usable media).
        """
        call.transparent = False
        call.release_joined_media("bridge ended")
        try:
            call._new_channel()
        except ChannelError as error:  # no port pair free
            self.log.info("Task {id}: no media channel {purpose}: {error}", id=self.id, purpose=purpose, error=error)
            call.hang_up(480, "No media port")
            self._call_ended(call, "no media")
            return False
        pending = call._pending_offer
        if pending is None:
            self._offer_own_media(call, attempt=1)
            return True
        answer = self._channel_answer(call, pending)
        call.ack_with(answer)
        if answer is None:
            call.hang_up(488, "No usable media")
            self._call_ended(call, "no media")
            return False
        return True

    def _offer_own_media(self, call, attempt: int) -> None:
        """
        Re-INVITE our peer with our channel's own offer (after a bridge);
        a 491, or a re-INVITE of ours still out, waits RFC 3261 14.1's
        delay once; a refusal hangs up (a call without media is no call).
        """
        if call is not self.call or not call.is_live:
            return

        def refused(error):
            if call is not self.call or not call.is_live:
                return
            if error.code == 491 and attempt == 1:
                self._after_glare(call, self._offer_own_media, call, 2)
                return
            self.log.info("Task {id}: the peer refused our media back ({error}); hanging up",
                          id=self.id, error=error)
            call.hang_up(488, "No usable media")
            self._call_ended(call, "no media")

        try:
            d = call.reinvite("sendrecv")
        except CallError as error:
            refused(error)
            return
        d.addErrback(lambda failure: refused(failure.value) if failure.check(CallError) else failure)
