"""
Transfers of a transparently bridged call: an INVITE with C{Replaces}
naming it (RFC 3891, L{communigate.pbx.replaces}) and a REFER from its
peer that the server carries out (RFC 3515, L{communigate.pbx.refer}).

A transparently bridged call has no media channel: its peer's media flows
to the peer of the bridged task's call (the I{far peer}).  So neither
path can hand the task's channel to the new party; the new party takes
the old peer's place I{in the bridge} instead, and the far peer is told
where the media goes now by a re-INVITE from the bridged task (the same
exchange as a peer's relayed offer, L{TransparentBridging._bridged_offer};
a 491 from the far peer is tried again once after RFC 3261 14.1's delay):

  - B{Replaces}: the newcomer's offer is offered to the far peer, whose
    answer answers the newcomer (200); an INVITE without SDP gets the far
    peer's fresh offer (its 2xx to an offerless re-INVITE) in our 200, and
    the answer in the newcomer's ACK goes back in the far peer's ACK.
    Then the old peer gets a BYE.  [D] When the far peer refuses the
    re-INVITE (or the bridged task cannot ask it), the newcomer is still
    taken: it is answered by a fresh channel of the task, the old peer
    gets its BYE, and the bridge turns simple (the far peer gets its own
    task's channel back by re-INVITE, L{TransparentBridging._turn_simple}).
    The newcomer asked to replace the call and had already been talked to
    (an attended transfer): refusing it would leave the old peer, who is
    about to hang up, as the only one in the bridge.
  - B{REFER}: the call to the C{Refer-To} target is placed with the far
    peer's SDP (its last, else its INVITE's offer; L{far_sdp}) as a
    transparent call, as C{start_bridged_call} places a bridged call with
    the caller's offer; when the target answers, the far peer is
    re-INVITEd with the target's answer, and only when it accepts is the
    referrer sent the final NOTIFY (200) and a BYE.  [D] No fallback to a
    channel on this path: a target refusing the offer (488, no second try
    with our own), a far peer refusing the re-INVITE (the target then gets
    a BYE), or no far SDP to offer make the transfer fail as any failed
    transfer does -- the referrer gets the failure in its NOTIFY and keeps
    its call, still bridged, with its media untouched.  The referrer that
    has already hung up makes the failure end the bridge (C{BreakBridge}
    for the other task).

The far peer's answer to the re-INVITE is not offered back to the new
party [D]: it answers the new party's SDP, and a far peer keeps its media
address in practice; a far peer that moved would need one more re-INVITE.
"""

from __future__ import annotations

import random

import attrs
from twisted.logger import Logger

from communigate.pbx.call import CallState
from communigate.pbx.events import CallError
from communigate.pbx.transparent import glare_delay, is_sdp

__all__ = ["bridged_far_task", "far_sdp", "far_submitter", "offer_to_far", "replace_bridged"]

log = Logger(namespace="communigate.pbx.transparent_transfers")
#: Seconds to wait for the far peer's answer to a transfer's re-INVITE
#: (64*T1, an INVITE transaction's limit) before giving up with 480.
FAR_ANSWER_LIMIT = 32.0


def bridged_far_task(task, call):
    """
    The task C{call} is transparently bridged with (its call connected and
    transparent too), or L{None}.
    """
    other = getattr(task, "bridge", None)
    if other is None or other.ended or not call.transparent or call.state != CallState.CONNECTED:
        return None
    theirs = other.call
    if theirs is None or not theirs.transparent or theirs.state != CallState.CONNECTED:
        return None
    return other


def far_sdp(other) -> bytes | None:
    """
    The far peer's SDP (the peer of C{other}'s call): the last it sent,
    else the offer of its INVITE.
    """
    call = other.call
    if call is None:
        return None
    if call.peer_sdp is not None:
        return call.peer_sdp
    invite = call.leg.invite
    if call.leg.incoming and invite is not None and is_sdp(invite.content_type, invite.body):
        return invite.body
    return None


def far_submitter(submitter, other):
    """
    C{submitter} naming the far peer's address, when it is known, so that
    the SIP side judges the media relay for the two peers that exchange
    media (as C{start_bridged_call} does).
    """
    invite = other.call.leg.invite if other.call is not None else None
    if invite is None or not other.call.leg.incoming or invite.submitter.address is None:
        return submitter
    return attrs.evolve(submitter, address=tuple(invite.submitter.address))


