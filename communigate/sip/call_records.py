"""
The calls the SIP proxy carries, as call records: an observer of the
proxy (C{Proxy.add_observer}) that notes each initial INVITE, its answer
or failure, and the BYE that ends it, and hands each finished leg to the
server's L{communigate.cdr.records.CallRecords}.

Bounds: at most C{max_calls} calls are followed at once (the oldest is
closed as C{"dropped"} beyond that), and a call answered but never seen
to end is closed as C{"expired"} after C{max_duration} seconds, so lost
BYEs cannot grow memory.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs

from communigate.cdr.records import CallRecord
from communigate.sip.headers import HeaderError


@attrs.define
class _Call:
    caller: str
    callee: str
    target: str
    account: str | None
    started: float
    from_tag: str | None
    answered: float | None = None


def _address(name_addr) -> str:
    uri = getattr(name_addr, "uri", None)
    if uri is None:
        return ""
    user, host = getattr(uri, "user", None), getattr(uri, "host", None)
    if host is None:
        return str(uri)
    return f"{user}@{host}" if user else host


class SIPCallRecorder:
    def __init__(self, records, clock, *, max_calls: int = 100_000, max_duration: float = 12 * 3600) -> None:
        self._records = records
        self._clock = clock
        self.max_calls = max_calls
        self.max_duration = max_duration
        self._calls: OrderedDict[str, _Call] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    # -- the proxy's observer callbacks ------------------------------------------------

    def call_started(self, request, account) -> None:
        call_id = request.call_id or ""
        if not call_id or call_id in self._calls:
            return
        try:
            caller, callee = request.from_(), request.to()
        except HeaderError:
            return
        self._expire()
        self._calls[call_id] = _Call(
            caller=_address(caller),
            callee=_address(callee),
            target=str(request.uri),
            account=account,
            started=self._clock.seconds(),
            from_tag=getattr(caller, "tag", None),
        )
        while len(self._calls) > self.max_calls:
            old_id, old = self._calls.popitem(last=False)
            self._finish(old_id, old, 0, "dropped")

    def call_progress(self, request, response) -> None:
        call = self._calls.get(request.call_id or "")
        if call is None or response.status < 200:
            return
        if response.status < 300:
            if call.answered is None:
                call.answered = self._clock.seconds()
            return
        del self._calls[request.call_id]
        cause = "cancelled" if response.status == 487 else f"{response.status} {response.reason}".strip()
        self._finish(request.call_id, call, response.status, cause)

    def in_dialog(self, request) -> None:
        if request.method != "BYE":
            return
        call = self._calls.pop(request.call_id or "", None)
        if call is None:
            return
        try:
            tag = getattr(request.from_(), "tag", None)
        except HeaderError:
            tag = None
        side = "caller" if tag is not None and tag == call.from_tag else "callee"
        self._finish(request.call_id, call, 200, f"BYE from {side}")

    # -- ending ---------------------------------------------------------------------------

    def _expire(self) -> None:
        now = self._clock.seconds()
        while self._calls:
            call_id, call = next(iter(self._calls.items()))
            if now - call.started < self.max_duration:
                return
            del self._calls[call_id]
            self._finish(call_id, call, 200 if call.answered is not None else 0, "expired")

    def _finish(self, call_id: str, call: _Call, status: int, cause: str) -> None:
        self._records.add(
            CallRecord(
                protocol="sip",
                call_id=call_id,
                caller=call.caller,
                callee=call.callee,
                target=call.target,
                caller_account=call.account,
                started=call.started,
                answered=call.answered,
                ended=self._clock.seconds(),
                status=status,
                cause=cause,
            )
        )
