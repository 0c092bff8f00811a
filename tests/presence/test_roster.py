"""
The roster: items and their subscriptions in the store, requests kept for
the owner's answer, stanzas carried between local accounts, limits, and
the events every change produces.
"""

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.interfaces import IRoster
from communigate.presence.roster import (
    InvalidContact,
    Kind,
    Roster,
    RosterError,
    RosterFull,
    bare_address,
)
from communigate.storage import MemoryStore

LOCAL = {"alice@example.com", "bob@example.com", "carol@example.com"}


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def roster(store):
    limits = {}
    clock = Clock()
    clock.advance(1000)
    roster = Roster(
        store,
        is_local=lambda address: address if address in LOCAL else None,
        max_items=lambda owner: limits.get(owner),
        clock=clock,
    )
    roster.limits = limits
    roster.events = []
    roster.add_listener(roster.events.append)
    return roster


def test_it_provides_the_roster_interface(roster):
    verifyObject(IRoster, roster)


def test_contacts_are_bare_lower_case_addresses():
    assert bare_address("sip:Bob@Example.COM;transport=udp") == "bob@example.com"
    assert bare_address("xmpp:bob@example.com/phone") == "bob@example.com"
    assert bare_address("gateway.example.net") == "gateway.example.net"
    for bad in ("", "@example.com", "bob@", "a b@example.com", "<x@y>", "a@b@c"):
        with pytest.raises(InvalidContact):
            bare_address(bad)


def test_an_item_keeps_its_name_and_groups_across_a_reload(store, roster):
    roster.set_item("alice@example.com", "Bob@Example.com", name="Bob", groups=["Work", "Work", "Friends"])
    again = Roster(store)
    (item,) = again.items("alice@example.com")
    assert (item.contact, item.name, item.groups, item.subscription) == (
        "bob@example.com", "Bob", ("Work", "Friends"), "none")
    roster.set_item("alice@example.com", "bob@example.com", name="Robert")
    assert roster.item("alice@example.com", "bob@example.com").groups == ("Work", "Friends")
    assert roster.events[-1].cause == "set" and roster.events[-1].item_changed


def test_a_subscription_between_local_accounts_ends_both_ways(roster):
    exchange = roster.exchange("bob@example.com", "alice@example.com", "subscribe", status="hi")
    assert exchange.outbound.item.ask and exchange.inbound.forward and not exchange.remote
    assert roster.item("alice@example.com", "bob@example.com") is None
    (request,) = roster.pending("alice@example.com")
    assert (request.contact, request.status, request.received_at) == ("bob@example.com", "hi", 1000)
    assert not roster.is_authorized("alice@example.com", "bob@example.com")

    roster.exchange("alice@example.com", "bob@example.com", "subscribed")
    assert roster.item("alice@example.com", "bob@example.com").subscription == "from"
    assert roster.item("bob@example.com", "alice@example.com").subscription == "to"
    assert roster.pending("alice@example.com") == []
    assert roster.is_authorized("alice@example.com", "sip:bob@example.com")
    assert not roster.is_authorized("bob@example.com", "alice@example.com")


def test_a_request_to_a_contact_already_subscribed_is_answered_by_the_server(roster):
    roster.set_subscription("alice@example.com", "bob@example.com", "from")
    roster.outbound("bob@example.com", "alice@example.com", "unsubscribe")
    assert roster.item("bob@example.com", "alice@example.com").subscription == "none"
    exchange = roster.exchange("bob@example.com", "alice@example.com", "subscribe")
    assert exchange.inbound.reply is Kind.SUBSCRIBED
    assert exchange.reply.item.subscription == "to"


def test_a_request_from_another_server_waits_and_a_denial_removes_it(roster):
    exchange = roster.exchange("dave@remote.example", "alice@example.com", "subscribe")
    assert exchange.outbound is None and exchange.inbound.forward
    assert [r.contact for r in roster.pending("alice@example.com")] == ["dave@remote.example"]
    denial = roster.exchange("alice@example.com", "dave@remote.example", "unsubscribed")
    assert denial.remote and denial.outbound.forward
    assert roster.pending("alice@example.com") == []
    assert roster.item("alice@example.com", "dave@remote.example") is None


