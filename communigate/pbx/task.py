"""
A PBX task: one running program (an L{ICallApplication}) with at most one
call, its media channel and an input queue.

The task is a machine on the core scheduler (L{communigate.core.scheduler}):
whatever happens to it from outside -- the caller's BYE, a response to its
INVITE, a DTMF key the channel heard, an event another task sent, a timer
-- is posted to its queue and handled in order, one at a time.  The
program is an C{async def} coroutine run with C{ensureDeferred}; its
blocking verbs (C{read_input}, C{play_file}, C{start_bridge} ...) return
Deferreds that the task fires from its handler, so the program always
runs inside the task's turn and never beside another of its inputs.

Modes (CG/PL): C{disconnected} (no call; also while an outgoing call is
being set up), C{incoming} (a call to answer), C{provisioned} (a 1xx was
sent), C{connected}, C{waiting} (blocked in C{start_bridge}).

  incoming ──provision_call──▶ provisioned ──accept_call──▶ connected
     │ reject/redirect_call         │ reject/redirect_call      │ disconnect, peer BYE
     ▼                              ▼                            ▼
  disconnected ◀───────────────────────────────────────────── (any)
  disconnected ──start_call, 2xx──▶ connected
  incoming/provisioned/connected ──start_bridge──▶ waiting ──accepted──▶ connected
                                                           └─rejected──▶ (as before)

Verbs return L{None} (or their value) on success and raise
L{communigate.pbx.events.CallError} with CG/PL's error text on failure;
after a failure the mode is what the digest says (a failed accept
leaves the task disconnected).  C{read_input} returns a DTMF key (a
one-character string), an L{Event} or L{None} on timeout.  Playing and
recording stop early on a DTMF key (unless C{set_interrupt_on_dtmf(False)}),
on a queued event, and on a hang-up.

A task ends when its program returns or raises, or when it is killed
(C{KILLNODE}: the program's current await raises C{CancelledError}).  On
the way out it releases its call: an unanswered one is rejected (480, or
500 when the program raised), a connected one hung up (BYE), a call being
placed cancelled, a bridge broken (the other task gets C{BreakBridge}).
"""

from __future__ import annotations

import inspect
import re
from collections import deque

import attrs
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.core.scheduler import Machine, Started
from communigate.pbx.bridging import BridgeVerbs
from communigate.pbx.call import Call, CallState, ICallOwner
from communigate.pbx.events import (
    CALL_COMPLETED,
    CALL_INFO,
    CALL_PROVISION,
    CALL_TRANSFERRED,
    DISCONNECT,
    BridgeMode,
    CallError,
    Event,
    TaskEnded,
    TaskMode,
    check_event_name,
)
from communigate.pbx.leg import SUPPORTED_WITHOUT_100REL, CallLeg, LegError, address_header, new_call_id
from communigate.pbx.media_verbs import MediaVerbs
from communigate.pbx.mixing import MixerVerbs
from communigate.pbx.rendezvous import RendezvousVerbs
from communigate.pbx.signal_options import SignalOptionVerbs
from communigate.pbx.transfer import TransferVerbs
from communigate.routing.addresses import Address, AddressError, parse_address, sip_uri
from communigate.signal.model import Submitter
from communigate.sip.replaces import parse_replaces

__all__ = ["Task"]

#: Unread events (and, apart, unread keys) a task keeps; more are dropped.
MAX_QUEUED = 256
#: What send_call_info takes as a content type: type/subtype, and parameters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;[^\r\n]*)?\Z")


class _Do:
    """
    An internal event: call C{fn(*args)} in the task's turn.
    """

    __slots__ = ("fn", "args")

    def __init__(self, fn, args) -> None:
        self.fn = fn
        self.args = args

    def __repr__(self) -> str:
        return f"<do {getattr(self.fn, '__name__', self.fn)}>"


class _Timeout:
    __slots__ = ("waiter",)

    def __init__(self, waiter) -> None:
        self.waiter = waiter

    def __repr__(self) -> str:
        return f"<timeout of {self.waiter.kind}>"


class _Waiter:
    """
    The one blocking verb the program is in.
    """

    __slots__ = ("kind", "deferred", "timer", "token")

    def __init__(self, kind: str, token=None) -> None:
        self.kind = kind
        self.deferred: Deferred | None = None
        self.timer = None
        self.token = token


