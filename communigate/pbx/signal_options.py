"""
CG/PL's C{SignalOption}: how a task's call treats what its peer, or the
peer of the task it is bridged with, does.

  - C{refer}: C{self} (default [D]), C{peer} or C{disabled} -- what a
    REFER from the peer does (L{communigate.pbx.refer});
  - C{transferReport}: whether the program hears C{CallTransferred} when
    its peer transferred the call (default off);
  - C{bridgeBreak}: what happens to the task's call when a bridge ends
    because the other side's call ended (its peer hung up, or its task
    ended): C{keep} -- the program gets C{BreakBridge} and the call its
    own media back, as it always did -- or C{disconnect} -- the call is
    hung up at once (BYE) and the program gets C{BreakBridge} and then
    C{Disconnect}, which a plain B2BUA wants and saves it a
    media-back re-INVITE; C{default} is C{keep} [D].  A bridge the other
    task broke on purpose (C{break_bridge}) always keeps the call;
  - C{bridgedProvisionRelay} (default on): whether the provisional
    responses of the call C{start_bridged_call} places for this task's
    bridge reach this task's caller (a 180, or a 183 with early media);
    off, the program provisions its caller itself (its own ringback).

L{SignalOptionVerbs} is a part of L{communigate.pbx.task.Task}.
"""

from __future__ import annotations

__all__ = ["BRIDGE_BREAK_MODES", "REFER_MODES", "SignalOptionVerbs"]

REFER_MODES = ("self", "peer", "disabled")
BRIDGE_BREAK_MODES = ("keep", "disconnect", "default")
#: The signal options a task has, and their defaults.
_OPTIONS = {"refer": "self", "transferReport": False, "bridgeBreak": "default", "bridgedProvisionRelay": True}
_CHOICES = {"refer": REFER_MODES, "bridgeBreak": BRIDGE_BREAK_MODES}


class SignalOptionVerbs:
    """C{signal_option} (see the module docstring)."""

    _signal_options: dict | None = None

    def signal_option(self, name: str, value=None):
        """
        The value of signal option C{name}; with C{value}, set it and return
        the old one (CG/PL's C{SignalOption}).

        @raise ValueError: an unknown option or value, naming the allowed ones.
        """
        if name not in _OPTIONS:
            raise ValueError(f"unknown signal option {name!r}; known: {', '.join(sorted(_OPTIONS))}")
        options = self._signal_options
        if options is None:
            options = self._signal_options = dict(_OPTIONS)
        old = options[name]
        if value is None:
            return old
        choices = _CHOICES.get(name)
        if choices is not None:
            if value not in choices:
                raise ValueError(f"signal option {name} is one of {', '.join(choices)}, not {value!r}")
        else:
            value = bool(value)
        options[name] = value
        return old
