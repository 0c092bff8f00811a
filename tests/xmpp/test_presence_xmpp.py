"""
XMPP presence over scripted streams: subscriptions through the shared
roster (pending requests across logins), initial presence, probes,
broadcasts, directed presence, unavailable on disconnect, the presence
service's sources, and the aggregated state of local contacts (a SIP
phone's busy seen as dnd).
"""

import pytest

from communigate.presence.state import PresenceState
from communigate.xmpp.presence import SOURCE_KIND


def presences(client):
    return [e for e in client.elements() if e.name == "presence"]


def summary(element):
    show = element.show
    return (
        element.getAttribute("from"),
        element.getAttribute("type"),
        None if show is None else str(show),
    )


def condition(element):
    assert element["type"] == "error", element.toXml()
    return element.error.firstChildElement().name


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


@pytest.fixture
def bob(connect):
    return connect(port=40001).bound("desk", "bob", "builder")


@pytest.fixture
def friends(context):
    """alice and bob see each other's presence."""
    context.roster.set_subscription("alice@example.com", "bob@example.com", "both")


def test_a_subscription_request_reaches_the_contact_and_the_approval_comes_back(alice, bob, clock):
    alice.roster()
    bob.roster()
    alice.available()
    bob.available("<presence><show>away</show></presence>")
    alice.send("<presence type='subscribe' to='bob@example.com'><status>hi, it is alice</status></presence>")
    (push,) = alice.elements()
    assert push.query.item["ask"] == "subscribe"
    (request,) = presences(bob)
    assert (request["from"], request["type"], str(request.status)) == ("alice@example.com", "subscribe", "hi, it is alice")

    bob.send("<presence type='subscribed' to='alice@example.com'/>")
    (bob_push,) = bob.elements()
    assert bob_push.query.item["subscription"] == "from"
    got = alice.elements()
    assert [(e.name, e.getAttribute("type")) for e in got] == [("iq", "set"), ("presence", "subscribed")]
    assert got[0].query.item["subscription"] == "to"
    clock.advance(0)
    assert [summary(p) for p in presences(alice)] == [("bob@example.com/desk", None, "away")]


def test_a_pending_request_waits_across_logins(connect, clock):
    alice = connect().bound("phone")
    alice.available()
    alice.send("<presence type='subscribe' to='bob@example.com'/>")
    bob = connect(port=40001).bound("desk", "bob", "builder")
    assert bob.elements() == []
    got = bob.available()
    assert [summary(p) for p in got if p.name == "presence"] == [("alice@example.com", "subscribe", None)]
    bob.lose_connection()
    again = connect(port=40002).bound("other", "bob", "builder")
    assert [summary(p) for p in again.available() if p.name == "presence"] == [("alice@example.com", "subscribe", None)]


def test_initial_presence_is_broadcast_and_probes_answered(alice, bob, friends):
    bob.available("<presence><show>xa</show><status>gone</status></presence>")
    got = alice.available("<presence><priority>3</priority></presence>")
    assert [summary(p) for p in got] == [("bob@example.com/desk", None, "xa")]
    (seen,) = presences(bob)
    assert summary(seen) == ("alice@example.com/phone", None, None) and str(seen.priority) == "3"


def test_own_resources_see_each_other(alice, connect):
    laptop = connect().bound("laptop")
    alice.available()
    got = laptop.available("<presence><show>chat</show></presence>")
    assert [summary(p) for p in got] == [("alice@example.com/phone", None, None)]
    assert [summary(p) for p in presences(alice)] == [("alice@example.com/laptop", None, "chat")]


def test_presence_changes_and_unavailable_reach_subscribers(alice, bob, friends):
    alice.available()
    bob.available()
    alice.elements()
    bob.send("<presence><show>dnd</show></presence>")
    assert [summary(p) for p in presences(alice)] == [("bob@example.com/desk", None, "dnd")]
    bob.send("<presence type='unavailable'><status>bye</status></presence>")
    (gone,) = presences(alice)
    assert summary(gone) == ("bob@example.com/desk", "unavailable", None) and str(gone.status) == "bye"


def test_an_unclean_disconnect_sends_unavailable_and_withdraws_the_source(alice, bob, friends, context):
    alice.available()
    bob.available("<presence><show>away</show></presence>")
    alice.elements()
    assert (SOURCE_KIND, "bob@example.com/desk") in context.presence.sources("bob@example.com")
    bob.lose_connection()
    assert [summary(p) for p in presences(alice)] == [("bob@example.com/desk", "unavailable", None)]
    assert context.presence.sources("bob@example.com") == {}
    assert context.presence.status("bob@example.com") is None


