"""
An INVITE with C{Replaces} toward a PBX task's call (RFC 3891).

A phone doing an attended transfer (or a call pick-up) sends a new INVITE
whose C{Replaces: call-id;to-tag=T;from-tag=F} names a dialog the server
holds as a task's call.  The SIP proxy, once it has decided who the caller
is (digest authentication), asks the local dialogs carrier first
(L{communigate.sip.local_dialogs.SIPDialogCarrier.replacing}); the dialog
table (L{communigate.pbx.dialogs.DialogTable.replace}) finds the call by
the Call-ID and the C{to-tag} (our own tag, RFC 3891 section 3), and
L{take_over} runs in the task's turn:

  - the new INVITE becomes the task's call, answered with the task's own
    media channel (200 with the channel's answer to the new offer; a
    transparently bridged call has none: the newcomer takes the old
    peer's place in the bridge instead, its SDP exchanged with the far
    peer by re-INVITE, L{communigate.pbx.transparent_transfers}): what
    the task plays, records, echoes, its bridge and its mixer party go on
    with the new peer, and the program is not interrupted;
  - the old peer gets a BYE (or, when the task was still placing the
    call, the INVITE is cancelled and C{start_call} completes with the new
    call: C{CallCompleted} without error).

Refusals (RFC 3891 section 3):

  - no such dialog → 481 when the INVITE was sent to our own address; an
    INVITE to another target is routed as usual (the dialog may be a
    phone's);
  - a dialog of ours that has ended → 603 (the table remembers the last
    1024 ended dialogs);
  - a call whose transfer (a peer's REFER) is being carried out, or whose
    peer's offer (or another replacing party's) is being answered by the
    far peer of a transparent bridge → 491;
  - more than one C{Replaces}, or one that does not parse → 400;
  - the C{from-tag} is not the peer's tag → 481;
  - an early dialog the peer started (a call the task has not answered
    yet) → 481: only early dialogs we initiated can be replaced;
  - C{early-only} and the call is confirmed → 486;
  - not authorised → 403 (below).

[D] Authorisation (RFC 3891 section 6.1 leaves the policy to the UA): a
Replaces INVITE is accepted from a caller that authenticated as an
account of this server (the proxy challenges every caller claiming one
of our domains, so such a caller is accountable), or from a party of the
dialog: its C{From} or its C{Referred-By} (RFC 3892, which phones put in
the INVITE a REFER made them send) names the peer being replaced, user
and host.  Either way the caller had to know the Call-ID and both tags,
which only the dialog's parties and the proxies on its path ever see.
Anything else gets 403 and is logged.
"""

from __future__ import annotations

from twisted.logger import Logger

from communigate.pbx.call import Call, CallState
from communigate.pbx.events import CallError
from communigate.pbx.leg import CallLeg, LegError
from communigate.pbx.transparent_transfers import bridged_far_task, replace_bridged
from communigate.signal.model import response
from communigate.sip.headers import HeaderError, parse_name_addr
from communigate.sip.replaces import Replaces, parse_replaces

__all__ = ["Replaces", "parse_replaces", "take_over", "authorised"]

log = Logger(namespace="communigate.pbx.replaces")


def _party(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    try:
        uri = parse_name_addr(value).uri
    except HeaderError:
        return None
    host = getattr(uri, "host", None)
    if host is None:
        return None
    return (getattr(uri, "user", None) or "", host.lower().strip("[]"))


def authorised(call: Call, signal) -> bool:
    """
    Whether the Replaces INVITE C{signal} may replace C{call} (see the
    module docstring).
    """
    if signal.submitter.account:
        return True
    peer = _party(call.leg.remote)
    return peer is not None and any(
        _party(signal.header(name)) == peer for name in ("From", "Referred-By")
    )


def _refuse(responder, code: int, reason: str | None = None) -> None:
    responder.final(response(code, reason))


def take_over(call: Call, signal, replaces: Replaces, responder) -> None:
    """
    In C{call}'s task's turn: answer the Replaces INVITE C{signal} and hand
    the task's call over to it, or refuse it (see the module docstring).
    """
    task = call.task
    if getattr(task, "stands_in", False):
        _refuse(responder, 491, "A transfer of this call is in progress")
        return
    if call.relaying:
        _refuse(responder, 491, "The call's media is being changed")
        return
    if task.ended or task.call is not call or not call.is_live:
        _refuse(responder, 603, "The dialog to replace has ended")
        return
    if call.state == CallState.CONNECTED:
        if replaces.from_tag != call.leg.remote_tag:
            _refuse(responder, 481, "No dialog with these tags")
            return
        if replaces.early_only:
            _refuse(responder, 486, "The call is answered already")
            return
    elif call.state != CallState.CALLING:
        _refuse(responder, 481, "An early dialog we did not start")
        return
    if not authorised(call, signal):
        log.info(
            "Task {id}: a Replaces INVITE {call_id} from {caller} for call {replaced} is not authorised; 403",
            id=task.id, call_id=signal.call_id, caller=signal.header("From"), replaced=call.leg.call_id,
        )
        _refuse(responder, 403, "Not allowed to replace this call")
        return
    try:
        leg = CallLeg.from_invite(signal)
    except LegError as error:
        _refuse(responder, 400, str(error)[:80])
        return
    new = Call(task, leg, responder=responder)
    other = bridged_far_task(task, call)
    if other is not None:
        # Transparently bridged: no channel to hand over; the newcomer
        # takes the old peer's place in the bridge.
        replace_bridged(call, new, signal, other)
        return
    try:
        new.accept_replacing(call.channel)
    except CallError as error:
        log.info("Task {id}: a Replaces INVITE was refused: {error}", id=task.id, error=error)
        return
    placing = call.state == CallState.CALLING
    if new.channel is not None:
        new.channel.forget_peer()
    task.call = new
    call.replaced()
    log.info(
        "Task {id}: call {old} replaced by {new} from {caller}",
        id=task.id, old=call.leg.call_id, new=leg.call_id, caller=leg.remote,
    )
    if placing:
        task._call_completed(new, None)
