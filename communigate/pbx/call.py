"""
The signalling and media of one call of a task.

A L{Call} joins a L{communigate.pbx.leg.CallLeg} (the dialog) and a
L{communigate.pbx.channel.MediaChannel} (the RTP endpoint) and knows the
SIP-level rules of a user agent:

  - answering: the channel answers the INVITE's SDP offer (488 without a
    common codec); an INVITE without SDP gets our offer in the 200 and the
    answer must come in the ACK; a 2xx is registered with the dialog
    table, whose carrier retransmits it until the ACK;
  - placing: our offer goes in the INVITE, submitted to the Signal
    service like any other Signal; a 18x with SDP starts early media, the
    2xx makes the dialog and is acknowledged at once (again whenever it is
    retransmitted); a 2xx that comes after we gave up is acknowledged and
    hung up (BYE);
  - inside the dialog: our own re-INVITE holds and unholds the peer, our
    BYE hangs up, our REFER transfers; the peer's requests are
    L{communigate.pbx.peer_requests.PeerRequests}'s, a part of the call;
  - replaced: an INVITE with C{Replaces} naming this call's dialog takes
    its place with its channel (L{communigate.pbx.replaces}).

Everything here runs inside the task's handler (the task posts every
outside input to itself first), so a L{Call} never sees two inputs at
once.  It reports to its task through C{task._call_*} methods.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from communigate.interfaces import IDialogOwner, IForkingResponder, IResponder
from communigate.media.offer_answer import NoCommonCodec
from communigate.media.sdp import SDPError
from communigate.pbx.channel import ChannelError
from communigate.pbx.events import CallError, CallState
from communigate.pbx.leg import CallLeg, LegError
from communigate.pbx.records import report_call
from communigate.pbx.peer_requests import PeerRequests
from communigate.pbx.reliable import ReliableCall
from communigate.pbx.transparent import TransparentCall, is_sdp
from communigate.signal.model import Response, response

__all__ = ["Call", "CallState", "ICallOwner"]

SDP = "application/sdp"


def error_text(answer: Response) -> str:
    return f"{answer.code} {answer.reason}".strip()


@implementer(IResponder)
class _Answers:
    """
    The responses to a request the call sent, handed back through the
    task's queue.
    """

    def __init__(self, task, on_final, on_provisional=None) -> None:
        self._task = task
        self._on_final = on_final
        self._on_provisional = on_provisional

    def provisional(self, answer) -> None:
        if self._on_provisional is not None:
            self._task.later(self._on_provisional, answer)

    def final(self, answer) -> None:
        self._task.later(self._on_final, answer)


def _ignored(answer) -> None:
    pass


class ICallOwner(Interface):
    """
    What a L{Call} asks of its C{task}: the task that owns it
    (L{communigate.pbx.task.Task}), or for a while something standing in
    for the task that hears the call's reports first (a transfer the
    server carries out, L{communigate.pbx.refer}).  The underscored
    methods are the call's reports and requests, not verbs for programs.
    """

    id = Attribute("The task's ID (for logs and call records).")
    account = Attribute("The account the task runs as.")
    service = Attribute("The PBX service (its clock, dialogs, media and records).")
    submitter = Attribute("The Submitter the task's Signals carry.")
    ended = Attribute("Whether the task has ended.")

    def later(fn, *args):
        """Run C{fn(*args)} in the task's next turn (all call input goes through here)."""

    def signal_option(name, value=None):
        """The task's signal option C{name} (CG/PL SignalOption)."""

    def _make_channel():
        """A new media channel for a call of the task (ChannelError: no port pair)."""

    def _interrupt():
        """The call's media is going away: a playing prompt or a recording stops."""

    def _dtmf_received(key, method):
        """The peer pressed C{key} (C{rfc4733}, C{inband} or C{info})."""

    def _peer_offer(call, signal, responder, expect_ack):
        """A transparently bridged call's peer sent an offer for the other peer to answer."""

    def _peer_ack_answer(call, sdp):
        """The peer's ACK answered the other peer's offer (transparent bridge)."""

    def _call_provisioned(call, answer):
        """A call being placed got a provisional response."""

    def _call_completed(call, error):
        """A call being placed was answered (C{error} L{None}) or failed."""

    def _call_ended(call, reason):
        """A call ended (BYE, CANCEL, failure)."""

    def _call_transferred(call):
        """A call was taken over (Replaces) or transferred away."""

    def _call_info(call, info):
        """The peer sent an INFO that is not a key press (C{info}: CallInfo's parameter)."""