def test_each_resource_is_a_source_of_the_aggregated_presence(alice, connect, context):
    alice.available("<presence><show>away</show><status>lunch</status><priority>5</priority></presence>")
    assert context.presence.sources("alice@example.com") == {
        (SOURCE_KIND, "alice@example.com/phone"): PresenceState(show="away", status="lunch", priority=5)
    }
    laptop = connect().bound("laptop")
    laptop.available("<presence><show>dnd</show></presence>")
    assert context.presence.status("alice@example.com") == ("busy", None)
    laptop.send("<presence type='unavailable'/>")
    assert context.presence.status("alice@example.com") == ("away", "lunch")


def test_a_sip_phone_busy_shows_as_dnd_from_the_bare_jid(alice, friends, context):
    alice.available()
    context.presence.publish("bob@example.com", ("sip-publish", "e1"), PresenceState(show="dnd", status="On the phone"))
    (busy,) = presences(alice)
    assert summary(busy) == ("bob@example.com", None, "dnd") and str(busy.status) == "On the phone"
    context.presence.withdraw("bob@example.com", ("sip-publish", "e1"))
    assert [summary(p) for p in presences(alice)] == [("bob@example.com", "unavailable", None)]


def test_the_account_presence_is_sent_when_a_phone_outranks_the_xmpp_resources(alice, bob, friends, context):
    alice.available()
    bob.available()
    alice.elements()
    context.presence.publish("bob@example.com", ("sip-publish", "e1"), PresenceState(show="dnd"))
    assert [summary(p) for p in presences(alice)] == [("bob@example.com", None, "dnd")]
    # A registered phone alone says only "online": the desk client speaks for bob.
    context.presence.withdraw("bob@example.com", ("sip-publish", "e1"))
    context.presence.publish("bob@example.com", ("sip-registration", "bob@example.com"), PresenceState())
    assert [summary(p) for p in presences(alice)] == [("bob@example.com", "unavailable", None)]


def test_a_login_sees_a_contact_that_only_has_a_phone(connect, friends, context):
    context.presence.publish("bob@example.com", ("sip-registration", "bob@example.com"), PresenceState())
    alice = connect().bound("phone")
    got = alice.available()
    assert [summary(p) for p in got] == [("bob@example.com", None, None)]


def test_directed_presence_and_its_unavailable_on_disconnect(alice, connect):
    carol = connect(port=40003).bound("pad", "carol@example.org", "carol-pw")
    carol.available()
    alice.available()
    alice.send("<presence to='carol@example.org'><show>chat</show></presence>")
    (seen,) = presences(carol)
    assert summary(seen) == ("alice@example.com/phone", None, "chat")
    alice.lose_connection()
    assert [summary(p) for p in presences(carol)] == [("alice@example.com/phone", "unavailable", None)]


def test_unsubscribed_revokes_and_the_contact_goes_unavailable(alice, bob, friends):
    alice.available()
    bob.available()
    alice.elements()
    bob.send("<presence type='unsubscribed' to='alice@example.com'/>")
    got = presences(alice)
    assert ("bob@example.com/desk", "unavailable", None) in [summary(p) for p in got]
    assert ("bob@example.com", "unsubscribed", None) in [summary(p) for p in got]
    bob.send("<presence><show>away</show></presence>")
    assert presences(alice) == []


def test_a_probe_from_a_client_is_answered_when_authorised(alice, bob, friends, connect):
    bob.available("<presence><show>away</show></presence>")
    alice.send("<presence type='probe' to='bob@example.com'/>")
    assert [summary(p) for p in presences(alice)] == [("bob@example.com/desk", None, "away")]
    carol = connect(port=40003).bound("pad", "carol@example.org", "carol-pw")
    carol.send("<presence type='probe' to='bob@example.com'/>")
    assert presences(carol) == []


@pytest.mark.parametrize(
    "stanza, expected",
    [
        ("<presence><show>busy</show></presence>", "bad-request"),
        ("<presence type='subscribe'/>", "bad-request"),
        ("<presence type='probe'/>", "bad-request"),
        ("<presence type='subscribe' to='a@@b'/>", "jid-malformed"),
    ],
)
def test_bad_presence_gets_a_stanza_error(alice, stanza, expected, context):
    alice.send(stanza)
    (answer,) = alice.elements()
    assert condition(answer) == expected
    assert alice.stream.state.value == "established"
    assert context.presence.sources("alice@example.com") == {}


