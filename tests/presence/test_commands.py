"""
The CLI over rosters, presence and message counts, through the assembled
core; and the Presence condition of Signal Rules, which now sees the
presence service.
"""

import pytest
from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.presence.mwi import MessageCounts
from communigate.presence.state import PresenceState
from communigate.server import build_core
from communigate.signal.memory import MemoryEndpointSource, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")


class Core:
    def __init__(self, reactor=True):
        self.clock = Clock()
        self.store = MemoryStore()
        self.core = build_core(Config(data_dir="", domain="example.com"), self.store, self.clock if reactor else None)
        if reactor:
            create_initial_objects(self.core.directory, "example.com", ("alice", "bob"))

    def run(self, line):
        return self.core.interpreter.run(POSTMASTER, line)

    def ok(self, line):
        result = self.run(line)
        assert result.ok, f"{line}: {result.error}"
        return result.data if result.has_data else None

    def error(self, line):
        result = self.run(line)
        assert not result.ok, line
        return result.error


@pytest.fixture
def c():
    return Core()


def test_roster_update_list_and_remove(c):
    c.ok('ROSTER alice {what = Update; peer = "Bob@example.com"; name = Bob; groups = (Work);}')
    c.ok('ROSTER alice {what = Presence; peer = carol@remote.example; type = subscribe;}')
    c.core.roster.inbound("alice@example.com", "dave@remote.example", "subscribe", status="let me in")
    assert c.ok("ROSTER alice {what = List;}") == {
        "bob@example.com": {"subscription": "none", "name": "Bob", "groups": ["Work"]},
        "carol@remote.example": {"subscription": "none", "ask": "subscribe"},
        "dave@remote.example": {"subscription": "none", "request": "pending", "status": "let me in"},
    }
    c.ok("ROSTER alice {what = remove; peer = bob@example.com;}")
    assert "bob@example.com" not in c.ok("ROSTER alice {what = List;}")


def test_roster_update_with_a_subscription_authorises_both_sides(c):
    c.ok("ROSTER alice {what = Update; peer = bob@example.com; subscription = both;}")
    assert c.core.roster.is_authorized("alice@example.com", "bob@example.com")
    assert c.ok("ROSTER bob {what = List;}")["alice@example.com"]["subscription"] == "both"


def test_roster_presence_carries_an_approval_to_the_local_contact(c):
    c.core.roster.exchange("bob@example.com", "alice@example.com", "subscribe")
    c.ok("ROSTER alice {what = Presence; peer = bob@example.com; type = subscribed;}")
    assert c.ok("ROSTER bob {what = List;}")["alice@example.com"] == {"subscription": "to"}


def test_getaccountpresence_answers_null_a_word_or_a_pair(c):
    assert c.run("GETACCOUNTPRESENCE alice").render() == "#NULL#"
    presence = c.core.presence
    presence.publish("alice@example.com", ("sip-registration", "alice@example.com"), PresenceState())
    assert c.ok("GETACCOUNTPRESENCE alice") == "online"
    presence.publish("alice@example.com", ("sip-publish", "e"), PresenceState(show="dnd", status="call"))
    assert c.ok("GETACCOUNTPRESENCE alice") == ["busy", "call"]


def test_roster_probe_shows_a_peers_presence_only_to_those_it_authorises(c):
    c.core.presence.publish("bob@example.com", ("xmpp", "bob@example.com/pc"), PresenceState(show="away"))
    assert "does not share its presence" in c.error("ROSTER alice {what = probe; peer = bob@example.com;}")
    c.ok("ROSTER bob {what = Update; peer = alice@example.com; subscription = from;}")
    assert c.ok("ROSTER alice {what = probe; peer = bob@example.com;}") == "away"
    assert "not an account of this server" in c.error("ROSTER alice {what = probe; peer = x@remote.example;}")


def test_bad_roster_requests_are_refused_with_the_reason(c):
    assert "use List, Update" in c.error("ROSTER alice {what = Shuffle;}")
    assert "needs peer" in c.error("ROSTER alice {what = Update;}")
    assert "not an address" in c.error("ROSTER alice {what = Update; peer = \"a b\";}")
    assert "type = subscribe" in c.error("ROSTER alice {what = Presence; peer = bob@example.com;}")
    assert "unknown subscription stanza" in c.error(
        "ROSTER alice {what = Presence; peer = bob@example.com; type = probe;}")
    assert "none, to, from" in c.error("ROSTER alice {what = Update; peer = bob@example.com; subscription = all;}")
    assert "unknown account" in c.error("ROSTER nobody {what = List;}")


def test_message_counts_are_set_and_read_and_checked(c):
    c.ok("SETACCOUNTMWI alice {new = 2; old = 5; UrgentOld = 1;}")
    assert c.core.message_waiting.counts("alice@example.com") == MessageCounts(2, 5, 0, 1)
    assert c.ok("GETACCOUNTMWI alice") == {"new": "2", "old": "5", "urgentNew": "0", "urgentOld": "1"}
    assert "unknown message count" in c.error("SETACCOUNTMWI alice {fresh = 1;}")
    assert "must be a number" in c.error("SETACCOUNTMWI alice {new = lots;}")
    assert "urgent" in c.error("SETACCOUNTMWI alice {new = 1; urgentNew = 3;}")


def test_the_admin_tool_core_keeps_rosters_but_knows_no_presence():
    c = Core(reactor=False)
    create_initial_objects(c.core.directory, "example.com", ("alice",))
    assert c.core.presence is None and c.core.signals is None
    c.ok("ROSTER alice {what = Update; peer = bob@example.com;}")
    assert "running server" in c.error("GETACCOUNTPRESENCE alice")


def test_signal_rules_see_the_account_presence(c):
    devices = MemoryEndpointSource()
    c.core.signals.add_endpoint_source(devices)
    devices.register("bob@example.com", ScriptedEndpoint(c.clock, [(0, response(200))]))
    c.ok('SETACCOUNTSIGNALRULES bob ((5, dnd, ((Presence, is, busy)), (("Reject with", "486 Busy Here"))))')

    def call():
        signal = Signal(method="INVITE", targets=("bob@example.com",), from_address="alice@example.com",
                        to_address="bob@example.com", call_id="c1", submitter=Submitter("sip", "alice@example.com"))
        finals = []
        c.core.signals.submit(signal).final.addCallback(finals.append)
        return [f.code for f in finals]

    assert call() == [200]
    c.core.presence.publish("bob@example.com", ("sip-publish", "e"), PresenceState(show="dnd"))
    assert call() == [486]