def test_events_say_what_to_push_and_what_to_deliver(roster):
    roster.exchange("bob@example.com", "alice@example.com", "subscribe")
    bob_side, alice_side = roster.events
    assert (bob_side.owner, bob_side.cause, bob_side.item_changed, bob_side.deliver) == (
        "bob@example.com", "outbound", True, False)
    assert (alice_side.owner, alice_side.cause, alice_side.kind, alice_side.deliver, alice_side.pending_in) == (
        "alice@example.com", "inbound", Kind.SUBSCRIBE, True, True)
    assert alice_side.item is None and not alice_side.item_changed


def test_removing_an_item_cancels_both_directions_on_the_local_contact(roster):
    roster.set_subscription("alice@example.com", "bob@example.com", "both")
    assert roster.item("bob@example.com", "alice@example.com").subscription == "both"
    removal = roster.remove_item("alice@example.com", "bob@example.com")
    assert removal.stanzas == (Kind.UNSUBSCRIBE, Kind.UNSUBSCRIBED) and not removal.remote
    assert roster.item("alice@example.com", "bob@example.com") is None
    assert roster.item("bob@example.com", "alice@example.com").subscription == "none"
    assert roster.remove_item("alice@example.com", "bob@example.com").item is None


def test_removing_a_remote_contact_leaves_the_stanzas_to_route(roster):
    roster.set_subscription("alice@example.com", "dave@remote.example", "to")
    removal = roster.remove_item("alice@example.com", "dave@remote.example")
    assert removal.stanzas == (Kind.UNSUBSCRIBE,) and removal.remote


def test_the_administrator_sets_a_subscription_and_the_mirror_follows(roster):
    roster.exchange("bob@example.com", "alice@example.com", "subscribe")
    roster.set_subscription("alice@example.com", "bob@example.com", "from")
    assert roster.pending("alice@example.com") == []
    assert roster.item("bob@example.com", "alice@example.com").subscription == "to"
    assert not roster.item("bob@example.com", "alice@example.com").ask
    with pytest.raises(RosterError, match="none, to, from, both"):
        roster.set_subscription("alice@example.com", "bob@example.com", "all")


def test_max_roster_items_bounds_items_and_requests_separately(roster):
    roster.limits["alice@example.com"] = "2"
    roster.set_item("alice@example.com", "a@x.example")
    roster.set_item("alice@example.com", "b@x.example")
    with pytest.raises(RosterFull, match="MaxRosterItems"):
        roster.set_item("alice@example.com", "c@x.example")
    with pytest.raises(RosterFull):
        roster.outbound("alice@example.com", "c@x.example", "subscribe")
    roster.inbound("alice@example.com", "c@x.example", "subscribe")
    roster.inbound("alice@example.com", "d@x.example", "subscribe")
    with pytest.raises(RosterFull, match="waiting subscription requests"):
        roster.inbound("alice@example.com", "e@x.example", "subscribe")
    assert len(roster.items("alice@example.com")) == 2 and len(roster.pending("alice@example.com")) == 2
    roster.limits["alice@example.com"] = "many"
    with pytest.raises(RosterError, match="MaxRosterItems must be a number"):
        roster.set_item("alice@example.com", "f@x.example")


def test_bad_names_and_groups_are_refused(roster):
    with pytest.raises(RosterError):
        roster.set_item("alice@example.com", "bob@example.com", name="x" * 300)
    with pytest.raises(RosterError):
        roster.set_item("alice@example.com", "bob@example.com", groups=[""])
    with pytest.raises(ValueError, match="unknown subscription stanza"):
        roster.outbound("alice@example.com", "bob@example.com", "probe")


def test_an_empty_roster_leaves_no_record(store, roster):
    roster.inbound("alice@example.com", "dave@remote.example", "subscribe")
    assert roster.count() == 1
    roster.outbound("alice@example.com", "dave@remote.example", "unsubscribed")
    assert roster.count() == 0 and store.get("roster", "alice@example.com") is None


def test_a_failing_listener_does_not_stop_the_others(roster):
    seen = []
    roster.add_listener(lambda event: 1 / 0)
    roster.add_listener(seen.append)
    roster.set_item("alice@example.com", "bob@example.com")
    assert len(seen) == 1
    roster.remove_listener(seen.append)
    roster.set_item("alice@example.com", "carol@example.com")
    assert len(seen) == 1
