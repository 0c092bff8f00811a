"""
jabber:iq:roster over a scripted stream: get (with versioning), set,
remove, the RFC 6121 2.3.3 errors, MaxRosterItems, and pushes to every
interested resource whoever changed the roster (XMPP, the CLI, SIP).
"""

import pytest

from communigate.cli.context import CommandContext
from communigate.xmpp.roster import NS_ROSTER

POSTMASTER = CommandContext.for_account("postmaster@example.com")


def condition(element):
    assert element["type"] == "error", element.toXml()
    return element.error.firstChildElement().name


def items_of(query):
    return {
        item["jid"]: (
            item.getAttribute("name"),
            item.getAttribute("subscription"),
            item.getAttribute("ask"),
            [str(group) for group in item.elements(NS_ROSTER, "group")],
        )
        for item in query.elements(NS_ROSTER, "item")
    }


def pushes(client):
    return [e for e in client.elements() if e.name == "iq" and e.getAttribute("type") == "set"]


def roster_set(client, item, iq_id="s1"):
    client.send(f"<iq type='set' id='{iq_id}'><query xmlns='jabber:iq:roster'>{item}</query></iq>")
    return client.elements()


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


def test_an_empty_roster_has_a_version_and_no_items(alice):
    query = alice.roster().query
    assert query.uri == NS_ROSTER and query["ver"]
    assert list(query.elements()) == []


def test_a_set_adds_an_item_with_name_and_groups_and_pushes_it(alice):
    alice.roster()
    answers = roster_set(alice, "<item jid='Bob@Example.com/desk' name='Bob'><group>Work</group><group>Friends</group></item>")
    result = [e for e in answers if e.getAttribute("id") == "s1"]
    assert result[0]["type"] == "result"
    (push,) = [e for e in answers if e.getAttribute("type") == "set"]
    assert push["to"] == "alice@example.com/phone" and push.getAttribute("from") is None
    assert items_of(push.query) == {"bob@example.com": ("Bob", "none", None, ["Work", "Friends"])}
    assert items_of(alice.roster().query) == items_of(push.query)
    assert push.query["ver"] == alice.roster().query["ver"]


def test_a_get_with_the_current_version_is_an_empty_result(alice):
    roster_set(alice, "<item jid='bob@example.com'/>")
    version = alice.roster().query["ver"]
    alice.send(f"<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='{version}'/></iq>")
    (result,) = alice.elements()
    assert result["type"] == "result" and result.query is None
    alice.send("<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='stale'/></iq>")
    (result,) = alice.elements()
    assert "bob@example.com" in items_of(result.query)


def test_roster_versioning_is_offered_with_binding(connect):
    client = connect()
    features = client.login()
    names = {(child.uri, child.name) for child in features[0].elements()}
    assert ("urn:xmpp:features:rosterver", "ver") in names
    assert ("urn:xmpp:sm:3", "sm") in names


def test_a_set_replaces_name_and_groups(alice):
    roster_set(alice, "<item jid='bob@example.com' name='Bob'><group>Work</group></item>")
    roster_set(alice, "<item jid='bob@example.com'><group>Home</group></item>", "s2")
    assert items_of(alice.roster().query) == {"bob@example.com": (None, "none", None, ["Home"])}


def test_pushes_go_to_every_interested_resource_only(alice, connect):
    laptop = connect().bound("laptop")
    quiet = connect().bound("quiet")
    laptop.roster()
    alice.roster()
    roster_set(alice, "<item jid='carol@example.org'/>")
    (push,) = pushes(laptop)
    assert push["to"] == "alice@example.com/laptop"
    assert quiet.elements() == []


def test_remove_pushes_subscription_remove(alice):
    alice.roster()
    roster_set(alice, "<item jid='bob@example.com'/>")
    answers = roster_set(alice, "<item jid='bob@example.com' subscription='remove'/>", "s2")
    (push,) = [e for e in answers if e.getAttribute("type") == "set"]
    assert items_of(push.query) == {"bob@example.com": (None, "remove", None, [])}
    assert items_of(alice.roster().query) == {}


def test_removing_an_item_that_is_not_there_is_item_not_found(alice):
    (answer,) = roster_set(alice, "<item jid='nobody@example.com' subscription='remove'/>")
    assert condition(answer) == "item-not-found"


