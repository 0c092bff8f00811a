"""
The verbs of a task's own call: what the program learns of it (the
peer's URI and address, the INVITE's headers) and how it answers, places,
ends and transfers it (CG/PL's call-control functions: C{AcceptCall},
C{ProvisionCall}, C{RejectCall}, C{RedirectCall}, C{ForkCall},
C{StartCall}, C{CancelCall}, C{Disconnect}, C{TransferCall},
C{SendCallInfo}, C{SendCallOptions}).

L{CallVerbs} is a part of L{communigate.pbx.task.Task}, kept in its own
module like the other groups of verbs; the call's own rules are
L{communigate.pbx.call.Call}'s.
"""

from __future__ import annotations

import re

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from communigate.pbx.call import Call, CallState
from communigate.pbx.events import CallError, TaskMode
from communigate.pbx.leg import SUPPORTED_WITHOUT_100REL, CallLeg, LegError, address_header, new_call_id
from communigate.routing.addresses import Address, AddressError, parse_address, sip_uri
from communigate.sip.replaces import parse_replaces

__all__ = ["CallVerbs", "sip_target"]

#: What send_call_info takes as a content type: type/subtype, and parameters.
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;[^\r\n]*)?\Z")


class CallVerbs:
    """The verbs of the task's own call (see the module docstring)."""

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
            target = sip_target(destination, self.account)
            referred_by = sip_target(self.account, self.account)
            return call.refer(target, referred_by)
        except CallError as error:
            return fail(error)


def _replaces_headers(replaces: str | None) -> tuple:
    if replaces is None:
        return ()
    try:
        value = parse_replaces(replaces).value()
    except ValueError as error:
        raise CallError(f"bad replaces: {error}") from None
    return (("Replaces", value), ("Require", "replaces"))


def sip_target(destination: str, account: str) -> str:
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
