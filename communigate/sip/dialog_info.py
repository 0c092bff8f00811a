"""
The calls of accounts whose C{DialogInfo} setting is C{YES}, as the proxy
sees them: the source of the RFC 4235 C{dialog} event package (busy-lamp
fields on phones).

The proxy reports three things (L{CallStates} is its observer): an
initial INVITE it hands to the Signal service, each response it sends
back for it, and each request it forwards inside a dialog (a BYE ends the
call).  The caller's account (authenticated) sees the call as
C{initiator}, the called account (the Request-URI) as C{recipient}.
States follow RFC 4235 3.7.1: C{trying} at the INVITE, C{proceeding} on a
1xx without To tag, C{early} on one with a tag, C{confirmed} on a 2xx,
C{terminated} on a failure (event C{cancelled} for 487, C{rejected}
otherwise) or a BYE (C{local-bye} or C{remote-bye}).

Watchers get the account's dialogs after every change, terminated ones
included once; then those are forgotten.  Bounds: C{max_per_account}
dialogs per account (the oldest is dropped), and a dialog not confirmed
within C{setup_timeout} seconds, or confirmed for longer than
C{max_call} seconds without a BYE seen, is dropped at the next change of
that account or by L{purge}.
"""

from __future__ import annotations

import hashlib

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from communigate.formats.dialoginfo import Dialog
from communigate.sip.headers import HeaderError
from communigate.sip.uri import SIPURI

SETTING = "DialogInfo"


@attrs.define
class _Call:
    dialog: Dialog
    started: float
    sequence: int


class _Watch:
    def __init__(self, owner: CallStates, account: str, callback) -> None:
        self._owner = owner
        self.account = account
        self.callback = callback

    def cancel(self) -> None:
        self._owner._forget(self)


def _truthy(value) -> bool:
    return isinstance(value, str) and value.strip().lower() in ("yes", "true", "1")