def test_a_subscription_other_than_remove_and_ask_are_ignored_in_a_set(alice):
    roster_set(alice, "<item jid='bob@example.com' subscription='both' ask='subscribe'/>")
    assert items_of(alice.roster().query) == {"bob@example.com": (None, "none", None, [])}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("<item jid='a@example.com'/><item jid='b@example.com'/>", "bad-request"),
        ("", "bad-request"),
        ("<item name='no jid'/>", "bad-request"),
        ("<item jid='a@@b'/>", "bad-request"),
        ("<item jid='a@example.com'><group>G</group><group>G</group></item>", "bad-request"),
        ("<item jid='a@example.com'><group></group></item>", "not-acceptable"),
        ("<item jid='a@example.com'><group>" + "g" * 300 + "</group></item>", "not-acceptable"),
        ("<item jid='a@example.com' name='" + "n" * 300 + "'/>", "not-acceptable"),
        ("<item jid='a@example.com'>" + "".join(f"<group>g{i}</group>" for i in range(40)) + "</item>", "not-acceptable"),
    ],
)
def test_bad_roster_sets_get_their_errors_and_change_nothing(alice, query, expected):
    alice.send(f"<iq type='set' id='bad'><query xmlns='jabber:iq:roster'>{query}</query></iq>")
    (answer,) = alice.elements()
    assert condition(answer) == expected
    assert items_of(alice.roster().query) == {}
    assert alice.stream.state.value == "established"


def test_the_roster_of_another_account_is_forbidden(alice):
    alice.send("<iq type='get' id='x' to='bob@example.com'><query xmlns='jabber:iq:roster'/></iq>")
    (answer,) = alice.elements()
    assert condition(answer) == "service-unavailable"


def test_a_roster_at_its_limit_refuses_more_with_resource_constraint(alice, context):
    context.directory.change_account_settings("alice@example.com", {"MaxRosterItems": "2"}, replace=False)
    roster_set(alice, "<item jid='a@example.com'/>", "s1")
    roster_set(alice, "<item jid='b@example.com'/>", "s2")
    (answer,) = roster_set(alice, "<item jid='c@example.com'/>", "s3")
    assert condition(answer) == "resource-constraint"
    assert answer.error["type"] == "wait"
    assert set(items_of(alice.roster().query)) == {"a@example.com", "b@example.com"}
    # An existing item may still change.
    answers = roster_set(alice, "<item jid='a@example.com' name='A'/>", "s4")
    assert [e["type"] for e in answers if e["id"] == "s4"] == ["result"]


def test_an_oversized_roster_set_closes_nothing_else(alice, context):
    context.directory.change_account_settings("alice@example.com", {"MaxRosterItems": "1"}, replace=False)
    for index in range(5):
        roster_set(alice, f"<item jid='u{index}@example.com'/>", f"s{index}")
    assert len(items_of(alice.roster().query)) == 1
    assert context.roster.items("alice@example.com")[0].contact == "u0@example.com"


def test_a_change_by_the_cli_is_pushed(alice, context):
    alice.roster()
    result = context.interpreter.run(
        POSTMASTER, "ROSTER alice@example.com {what = Update; peer = carol@example.org; name = Carol; groups = (Team);}"
    )
    assert result.ok, result.error
    (push,) = pushes(alice)
    assert items_of(push.query) == {"carol@example.org": ("Carol", "none", None, ["Team"])}


def test_a_change_by_a_sip_watcher_is_pushed_to_the_watcher(connect, context):
    bob = connect().bound("desk", "bob", "builder")
    bob.roster()
    # A SIP SUBSCRIBE from bob files a request in alice's roster and marks
    # bob's own item as asking.
    context.presence.watch("alice@example.com", "bob@example.com", lambda event: None, ask=True)
    (push,) = pushes(bob)
    assert items_of(push.query) == {"alice@example.com": (None, "none", "subscribe", [])}


def test_a_push_answer_is_taken_quietly(alice, service):
    alice.roster()
    roster_set(alice, "<item jid='bob@example.com'/>")
    alice.send("<iq type='result' id='cg-push-1'/>")
    alice.send("<iq type='error' id='cg-push-2'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    assert alice.elements() == []
    assert alice.stream.state.value == "established"