# -- Replaces ----------------------------------------------------------------------


def replace_bridged(call, new, signal, other) -> None:
    """
    (In C{call}'s task's turn.)  The Replaces INVITE C{signal}, made into
    the call C{new}, takes transparently bridged C{call}'s place in the
    bridge with C{other}: its offer goes to the far peer (see the module
    docstring).
    """
    task = call.task
    offer = signal.body if is_sdp(signal.content_type, signal.body) else None
    if signal.body and offer is None:
        new.reject(415, "Unsupported Media Type")
        return
    call.relaying = True  # the old peer's offers meanwhile: 500 Retry-After; another Replaces: 491

    def answered(code, reason, sdp):
        _replacing_answered(call, new, other, offer, code, reason, sdp)

    def later(fn, *args):
        if task.ended:
            fn(*args)  # the newcomer still gets its answer
        else:
            task.later(fn, *args)

    offer_to_far(task, later, other, offer, answered)


def offer_to_far(origin, later, other, offer: bytes | None, answered, attempt: int = 1) -> None:
    """
    Have task C{other} re-INVITE its peer (the far peer of C{origin}'s
    bridge) with C{offer}, or without SDP when it is L{None};
    C{answered(code, reason, sdp)} runs once through C{later} (the turn of
    C{origin}, or of what stands in for it) with the far peer's answer
    (its offer, for an offerless re-INVITE).  A 491 (glare) is tried again
    once after RFC 3261 14.1's delay.  A task that ends meanwhile (its
    queue dropped) or no answer within L{FAR_ANSWER_LIMIT} seconds is
    answered 480.
    """
    clock = origin.service.clock
    done = []

    def reply(code, reason, sdp):  # in the other task's turn, or anywhere
        if not done:
            done.append(True)
            if guard.active():
                guard.cancel()
            later(back, code, reason, sdp)

    def back(code, reason, sdp):
        if code == 491 and attempt == 1 and not other.ended:
            theirs = other.call
            owns_call_id = theirs is not None and not theirs.leg.incoming
            delay = glare_delay(owns_call_id, random.random())
            clock.callLater(delay, later, offer_to_far, origin, later, other, offer, answered, 2)
            return
        answered(code, reason, sdp)

    guard = clock.callLater(FAR_ANSWER_LIMIT, reply, 480, "The bridged call did not answer", None)
    if other.ended:
        reply(480, "The bridged call has ended", None)
    elif offer is not None:
        other.later(other._bridged_offer, origin, offer, reply)
    else:
        other.later(other._bridged_offerless, origin, reply)


def _replacing_answered(call, new, other, offer, code: int, reason, sdp) -> None:
    task = call.task
    call.relaying = False
    if task.ended or task.call is not call or not call.is_live:
        # The old peer hung up (or the task ended) meanwhile: nothing to replace.
        if code < 300 and offer is None:
            other.later(other._bridged_ack, None)
        new.reject(603, "The dialog to replace has ended")
        return
    if code >= 300 or sdp is None:
        log.info("Task {id}: the far peer refused the replacing party's media ({code} {reason}); "
                 "answering it with a channel and bridging simply", id=task.id, code=code, reason=reason)
        try:
            new.accept_replacing(None)
        except CallError as error:
            log.info("Task {id}: a Replaces INVITE was refused: {error}", id=task.id, error=error)
            return
        _hand_over(call, new)
        other.later(other._turn_simple, task)
        return
    new.accept(call.from_bridge(sdp))  # transparent: the far peer's SDP, under the new call's origin
    if offer is not None:
        new.peer_sdp = offer
    else:
        new.ack_goes_to = other  # the newcomer's ACK answers the far peer's offer
    _hand_over(call, new)


def _hand_over(call, new) -> None:
    task = call.task
    task.call = new
    if call.joined_media is not None:
        call.joined_media.hand_over(call, new)
    call.replaced()
    log.info("Task {id}: bridged call {old} replaced by {new} from {caller}",
             id=task.id, old=call.leg.call_id, new=new.leg.call_id, caller=new.leg.remote)
