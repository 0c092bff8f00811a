"""
The presence service: sources published and expired on the clock, one
aggregated state per account, watchers authorised by the owner's roster
(so an approval from any protocol activates a waiting watcher), bounds,
and metrics.
"""

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.interfaces import IPresenceService, IPresenceWatch
from communigate.presence.roster import Roster
from communigate.presence.service import (
    PresenceService,
    TooManySources,
    TooManyWatchers,
    WatchStatus,
)
from communigate.presence.state import OFFLINE, ONLINE, PresenceState
from communigate.storage import MemoryStore

ALICE = "alice@example.com"
BOB = "bob@example.com"
LOCAL = {ALICE, BOB}
BUSY = PresenceState(show="dnd", status="on a call", activity="on-the-phone")


class Harness:
    def __init__(self, **limits):
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.roster = Roster(MemoryStore(), is_local=lambda a: a if a in LOCAL else None, clock=self.clock)
        self.presence = PresenceService(self.roster, self.clock, registry=self.registry, **limits)
        self.events = []

    def watch(self, account=ALICE, watcher=BOB, ask=True):
        return self.presence.watch(account, watcher, self.events.append, ask=ask)

    def seen(self):
        return [(e.status.value, e.state, e.reason) for e in self.events]


@pytest.fixture
def h():
    return Harness()


def test_it_provides_the_presence_interfaces(h):
    verifyObject(IPresenceService, h.presence)
    verifyObject(IPresenceWatch, h.watch(watcher=ALICE))


def test_sources_aggregate_and_a_registration_alone_is_online(h):
    assert h.presence.state(ALICE) == OFFLINE and h.presence.status(ALICE) is None
    h.presence.publish(ALICE, ("sip-registration", ALICE), ONLINE)
    assert h.presence.status(ALICE) == ("online", None)
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY)
    assert h.presence.state(ALICE) == BUSY and h.presence.status(ALICE) == ("busy", "on a call")
    assert set(h.presence.sources(ALICE)) == {("sip-registration", ALICE), ("sip-publish", "e1")}
    assert h.presence.withdraw(ALICE, ("sip-publish", "e1"))
    assert not h.presence.withdraw(ALICE, ("sip-publish", "e1"))
    h.presence.withdraw(ALICE, ("sip-registration", ALICE))
    assert h.presence.status(ALICE) is None and h.presence.counts()["accounts"] == 0


def test_a_source_with_an_expiry_is_withdrawn_on_the_clock_unless_refreshed(h):
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY, expires=60)
    h.clock.advance(50)
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY, expires=60)
    h.clock.advance(50)
    assert h.presence.state(ALICE) == BUSY
    h.clock.advance(10)
    assert h.presence.state(ALICE) == OFFLINE and h.clock.getDelayedCalls() == []


def test_the_owner_watches_itself_and_sees_every_change_once(h):
    h.watch(watcher=ALICE)
    h.presence.publish(ALICE, ("xmpp", "alice@example.com/pc"), ONLINE)
    h.presence.publish(ALICE, ("xmpp", "alice@example.com/pc"), ONLINE)
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY)
    assert h.seen() == [("active", OFFLINE, None), ("active", ONLINE, None), ("active", BUSY, None)]


def test_an_unauthorised_watcher_waits_and_files_a_request_in_the_owners_roster(h):
    watch = h.watch()
    assert h.seen() == [("pending", None, None)] and watch.status is WatchStatus.PENDING
    assert [r.contact for r in h.roster.pending(ALICE)] == [BOB]
    assert h.roster.item(BOB, ALICE).ask
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY)
    assert len(h.events) == 1


def test_an_approval_from_any_protocol_activates_the_waiting_watcher(h):
    h.watch()
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY)
    # What an XMPP client of alice sends: <presence to='bob@example.com' type='subscribed'/>
    h.roster.exchange(ALICE, BOB, "subscribed")
    assert h.seen()[-1] == ("active", BUSY, None)
    assert h.roster.item(BOB, ALICE).subscription == "to"


