"""
Bridging: the verbs that join two tasks' calls (CG/PL's C{StartBridge},
C{AcceptBridge}, C{RejectBridge}, C{BreakBridge}, C{StartBridgedCall}).

Signalling stays isolated either way (separate Call-IDs, tags, headers: a
B2BUA); the media meets in one of two modes (L{BridgeMode}):

  - simple: each task keeps its own call and media channel, and what one
    channel hears is sent out on the other (L{MediaChannel.bridge_to});
  - transparent: the two peers exchange SDP (the bridged call placed with
    the caller's offer, or connected calls joined by an offerless
    re-INVITE whose offer goes to the other peer and whose answer comes
    back in the ACK), the channels are released, later offers of either
    peer are answered by the other, and when the bridge ends each peer is
    re-INVITEd with its task's channel again (the call's half:
    L{communigate.pbx.transparent}).

The two tasks talk only through events posted to each other's queues
(C{later}), never by running each other's code:

  starter: start_bridge(B) ──StartBridge event──▶ B: accept_bridge(event)
           (waiting)        ◀──_bridge_accepted──  (B's call answered first
           its call answered, channels joined       when it was incoming)
                            ◀──_bridge_rejected──  reject_bridge(event, error)

C{start_bridged_call} is B placing a call for the starter: provisional
responses are relayed to the starter's caller, success accepts the
bridge, failure rejects it with the error.

L{BridgeVerbs} is a part of L{communigate.pbx.task.Task}, kept in its own
module; it uses the task's mode, waiter, call and service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from communigate.pbx.call import CallState
from communigate.pbx.events import START_BRIDGE, BREAK_BRIDGE, BridgeMode, CallError, Event, TaskMode
from communigate.pbx.transparent import TransparentBridging, is_sdp

if TYPE_CHECKING:
    from communigate.pbx.task import Task

__all__ = ["BridgeVerbs", "UNCOPIED"]

#: Headers a bridged call never takes from the other call: they make its
#: dialog, route it or describe its own body.
UNCOPIED = frozenset({
    "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "contact", "m", "route",
    "record-route", "max-forwards", "content-length", "l", "content-type", "c",
    "content-encoding", "e", "replaces", "require", "proxy-require", "supported", "k",
    "authorization", "proxy-authorization", "expires", "session-expires", "x",
})


def _copied_headers(call, names) -> tuple[tuple[str, str], ...]:
    """
    The headers named in C{names} of C{call}'s incoming INVITE, in the
    order it had them; L{CallError} for a name in L{UNCOPIED}.
    """
    wanted = {str(name).strip().lower() for name in names}
    refused = sorted(wanted & UNCOPIED)
    if refused:
        raise CallError(f"these headers are never copied to a bridged call: {', '.join(refused)}")
    invite = None if call is None or not call.leg.incoming else call.leg.invite
    if not wanted or invite is None:
        return ()
    return tuple((name, value) for name, value in invite.headers if name.lower() in wanted)


class BridgeVerbs(TransparentBridging):
    """
    The bridging verbs of a task (see the module docstring); the
    transparent exchanges are L{TransparentBridging}'s.
    """

    def _other(self, target) -> Task:
        other = target if isinstance(target, BridgeVerbs) else self.service.find(str(target))
        if other is None or other.ended:
            raise CallError("no such task")
        if other is self:
            raise CallError("a task cannot bridge itself")
        return other

    def start_bridge(self, target, mode=BridgeMode.SIMPLE) -> Deferred:
        """
        Ask task C{target} to bridge with this one and wait (mode
        C{waiting}) until it accepts (L{None}; our media then flows to and
        from its peer, and an unanswered call of ours is answered) or
        rejects (L{CallError} with its error).  C{mode} (a L{BridgeMode}
        or its name) goes with the C{StartBridge} event as its parameter:
        C{simple} (the default) joins the two channels, C{transparent}
        has the two peers exchange SDP (and falls back to C{simple} when a
        peer refuses the re-INVITE).
        """
        try:
            mode = BridgeMode.of(mode)
        except ValueError as error:
            return fail(error)
        try:
            self._check()
            if self.mode not in (TaskMode.INCOMING, TaskMode.PROVISIONED, TaskMode.CONNECTED):
                raise CallError("no call to bridge")
            if self.bridge is not None:
                raise CallError("already bridged")
            if self.mixer_attached() is not None:
                raise CallError("attached to a mixer")
            other = self._other(target)
        except CallError as error:
            return fail(error)
        waiting = self._wait("bridge", token=other)
        self._mode_before_wait = self.mode
        self.mode = TaskMode.WAITING
        if not other.deliver_event(Event(START_BRIDGE, self.id, mode.value)):
            self._wake(None, "bridge", error=CallError("no such task"))
        return waiting

    def accept_bridge(self, event: Event, mode=None) -> Deferred:
        """
        Accept the C{StartBridge} C{event}: our media is joined with the
        starter's (an incoming call of ours is answered first), in the
        event's mode unless C{mode} says otherwise.
        """
        try:
            self._check()
            if not isinstance(event, Event) or not event.is_start_bridge:
                raise CallError("not a StartBridge event")
            self._accept_bridge_event(event, mode)
        except ValueError as error:
            return fail(error)
        except CallError as error:
            return fail(error)
        return succeed(None)

    def _accept_bridge_event(self, event: Event, mode=None) -> None:
        mode = BridgeMode.of(mode if mode is not None else event.parameter)
        starter = self.service.find(event.sender or "")
        if starter is None or starter.ended:
            raise CallError("the bridging task is gone")
        if self.mixer_attached() is not None:
            self._answer_bridge(event, "attached to a mixer")
            raise CallError("attached to a mixer")
        if self.mode in (TaskMode.INCOMING, TaskMode.PROVISIONED):
            call = self.call
            try:
                call.accept()
            except CallError as error:
                self._answer_bridge(event, str(error))
                raise
            finally:
                self._settle(call)
        call = self.call
        if call is None or call.state != CallState.CONNECTED or (call.channel is None and not call.transparent):
            self._answer_bridge(event, "not connected")
            raise CallError("not connected")
        self.bridge = starter
        starter.later(starter._bridge_accepted, self, mode)

    def reject_bridge(self, event: Event, error: str = "rejected") -> Deferred:
        """
        Refuse the C{StartBridge} C{event}; the starter's C{start_bridge}
        raises L{CallError} with C{error}.
        """
        self._check()
        if not isinstance(event, Event) or not event.is_start_bridge:
            return fail(CallError("not a StartBridge event"))
        self._answer_bridge(event, error)
        return succeed(None)

    def _answer_bridge(self, event: Event, error: str) -> None:
        starter = self.service.find(event.sender or "")
        if starter is not None:
            starter.later(starter._bridge_rejected, self, error)

    def _bridge_wanted(self, other: Task) -> bool:
        """
        Whether we still wait in C{start_bridge} for C{other}; if not, it
        is told the bridge is off.
        """
        waiter = self._waiter
        if waiter is None or waiter.kind != "bridge" or waiter.token is not other or other.ended:
            if other.bridge is self:
                other.later(other._bridge_broken, self)
            return False
        return True

    def _bridge_accepted(self, other: Task, mode=BridgeMode.SIMPLE) -> None:
        if not self._bridge_wanted(other):
            return
        call = self.call
        theirs = other.call
        try:
            if call is None:
                raise CallError("disconnected")
            if self._mode_before_wait in (TaskMode.INCOMING, TaskMode.PROVISIONED):
                # The other call answered the offer of ours (start_bridged_call):
                # its answer answers our caller.
                peer_answer = theirs.peer_sdp if theirs is not None and theirs.transparent else None
                try:
                    call.accept(peer_answer)
                except CallError:
                    self._mode_before_wait = TaskMode.DISCONNECTED
                    if self.call is call:
                        self.call = None
                    raise
                self._mode_before_wait = TaskMode.CONNECTED
                if peer_answer is not None:
                    self._bridge_formed(other, "transparent")
                    return
            if call.state != CallState.CONNECTED or call.channel is None:
                raise CallError("not connected")
            if theirs is None or (theirs.channel is None and not theirs.transparent):
                raise CallError("the other task has no media")
        except CallError as error:
            other.later(other._bridge_broken, self)
            self._wake(None, "bridge", error=error)
            return
        if mode is BridgeMode.TRANSPARENT or theirs.transparent:
            self._join(other, attempt=1)
            return
        call.channel.bridge_to(theirs.channel)
        self._bridge_formed(other, "fallback" if theirs.fell_back else "simple")

    def _bridge_formed(self, other: Task, kind: str) -> None:
        """
        The bridge is up (C{kind}: C{simple}, C{transparent}, or
        C{fallback}, simple after a transparent attempt was refused).
        """
        self.service.bridges[kind] = self.service.bridges.get(kind, 0) + 1
        self.mode = self._mode_before_wait
        self.bridge = other
        self._wake(None, "bridge")

    def _bridge_rejected(self, other: Task, error: str) -> None:
        waiter = self._waiter
        if waiter is not None and waiter.kind == "bridge" and waiter.token is other:
            self._wake(None, "bridge", error=CallError(error))

    def _relay_provision(self, other: Task, code: int, media: bool, sdp: bytes | None = None) -> None:
        """
        The call C{other} places for our bridge got a provisional response:
        pass it on to our caller (with early media through the bridge).
        """
        waiter = self._waiter
        if waiter is None or waiter.kind != "bridge" or waiter.token is not other:
            return
        if not self.signal_option("bridgedProvisionRelay"):
            return  # the program provisions its caller itself (its own ringback, say)
        call = self.call
        if call is None or call.state not in (CallState.INCOMING, CallState.PROVISIONED):
            return
        try:
            call.provision(code if 101 <= code <= 199 else 180, "", media, sdp)
        except (CallError, ValueError):
            return
        self._mode_before_wait = TaskMode.PROVISIONED
        if sdp is None and media and call.channel is not None and other.call is not None and other.call.channel is not None:
            call.channel.bridge_to(other.call.channel)

    def break_bridge(self) -> Deferred:
        """
        End the bridge: each side gets its own media back, the other task
        gets C{BreakBridge}.
        """
        self._check()
        if self.bridge is None:
            return fail(CallError("not bridged"))
        self._break_bridge_quietly()
        return succeed(None)

    def _break_bridge_quietly(self) -> None:
        other, self.bridge = self.bridge, None
        if self.call is not None and self.call.channel is not None:
            self.call.channel.unbridge()
        self._media_back_later()
        if other is not None:
            other.later(other._bridge_broken, self)

    def _bridge_broken(self, other: Task) -> None:
        if self.bridge is other:
            self.bridge = None
            if self.call is not None and self.call.channel is not None:
                self.call.channel.unbridge()
            call = self.call
            ended = other.ended or other.call is None or not other.call.is_live
            if call is not None and call.is_live and ended and self.signal_option("bridgeBreak") == "disconnect":
                # signal_options: the other side's call ended, and ours goes with it
                self._queue_input(Event(BREAK_BRIDGE, other.id))
                call.hang_up()
                self._call_ended(call, "the bridged call ended")
                return
            self._media_back_later()
            self._queue_input(Event(BREAK_BRIDGE, other.id))

    def _bridge_starter(self) -> Task | None:
        if self._bridging_for is None:
            return None
        return self.service.find(self._bridging_for.sender or "")

    def _abandon_bridge(self, waiter) -> None:
        """
        We stop waiting in C{start_bridge} without an answer (our caller
        hung up or cancelled, we ended): a call the other task is placing
        for us is cancelled (L{_bridge_abandoned}).
        """
        if waiter is not None and waiter.kind == "bridge" and waiter.token is not None:
            other = waiter.token
            other.later(other._bridge_abandoned, self)

    def _bridge_abandoned(self, starter) -> None:
        if self.bridge is starter:
            # We had accepted; the starter gave up before the bridge formed.
            self._bridge_broken(starter)
            return
        bridging = self._bridging_for
        if bridging is None or bridging.sender != starter.id:
            return
        self._bridging_for = None
        call = self.call
        if call is not None and call.state == CallState.CALLING:
            call.cancel()
            self.call = None
            self.mode = TaskMode.DISCONNECTED
        self._queue_input(Event(BREAK_BRIDGE, starter.id))

    def _bridging_failed(self, error: str) -> None:
        bridging, self._bridging_for = self._bridging_for, None
        if bridging is not None:
            self._answer_bridge(bridging, error)

    def start_bridged_call(self, destination: str, event: Event, mode=None, *, copy_headers=(),
                           **options) -> Deferred:
        """
        Place a call to C{destination} for the task that sent the
        C{StartBridge} C{event}: its provisional responses are passed on to
        that task's caller, and when it connects the bridge forms (the
        starter's C{start_bridge} returns); when it fails the starter's
        C{start_bridge} raises with the error.  Our own C{CallCompleted}
        comes as usual.  C{options} are C{start_call}'s (C{headers},
        C{expires}, C{caller}, C{credentials}).

        Nothing of the starter's INVITE is copied but what
        C{copy_headers} names (e.g. C{("Subject", "Priority",
        "P-Asserted-Identity")}): those headers, as the starter's caller
        sent them.  Headers that make a dialog or route it (L{UNCOPIED})
        are refused with L{CallError}: the two calls stay separate.

        In C{transparent} mode (the event's unless C{mode} says otherwise)
        the INVITE carries the SDP offer of the starter's unanswered
        caller, so the callee answers the caller directly and no
        re-INVITE is needed; a starter whose call is answered already (or
        came without an offer) is joined by re-INVITEs once we connect.
        """
        if not isinstance(event, Event) or not event.is_start_bridge:
            return fail(CallError("not a StartBridge event"))
        try:
            mode = BridgeMode.of(mode if mode is not None else event.parameter)
        except ValueError as error:
            return fail(error)
        starter = self.service.find(event.sender or "")
        if starter is None or starter.ended:
            return fail(CallError("the bridging task is gone"))
        offer = offer_from = None
        theirs = starter.call
        try:
            copied = _copied_headers(theirs, copy_headers)
        except CallError as error:
            return fail(error)
        if copied:
            options["headers"] = tuple(options.get("headers", ())) + copied
        if mode is BridgeMode.TRANSPARENT and theirs is not None and theirs.leg.incoming and theirs.state in (
            CallState.INCOMING, CallState.PROVISIONED
        ) and theirs.channel is None:
            invite = theirs.leg.invite
            if invite is not None and is_sdp(invite.content_type, invite.body):
                offer, offer_from = invite.body, invite.submitter.address
        placed = self._place_call(destination, offer=offer, offer_from=offer_from, **options)
        if placed.called and isinstance(placed.result, Failure):
            error = placed.result.value
            self._answer_bridge(event, str(error))
            return placed
        self._bridging_for = event
        return placed
