"""
The RFC 6121 subscription state machine against the state tables of the
RFC's Appendix A, every state and every stanza in both directions.
"""

import pytest

from communigate.presence.subscription import (
    Kind,
    SubscriptionState,
    apply,
    inbound,
    kind_of,
    outbound,
)

STATES = [
    "None",
    "None + Pending Out",
    "None + Pending In",
    "None + Pending Out/In",
    "To",
    "To + Pending In",
    "From",
    "From + Pending Out",
    "Both",
]

# RFC 6121 A.2: the user's server processes what the user sends.
# state before -> state after (a missing entry means "no state change").
OUTBOUND = {
    "subscribe": {
        "None": "None + Pending Out",
        "None + Pending In": "None + Pending Out/In",
        "From": "From + Pending Out",
    },
    "unsubscribe": {
        "None + Pending Out": "None",
        "None + Pending Out/In": "None + Pending In",
        "To": "None",
        "To + Pending In": "None + Pending In",
        "From + Pending Out": "From",
        "Both": "From",
    },
    "subscribed": {
        "None + Pending In": "From",
        "None + Pending Out/In": "From + Pending Out",
        "To + Pending In": "Both",
    },
    "unsubscribed": {
        "None + Pending In": "None",
        "None + Pending Out/In": "None + Pending Out",
        "To + Pending In": "To",
        "From": "None",
        "From + Pending Out": "None + Pending Out",
        "Both": "To",
    },
}

# RFC 6121 A.3: the contact's server processes what arrives for the contact.
INBOUND = {
    "subscribe": {
        "None": "None + Pending In",
        "None + Pending Out": "None + Pending Out/In",
        "To": "To + Pending In",
    },
    "unsubscribe": {
        "None + Pending In": "None",
        "None + Pending Out/In": "None + Pending Out",
        "To + Pending In": "To",
        "From": "None",
        "From + Pending Out": "None + Pending Out",
        "Both": "To",
    },
    "subscribed": {
        "None + Pending Out": "To",
        "None + Pending Out/In": "To + Pending In",
        "From + Pending Out": "Both",
    },
    "unsubscribed": {
        "None + Pending Out": "None",
        "None + Pending Out/In": "None + Pending In",
        "To": "None",
        "To + Pending In": "None + Pending In",
        "From + Pending Out": "From",
        "Both": "From",
    },
}


def cases(table, direction):
    for kind, changes in table.items():
        for before in STATES:
            yield pytest.param(direction, kind, before, changes.get(before, before), id=f"{direction}-{kind}-{before}")


@pytest.mark.parametrize(
    "direction, kind, before, after", [*cases(OUTBOUND, "outbound"), *cases(INBOUND, "inbound")]
)
def test_every_transition_follows_rfc_6121_appendix_a(direction, kind, before, after):
    transition = apply(SubscriptionState.named(before), direction, kind)
    assert transition.after.name == after
    assert transition.changed == (before != after)


def test_state_names_round_trip_and_map_to_roster_attributes():
    for name in STATES:
        assert SubscriptionState.named(name).name == name
    assert SubscriptionState.named("From + Pending Out").subscription == "from"
    assert SubscriptionState.named("Both").subscription == "both"
    assert SubscriptionState.of("to", pending_in=True).name == "To + Pending In"


def test_impossible_states_are_refused():
    with pytest.raises(ValueError):
        SubscriptionState(to=True, pending_out=True)
    with pytest.raises(ValueError):
        SubscriptionState(from_=True, pending_in=True)
    with pytest.raises(ValueError, match="subscription must be one of"):
        SubscriptionState.of("half")


@pytest.mark.parametrize("before", STATES)
def test_outbound_subscribe_and_unsubscribe_are_always_routed(before):
    state = SubscriptionState.named(before)
    assert outbound(state, "subscribe").forward
    assert outbound(state, "unsubscribe").forward


@pytest.mark.parametrize("before", STATES)
def test_approvals_and_denials_are_routed_only_when_they_change_something(before):
    state = SubscriptionState.named(before)
    for kind in ("subscribed", "unsubscribed"):
        transition = outbound(state, kind)
        assert transition.forward == transition.changed


@pytest.mark.parametrize("before", STATES)
def test_inbound_stanzas_are_delivered_only_when_they_change_something(before):
    state = SubscriptionState.named(before)
    for kind in Kind:
        transition = inbound(state, kind)
        assert transition.forward == transition.changed


def test_a_subscribe_from_a_contact_already_subscribed_is_answered_by_the_server():
    for name in ("From", "From + Pending Out", "Both"):
        transition = inbound(SubscriptionState.named(name), "subscribe")
        assert transition.reply is Kind.SUBSCRIBED and not transition.forward
    assert inbound(SubscriptionState.named("None"), "subscribe").reply is None


def test_presence_goes_to_the_contact_after_approval_and_unavailable_after_revocation():
    assert outbound(SubscriptionState.named("None + Pending In"), "subscribed").send_presence == "available"
    assert outbound(SubscriptionState.named("Both"), "unsubscribed").send_presence == "unavailable"
    assert outbound(SubscriptionState.named("None + Pending In"), "unsubscribed").send_presence is None
    assert inbound(SubscriptionState.named("From"), "unsubscribe").send_presence == "unavailable"
    assert outbound(SubscriptionState.named("From"), "subscribed").send_presence is None


def test_kinds_are_read_from_text_and_unknown_ones_named():
    assert kind_of("Subscribed") is Kind.SUBSCRIBED
    with pytest.raises(ValueError, match="subscribe, subscribed, unsubscribe or unsubscribed"):
        kind_of("probe")
    with pytest.raises(ValueError, match="outbound or inbound"):
        apply(SubscriptionState(), "sideways", "subscribe")
