"""
A REFER from a task's peer (RFC 3515): the peer asks the task's side to
call someone else -- it transfers the task's call.  What happens is the
task's C{refer} signal option (CG/PL's C{SignalOption("refer", ...)}):

  - C{self} (the default [D]): the server carries the transfer out for the
    task.  The REFER gets 202 and a NOTIFY (C{100 Trying}); a call is
    placed to the C{Refer-To} target (its C{Replaces} header, when it has
    one, goes in the INVITE with C{Require: replaces}, RFC 3891; the
    REFER's C{Referred-By} too, RFC 3892) using the task's own media
    channel (a transparently bridged call has none: the target is
    offered the far peer's SDP and takes the referrer's place in the
    bridge, L{communigate.pbx.transparent_transfers}).  When it is
    answered the referring peer gets the final NOTIFY (C{200 OK}) and a
    BYE, and the task's call is the new one: its play, record, echo,
    bridge and mixer state go on with the new peer (the channel follows
    the new peer's SDP).  With C{transferReport} on,
    the program gets C{CallTransferred} (parameter: the new peer's URI).
    When the new call fails the referring peer gets a NOTIFY with the
    failure and keeps its call with the task.  The referring peer may hang
    up as soon as the REFER is accepted (phones doing a blind transfer
    often do): the transfer goes on and the program is told only if it
    fails (C{Disconnect}).
  - C{peer}: the REFER is relayed to the peer of the task this one is
    bridged with (its C{Refer-To} and C{Referred-By} kept); that peer's
    answer is the answer, and its NOTIFYs are relayed back as ours, until
    the one that ends the subscription.  Not bridged: 603.
  - C{disabled}: 603, as before.

Refused: a REFER without exactly one C{Refer-To} (400), a target that is
no SIP URI (416), a REFER while a transfer is in progress or the call is
not answered (491 / 603).

[D] While the server carries a transfer out, the referring peer's
requests still reach its call (INFO keys, OPTIONS, BYE), but a re-INVITE
from it is answered 491: the channel is about to follow the new peer.
[D] A placed call's early media (a 183 with SDP) moves the channel to the
new peer at once; when that call then fails, the referring peer is sent a
re-INVITE with the channel's offer so its media comes back.

The C{refer} and C{transferReport} signal options are
L{communigate.pbx.signal_options}'; L{answer_refer} is what
L{communigate.pbx.call.Call} calls for the peer's REFER.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from communigate.pbx.call import Call, CallState, ICallOwner
from communigate.pbx.events import CALL_TRANSFERRED, CallError, Event
from communigate.pbx.leg import CallLeg, address_header, new_call_id
from communigate.pbx.transparent_transfers import bridged_far_task, far_sdp, far_submitter, offer_to_far
from communigate.signal.model import response
from communigate.sip.headers import HeaderError, parse_name_addr
from communigate.sip.uri import SIPURI

__all__ = ["answer_refer"]

SIPFRAG = "message/sipfrag;version=2.0"

log = Logger(namespace="communigate.pbx.refer")


def _notify(call, status: str, final: bool) -> None:
    """
    A NOTIFY of the REFER's implicit subscription to C{call}'s peer.
    """
    state = "terminated;reason=noresource" if final else "active;expires=60"
    try:
        signal = call.leg.request(
            "NOTIFY", call.task.submitter,
            headers=(("Event", "refer"), ("Subscription-State", state)),
            body=f"SIP/2.0 {status}\r\n".encode(), content_type=SIPFRAG, contact=call._contact(),
        )
    except Exception as error:  # a leg without a target: nothing to notify
        log.info("Call {call_id}: no NOTIFY sent: {error}", call_id=call.leg.call_id, error=error)
        return
    call._send(signal)


def _notify_if_live(call, status: str, final: bool) -> None:
    if call.is_live:
        _notify(call, status, final)


def _refer_target(signal):
    """
    The C{Refer-To} URI of a REFER, or a C{(code, reason)} refusal.
    """
    values = [v for n, v in signal.headers if n.lower() in ("refer-to", "r")]
    if len(values) != 1:
        return 400, "A REFER needs exactly one Refer-To"
    try:
        uri = parse_name_addr(values[0], "Refer-To").uri
    except HeaderError as error:
        return 400, str(error)[:80]
    if not isinstance(uri, SIPURI):
        return 416, "Refer-To is not a SIP URI"
    return uri


def answer_refer(call, signal, responder) -> None:
    """
    The peer's REFER inside C{call} (in its task's turn): see the module
    docstring.
    """
    task = call.task
    mode = task.signal_option("refer") if hasattr(task, "signal_option") else "disabled"
    if mode == "disabled":
        responder.final(response(603, "Transfers of this call are not accepted"))
        return
    target = _refer_target(signal)
    if isinstance(target, tuple):
        responder.final(response(*target))
        return
    if call.state != CallState.CONNECTED or task.call is not call:
        responder.final(response(603, "The call is not answered"))
        return
    if mode == "peer":
        _relay(call, signal, target, responder)
        return
    if isinstance(task, _Transfer):
        responder.final(response(491, "A transfer is in progress"))
        return
    _Transfer(task, call, signal, target).start(responder)


@implementer(ICallOwner)
class _StandIn:
    """
    Stands in as the C{task} of calls for a while: they report here
    first.  What a call asks of its owner (L{ICallOwner}) and a subclass
    does not answer itself is the task's.
    """

    stands_in = True  # replaces.py: a call under a transfer is not taken over

    def __init__(self, task) -> None:
        self._task = task

    @property
    def id(self):
        return self._task.id

    @property
    def account(self):
        return self._task.account

    @property
    def service(self):
        return self._task.service

    @property
    def submitter(self):
        return self._task.submitter

    @property
    def ended(self):
        return self._task.ended

    def later(self, fn, *args) -> None:
        self._task.later(fn, *args)

    def signal_option(self, name: str, value=None):
        return self._task.signal_option(name, value)

    def _make_channel(self):
        return self._task._make_channel()

    def _interrupt(self) -> None:
        self._task._interrupt()

    def _dtmf_received(self, key: str, method: str) -> None:
        self._task._dtmf_received(key, method)

    def _peer_offer(self, call, signal, responder, expect_ack: bool) -> None:
        self._task._peer_offer(call, signal, responder, expect_ack)

    def _peer_ack_answer(self, call, sdp) -> None:
        self._task._peer_ack_answer(call, sdp)

    def _call_provisioned(self, call, answer) -> None:
        self._task._call_provisioned(call, answer)

    def _call_completed(self, call, error) -> None:
        self._task._call_completed(call, error)

    def _call_ended(self, call, reason: str) -> None:
        self._task._call_ended(call, reason)

    def _call_transferred(self, call) -> None:
        self._task._call_transferred(call)

    def _call_info(self, call, info) -> None:
        self._task._call_info(call, info)


class _Transfer(_StandIn):
    """
    A transfer the server carries out for a task (C{refer} is C{self}).

    While it lasts, the referring peer's call and the new call report to
    this object instead of the task, so the task keeps its call, mode and
    channel until the new call is answered.
    """

    def __init__(self, task, call, signal, target: SIPURI) -> None:
        super().__init__(task)
        self.old = call
        self.target = target
        self.new = None
        self.referrer_left = False
        self.early_media = False
        self.referred_by = signal.header("Referred-By") or call.leg.remote.split(";tag=")[0]
        self.channel = call.channel
        self.far = None  # the task a transparent call is bridged with

    @property
    def call(self):
        return self._task.call

    # -- starting -------------------------------------------------------------

    def start(self, responder) -> None:
        task, old = self._task, self.old
        responder.final(old.leg.answer(202, "Accepted", contact=old._contact()))
        _notify(old, "100 Trying", final=False)
        headers = [("Referred-By", self.referred_by)]
        replaces = [v for n, v in self.target.headers if n.lower() == "replaces"]
        if replaces:
            headers += [("Replaces", replaces[0]), ("Require", "replaces")]
        destination = str(self.target.without_headers())
        domain = task.account.partition("@")[2] or task.service.main_domain()
        leg = CallLeg.placing(
            call_id=new_call_id(task.service.host),
            local=address_header(task.account, domain),
            remote=f"<{destination}>",
        )
        new = Call(self, leg)
        old.task = self
        self.new = new
        log.info("Task {id}: its peer transfers the call to {target}", id=task.id, target=destination)
        submitter, offer = task.submitter, None
        self.far = bridged_far_task(task, old)
        if self.far is not None:
            # No channel to offer: the target gets the far peer's SDP and
            # takes the referrer's place in the bridge (transparent_transfers).
            offer = far_sdp(self.far)
            if offer is None:
                self._failed("488 No media to offer the transfer target")
                return
            submitter = far_submitter(submitter, self.far)
            new.may_fall_back = False
        else:
            new.channel = old.channel  # none when the media is still to come back: a new one
        try:
            new.place(destination, submitter, headers=tuple(headers), offer=offer)
        except CallError as error:
            self._failed(str(error))

    # -- what the two calls report ---------------------------------------------

    def later(self, fn, *args) -> None:
        if self._task.ended:
            # The task ended meanwhile: the new call must still be wound up
            # (acknowledged and hung up), and nothing else will do it.
            self._in_turn(fn, args)
            return
        self._task.later(self._in_turn, fn, args)

    def _in_turn(self, fn, args) -> None:
        old, new = self.old, self.new
        if new is not None and fn == new._final and not args[0].success and new.channel is self.channel:
            new.channel = None  # the call failed: its _finish must not close the task's channel
        if fn == old.peer_request and old.task is self:
            method = args[0].method.upper()
            if method == "BYE":
                # The referrer leaves: the channel stays for the new call.
                old.channel = None
            elif method in ("INVITE", "UPDATE") and old.is_live:
                if old.leg.accept_remote_cseq(args[0]):
                    args[1].final(response(491, "A transfer is in progress"))
                else:
                    args[1].final(response(500, "Out of order request"))
                return
        fn(*args)

    def _call_ended(self, call, reason: str) -> None:
        if call is self.old:
            self.referrer_left = True
        elif call is self.new:
            self._failed(reason)

    def _call_provisioned(self, call, answer) -> None:
        if call is self.new and answer.body and not self.early_media and not call.transparent:
            self.early_media = True  # the channel follows the new peer already
            if call.channel is not None:
                call.channel.forget_peer()
        if call is self.new and self.old.is_live and answer.code > 100:
            _notify(self.old, f"{answer.code} {answer.reason}".strip(), final=False)

    def _call_completed(self, call, error) -> None:
        if call is not self.new:
            return
        if error is not None:
            self._failed(error)
        else:
            self._succeeded()

    def _call_transferred(self, call) -> None:
        pass

    # -- the outcome ------------------------------------------------------------

    def _task_gone(self) -> bool:
        task = self._task
        return task.ended or (task.call is not self.old)

    def _succeeded(self) -> None:
        task, new = self._task, self.new
        if new.transparent and self.far is not None and not self._task_gone():
            # The far peer is told where the media goes now; the transfer
            # is done when it accepts (_far_answered).
            offer_to_far(task, self.later, self.far, new.peer_sdp, self._far_answered)
            return
        self._hand_over()

    def _far_answered(self, code: int, reason, answer) -> None:
        old, new = self.old, self.new
        if not new.is_live:
            # The target hung up meanwhile (the transfer failed): the far
            # peer's media goes back to the referrer, if it is still there.
            if code < 300 and old.is_live and old.peer_sdp is not None and self.far is not None:
                self.far.later(self.far._bridged_offer, self._task, old.peer_sdp, lambda *_: None)
            return
        if code >= 300 or answer is None:
            log.info("Task {id}: the far peer refused the transfer target's media ({code} {reason})",
                     id=self._task.id, code=code, reason=reason)
            new.task = self._task
            new.hang_up()
            self._failed(f"{code} {reason}".strip() if code >= 300 else "488 No usable media")
            return
        self._hand_over()

    def _hand_over(self) -> None:
        task, old, new = self._task, self.old, self.new
        new.task = task
        old.task = task
        if self._task_gone():
            new.hang_up()  # the program hung up or ended meanwhile
            return
        task.call = new
        if old.joined_media is not None:
            old.joined_media.hand_over(old, new)
        if new.channel is not None and not self.early_media:
            new.channel.forget_peer()
        if old.is_live:
            _notify(old, "200 OK", final=True)
            old.replaced()
        log.info("Task {id}: transferred to {target}", id=task.id, target=new.leg.remote)
        if task.signal_option("transferReport"):
            task._queue_input(Event(CALL_TRANSFERRED, None, str(self.target.without_headers())))

    def _failed(self, error: str) -> None:
        task, old, new = self._task, self.old, self.new
        old.task = task
        if new is not None:
            new.task = task
            if new.channel is self.channel:
                new.channel = None  # the channel stays with the task's call
        log.info("Task {id}: the transfer its peer asked for failed: {error}", id=task.id, error=error)
        if old.is_live:
            _notify(old, error if error[:3].isdigit() else f"503 {error}", final=True)
            if self.early_media:
                try:
                    old.reinvite("sendrecv").addErrback(lambda failure: None)
                except CallError:
                    pass
            return
        # The referrer hung up meanwhile: the task's call is over.
        if self.channel is not None and not self.channel.closed:
            self.channel.close()
        if not task.ended and task.call is old:
            task._call_ended(old, "BYE")


def _relay(call, signal, target: SIPURI, responder) -> None:
    """
    C{refer} is C{peer}: the REFER goes to the bridged task's peer.
    """
    task = call.task
    other = task.bridge
    other_call = None if other is None else other.call
    if other_call is None or other_call.state != CallState.CONNECTED:
        responder.final(response(603, "No bridged peer to pass the transfer to"))
        return
    referred_by = signal.header("Referred-By") or call.leg.remote.split(";tag=")[0]
    other.later(_relay_in_turn, other, other_call, call, str(target), referred_by, responder)


def _uri_text(value: str) -> str:
    try:
        return str(parse_name_addr(value).uri)
    except HeaderError:
        return value.strip().strip("<>")


def _relay_in_turn(other, other_call, call, target: str, referred_by: str, responder) -> None:
    if other.call is not other_call or not other_call.is_live:
        responder.final(response(603, "No bridged peer to pass the transfer to"))
        return
    relay = _NotifyRelay(other, other_call, call)

    def accepted() -> None:  # in the referrer's task's turn
        if call.is_live:
            responder.final(call.leg.answer(202, "Accepted", contact=call._contact()))
        else:
            responder.final(response(481))

    def answered(_):
        call.task.later(accepted)

    def refused(failure):
        if other_call.task is relay:
            other_call.task = other
        error = failure.value
        code = getattr(error, "code", None) or 603
        responder.final(response(code if 300 <= code <= 699 else 603, str(error)[4:] or None))

    try:
        sent = other_call.refer(target, _uri_text(referred_by))
    except CallError as error:
        responder.final(response(error.code or 491, str(error)))
        return
    other_call.task = relay  # its peer's NOTIFYs are passed on
    sent.addCallbacks(answered, refused)


class _NotifyRelay(_StandIn):
    """
    Stands in as the task of the bridged call whose peer was sent the
    relayed REFER: that peer's NOTIFYs (C{Event: refer}) are passed on to
    the referring peer as ours, until the subscription ends.
    """

    def __init__(self, task, call, referrer_call) -> None:
        super().__init__(task)
        self.call = call
        self.referrer = referrer_call

    def later(self, fn, *args) -> None:
        self._task.later(self._in_turn, fn, args)

    def _in_turn(self, fn, args) -> None:
        if fn == self.call.peer_request and args[0].method.upper() == "NOTIFY":
            signal = args[0]
            event = (signal.header("Event") or "").split(";", 1)[0].strip().lower()
            if event == "refer" and self.referrer.is_live:
                state = (signal.header("Subscription-State") or "").strip().lower()
                status = signal.body.decode("utf-8", "replace").split("\r\n", 1)[0]
                status = status[len("SIP/2.0 "):] if status.startswith("SIP/2.0 ") else status
                self.referrer.task.later(
                    _notify_if_live, self.referrer, status or "100 Trying", state.startswith("terminated"))
                if state.startswith("terminated"):
                    self.call.task = self._task
        fn(*args)
