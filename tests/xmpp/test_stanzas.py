"""
Stanzas of a bound stream: addressing checks, stanza errors, ping,
version, disco, IQs between resources, presence bookkeeping, nonzas.
"""

import pytest

from communigate.xmpp.namespaces import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION


def only(client):
    (element,) = client.elements()
    return element


def condition(element):
    assert element["type"] == "error", element.toXml()
    return element.error.firstChildElement().name


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


def test_ping_to_the_server_gets_a_result(alice):
    alice.send("<iq type='get' id='p1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = only(alice)
    assert (reply["type"], reply["id"], reply["from"], reply["to"]) == ("result", "p1", "example.com", "alice@example.com/phone")


def test_ping_without_to_is_answered_for_the_account(alice):
    alice.send("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
    reply = only(alice)
    assert reply["type"] == "result" and reply["from"] == "alice@example.com"


def test_version_names_the_server_but_not_the_os(alice):
    alice.send("<iq type='get' id='v1' to='example.com'><query xmlns='jabber:iq:version'/></iq>")
    query = only(alice).query
    assert query.uri == NS_VERSION
    children = {child.name: str(child) for child in query.elements()}
    assert children["name"] == "communigate" and children["version"]
    assert "os" not in children


def test_disco_info_of_the_server_lists_identity_and_features(alice):
    alice.send("<iq type='get' id='d1' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    query = only(alice).query
    assert query.uri == NS_DISCO_INFO
    identity = query.identity
    assert (identity["category"], identity["type"]) == ("server", "im")
    features = {f["var"] for f in query.elements(NS_DISCO_INFO, "feature")}
    assert {NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION} <= features


def test_disco_info_of_the_own_account_is_a_registered_account(alice):
    alice.send("<iq type='get' id='d2' to='alice@example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    identity = only(alice).query.identity
    assert (identity["category"], identity["type"]) == ("account", "registered")


def test_disco_items_of_the_server_is_an_empty_list(alice):
    alice.send("<iq type='get' id='d3' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    reply = only(alice)
    assert reply["type"] == "result" and list(reply.query.elements()) == []


def test_disco_items_lists_what_providers_add(alice, service):
    service.disco.add_items("server", lambda session: [("conference.example.com", "Rooms")])
    alice.send("<iq type='get' id='d4' to='example.com'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
    (item,) = only(alice).query.elements()
    assert (item["jid"], item["name"]) == ("conference.example.com", "Rooms")


def test_disco_of_an_unknown_node_is_item_not_found(alice):
    alice.send("<iq type='get' id='d5' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>")
    assert condition(only(alice)) == "item-not-found"


def test_disco_of_another_account_is_service_unavailable(alice):
    alice.send("<iq type='get' id='d6' to='bob@example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    assert condition(only(alice)) == "service-unavailable"


def test_an_iq_without_a_handler_is_service_unavailable_and_keeps_the_payload(alice):
    alice.send("<iq type='get' id='u1' to='example.com'><query xmlns='urn:example:unknown'/></iq>")
    reply = only(alice)
    assert condition(reply) == "service-unavailable"
    assert reply.query.uri == "urn:example:unknown"
    assert reply["id"] == "u1" and reply["from"] == "example.com"


@pytest.mark.parametrize(
    "stanza, expected",
    [
        ("<iq type='bogus' id='x1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        ("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        ("<iq type='get' id='x2'/>", "bad-request"),
        ("<iq type='get' id='x3'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>", "bad-request"),
        ("<iq type='set' id='x4' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        ("<presence type='invisible'/>", "bad-request"),
        ("<message to='a@@b'><body>x</body></message>", "jid-malformed"),
        ("<message to='a@b..c'><body>x</body></message>", "jid-malformed"),
        ("<message to='nobody@example.com'><body>x</body></message>", "service-unavailable"),
    ],
)
def test_bad_or_unhandled_stanzas_get_stanza_errors(alice, stanza, expected):
    alice.send(stanza)
    assert condition(only(alice)) == expected
    assert alice.stream.state.value == "established"


def test_an_error_stanza_is_never_answered_with_an_error(alice, service):
    alice.send("<message type='error' to='a@@b'/>")
    alice.send("<message type='error' to='bob@example.com'/>")
    assert alice.elements() == []


def test_a_forged_from_is_invalid_from(alice):
    alice.send("<message from='bob@example.com/x' to='bob@example.com'><body>x</body></message>")
    assert alice.closed_with() == "invalid-from"


def test_the_own_bare_or_full_jid_as_from_is_accepted(alice):
    alice.send("<iq type='get' id='f1' from='alice@example.com' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert only(alice)["type"] == "result"
    alice.send("<iq type='get' id='f2' from='alice@example.com/phone' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert only(alice)["type"] == "result"


def test_an_unknown_top_level_element_is_unsupported_stanza_type(alice):
    alice.send("<foo xmlns='urn:example:foo'/>")
    assert alice.closed_with() == "unsupported-stanza-type"


def test_a_registered_nonza_handler_gets_its_elements(alice, service):
    seen = []
    service.dispatcher.register_nonza("urn:example:nonza", "ping", lambda session, element: seen.append(element.name))
    alice.send("<ping xmlns='urn:example:nonza'/>")
    assert seen == ["ping"]


def test_an_iq_to_another_bound_resource_is_passed_on_with_from_stamped(alice, connect):
    bob = connect().bound("desk", "bob", "builder")
    alice.send("<iq type='get' id='r1' to='bob@example.com/desk'><query xmlns='jabber:iq:version'/></iq>")
    forwarded = only(bob)
    assert forwarded["from"] == "alice@example.com/phone" and forwarded["id"] == "r1"
    bob.send("<iq type='result' id='r1' to='alice@example.com/phone'/>")
    answer = only(alice)
    assert answer["from"] == "bob@example.com/desk" and answer["type"] == "result"


def test_an_iq_to_a_resource_that_is_not_bound_is_service_unavailable(alice):
    alice.send("<iq type='get' id='r2' to='bob@example.com/none'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert condition(only(alice)) == "service-unavailable"


def test_presence_updates_availability_and_priority_in_the_registry(alice, service):
    alice.send("<presence><priority>5</priority></presence>")
    assert (alice.stream.available, alice.stream.priority) == (True, 5)
    assert service.sessions.available_resources("alice@example.com") == [alice.stream]
    alice.send("<presence type='unavailable'/>")
    assert alice.stream.available is False
    assert service.sessions.available_resources("alice@example.com") == []


def test_a_registered_message_handler_replaces_the_default(alice, service):
    seen = []
    service.dispatcher.register_kind("message", lambda session, stanza: seen.append((stanza.sender.full(), stanza.recipient.full())))
    alice.send("<message to='bob@example.com'><body>x</body></message>")
    assert seen == [("alice@example.com/phone", "bob@example.com")]
    assert alice.elements() == []


def test_a_failing_iq_handler_is_an_internal_server_error(alice, service):
    def broken(session, stanza):
        raise RuntimeError("boom")

    service.dispatcher.register_iq("urn:example:broken", "query", broken)
    alice.send("<iq type='get' id='e1' to='example.com'><query xmlns='urn:example:broken'/></iq>")
    assert condition(only(alice)) == "internal-server-error"
    assert alice.stream.state.value == "established"


def test_stanzas_are_counted_in_and_out(alice, context):
    alice.send("<iq type='get' id='c1' to='example.com'><ping xmlns='urn:xmpp:ping'/></iq>")
    alice.elements()
    registry = context.metrics
    value = registry.get_sample_value
    assert value("communigate_xmpp_stanzas_total", {"direction": "in", "kind": "iq"}) >= 1
    assert value("communigate_xmpp_stanzas_total", {"direction": "out", "kind": "iq"}) >= 2
    assert value("communigate_xmpp_logins_total", {"mechanism": "SCRAM-SHA-256", "outcome": "ok"}) == 1
    assert value("communigate_xmpp_sessions") == 1
    assert value("communigate_xmpp_streams") == 1
    assert value("communigate_xmpp_bound_total") == 1
