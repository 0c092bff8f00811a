"""
The bindings tell a listener when an account gets its first binding and
loses its last one (presence shows registered phones), also for bindings
reloaded at start and bindings that expire.
"""

from twisted.internet.task import Clock

from communigate.sip.bindings import Bindings, ContactChange, RegisterChanges
from communigate.storage import MemoryStore


def register(bindings, contact, expires=60, cseq=1):
    return bindings.update(
        "alice@example.com",
        RegisterChanges(call_id="c", cseq=cseq, contacts=(ContactChange(contact, expires),)),
    )


def test_first_and_last_bindings_are_reported_as_they_come_and_go():
    clock = Clock()
    bindings = Bindings(MemoryStore(), clock)
    seen = []
    bindings.add_aor_listener(lambda aor, live: seen.append((aor, live)))
    register(bindings, "sip:alice@192.0.2.1")
    register(bindings, "sip:alice@192.0.2.2", cseq=2)
    assert seen == [("alice@example.com", True)]
    register(bindings, "sip:alice@192.0.2.1", expires=0, cseq=3)
    assert seen == [("alice@example.com", True)]
    clock.advance(61)
    assert seen == [("alice@example.com", True), ("alice@example.com", False)]


def test_bindings_reloaded_at_start_are_reported():
    store = MemoryStore()
    clock = Clock()
    register(Bindings(store, clock), "sip:alice@192.0.2.1", expires=600)
    again = Bindings(store, clock)
    seen = []
    again.add_aor_listener(lambda aor, live: seen.append((aor, live)))
    again.load()
    assert seen == [("alice@example.com", True)]


def test_a_failing_listener_does_not_stop_registration():
    bindings = Bindings(MemoryStore(), Clock())
    bindings.add_aor_listener(lambda aor, live: 1 / 0)
    assert len(register(bindings, "sip:alice@192.0.2.1")) == 1
