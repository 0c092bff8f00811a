"""
Attended transfer between two tasks (CG/PL's C{StartTransfer},
C{AcceptTransfer}, C{RejectTransfer}), carried by a REFER with
C{Replaces} (RFC 3515, RFC 3891).

Task 1 is in a call with peer A, task 2 in a call with peer B.  Task 1
asks task 2 to hand its call over; when task 2 accepts, task 1 sends A a
REFER whose C{Refer-To} is B's Contact with a C{Replaces} header naming
task 2's dialog from B's side (the To tag is B's tag, the From tag ours).
A calls B with C{INVITE … Replaces:}, B swaps its call with task 2 for the
one with A (and sends task 2 a BYE); A hangs up on task 1 once its call
with B is up (the final NOTIFY queues C{CallTransferred} first).  A and B
then talk to each other; neither task is in the path.

  task 1: start_transfer(2) ──StartTransfer──▶ task 2: accept_transfer(event)
          (waits)          ◀──its dialog──────  (or reject_transfer(event, error))
          REFER to A, Refer-To: <B?Replaces=…>
          returns when A accepts (2xx); CallError otherwise

[D] A REFER rather than an INVITE with C{Replaces} toward B: the REFER
path (C{Call.refer}) exists and is what phones do for attended transfer;
the media never passes through the server afterwards.  Both peers must
support REFER/Replaces (A) and Replaces (B); a peer that does not answers
the REFER with an error, which C{start_transfer} raises.

L{TransferVerbs} is a part of L{communigate.pbx.task.Task}, like
L{communigate.pbx.bridging.BridgeVerbs}.
"""

from __future__ import annotations

from urllib.parse import quote

from twisted.internet.defer import Deferred, fail, succeed

from communigate.pbx.call import CallState
from communigate.pbx.events import CallError, Event

__all__ = ["START_TRANSFER", "TransferVerbs", "is_start_transfer", "replaces_target"]

START_TRANSFER = "StartTransfer"


def is_start_transfer(event) -> bool:
    """
    Whether C{event} is a C{StartTransfer} event (CG/PL's
    C{IsStartTransferEvent}).
    """
    return isinstance(event, Event) and event.what == START_TRANSFER


def replaces_target(target: str, call_id: str, to_tag: str, from_tag: str) -> str:
    """
    C{target} (a SIP URI) with a C{Replaces} header (RFC 3891) naming the
    dialog C{call_id} as the target's UA knows it: C{to_tag} its own tag,
    C{from_tag} its peer's.
    """
    uri = target.split("?", 1)[0]
    value = f"{call_id};to-tag={to_tag};from-tag={from_tag}"
    return f"{uri}?Replaces={quote(value, safe='')}"


class TransferVerbs:
    """
    The attended-transfer verbs of a task (see the module docstring).
    """

    def start_transfer(self, target) -> Deferred:
        """
        Ask task C{target} to hand its call over to our peer: when it
        accepts, our peer is sent a REFER with C{Replaces} toward its peer.
        Returns when our peer accepted the REFER (L{None}); the call then
        ends with the peer's BYE.  L{CallError}: we are not connected, the
        other task rejected (its error) or our peer refused the REFER.
        """
        try:
            self._check()
            call = self.call
            if call is None or call.state != CallState.CONNECTED:
                raise CallError("not connected")
            other = self._other(target)
        except CallError as error:
            return fail(error)
        waiting = self._wait("transfer", token=other)
        if not other.deliver_event(Event(START_TRANSFER, self.id)):
            self._wake(None, "transfer", error=CallError("no such task"))
        return waiting

    def accept_transfer(self, event: Event) -> Deferred:
        """
        Accept the C{StartTransfer} C{event}: the starter's peer is sent
        to ours with C{Replaces} naming our call, so our peer will hang up
        on us (C{Disconnect}) once it talks to the starter's peer.
        """
        try:
            self._check()
            if not is_start_transfer(event):
                raise CallError("not a StartTransfer event")
            starter = self.service.find(event.sender or "")
            if starter is None or starter.ended:
                raise CallError("the transferring task is gone")
            call = self.call
            leg = None if call is None else call.leg
            if call is None or call.state != CallState.CONNECTED or not leg.remote_target or not leg.remote_tag:
                self._answer_transfer(event, "not connected")
                raise CallError("not connected")
        except CallError as error:
            return fail(error)
        refer_to = replaces_target(leg.remote_target, leg.call_id, leg.remote_tag, leg.local_tag)
        starter.later(starter._transfer_accepted, self, refer_to)
        return succeed(None)

    def reject_transfer(self, event: Event, error: str = "rejected") -> Deferred:
        """
        Refuse the C{StartTransfer} C{event}; the starter's
        C{start_transfer} raises L{CallError} with C{error}.
        """
        self._check()
        if not is_start_transfer(event):
            return fail(CallError("not a StartTransfer event"))
        self._answer_transfer(event, error)
        return succeed(None)

    def _answer_transfer(self, event: Event, error: str) -> None:
        starter = self.service.find(event.sender or "")
        if starter is not None:
            starter.later(starter._transfer_rejected, self, error)

    def _transfer_rejected(self, other, error: str) -> None:
        waiter = self._waiter
        if waiter is not None and waiter.kind == "transfer" and waiter.token is other:
            self._wake(None, "transfer", error=CallError(error))

    def _transfer_accepted(self, other, refer_to: str) -> None:
        waiter = self._waiter
        if waiter is None or waiter.kind != "transfer" or waiter.token is not other:
            return
        call = self.call
        if call is None or call.state != CallState.CONNECTED:
            self._wake(None, "transfer", error=CallError("not connected"))
            return
        from communigate.pbx.call_verbs import sip_target

        referred_by = sip_target(self.account, self.account)

        def done(_):
            self._wake(None, "transfer")

        def failed(failure):
            error = failure.value if isinstance(failure.value, CallError) else CallError(str(failure.value))
            self._wake(None, "transfer", error=error)

        call.refer(refer_to, referred_by).addCallbacks(done, failed)