@implementer(ICallOwner)
class Task(BridgeVerbs, MixerVerbs, TransferVerbs, SignalOptionVerbs, MediaVerbs, RendezvousVerbs, Machine):
    """
    One running program; see the module docstring.

    @ivar id: the task ID (C{STARTPBXTASK} returns it).
    @ivar program: the application's name.
    @ivar account: the account it runs on behalf of.
    @ivar parameters: the start parameters (C{program{a,b}}, or the
        C{STARTPBXTASK} parameter).
    @ivar mode: the L{TaskMode}.
    @ivar status: what the program set with L{set_status}.
    @ivar call: the current L{Call}, or L{None}.
    @ivar bridge: the task this one is bridged with, or L{None}.
    @ivar dropped_inputs: events and keys dropped because the program left
        L{MAX_QUEUED} unread.
    """

    log = Logger()

    def __init__(self, service, task_id: str, application, account: str, parameters=()) -> None:
        self.service = service
        self.id = task_id
        self.application = application
        self.program = application.name
        self.account = account
        self.parameters = tuple(parameters)
        self.mode = TaskMode.DISCONNECTED
        self.status = None
        self.call: Call | None = None
        self.bridge: Task | None = None
        self.interrupt_on_dtmf = True
        self.submitter = Submitter("pbx", account)
        self.started_at = service.clock.seconds()
        self.error: str | None = None
        self.ended = False
        self.dropped_inputs = 0
        self._inputs: deque[Event] = deque()
        self._dtmf: deque[str] = deque()
        self._waiter: _Waiter | None = None
        self._run: Deferred | None = None
        self._mode_before_wait = TaskMode.DISCONNECTED
        self._bridging_for: Event | None = None  # start_bridged_call's StartBridge

    def __repr__(self) -> str:
        return f"<Task {self.id} {self.program} for {self.account} {self.mode.value}>"

    # -- starting -------------------------------------------------------------

    def take_incoming(self, signal, responder) -> None:
        """
        Make C{signal} (an INVITE) the task's call, to answer (before the
        task starts).

        @raise LegError: the INVITE cannot make a dialog.
        """
        leg = CallLeg.from_invite(signal)
        self.call = Call(self, leg, responder=responder)
        self.mode = TaskMode.INCOMING

    def later(self, fn, *args) -> None:
        """
        Run C{fn(*args)} in the task's own turn (after what is queued).  The
        way every outside input reaches the task.
        """
        if not self.ended:
            self.post(_Do(fn, args))

    def handle(self, event) -> None:
        kind = type(event)
        if kind is _Do:
            event.fn(*event.args)
        elif kind is Event:
            self._queue_input(event)
        elif kind is _Timeout:
            if self._waiter is event.waiter:
                self._wake(self._timeout_value(event.waiter))
        elif kind is Started:
            self._begin()

    def _begin(self) -> None:
        try:
            outcome = self.application.run(self)
            if inspect.isawaitable(outcome):
                running = ensureDeferred(outcome)
            else:
                running = maybeDeferred(lambda: outcome)
        except Exception:
            running = fail()
        self._run = running
        running.addBoth(self._program_ended)

    def _program_ended(self, result) -> None:
        self._run = None
        if isinstance(result, Failure):
            if result.check(CancelledError, TaskEnded):
                self.log.info("Task {id} ({program}) was stopped", id=self.id, program=self.program)
            else:
                self.error = result.getErrorMessage() or result.type.__name__
                self.service.program_failed(self, result)
        self.stop()

    def kill(self) -> None:
        """
        End the task now (C{KILLNODE}): the program's current await raises
        C{CancelledError}, the call is released.
        """
        if self.ended:
            return
        running = self._run
        if running is not None and not running.called:
            running.cancel()
        self.stop()

    def stopped(self) -> None:
        """
        The scheduler stopped the task: release everything it holds.
        """
        if self.ended:
            return
        self.ended = True
        running, self._run = self._run, None
        if running is not None and not running.called:
            # Stopped from outside the program (a handler of ours raised,
            # the server stops): the program's await raises CancelledError.
            running.cancel()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and waiter.timer is not None:
            waiter.timer.cancel()
        self._abandon_bridge(waiter)
        self._break_bridge_quietly()
        self._release_mixer()
        if self._bridging_for is not None:
            self._answer_bridge(self._bridging_for, "the bridging task ended")
        call, self.call = self.call, None
        if call is not None and call.is_live:
            try:
                if call.state in (CallState.INCOMING, CallState.PROVISIONED):
                    call.reject(500 if self.error else 480, "Application failed" if self.error else "Application ended")
                else:
                    call.hang_up()
            except Exception:
                self.log.failure("Task {id}: releasing its call failed", id=self.id)
        self.mode = TaskMode.DISCONNECTED
        if waiter is not None and waiter.deferred is not None and not waiter.deferred.called:
            waiter.deferred.errback(TaskEnded())
        self.service.task_ended(self)

    # -- waiting ----------------------------------------------------------------

    def _check(self) -> None:
        if self.ended:
            raise TaskEnded()

    def _wait(self, kind: str, timeout: float | None = None, token=None) -> Deferred:
        if self._waiter is not None:
            raise RuntimeError(f"task {self.id} is already waiting in {self._waiter.kind}; one verb at a time")
        waiter = _Waiter(kind, token)

        def cancelled(d):
            if self._waiter is waiter:
                self._waiter = None
                self._unwait(waiter)

        waiter.deferred = Deferred(cancelled)
        if timeout is not None:
            waiter.timer = self.after(max(0.0, timeout), _Timeout(waiter))
        self._waiter = waiter
        return waiter.deferred

    def _unwait(self, waiter: _Waiter) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if waiter.kind == "play" and self.call is not None and self.call.channel is not None:
            self.call.channel.stop_playing()
        if waiter.kind == "record" and self.call is not None and self.call.channel is not None:
            self.call.channel.stop_recording()
        if waiter.kind == "bridge":
            self.mode = self._mode_before_wait

    def _wake(self, value, kind: str | None = None, *, error: Exception | None = None) -> bool:
        waiter = self._waiter
        if waiter is None or (kind is not None and waiter.kind != kind):
            return False
        self._waiter = None
        if waiter.timer is not None:
            waiter.timer.cancel()
            waiter.timer = None
        if waiter.kind == "bridge" and self.mode is TaskMode.WAITING:
            self.mode = self._mode_before_wait
        if error is not None:
            waiter.deferred.errback(error)
        else:
            waiter.deferred.callback(value)
        return True

    def _timeout_value(self, waiter: _Waiter):
        if waiter.kind == "record":
            return self._finish_recording()
        return None

    def _interrupt(self) -> None:
        """
        A DTMF key, an event or a hang-up: playing and recording stop, and
        so does waiting in C{read_queue}.
        """
        waiter = self._waiter
        if waiter is None:
            return
        if waiter.kind == "play":
            if self.call is not None and self.call.channel is not None:
                self.call.channel.stop_playing()
            self._wake(False)
        elif waiter.kind == "record":
            self._wake(self._finish_recording())
        elif waiter.kind == "queue":
            self._wake(None)

    # -- inputs -----------------------------------------------------------------

    def _queue_input(self, event: Event) -> None:
        if self._waiter is not None and self._waiter.kind == "input":
            self._wake(event)
            return
        if self._room(self._inputs, "event"):
            self._inputs.append(event)
        self._interrupt()

    def _room(self, queue, what: str) -> bool:
        """
        Whether C{queue} (events or keys the program has not read) has room;
        past L{MAX_QUEUED} what comes is dropped, counted and logged once.
        """
        if len(queue) < MAX_QUEUED:
            return True
        self.dropped_inputs += 1
        if self.dropped_inputs == 1:
            self.log.info(
                "Task {id} ({program}) reads no input: {max} unread; dropping every {what} from now on",
                id=self.id, program=self.program, max=MAX_QUEUED, what=what,
            )
        return False

    def _dtmf_received(self, key: str, method: str) -> None:
        if self.ended:
            return
        if self._waiter is not None and self._waiter.kind == "input":
            self._wake(key)
            return
        if self._room(self._dtmf, "key"):
            self._dtmf.append(key)
        if self.interrupt_on_dtmf:
            self._interrupt()

    def deliver_event(self, event: Event) -> bool:
        """
        Queue C{event} for the program (C{send_event}, C{SENDTASKEVENT});
        whether the task was still running to take it.
        """
        return not self.ended and self.post(event)

    def read_input(self, timeout: float | None = None) -> Deferred:
        """
        The next DTMF key (a one-character string), else the next event,
        else L{None} after C{timeout} seconds (L{None}: wait as long as it
        takes; 0: do not wait).
        """
        self._check()
        if self._dtmf:
            return succeed(self._dtmf.popleft())
        if self._inputs:
            return succeed(self._inputs.popleft())
        if timeout is not None and timeout <= 0:
            return succeed(None)
        return self._wait("input", timeout)

    def dtmf(self) -> str:
        """
        The keys received and not read yet (CG/PL C{DTMF()}, a peek).
        """
        return "".join(self._dtmf)

    def clear_dtmf(self) -> None:
        self._dtmf.clear()

    def set_interrupt_on_dtmf(self, flag: bool) -> bool:
        """
        Whether a key stops playing and recording; returns the old value.
        """
        old, self.interrupt_on_dtmf = self.interrupt_on_dtmf, bool(flag)
        return old

    def send_event(self, target, name: str, parameter=None) -> bool:
        """
        Send an event to another task (a L{Task} or its ID), fire and
        forget; whether it was running to take it.
        """
        self._check()
        check_event_name(name)
        other = target if isinstance(target, Task) else self.service.find(str(target))
        if other is None:
            return False
        return other.deliver_event(Event(name, self.id, parameter))

    def start_task(self, program: str, parameters=(), account: str | None = None) -> Task:
        """
        Start another task running C{program} (for this task's account
        unless C{account} is given), without a call; e.g. the outgoing half
        of a B2BUA.  Returns it (its C{id} is what C{send_event} and
        C{start_bridge} take).

        @raise CallError: no application of that name.
        """
        self._check()
        try:
            return self.service.start_task(program, account or self.account, tuple(parameters))
        except KeyError:
            raise CallError(f"no application {program}") from None

    def set_status(self, status) -> None:
        """
        What C{READNODESTATUS} shows for this task.
        """
        self.status = status

    # -- the call, as the program sees it -------------------------------------------

    def is_connected(self) -> bool:
        return self.mode is TaskMode.CONNECTED or (
            self.mode is TaskMode.WAITING and self._mode_before_wait is TaskMode.CONNECTED
        )

    def is_half_connected(self) -> bool:
        return self.is_connected() or self.mode is TaskMode.PROVISIONED

    def _leg(self) -> CallLeg | None:
        return None if self.call is None else self.call.leg

    def remote_uri(self) -> str | None:
        leg = self._leg()
        return None if leg is None else leg.remote

    def local_uri(self) -> str | None:
        leg = self._leg()
        return None if leg is None else leg.local

    def incoming_request_uri(self) -> str | None:
        leg = self._leg()
        return None if leg is None or not leg.incoming else leg.invite.targets[0]

    def remote_ip_address(self) -> str | None:
        leg = self._leg()
        if leg is None or leg.invite is None or leg.invite.submitter.address is None:
            return None
        return leg.invite.submitter.address[0] if leg.incoming else None

    def remote_authentication(self) -> str | None:
        """
        The account the caller authenticated as, or L{None}.
        """
        leg = self._leg()
        return None if leg is None or not leg.incoming else leg.invite.submitter.account

    def pending_request_data(self, field: str):
        """
        A header field of the INVITE that started the call (C{Call-ID},
        C{From}, C{To}, C{CSeq} ...), as text; L{None} when absent.
        """
        leg = self._leg()
        if leg is None or leg.invite is None:
            return None
        if field.lower() == "call-id":
            return leg.call_id
        return leg.invite.header(field)

    # -- call control -------------------------------------------------------------

    def _incoming(self) -> Call:
        self._check()
        if self.call is None or self.mode not in (TaskMode.INCOMING, TaskMode.PROVISIONED):
            raise CallError("no incoming call")
        return self.call

    def _settle(self, call: Call) -> None:
        """
        The mode after a verb acted on C{call}.
        """
        if not call.is_live:
            if self.call is call:
                self.call = None
            self.mode = TaskMode.DISCONNECTED
        elif call.state == CallState.CONNECTED:
            self.mode = TaskMode.CONNECTED
        elif call.state == CallState.PROVISIONED:
            self.mode = TaskMode.PROVISIONED

    def _verb(self, action, call: Call):
        try:
            action()
        except CallError as error:
            self._settle(call)
            return fail(error)
        except ValueError as error:
            return fail(error)
        self._settle(call)
        return succeed(None)

    def accept_call(self) -> Deferred:
        """
        Answer the incoming call (200 with our SDP); the task is connected.
        A failure (no common codec: 488) leaves it disconnected.
        """
        try:
            call = self._incoming()
        except CallError as error:
            return fail(error)
        return self._verb(call.accept, call)

    def provision_call(self, media: bool = False, code: int | None = None, reason: str = "",
                       reliably: bool = False) -> Deferred:
        """
        Send a provisional response: 180 Ringing, or with C{media} 183
        Session Progress with our SDP, so that what the task plays is heard
        before it answers.  With C{reliably} (and a caller that supports
        it) the response goes reliably (RFC 3262) and the verb waits for
        the caller's PRACK; no PRACK within 32 s rejects the call (500) and
        fails.  A caller that requires it gets it reliably in any case.
        """
        try:
            call = self._incoming()
        except CallError as error:
            return fail(error)
        code = code or (183 if media else 180)
        waiting = []

        def settled(error) -> None:
            if waiting:
                self._wake(None, "provision", error=None if error is None else CallError(error))

        try:
            reliable = call.provision(code, reason, media, reliably=reliably, settled=settled)
        except CallError as error:
            self._settle(call)
            return fail(error)
        except ValueError as error:
            return fail(error)
        self._settle(call)
        if not reliable or call._reliable is None or not call._reliable.waiting:
            return succeed(None)
        waiting.append(True)
        return self._wait("provision")

    def reject_call(self, code: int = 486, reason: str = "") -> Deferred:
        """
        Refuse the incoming call with C{code} (300-699).
        """
        try:
            call = self._incoming()
        except CallError as error:
            return fail(error)
        return self._verb(lambda: call.reject(code, reason), call)

    def redirect_call(self, addresses) -> Deferred:
        """
        Send the call on to C{addresses} (one or a list): the Signal service
        rings them instead; the task is disconnected.
        """
        try:
            call = self._incoming()
        except CallError as error:
            return fail(error)
        addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        return self._verb(lambda: call.redirect(addresses), call)

    def fork_call(self, addresses) -> Deferred:
        """
        Ring C{addresses} too while the task still holds the call; the first
        to answer wins (the task's own call is cancelled if another does).
        """
        try:
            call = self._incoming()
        except CallError as error:
            return fail(error)
        addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        return self._verb(lambda: call.fork(addresses), call)

    def start_call(self, destination: str, headers=(), expires: float | None = None, *,
                   caller: str | None = None, credentials: tuple[str, str] | None = None,
                   replaces: str | None = None, no_100rel: bool = False) -> Deferred:
        """
        Place a call to C{destination} (any address the Router reads: an
        account, a number, a SIP URI, C{#program}).  Returns at once; then
        zero or more C{CallProvision} events and exactly one
        C{CallCompleted} (parameter L{None}: connected; else the error).
        C{headers} are added to the INVITE; C{expires} is how many seconds
        it may ring (CG/PL's C{Expires}; by default as long as the callee
        keeps ringing: a first answer within 32 s, then 181 s from its last
        provisional response, RFC 3261's Timer C; 408 when time is up); C{caller}
        is the From address (CG/PL's C{From}; default: the task's
        account); C{credentials} C{(name, password)} answer one digest
        challenge (401/407) of the callee (CG/PL's C{authUsername} and
        C{authPassword}); C{replaces} (CG/PL's C{Replaces},
        C{callid;to-tag=..;from-tag=..}) asks the callee to put this call
        in the place of that dialog of its own (RFC 3891: sent with
        C{Require: replaces}); C{no_100rel} (CG/PL's C{No100rel}) leaves
        C{100rel} out of the INVITE's C{Supported}, for a callee that
        mishandles reliable provisional responses (L{communigate.pbx.reliable}).
        """
        return self._place_call(destination, headers, expires, caller=caller, credentials=credentials,
                                replaces=replaces, no_100rel=no_100rel)

    def _place_call(self, destination: str, headers=(), expires: float | None = None, *,
                    caller: str | None = None, credentials: tuple[str, str] | None = None,
                    replaces: str | None = None, offer: bytes | None = None,
                    offer_from: tuple[str, int] | None = None, no_100rel: bool = False) -> Deferred:
        """
        L{start_call}, with C{offer}: the SDP the INVITE carries instead of
        our channel's (a transparent bridge's caller's, whose address
        C{offer_from} the INVITE's submitter names, so that the SIP side
        can decide whether the media between the two peers needs the
        media relay).
        """
        try:
            self._check()
            if self.call is not None or self.mode is not TaskMode.DISCONNECTED:
                raise CallError("the task already has a call")
            domain = self.account.partition("@")[2] or self.service.main_domain()
            local = address_header(caller or self.account, domain)
            remote = address_header(destination, domain)
            headers = tuple(headers) + _replaces_headers(replaces)
        except (CallError, LegError) as error:
            return fail(error if isinstance(error, CallError) else CallError(f"bad destination: {error}"))
        leg = CallLeg.placing(call_id=new_call_id(self.service.host), local=local, remote=remote)
        if no_100rel:
            leg.supported = SUPPORTED_WITHOUT_100REL
        call = Call(self, leg, credentials=credentials)
        try:
            if expires is not None and not 0 < expires <= 3600:
                raise CallError("expires is 1-3600 seconds")
            submitter = self.submitter
            if offer is not None and offer_from is not None:
                submitter = attrs.evolve(submitter, address=tuple(offer_from))
            call.place(destination, submitter, headers=tuple(headers), lifetime=expires, offer=offer)
        except CallError as error:
            return fail(error)
        self.call = call
        return succeed(None)

    def cancel_call(self) -> Deferred:
        """
        Give up the outgoing call being placed; no C{CallCompleted} follows.
        """
        self._check()
        call = self.call
        if call is None or call.state != CallState.CALLING:
            return fail(CallError("no outgoing call to cancel"))
        call.cancel()
        self.call = None
        self._bridging_failed("cancelled")
        return succeed(None)

    def disconnect(self, code: int | None = None, reason: str | None = None) -> Deferred:
        """
        Hang up: BYE (with a Reason when C{code} is given) when connected,
        a rejection (C{code}, default 480) when unanswered, a cancel when
        placing.  The task is disconnected.
        """
        self._check()
        call = self.call
        if call is None:
            return succeed(None)
        if call.state == CallState.CALLING:
            self._bridging_failed("cancelled")
        self._break_bridge_quietly()
        self._release_mixer()
        call.hang_up(code, reason)
        self.call = None
        self.mode = TaskMode.DISCONNECTED
        return succeed(None)

    def send_call_info(self, content_type: str, body: bytes | str = b"") -> Deferred:
        """
        Send the peer an INFO (CG/PL's C{SendCallInfo}) with C{body} of
        C{content_type} (C{"type/subtype"}); L{None} on a 2xx, else
        L{CallError} with the peer's answer.  The peer's own INFOs come as
        C{CallInfo} events (key presses as keys).
        """
        self._check()
        if not isinstance(content_type, str) or not _CONTENT_TYPE.match(content_type):
            return fail(ValueError(f"a content type is type/subtype, not {content_type!r}"))
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        call = self.call
        if call is None:
            return fail(CallError("not connected"))
        try:
            return call.info(content_type, data)
        except CallError as error:
            return fail(error)

    def send_call_options(self, destination: str) -> Deferred:
        """
        Ask C{destination} (any address the Router reads) what it supports
        with an OPTIONS outside any call (CG/PL's C{SendCallOptions}): its
        answer's headers as a dictionary (C{Allow}, C{Supported},
        C{Accept} ... the first value of each) on a 2xx, else L{CallError}
        with the answer (a phone that is not registered: 480).  The task
        need not have a call.
        """
        self._check()
        domain = self.account.partition("@")[2] or self.service.main_domain()
        try:
            leg = CallLeg.placing(call_id=new_call_id(self.service.host),
                                  local=address_header(self.account, domain),
                                  remote=address_header(destination, domain))
        except LegError as error:
            return fail(CallError(f"bad destination: {error}"))
        submitted = self.service.signals.submit(leg.options_signal(destination, self.submitter))
        done = Deferred()

        def answered(answer) -> None:
            if answer.success:
                headers: dict = {}
                for name, value in answer.headers:
                    headers.setdefault(name, value)
                done.callback(headers)
            else:
                done.errback(CallError(f"{answer.code} {answer.reason}".strip(), answer.code))

        submitted.final.addCallback(lambda answer: self.later(answered, answer))
        return done

    def transfer_call(self, destination: str) -> Deferred:
        """
        Blind transfer (REFER): ask the peer to call C{destination}.  Returns
        when the peer accepted the REFER (202); the task stays connected
        until the peer hangs up.
        """
        self._check()
        call = self.call
        if call is None or call.state != CallState.CONNECTED:
            return fail(CallError("not connected"))
        try:
            target = _sip_target(destination, self.account)
            referred_by = _sip_target(self.account, self.account)
            return call.refer(target, referred_by)
        except CallError as error:
            return fail(error)

    # -- what the call reports --------------------------------------------------------

    def _call_ended(self, call: Call, reason: str) -> None:
        """
        The peer hung up (BYE, CANCEL, no ACK).
        """
        if call is not self.call:
            return
        # what a recording heard before the hang-up is kept (record's result)
        recording = self._waiter is not None and self._waiter.kind == "record"
        heard = self._finish_recording() if recording else None
        self.call = None
        waiting = self._waiter is not None and self._waiter.kind == "bridge"
        self.mode = TaskMode.DISCONNECTED
        if waiting:
            self._mode_before_wait = TaskMode.DISCONNECTED
        self._break_bridge_quietly()
        self._release_mixer()
        if self._bridging_for is not None:
            self._bridging_failed("disconnected")
        event = Event(DISCONNECT, None, reason)
        if self._waiter is not None and self._waiter.kind == "input":
            self._wake(event)
            return
        self._inputs.append(event)
        if waiting:
            self._abandon_bridge(self._waiter)
            self._wake(None, "bridge", error=CallError("disconnected"))
        if recording:
            self._wake(heard)
            return
        if self._waiter is not None and self._waiter.kind == "transfer":
            self._wake(None, "transfer", error=CallError("disconnected"))
            return
        self._interrupt()

    def _call_info(self, call: Call, info: dict) -> None:
        """The peer's INFO (not a key): C{CallInfo} for the program."""
        if call is self.call:
            self._queue_input(Event(CALL_INFO, None, info))

    def _call_provisioned(self, call: Call, answer) -> None:
        if call is not self.call:
            return
        self._queue_input(Event(CALL_PROVISION, None, answer.code))
        starter = self._bridge_starter()
        if starter is not None:
            if call.transparent:
                sdp = answer.body if answer.body and call.peer_sdp == answer.body else None
                starter.later(starter._relay_provision, self, answer.code, sdp is not None, sdp)
                return
            media = bool(answer.body) and call.channel is not None and call.channel.negotiated
            starter.later(starter._relay_provision, self, answer.code, media)

    def _call_completed(self, call: Call, error: str | None) -> None:
        if call is not self.call:
            return
        if error is None:
            self.mode = TaskMode.CONNECTED
        else:
            self.call = None
            self.mode = TaskMode.DISCONNECTED
        if self._bridging_for is not None:
            bridging, self._bridging_for = self._bridging_for, None
            if error is None:
                try:
                    self._accept_bridge_event(bridging, BridgeMode.SIMPLE if call.fell_back else None)
                except CallError as failure:
                    self.log.info("Task {id}: the bridge failed: {error}", id=self.id, error=failure)
            else:
                self._answer_bridge(bridging, error)
        # After the bridge is accepted: a program woken by the event sees
        # itself bridged (a media verb must not take a transparent call's
        # media back first).
        self._queue_input(Event(CALL_COMPLETED, None, error))

    def _call_transferred(self, call: Call) -> None:
        if call is self.call:
            self._queue_input(Event(CALL_TRANSFERRED))

def _replaces_headers(replaces: str | None) -> tuple:
    if replaces is None:
        return ()
    try:
        value = parse_replaces(replaces).value()
    except ValueError as error:
        raise CallError(f"bad replaces: {error}") from None
    return (("Replaces", value), ("Require", "replaces"))


def _sip_target(destination: str, account: str) -> str:
    text = destination.strip()
    if text.lower().startswith(("sip:", "sips:", "tel:")):
        return text
    try:
        address = parse_address(text)
    except AddressError as error:
        raise CallError(f"bad destination: {error}") from None
    if not isinstance(address, Address):
        raise CallError("a transfer needs a SIP address")
    if address.domain is None:
        address = Address(address.local, account.partition("@")[2] or None)
    return sip_uri(address)