def test_presence_to_an_unknown_account_is_dropped_silently(alice):
    alice.available()
    alice.send("<presence type='subscribe' to='nobody@example.com'/>")
    alice.send("<presence to='nobody@example.com'/>")
    assert presences(alice) == []


def test_a_subscription_at_the_roster_limit_is_resource_constraint(alice, context):
    context.directory.change_account_settings("alice@example.com", {"MaxRosterItems": "1"}, replace=False)
    alice.send("<presence type='subscribe' to='bob@example.com'/>")
    alice.elements()
    alice.send("<presence type='subscribe' to='carol@example.org'/>")
    (answer,) = alice.elements()
    assert condition(answer) == "resource-constraint"


def test_subscriptions_to_another_server_without_s2s_get_remote_server_not_found(alice, service):
    alice.send("<presence type='subscribe' to='juliet@capulet.example'/>")
    answers = presences(alice)
    assert [condition(p) for p in answers] == ["remote-server-not-found"]


def test_subscriptions_to_another_server_go_to_route_remote(alice, service, context):
    sent = []
    service.attach_remote(type("Remote", (), {"route": lambda self, element: sent.append(element)})())
    try:
        alice.available()
        alice.send("<presence type='subscribe' to='juliet@capulet.example/balcony'/>")
        (element,) = sent
        assert (element["from"], element["to"], element["type"]) == ("alice@example.com", "juliet@capulet.example", "subscribe")
        assert context.roster.item("alice@example.com", "juliet@capulet.example").ask
        # Juliet's server approves, through deliver_local.
        from twisted.words.xish import domish

        approval = domish.Element(("jabber:client", "presence"))
        approval["from"] = "juliet@capulet.example"
        approval["to"] = "alice@example.com"
        approval["type"] = "subscribed"
        service.deliver_local(approval)
        assert context.roster.item("alice@example.com", "juliet@capulet.example").subscription == "to"
        assert ("juliet@capulet.example", "subscribed", None) in [summary(p) for p in presences(alice)]
    finally:
        service.attach_remote(None)


def test_a_remote_probe_is_answered_by_roster_authorisation(alice, service, context):
    sent = []
    service.attach_remote(type("Remote", (), {"route": lambda self, element: sent.append(element)})())
    try:
        alice.available("<presence><show>away</show></presence>")
        from twisted.words.xish import domish

        probe = domish.Element(("jabber:client", "presence"))
        probe["from"] = "juliet@capulet.example"
        probe["to"] = "alice@example.com"
        probe["type"] = "probe"
        service.deliver_local(probe)
        assert [(e["to"], e.getAttribute("type")) for e in sent] == [("juliet@capulet.example", "unsubscribed")]
        sent.clear()
        context.roster.set_subscription("alice@example.com", "juliet@capulet.example", "from")
        service.deliver_local(probe)
        assert [(e["from"], e["to"], str(e.show)) for e in sent] == [
            ("alice@example.com/phone", "juliet@capulet.example", "away")
        ]
    finally:
        service.attach_remote(None)


def test_the_im_parts_observe_sessions_through_their_interface(service):
    from zope.interface.verify import verifyObject

    from communigate.interfaces import IXMPPSessionObserver

    for part in (service.roster, service.presence, service.carbons):
        assert verifyObject(IXMPPSessionObserver, part)


def test_subscription_stanzas_are_counted(alice, context):
    alice.send("<presence type='subscribe' to='bob@example.com'/>")
    alice.send("<presence type='unsubscribe' to='bob@example.com'/>")
    registry = context.metrics
    for kind in ("subscribe", "unsubscribe"):
        assert registry.get_sample_value("communigate_xmpp_subscriptions_total", {"kind": kind}) == 1


def test_directed_presence_to_too_many_addresses_is_refused(alice, monkeypatch):
    from communigate.xmpp import presence

    monkeypatch.setattr(presence, "MAX_DIRECTED", 3)
    alice.available()
    for index in range(3):
        alice.send(f"<presence to='u{index}@capulet.example'/>")
    assert alice.elements() == []
    alice.send("<presence to='u0@capulet.example'><show>away</show></presence>")
    assert alice.elements() == []
    alice.send("<presence to='u9@capulet.example'/>")
    (answer,) = alice.elements()
    assert condition(answer) == "resource-constraint"
