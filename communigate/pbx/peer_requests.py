"""
The requests a task's call gets from its peer inside the dialog: a part
of L{communigate.pbx.call.Call} (L{PeerRequests}), kept apart so that
the call's own module stays with answering, placing and its own
requests.

  - a request older than the last CSeq gets 500 (RFC 3261 12.2.2), one
    for an ended call 481, an unknown method 501;
  - ACK completes an answer that was an offer in our 200 (the answer
    must be in it, else the call is hung up with 488), or carries a
    transparently bridged peer's answer on to the other peer;
  - BYE ends the call;
  - re-INVITE and UPDATE with SDP are answered by the channel (hold and
    unhold from the peer), or by the other peer of a transparent bridge;
    a re-INVITE while ours is out gets 491; without SDP the channel
    offers in the 200 and the answer comes in the ACK;
  - INFO with C{application/dtmf-relay} or C{application/dtmf} is a key
    press, any other INFO a C{CallInfo} event for the program; NOTIFY is answered (a 2xx sipfrag of C{Event: refer} means a
    transfer we asked for succeeded); REFER is the task's C{refer} signal
    option's (L{communigate.pbx.refer}); OPTIONS gets 200.
"""

from __future__ import annotations

import re

from communigate.media.offer_answer import NoCommonCodec
from communigate.media.sdp import SDPError
from communigate.pbx.channel import ChannelError
from communigate.pbx.events import CallState
from communigate.pbx.transparent import SDP, is_sdp
from communigate.signal.model import response

__all__ = ["PeerRequests"]

_DTMF_RELAY = re.compile(r"^\s*signal\s*=\s*([0-9*#A-Da-d])", re.IGNORECASE | re.MULTILINE)


class PeerRequests:
    """
    The peer's in-dialog requests (see the module docstring); the call's
    task posts each here in its turn (C{peer_request}).
    """

    def peer_request(self, signal, responder) -> None:
        method = signal.method.upper()
        if self.state == CallState.ENDED or (method != "ACK" and not self.leg.accept_remote_cseq(signal)):
            if method != "ACK":
                code = 481 if self.state == CallState.ENDED else 500
                responder.final(response(code, "Out of order request" if code == 500 else None))
            return
        handler = getattr(self, f"_peer_{method}", None)
        if handler is None:
            responder.final(response(501, f"{method} is not supported here"))
            return
        handler(signal, responder)

    def _peer_ACK(self, signal, responder) -> None:
        self.awaiting_ack = False
        if self.transparent:
            answer = signal.body if is_sdp(signal.content_type, signal.body) else None
            if answer is not None:
                self.peer_sdp = answer
            if self.ack_goes_to is not None:
                self.task._peer_ack_answer(self, answer)
            return
        if self._offer_in_200:
            self._offer_in_200 = False
            if not is_sdp(signal.content_type, signal.body) or not self._take_answer(signal.body):
                self.hang_up(488, "No SDP answer in the ACK")
                self.task._call_ended(self, "no SDP answer")

    def _peer_BYE(self, signal, responder) -> None:
        responder.final(response(200))
        self._finish("BYE")
        self.task._call_ended(self, "BYE")

    def _peer_INVITE(self, signal, responder) -> None:
        if self._transaction is not None:
            responder.final(response(491, "Request Pending"))
            return
        self._answer_offer(signal, responder, expect_ack=True)

    def _peer_UPDATE(self, signal, responder) -> None:
        self._answer_offer(signal, responder, expect_ack=False)

    def _answer_offer(self, signal, responder, expect_ack: bool) -> None:
        if self.transparent:
            if target := self._new_target(signal):
                self.leg.remote_target = target
            if self.relaying:
                responder.final(response(500, "An offer is being answered", headers=(("Retry-After", "1"),)))
                return
            self.task._peer_offer(self, signal, responder, expect_ack)
            return
        channel = self.channel
        if channel is None or channel.closed:
            responder.final(response(488, "No media channel"))
            return
        if target := self._new_target(signal):
            self.leg.remote_target = target
        try:
            if is_sdp(signal.content_type, signal.body):
                sdp = channel.answer_offer(signal.body)
            elif expect_ack:
                sdp = channel.make_offer()
                self._offer_in_200 = True
            else:
                responder.final(self.leg.answer(200, "OK", contact=self._contact()))
                return
        except (NoCommonCodec, SDPError, ChannelError) as error:
            responder.final(response(488, str(error)[:80]))
            return
        responder.final(self.leg.answer(200, "OK", body=self.ours(sdp), content_type=SDP,
                                        contact=self._contact()))

    @staticmethod
    def _new_target(signal) -> str | None:
        from communigate.sip.headers import HeaderError, parse_name_addr

        value = signal.header("Contact")
        if not value:
            return None
        try:
            return str(parse_name_addr(value, "Contact").uri)
        except HeaderError:
            return None

    def _peer_INFO(self, signal, responder) -> None:
        kind = (signal.content_type or "").split(";", 1)[0].strip().lower()
        text = signal.body.decode("utf-8", "replace")
        key = None
        if kind == "application/dtmf-relay":
            found = _DTMF_RELAY.search(text)
            key = found.group(1).upper() if found else None
        elif kind == "application/dtmf":
            stripped = text.strip()
            key = stripped.upper() if len(stripped) == 1 and stripped.upper() in "0123456789*#ABCD" else None
        responder.final(response(200))
        if key is not None:
            self._service.counters.dtmf_detected("info")
            self.task._dtmf_received(key, "info")
        elif kind not in ("application/dtmf-relay", "application/dtmf"):
            main, _, subtype = kind.partition("/")
            self.task._call_info(self, {"Content-Type": main, "Content-Subtype": subtype, "": text})

    def _peer_NOTIFY(self, signal, responder) -> None:
        responder.final(response(200))
        event = (signal.header("Event") or "").split(";", 1)[0].strip().lower()
        if event == "refer" and signal.body.startswith(b"SIP/2.0 2"):
            self.task._call_transferred(self)

    def _peer_REFER(self, signal, responder) -> None:
        from communigate.pbx.refer import answer_refer

        answer_refer(self, signal, responder)

    def _peer_OPTIONS(self, signal, responder) -> None:
        responder.final(response(200))