@implementer(IDialogOwner)
class _Owner:
    """
    The call as the dialog table sees it: every input goes through the
    task's queue first.
    """

    def __init__(self, call: Call) -> None:
        self._call = call

    def request(self, signal, responder) -> None:
        self._call.task.later(self._call.peer_request, signal, responder)

    def answer_repeated(self, answer) -> None:
        self._call.task.later(self._call.answer_repeated, answer)

    def unacknowledged(self) -> None:
        self._call.task.later(self._call.unacknowledged)

    def replace(self, signal, replaces, responder) -> None:
        from communigate.pbx.replaces import take_over

        self._call.task.later(take_over, self._call, signal, replaces, responder)


class Call(PeerRequests, ReliableCall, TransparentCall):
    """
    One call of a task (incoming or outgoing).  Its transparent-bridging
    part (no channel; SDP exchanged with the bridged call's peer) is
    L{TransparentCall}.

    @ivar state: a L{CallState} value.
    @ivar channel: the media channel, once media was negotiated or offered.
    @ivar end_reason: why it ended, once it has.
    @ivar started_at, answered_at: reactor seconds (the call record's).
    @ivar final_code: the final response to the INVITE, once there is one.
    @ivar credentials: C{(name, password)} answering one digest challenge
        to our INVITE, or L{None}.
    """

    log = Logger()

    def __init__(self, task, leg: CallLeg, *, responder=None, credentials=None) -> None:
        self.task = task
        self.leg = leg
        self.responder = responder
        self.state = CallState.INCOMING if leg.incoming else CallState.CALLING
        self.channel = None
        self.end_reason: str | None = None
        self.credentials = credentials
        self.started_at = task.service.clock.seconds()
        self.answered_at: float | None = None
        self.final_code: int | None = None
        self.target: str | None = None  # where we placed it
        self._placing = None  # what a challenged INVITE is sent again with
        self._challenged = False
        self._owner = _Owner(self)
        self._registered = False
        self._signal_task = None
        self._abandoned = False  # cancel_call: no completion event
        self._answer_sdp: bytes | None = None  # what we answered (provision repeats it)
        self._offer_in_200 = False  # late offer: the answer comes in the ACK
        self._transaction: Deferred | None = None  # our in-dialog INVITE/REFER
        self._acked: int | None = None  # the CSeq of the INVITE last acknowledged
        self._ack_body = b""  # and the answer that ACK carried

    def __repr__(self) -> str:
        return f"<Call {self.leg.call_id} {self.state}>"

    # -- helpers ---------------------------------------------------------------

    @property
    def _service(self):
        return self.task.service

    def _register(self) -> None:
        if not self._registered:
            self._service.dialogs.add(self.leg.call_id, self.leg.local_tag, self._owner)
            self._registered = True

    def _unregister(self) -> None:
        if self._registered:
            self._service.dialogs.remove(self.leg.call_id, self.leg.local_tag)
            self._registered = False

    def _new_channel(self):
        if self.channel is None:
            self.channel = self.task._make_channel()
            self._channel_made(self.channel)
        return self.channel

    def _send(self, signal, on_final=_ignored, on_provisional=None):
        return self._service.dialogs.send(
            signal, _Answers(self.task, on_final, on_provisional), self.leg.protocol
        )

    def _contact(self):
        signal = self.leg.invite if self.leg.incoming else None
        return self._service.dialogs.contact(signal, self.leg.protocol)

    @property
    def is_live(self) -> bool:
        return self.state != CallState.ENDED

    def _finish(self, reason: str) -> None:
        """
        The call is over: release the channel and the dialog.
        """
        if self.state == CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.end_reason = reason
        self._unregister()
        if self.channel is not None:
            self.channel.close()
        self._stop_reliable()
        self.release_joined_media("call ended")
        transaction, self._transaction = self._transaction, None
        if transaction is not None and not transaction.called:
            transaction.errback(CallError("disconnected"))
        report_call(self)

    # -- answering (incoming) ----------------------------------------------------

    def _negotiate_answer(self) -> tuple[bytes, str]:
        """
        The SDP for our answer to the INVITE: an answer to its offer, or our
        offer when it had none.

        @raise CallError: 488 (no common codec, unreadable SDP), 480 (no
            media port free; a 503 would reach the caller as 500).
        """
        invite = self.leg.invite
        if self._answer_sdp is not None:
            return self._answer_sdp, SDP
        channel = self._new_channel()
        try:
            if is_sdp(invite.content_type, invite.body):
                sdp = channel.answer_offer(invite.body)
            elif invite.body:
                raise CallError("415 Unsupported Media Type", 415)
            else:
                sdp = channel.make_offer()
                self._offer_in_200 = True
        except NoCommonCodec as error:
            raise CallError(f"488 {error}", 488) from None
        except SDPError as error:
            raise CallError(f"488 Unreadable SDP: {error}", 488) from None
        except ChannelError as error:
            raise CallError(f"480 {error}", 480) from None
        self._answer_sdp = sdp
        return sdp, SDP

    def provision(self, code: int, reason: str, media: bool, sdp: bytes | None = None, *,
                  reliably: bool = False, settled=None) -> bool:
        """
        A 1xx; with C{media} 183 with our SDP answer, or C{sdp} (the bridged
        peer's early media, passed on).  Sent reliably (RFC 3262) when the
        caller requires it, or supports it and C{reliably} is asked;
        whether it was, and then C{settled(error)} is called once its PRACK
        came (L{None}) or never will (L{communigate.pbx.reliable}).
        """
        if self.state not in (CallState.INCOMING, CallState.PROVISIONED):
            raise CallError("not an incoming call")
        if not 101 <= code <= 199:
            raise ValueError(f"a provisional response code is 101-199, not {code}")
        body, content_type = b"", None
        if sdp is not None:
            body, content_type = self.ours(sdp), SDP
        elif media:
            try:
                body, content_type = self._negotiate_answer()
            except CallError as error:
                self.reject(error.code or 488, str(error).partition(" ")[2])
                raise
            if self._offer_in_200:
                # [D] early media needs the caller's offer; an INVITE without
                # SDP is provisioned without media.
                body, content_type = b"", None
            if body:
                body = self.ours(body)
        answer = self.leg.answer(code, reason, body=body, content_type=content_type, contact=self._contact())
        reliable = self._reliably(reliably)
        if reliable:
            self._provision_reliably(answer, settled)
        else:
            self.responder.provisional(answer)
        self.state = CallState.PROVISIONED
        return reliable

    def accept(self, sdp: bytes | None = None) -> None:
        """
        Answer (200) with our channel's SDP, or with C{sdp}, the bridged
        peer's answer to the caller's offer (the call is then transparent).
        """
        if self.state not in (CallState.INCOMING, CallState.PROVISIONED):
            raise CallError("not an incoming call")
        if sdp is not None:
            self.go_transparent()
            body, content_type = self.ours(sdp), SDP
        else:
            try:
                body, content_type = self._negotiate_answer()
            except CallError as error:
                self.reject(error.code or 488, str(error).partition(" ")[2])
                raise
            body = self.ours(body)
        self._stop_reliable()
        self._register()
        self.awaiting_ack = True
        self.responder.final(
            self.leg.answer(200, "OK", body=body, content_type=content_type, contact=self._contact())
        )
        self.state = CallState.CONNECTED
        self.answered_at, self.final_code = self._service.clock.seconds(), 200
        self._service.dialogs.answered(self.leg.invite, self.leg.local_tag)

    def reject(self, code: int, reason: str = "") -> None:
        if self.state not in (CallState.INCOMING, CallState.PROVISIONED):
            raise CallError("not an incoming call")
        if not 300 <= code <= 699:
            raise ValueError(f"a rejection code is 300-699, not {code}")
        self.responder.final(self.leg.answer(code, reason or response(code).reason))
        self.final_code = code
        self._finish(f"rejected {code}")

    def redirect(self, addresses) -> None:
        if self.state not in (CallState.INCOMING, CallState.PROVISIONED):
            raise CallError("not an incoming call")
        if not addresses:
            raise ValueError("redirect_call needs at least one address")
        self.responder.final(self.leg.answer(302, "Moved Temporarily", contacts=tuple(addresses)))
        self.final_code = 302
        self._finish("redirected")

    def fork(self, addresses) -> None:
        if self.state not in (CallState.INCOMING, CallState.PROVISIONED):
            raise CallError("not an incoming call")
        if not IForkingResponder.providedBy(self.responder):
            raise CallError("this call cannot be forked")
        self.responder.fork(tuple(addresses))

    def cancelled(self) -> None:
        """
        The caller gave up (CANCEL) or the Signal ended before we answered.
        """
        if self.state in (CallState.INCOMING, CallState.PROVISIONED):
            self._finish("cancelled")
            self.task._call_ended(self, "cancelled")

    # -- placing (outgoing) ------------------------------------------------------

    def place(self, destination: str, submitter, headers=(), lifetime: float | None = None,
              offer: bytes | None = None) -> None:
        """
        Place the call with our channel's offer, or with C{offer} (the
        bridged peer's: the call is transparent from the start).
        """
        if offer is not None:
            self.transparent = True
            offer = self.ours(offer)
        else:
            channel = self._new_channel()
            try:
                offer = self.ours(channel.make_offer())
            except ChannelError as error:
                self._finish("no media")
                raise CallError(f"503 {error}", 503) from None
        self._register()
        self.target = destination
        self._placing = (destination, submitter, tuple(headers), lifetime, offer)
        self._submit(())

    def _submit(self, more_headers) -> None:
        destination, submitter, headers, lifetime, offer = self._placing
        extra = {} if lifetime is None else {"lifetime": lifetime, "ring_limit": lifetime}
        signal = self.leg.invite_signal(
            destination, submitter, body=offer, content_type=SDP, contact=self._contact(),
            headers=headers + tuple(more_headers), **extra
        )
        task = self._service.signals.submit(signal)
        self._signal_task = task
        task.on_provisional(lambda answer: self.task.later(self._provisional, answer))
        task.final.addCallback(lambda answer: self.task.later(self._final, answer))

    def _provisional(self, answer: Response) -> None:
        if self.state != CallState.CALLING or self._abandoned:
            return
        if not self._provisional_wanted(answer):
            return  # a reliable one repeated or out of order (RFC 3262 section 4)
        if is_sdp(answer.content_type, answer.body):
            if self.transparent:
                self.peer_sdp = answer.body
            elif self.channel is not None:
                self._take_answer(answer.body)
        self.task._call_provisioned(self, answer)

    def _take_answer(self, body: bytes) -> bool:
        try:
            self.channel.apply_answer(body)
        except ChannelError:
            return True  # the same answer again (18x then 2xx)
        except (NoCommonCodec, SDPError) as error:
            self.log.info("Call {call_id}: unusable SDP answer: {error}", call_id=self.leg.call_id, error=error)
            return False
        return True

    def _final(self, answer: Response) -> None:
        self._signal_task = None
        challenged = answer.code in (401, 407) and self.credentials is not None and not self._challenged
        if self.transparent and not challenged:
            self._relay_concluded(answer.code)
        if self._abandoned:
            if answer.success:
                # Answered after we gave up: acknowledge, then hang up.
                try:
                    self.leg.established(answer)
                except LegError:
                    return
                self._ack()
                self._bye()
            return
        if self.state != CallState.CALLING:
            return
        if answer.code in (401, 407) and self._answer_challenge(answer):
            return
        if answer.code == 488 and self._offer_refused():
            return
        if not answer.success:
            self.final_code = answer.code
            self._finish(error_text(answer))
            self.task._call_completed(self, error_text(answer))
            return
        try:
            self.leg.established(answer)
        except LegError as error:
            self.log.info("Call {call_id}: a 2xx that makes no dialog: {error}", call_id=self.leg.call_id, error=error)
            self._finish(f"500 {error}")
            self.task._call_completed(self, f"500 {error}")
            return
        self._ack()
        self.state = CallState.CONNECTED
        self.answered_at, self.final_code = self._service.clock.seconds(), answer.code
        if self.transparent:
            if is_sdp(answer.content_type, answer.body):
                self.peer_sdp = answer.body
            if self.peer_sdp is None:
                self.hang_up(488, "No SDP answer")
                self.task._call_completed(self, "488 No SDP answer")
                return
        elif is_sdp(answer.content_type, answer.body) and not self._take_answer(answer.body):
            self.hang_up(488, "No usable media")
            self.task._call_completed(self, "488 No usable media")
            return
        self.task._call_completed(self, None)

    def _answer_challenge(self, answer: Response) -> bool:
        """
        The callee challenged our INVITE: send it again (same Call-ID and
        tag, the next CSeq) with our credentials, once.  Whether we did.
        """
        if self.credentials is None or self._placing is None or self._challenged:
            return False
        from communigate.sip.rsip import digest_authorization

        wanted = "www-authenticate" if answer.code == 401 else "proxy-authenticate"
        name, password = self.credentials
        header = digest_authorization(
            answer.code, [v for n, v in answer.headers if n.lower() == wanted], name, password,
            "INVITE", self._placing[0],
        )
        if header is None:
            return False
        self._challenged = True
        self._submit((header,))
        return True

    def _ack(self, body: bytes = b"") -> None:
        """
        ACK our last INVITE's 2xx (with C{body}, an SDP answer to an offer
        in that 2xx); a repeated 2xx gets the same ACK again.
        """
        self._acked, self._ack_body = self.leg.invite_cseq, body
        try:
            self._send(self.leg.ack(self.task.submitter, body=body, content_type=SDP if body else None))
        except LegError as error:
            self.log.info("Call {call_id}: no ACK sent: {error}", call_id=self.leg.call_id, error=error)

    def _bye(self, headers=()) -> None:
        try:
            self._send(self.leg.request("BYE", self.task.submitter, headers=headers))
        except LegError as error:
            self.log.info("Call {call_id}: no BYE sent: {error}", call_id=self.leg.call_id, error=error)

    def answer_repeated(self, answer) -> None:
        """
        A 2xx to one of our INVITEs was seen (SIP shows every one): when we
        have acknowledged that INVITE already, the ACK was lost; repeat it.
        """
        if self._acked is None or self.state == CallState.ENDED:
            return
        from communigate.sip.headers import HeaderError, parse_cseq

        value = next((v for n, v in answer.headers if n.lower() == "cseq"), "")
        try:
            number = parse_cseq(value).number
        except HeaderError:
            return
        if number == self._acked:
            self._ack(self._ack_body)

    def cancel(self) -> None:
        """
        Give up the outgoing call; no completion event follows (a 2xx that
        still comes is acknowledged and hung up).
        """
        if self.state != CallState.CALLING:
            raise CallError("no outgoing call to cancel")
        self._abandoned = True
        if self._signal_task is not None:
            self._signal_task.cancel()
        if self.transparent:
            self._relay_concluded(487)  # our task may be gone before the 487 comes
        self._finish("cancelled")

    # -- inside the dialog: ours -------------------------------------------------

    def hang_up(self, code: int | None = None, reason: str | None = None) -> None:
        """
        End the call whatever its state: BYE when connected, a rejection
        when unanswered, CANCEL when placing.
        """
        if self.state in (CallState.INCOMING, CallState.PROVISIONED):
            self.reject(code if code and code >= 300 else 480, reason or "")
            return
        if self.state == CallState.CALLING:
            self.cancel()
            return
        if self.state == CallState.CONNECTED:
            headers = ()
            if code:
                text = reason or response(code).reason
                headers = (("Reason", f'SIP;cause={code};text="{text}"'),)
            self._bye(headers)
            self._finish("hung up")

    def _transact(self, signal) -> Deferred:
        if self.state != CallState.CONNECTED:
            raise CallError("not connected")
        if self._transaction is not None:
            raise CallError("491 a request of ours is in progress", 491)
        done = Deferred()
        self._transaction = done

        def answered(answer):
            if self._transaction is done:
                self._transaction = None
                done.callback(answer)

        self._send(signal, answered)
        return done

    def reinvite(self, direction: str) -> Deferred:
        """
        Offer new media (C{sendonly}: hold the peer; C{sendrecv}: resume).
        """
        if self.channel is None:
            raise CallError("no media channel")
        offer = self.ours(self.channel.make_offer(direction))
        signal = self.leg.request("INVITE", self.task.submitter, body=offer, content_type=SDP,
                                  contact=self._contact())
        d = self._transact(signal)

        def answered(answer):
            if answer.success:
                self._ack()
                if is_sdp(answer.content_type, answer.body) and not self._take_answer(answer.body):
                    raise CallError("488 No usable media in the answer", 488)
                return None
            raise CallError(error_text(answer), answer.code)

        return d.addCallback(answered)

    def refer(self, target: str, referred_by: str) -> Deferred:
        signal = self.leg.request(
            "REFER", self.task.submitter,
            headers=(("Refer-To", f"<{target}>"), ("Referred-By", f"<{referred_by}>")),
            contact=self._contact(),
        )

        def answered(answer):
            if answer.success:
                return None
            raise CallError(error_text(answer), answer.code)

        return self._transact(signal).addCallback(answered)

    def info(self, content_type: str, body: bytes) -> Deferred:
        """
        An INFO to the peer (RFC 6086; CG/PL's C{SendCallInfo}): fires with
        L{None} on a 2xx, fails with L{CallError} otherwise.  Not serialised
        with our INVITEs: an INFO may cross a re-INVITE.
        """
        if self.state != CallState.CONNECTED:
            raise CallError("not connected")
        signal = self.leg.request("INFO", self.task.submitter, body=body, content_type=content_type if body else None)
        done = Deferred()

        def answered(answer):
            if answer.success:
                done.callback(None)
            else:
                done.errback(CallError(error_text(answer), answer.code))

        self._send(signal, answered)
        return done

    # -- replaced by an INVITE with Replaces (communigate.pbx.replaces) -------------

    def accept_replacing(self, channel) -> None:
        """
        Answer this call's INVITE (one with C{Replaces}) with C{channel},
        the media channel of the call it replaces, which goes on as it is;
        L{None} (the replaced call had none: transparent) answers with a
        new channel.

        @raise CallError: the INVITE was rejected (488 ...); the channel
            is left to the old call.
        """
        self.channel = channel
        try:
            self._negotiate_answer()
        except CallError as error:
            self.channel = None
            self.reject(error.code or 488, str(error).partition(" ")[2])
            raise
        self.accept()

    def replaced(self) -> None:
        """
        Another call took this one's place: its channel has gone to that
        call; the peer gets a BYE (a CANCEL while we were placing it).
        """
        self.channel = None
        if self.state == CallState.CALLING:
            self.cancel()
        elif self.state == CallState.CONNECTED:
            self._bye()
            self._finish("replaced")

    def unacknowledged(self) -> None:
        if self.state == CallState.CONNECTED:
            self.log.info("Call {call_id}: our 200 was never acknowledged; hanging up", call_id=self.leg.call_id)
            self.hang_up(408, "No ACK")
            self.task._call_ended(self, "no ACK")
