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
from collections import deque

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.core.scheduler import Machine, Started
from communigate.pbx.bridging import BridgeVerbs
from communigate.pbx.call import Call, CallState, ICallOwner
from communigate.pbx.call_verbs import CallVerbs
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
from communigate.pbx.leg import CallLeg
from communigate.pbx.media_verbs import MediaVerbs
from communigate.pbx.mixing import MixerVerbs
from communigate.pbx.rendezvous import RendezvousVerbs
from communigate.pbx.signal_options import SignalOptionVerbs
from communigate.pbx.transfer import TransferVerbs
from communigate.signal.model import Submitter

__all__ = ["Task"]

#: Unread events (and, apart, unread keys) a task keeps; more are dropped.
MAX_QUEUED = 256


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
class Task(CallVerbs, BridgeVerbs, MixerVerbs, TransferVerbs, SignalOptionVerbs, MediaVerbs, RendezvousVerbs,
           Machine):
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