class CallStates:
    """
    Dialog states per account, fed by the proxy.

    @param enabled: C{account -> bool}: C{DialogInfo} is on for it.
    @param account_of: C{address (user@host) -> canonical account or None}.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, *, enabled, account_of, max_per_account: int = 32,
                 setup_timeout: float = 300.0, max_call: float = 86400.0) -> None:
        self._clock = clock
        self._enabled = enabled
        self._account_of = account_of
        self.max_per_account = max_per_account
        self.setup_timeout = setup_timeout
        self.max_call = max_call
        self._calls: dict[str, dict[tuple, _Call]] = {}
        self._watches: dict[str, list[_Watch]] = {}
        self._sequence = 0

    # -- watchers ------------------------------------------------------------------

    def watch(self, account: str, callback) -> _Watch:
        watch = _Watch(self, account, callback)
        self._watches.setdefault(account, []).append(watch)
        self._tell(watch, self.dialogs(account))
        return watch

    def _forget(self, watch: _Watch) -> None:
        watches = self._watches.get(watch.account)
        if watches and watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.account]

    def _tell(self, watch: _Watch, dialogs) -> None:
        try:
            watch.callback(dialogs)
        except Exception:
            self.log.failure("A dialog watcher of {account} failed", account=watch.account)

    def dialogs(self, account: str) -> tuple[Dialog, ...]:
        calls = self._calls.get(account, {})
        return tuple(call.dialog for call in sorted(calls.values(), key=lambda c: c.sequence))

    def count(self) -> int:
        return sum(len(calls) for calls in self._calls.values())

    # -- from the proxy --------------------------------------------------------------

    def _party(self, name_addr) -> tuple[str | None, str]:
        uri = name_addr.uri
        if isinstance(uri, SIPURI) and uri.user:
            return self._account_of(f"{uri.user}@{uri.host}"), f"sip:{uri.user}@{uri.host}"
        return None, str(uri)

    def _is_on(self, account: str | None) -> bool:
        if account is None:
            return False
        try:
            return bool(self._enabled(account))
        except Exception:
            self.log.failure("Reading {setting} of {account} failed", setting=SETTING, account=account)
            return False

    def call_started(self, request, caller: str | None) -> None:
        """An initial INVITE from C{caller} (authenticated account or None)."""
        try:
            from_ = request.from_()
            to = request.to()
            uri = request.uri
        except HeaderError:
            return
        callee = None
        if isinstance(uri, SIPURI) and uri.user:
            callee = self._account_of(f"{uri.user}@{uri.host}")
        _, caller_identity = self._party(from_)
        _, callee_identity = self._party(to)
        call_id = request.call_id
        for account, direction, local, remote, local_tag in (
            (caller, "initiator", caller_identity, callee_identity, from_.tag),
            (callee, "recipient", callee_identity, caller_identity, None),
        ):
            if account is None or not self._is_on(account):
                continue
            dialog_id = hashlib.sha256(f"{call_id}\0{direction}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
            dialog = Dialog(
                id=dialog_id, state="trying", call_id=call_id, direction=direction,
                local_tag=local_tag, remote_tag=from_.tag if direction == "recipient" else None,
                local_identity=local, remote_identity=remote,
            )
            self._put(account, (call_id, direction), dialog)

    def call_progress(self, request, response) -> None:
        """A response we send back for an initial INVITE."""
        if response.status == 100:
            return
        try:
            to_tag = response.to().tag
        except HeaderError:
            to_tag = None
        call_id = request.call_id
        for account, calls in list(self._calls.items()):
            for key, call in list(calls.items()):
                if key[0] != call_id:
                    continue
                dialog = call.dialog
                if dialog.state in ("confirmed", "terminated"):
                    continue
                status = response.status
                if status < 200:
                    state, event, code = ("early" if to_tag else "proceeding"), None, None
                elif status < 300:
                    state, event, code = "confirmed", None, None
                else:
                    state, event, code = "terminated", ("cancelled" if status == 487 else "rejected"), status
                tags = {"remote_tag": to_tag} if dialog.direction == "initiator" else {"local_tag": to_tag}
                if not to_tag:
                    tags = {}
                self._put(account, key, attrs.evolve(dialog, state=state, event=event, code=code, **tags))

    def in_dialog(self, request) -> None:
        """A request inside a dialog: a BYE ends the call."""
        if request.method != "BYE":
            return
        try:
            from_tag = request.from_().tag
        except HeaderError:
            from_tag = None
        call_id = request.call_id
        for account, calls in list(self._calls.items()):
            for key, call in list(calls.items()):
                if key[0] == call_id and call.dialog.state != "terminated":
                    event = "local-bye" if from_tag and from_tag == call.dialog.local_tag else "remote-bye"
                    self._put(account, key, attrs.evolve(call.dialog, state="terminated", event=event))

    # -- keeping ------------------------------------------------------------------

    def _put(self, account: str, key: tuple, dialog: Dialog) -> None:
        now = self._clock.seconds()
        calls = self._calls.setdefault(account, {})
        self._sequence += 1
        old = calls.get(key)
        calls[key] = _Call(dialog, now if old is None else old.started, self._sequence if old is None else old.sequence)
        self._expire(account, now)
        while len(calls) > self.max_per_account:
            oldest = min(calls, key=lambda k: calls[k].sequence)
            del calls[oldest]
        snapshot = self.dialogs(account)
        for done in [k for k, call in calls.items() if call.dialog.state == "terminated"]:
            del calls[done]
        if not calls:
            del self._calls[account]
        for watch in list(self._watches.get(account, ())):
            self._tell(watch, snapshot)

    def _expire(self, account: str, now: float) -> None:
        calls = self._calls.get(account, {})
        for key, call in list(calls.items()):
            limit = self.max_call if call.dialog.state == "confirmed" else self.setup_timeout
            if now - call.started > limit:
                del calls[key]

    def purge(self) -> None:
        """Drop stale dialogs of every account (see the module docstring)."""
        now = self._clock.seconds()
        for account in list(self._calls):
            self._expire(account, now)
            if not self._calls[account]:
                del self._calls[account]


def enabled_by_setting(directory):
    """C{account -> bool} reading the effective C{DialogInfo} setting."""
    from communigate.directory.errors import DirectoryError

    def enabled(account: str) -> bool:
        try:
            return _truthy(directory.account_effective_settings(account).get(SETTING, "NO"))
        except DirectoryError:
            return False

    return enabled
