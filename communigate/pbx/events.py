"""
What a task's program sees: its mode, the events C{read_input} returns,
and the errors call-control verbs raise.

CG/PL returns events as dictionaries C{{what, sender, parameter}}; here
they are frozen L{Event} values with the same three fields.  System
events (a hang-up, the progress of an outgoing call, bridging) have no
sender; events other tasks or the CLI send carry the sender's task ID.
"""

from __future__ import annotations

import enum
import re

import attrs

__all__ = [
    "BREAK_BRIDGE",
    "BridgeMode",
    "CALL_COMPLETED",
    "CALL_INFO",
    "CALL_PROVISION",
    "CALL_TRANSFERRED",
    "CallState",
    "DISCONNECT",
    "START_BRIDGE",
    "CallError",
    "Event",
    "TaskEnded",
    "TaskMode",
    "check_event_name",
]

#: The peer hung up (BYE, CANCEL, a failed call): the task is disconnected.
DISCONNECT = "Disconnect"
#: An outgoing call got a provisional response (parameter: its code).
CALL_PROVISION = "CallProvision"
#: An outgoing call ended its setup (parameter: None when connected, else
#: the error text, e.g. C{"486 Busy Here"}).
CALL_COMPLETED = "CallCompleted"
#: Another task asks to bridge (sender: its ID); answer with
#: C{accept_bridge} or C{reject_bridge}.
START_BRIDGE = "StartBridge"
#: The bridged task broke the bridge or ended (sender: its ID).
BREAK_BRIDGE = "BreakBridge"
#: A blind transfer we asked for was reported done by the peer; or, with the
#: C{transferReport} signal option, the peer transferred our call (a REFER
#: the server carried out; parameter: the new peer's URI).
CALL_TRANSFERRED = "CallTransferred"
#: The peer sent an INFO that is not a key press (parameter: a dictionary
#: C{{"Content-Type": "application", "Content-Subtype": "...", "": body}},
#: CG/PL's C{IsCallInfoEvent}).
CALL_INFO = "CallInfo"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")


class BridgeMode(str, enum.Enum):
    """
    How two bridged calls' media meet (C{start_bridge}'s C{mode}):
    C{simple}, through the two tasks' media channels (the server decodes
    when the codecs differ, and the tasks may still play, record and hear
    keys); C{transparent}, peer to peer, the two peers' SDP exchanged by
    re-INVITE (L{communigate.pbx.transparent}).
    """

    SIMPLE = "simple"
    TRANSPARENT = "transparent"

    @classmethod
    def of(cls, value) -> BridgeMode:
        """
        C{value} (a L{BridgeMode}, its text, or L{None} for C{simple}) as a
        L{BridgeMode}.

        @raise ValueError: another value, naming the allowed ones.
        """
        if value is None:
            return cls.SIMPLE
        try:
            return cls(str(getattr(value, "value", value)).lower())
        except ValueError:
            raise ValueError(f"a bridge mode is 'simple' or 'transparent', not {value!r}") from None


class CallState:
    """
    Where a task's call is (plain strings, shown by C{READNODESTATUS}).
    """

    INCOMING = "incoming"
    PROVISIONED = "provisioned"
    CALLING = "calling"
    CONNECTED = "connected"
    ENDED = "ended"


class TaskMode(enum.Enum):
    """
    The CG/PL task modes.
    """

    DISCONNECTED = "disconnected"
    INCOMING = "incoming"
    PROVISIONED = "provisioned"
    CONNECTED = "connected"
    WAITING = "waiting"


@attrs.frozen
class Event:
    """
    One event in a task's input queue.

    @ivar what: the event name (the constants above for system events).
    @ivar sender: the ID of the task that sent it, or L{None}.
    @ivar parameter: what came with it (text, numbers, lists, dicts).
    """

    what: str
    sender: str | None = None
    parameter: object = None

    @property
    def is_disconnect(self) -> bool:
        return self.what == DISCONNECT

    @property
    def is_call_provision(self) -> bool:
        return self.what == CALL_PROVISION

    @property
    def is_call_completed(self) -> bool:
        return self.what == CALL_COMPLETED

    @property
    def is_start_bridge(self) -> bool:
        return self.what == START_BRIDGE

    @property
    def is_break_bridge(self) -> bool:
        return self.what == BREAK_BRIDGE

    @property
    def is_call_transferred(self) -> bool:
        return self.what == CALL_TRANSFERRED

    @property
    def is_call_info(self) -> bool:
        return self.what == CALL_INFO


def check_event_name(name) -> str:
    """
    C{name} if it can name an event (starts with a letter; letters,
    digits, C{_.-}), else L{ValueError} saying so.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{name!r} cannot name an event: start with a letter; letters, digits, _.-")
    return name


class CallError(Exception):
    """
    A call-control verb failed.  C{str()} is the error text CG/PL would
    return (C{"486 Busy Here"}, C{"not connected"} ...); C{code} is the SIP
    status when one caused it.
    """

    def __init__(self, error: str, code: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.code = code


class TaskEnded(CallError):
    """
    The task was killed or has finished; no verb works any more.
    """

    def __init__(self, error: str = "the task has ended") -> None:
        super().__init__(error)
