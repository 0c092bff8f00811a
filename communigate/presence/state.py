"""
What one presence source says, and how the sources of an account become
one state.  Pure: no clock, no I/O.

A source is a pair C{(kind, id)}: C{("xmpp", full-jid)},
C{("sip-publish", id)}, C{("sip-registration", account)},
C{("ximss", session)}.  Each publishes a L{PresenceState}; the presence
service keeps them and calls L{aggregate} whenever one changes.

Aggregation ([C] CommuniGate's guide, "Instant Messaging and Presence":
"if at least one client application reports the busy state, the Account
state is set to busy, otherwise if there is at least one client
application reporting the online state, the Account state is set to
online, etc.  If there is no client application connected to (or
registered with) the Account - the Account state is set to offline"):

  1. SIP registrations say only "a phone is there": they count as
     C{online} only when the account has no other source at all [D].
  2. Among the other sources, the available ones are ranked by their
     show value: C{dnd} (busy) first, then C{chat}, plain available
     (online), C{away}, C{xa}.  Ties go to the higher XMPP priority, then
     to the most recently published [D].  The winner's state is the
     account's state.
  3. With no available source, the account is unavailable; the most
     recent unavailable source lends its status text ("gone home").

CommuniGate's presence status strings (CLI C{GETACCOUNTPRESENCE}, XIMSS
C{<presence>}): C{online} (available, show none or chat), C{busy} (dnd),
C{away} (away and xa), C{offline} (unavailable).
"""

from __future__ import annotations

import attrs

#: The XMPP show values (RFC 6121 section 4.7.2.1), None being plain available.
SHOWS = frozenset({"chat", "away", "xa", "dnd"})

#: Ranking of available states: lower is chosen first ([C] busy wins).
_RANK = {"dnd": 0, "chat": 1, None: 2, "away": 3, "xa": 4}

#: The CommuniGate status string of each show value.
_STATUS_STRINGS = {None: "online", "chat": "online", "dnd": "busy", "away": "away", "xa": "away"}
_SHOW_OF_STATUS = {"online": None, "busy": "dnd", "away": "away", "xa": "xa", "chat": "chat", "dnd": "dnd"}

#: Status texts longer than this are cut (XMPP and SIP clients show a line).
MAX_STATUS_TEXT = 1024

REGISTRATION = "sip-registration"


def _check_show(instance, attribute, value) -> None:
    if value is not None and value not in SHOWS:
        raise ValueError(f"show must be one of {sorted(SHOWS)} or None, not {value!r}")


def _check_priority(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
        raise ValueError(f"priority must be a whole number from -128 to 127, not {value!r}")


def _text(value):
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"a status text is a str, not {type(value).__name__}")
    return value[:MAX_STATUS_TEXT] or None


@attrs.frozen
class PresenceState:
    """
    What one source (or the account as a whole) says.

    @ivar available: whether the source is there to communicate.
    @ivar show: C{None} (available), C{chat}, C{away}, C{xa} or C{dnd};
        always C{None} when not available.
    @ivar status: free text ("in a meeting until 3"); the PIDF note.
    @ivar priority: the XMPP priority, -128 to 127.
    @ivar activity: the RFC 4480 activity it came with (C{on-the-phone},
        C{meeting} ...), kept so that SIP watchers see what was published.
    """

    available: bool = True
    show: str | None = attrs.field(default=None, validator=_check_show)
    status: str | None = attrs.field(default=None, converter=_text)
    priority: int = attrs.field(default=0, validator=_check_priority)
    activity: str | None = attrs.field(default=None, converter=_text)

    def __attrs_post_init__(self) -> None:
        if not self.available and self.show is not None:
            raise ValueError("an unavailable state has no show value")

    @property
    def status_string(self) -> str:
        """
        CommuniGate's word for this state: C{online}, C{busy}, C{away} or
        C{offline}.
        """
        if not self.available:
            return "offline"
        return _STATUS_STRINGS[self.show]


#: No source at all.
OFFLINE = PresenceState(available=False)
#: What a registered phone says when nothing richer is published.
ONLINE = PresenceState()


def state_for_status(word: str, status: str | None = None) -> PresenceState:
    """
    The state a CommuniGate status string names (C{online}, C{busy},
    C{away}, C{offline}; XMPP's C{chat}, C{xa}, C{dnd} are taken too).

    @raise ValueError: naming the words allowed.
    """
    key = word.strip().lower()
    if key == "offline":
        return PresenceState(available=False, status=status)
    if key not in _SHOW_OF_STATUS:
        raise ValueError(f"unknown presence {word!r}; use online, busy, away or offline")
    return PresenceState(show=_SHOW_OF_STATUS[key], status=status)


@attrs.frozen
class SourceState:
    """
    One source's state as the aggregation sees it: C{sequence} orders
    publications in time (a larger one was published later).
    """

    source: tuple[str, str]
    state: PresenceState
    sequence: int = 0


def aggregate(sources) -> PresenceState:
    """
    The account's state from its sources (L{SourceState}s), by the rules
    of the module docstring; L{OFFLINE} when there are none.
    """
    rich = []
    registered = False
    for entry in sources:
        if entry.source[0] == REGISTRATION:
            registered = registered or entry.state.available
        else:
            rich.append(entry)
    if not rich:
        return ONLINE if registered else OFFLINE
    available = [entry for entry in rich if entry.state.available]
    if available:
        best = min(available, key=lambda e: (_RANK[e.state.show], -e.state.priority, -e.sequence))
        return best.state
    latest = max(rich, key=lambda e: e.sequence)
    return PresenceState(available=False, status=latest.state.status)
