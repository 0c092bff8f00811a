"""
Presence states and their aggregation: busy wins, then online, then away
(CommuniGate's rule); a registered phone counts only when nothing richer
is published; priority and recency break ties.
"""

import pytest

from communigate.presence.state import (
    OFFLINE,
    ONLINE,
    PresenceState,
    SourceState,
    aggregate,
    state_for_status,
)


def source(kind, state, sequence=0, ident="x"):
    return SourceState((kind, ident), state, sequence)


def test_no_source_is_offline_and_a_registration_alone_is_online():
    assert aggregate([]) == OFFLINE
    assert aggregate([source("sip-registration", ONLINE)]) == ONLINE
    assert aggregate([source("sip-registration", ONLINE)]).status_string == "online"


def test_a_richer_source_hides_the_registration_even_when_it_says_away_or_closed():
    away = PresenceState(show="away", status="lunch")
    assert aggregate([source("sip-registration", ONLINE), source("xmpp", away)]) == away
    closed = PresenceState(available=False, status="gone home")
    result = aggregate([source("sip-registration", ONLINE), source("sip-publish", closed)])
    assert result == PresenceState(available=False, status="gone home")


def test_busy_wins_over_online_which_wins_over_away():
    busy = PresenceState(show="dnd", status="call")
    online = PresenceState(priority=10)
    away = PresenceState(show="away", priority=50)
    xa = PresenceState(show="xa")
    assert aggregate([source("xmpp", online, 1, "a"), source("sip-publish", busy, 2, "b")]) == busy
    assert aggregate([source("xmpp", away, 1, "a"), source("xmpp", online, 2, "b")]) == online
    assert aggregate([source("xmpp", xa, 1, "a"), source("xmpp", away, 2, "b")]) == away


def test_ties_go_to_the_higher_priority_then_to_the_latest():
    low = PresenceState(status="low", priority=1)
    high = PresenceState(status="high", priority=5)
    assert aggregate([source("xmpp", high, 1, "a"), source("xmpp", low, 2, "b")]) == high
    older = PresenceState(status="older")
    newer = PresenceState(status="newer")
    assert aggregate([source("xmpp", older, 1, "a"), source("xmpp", newer, 2, "b")]) == newer


def test_an_unavailable_source_does_not_hide_an_available_one():
    closed = PresenceState(available=False)
    chat = PresenceState(show="chat")
    assert aggregate([source("xmpp", closed, 5, "a"), source("xmpp", chat, 1, "b")]) == chat


def test_status_strings_are_communigates_words():
    assert PresenceState().status_string == "online"
    assert PresenceState(show="chat").status_string == "online"
    assert PresenceState(show="dnd").status_string == "busy"
    assert PresenceState(show="xa").status_string == "away"
    assert OFFLINE.status_string == "offline"
    assert state_for_status("Busy", "meeting") == PresenceState(show="dnd", status="meeting")
    assert state_for_status("offline") == OFFLINE
    with pytest.raises(ValueError, match="online, busy, away or offline"):
        state_for_status("sleepy")


def test_bad_states_are_refused_with_the_rule_named():
    with pytest.raises(ValueError, match="show must be one of"):
        PresenceState(show="busy")
    with pytest.raises(ValueError, match="priority"):
        PresenceState(priority=200)
    with pytest.raises(ValueError, match="no show value"):
        PresenceState(available=False, show="away")
    assert len(PresenceState(status="x" * 5000).status) == 1024
    assert PresenceState(status="").status is None
