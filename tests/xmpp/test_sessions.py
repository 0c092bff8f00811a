"""
The session registry without streams: binding, generated resources,
replacement, limits, presence and observers.
"""

import pytest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from communigate.interfaces import IXMPPSessionObserver, IXMPPSessions
from communigate.xmpp.sessions import ResourceLimitReached, SessionRegistry


class FakeSession:
    def __init__(self, started=0.0):
        self.jid = None
        self.priority = 0
        self.available = False
        self.started = started
        self.closed = None

    def close(self, condition, text):
        self.closed = condition


@implementer(IXMPPSessionObserver)
class Recorder:
    def __init__(self):
        self.events = []

    def session_bound(self, session):
        self.events.append(("bound", session.jid.full()))

    def session_unbound(self, session):
        self.events.append(("unbound", session.jid.full()))

    def presence_changed(self, session):
        self.events.append(("presence", session.jid.full(), session.available, session.priority))


def test_the_registry_provides_its_interface():
    verifyObject(IXMPPSessions, SessionRegistry())
    verifyObject(IXMPPSessionObserver, Recorder())


def test_bind_lookup_and_unbind():
    registry = SessionRegistry()
    session = FakeSession()
    jid = registry.bind(session, "alice@example.com", "phone")
    assert jid.full() == "alice@example.com/phone" and session.jid == jid
    assert registry.lookup("alice@example.com/phone") is session
    assert registry.lookup("alice@example.com") is None
    assert registry.resources("alice@example.com") == [session]
    registry.unbind(session)
    assert registry.lookup(jid) is None and len(registry) == 0
    registry.unbind(session)  # twice is harmless


def test_generated_resources_are_distinct():
    registry = SessionRegistry()
    jids = {registry.bind(FakeSession(), "alice@example.com", None).full() for _ in range(5)}
    assert len(jids) == 5


def test_rebinding_a_full_jid_closes_the_old_session_with_conflict_and_keeps_the_new():
    registry = SessionRegistry()
    recorder = Recorder()
    registry.add_observer(recorder)
    old, new = FakeSession(), FakeSession()
    registry.bind(old, "alice@example.com", "phone")
    registry.bind(new, "alice@example.com", "phone")
    assert old.closed == "conflict"
    registry.unbind(old)  # the old stream ending later does not unbind the new one
    assert registry.lookup("alice@example.com/phone") is new
    assert recorder.events == [
        ("bound", "alice@example.com/phone"),
        ("unbound", "alice@example.com/phone"),
        ("bound", "alice@example.com/phone"),
    ]


def test_the_resource_limit_is_per_account_and_read_at_each_bind():
    limit = {"value": 2}
    registry = SessionRegistry(max_resources=lambda account: limit["value"])
    registry.bind(FakeSession(), "alice@example.com", "a")
    registry.bind(FakeSession(), "alice@example.com", "b")
    with pytest.raises(ResourceLimitReached):
        registry.bind(FakeSession(), "alice@example.com", "c")
    registry.bind(FakeSession(), "bob@example.com", "a")
    limit["value"] = 3
    registry.bind(FakeSession(), "alice@example.com", "c")


def test_a_thousand_binds_for_one_account_stop_at_the_limit():
    registry = SessionRegistry()
    refused = 0
    for n in range(1000):
        try:
            registry.bind(FakeSession(), "alice@example.com", f"r{n}")
        except ResourceLimitReached:
            refused += 1
    assert len(registry.resources("alice@example.com")) == 10 and refused == 990


def test_available_resources_are_ordered_by_priority_and_skip_negative_ones():
    registry = SessionRegistry()
    low, high, negative, away = FakeSession(), FakeSession(), FakeSession(), FakeSession()
    for name, session in [("low", low), ("high", high), ("neg", negative), ("away", away)]:
        registry.bind(session, "alice@example.com", name)
    registry.set_presence(low, True, 1)
    registry.set_presence(high, True, 10)
    registry.set_presence(negative, True, -1)
    assert registry.available_resources("alice@example.com") == [high, low]


def test_presence_changes_are_told_once():
    registry = SessionRegistry()
    recorder = Recorder()
    registry.add_observer(recorder)
    session = FakeSession()
    registry.bind(session, "alice@example.com", "x")
    registry.set_presence(session, True, 3)
    registry.set_presence(session, True, 3)
    assert recorder.events[1:] == [("presence", "alice@example.com/x", True, 3)]


def test_a_failing_observer_does_not_stop_binding():
    registry = SessionRegistry()

    class Broken:
        def session_bound(self, session):
            raise RuntimeError("boom")

    registry.add_observer(Broken())
    registry.bind(FakeSession(), "alice@example.com", "x")
    assert len(registry) == 1


def test_all_sessions_are_listed_oldest_first():
    registry = SessionRegistry()
    late, early = FakeSession(started=20), FakeSession(started=10)
    registry.bind(late, "bob@example.com", "x")
    registry.bind(early, "alice@example.com", "y")
    assert registry.all_sessions() == [early, late]