def test_a_refusal_or_a_revocation_terminates_the_watcher(h):
    refused = h.watch()
    h.roster.exchange(ALICE, BOB, "unsubscribed")
    assert h.seen()[-1] == ("terminated", None, "rejected") and refused.status is WatchStatus.TERMINATED
    h.events.clear()
    h.roster.set_subscription(ALICE, BOB, "from")
    revoked = h.watch()
    assert h.seen() == [("active", OFFLINE, None)]
    h.roster.remove_item(ALICE, BOB)
    assert h.seen()[-1] == ("terminated", None, "rejected") and revoked.status is WatchStatus.TERMINATED
    assert h.presence.counts()["watchers"] == {"pending": 0, "active": 0}


def test_a_watcher_that_does_not_ask_files_nothing_and_just_waits(h):
    h.watch(ask=False)
    assert h.roster.pending(ALICE) == [] and h.seen() == [("pending", None, None)]
    h.roster.set_subscription(ALICE, BOB, "both")
    assert h.seen()[-1] == ("active", OFFLINE, None)


def test_a_cancelled_watcher_hears_nothing_more_and_leaves_nothing(h):
    watch = h.watch(watcher=ALICE)
    watch.cancel()
    watch.cancel()
    h.presence.publish(ALICE, ("xmpp", "a/b"), ONLINE)
    assert len(h.events) == 1 and h.presence.counts()["watchers"]["active"] == 0


def test_a_failing_watcher_does_not_stop_the_others(h):
    h.presence.watch(ALICE, ALICE, lambda event: 1 / 0)
    h.watch(watcher=ALICE)
    h.presence.publish(ALICE, ("xmpp", "a/b"), ONLINE)
    assert h.seen()[-1] == ("active", ONLINE, None)


def test_sources_and_watchers_per_account_are_bounded():
    h = Harness(max_sources=2, max_watchers=1)
    h.presence.publish(ALICE, ("xmpp", "1"), ONLINE)
    h.presence.publish(ALICE, ("xmpp", "2"), ONLINE)
    h.presence.publish(ALICE, ("xmpp", "2"), BUSY)
    with pytest.raises(TooManySources):
        h.presence.publish(ALICE, ("xmpp", "3"), ONLINE)
    h.watch(watcher=ALICE)
    with pytest.raises(TooManyWatchers):
        h.watch(watcher=ALICE)


def test_bad_sources_and_expiries_are_refused(h):
    for source in ("xmpp", ("xmpp",), ("xmpp", ""), ("xmpp", 1)):
        with pytest.raises(ValueError, match="a presence source is"):
            h.presence.publish(ALICE, source, ONLINE)
    with pytest.raises(ValueError, match="expires"):
        h.presence.publish(ALICE, ("xmpp", "a"), ONLINE, expires=0)
    with pytest.raises(TypeError):
        h.presence.publish(ALICE, ("xmpp", "a"), "online")


def test_metrics_count_sources_watchers_and_changes(h):
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY)
    h.presence.publish(BOB, ("sip-registration", BOB), ONLINE)
    h.watch()
    value = h.registry.get_sample_value
    assert value("communigate_presence_sources", {"kind": "sip-publish"}) == 1
    assert value("communigate_presence_sources", {"kind": "sip-registration"}) == 1
    assert value("communigate_presence_watchers", {"status": "pending"}) == 1
    assert value("communigate_presence_accounts") == 2
    assert value("communigate_presence_changes_total") == 2


def test_stopping_ends_every_watcher_and_timer(h):
    h.presence.publish(ALICE, ("sip-publish", "e1"), BUSY, expires=60)
    h.watch(watcher=ALICE)
    h.presence.stop()
    assert h.seen()[-1] == ("terminated", None, "deactivated")
    assert h.clock.getDelayedCalls() == []
