"""
Message routing to local JIDs (RFC 6121 8.5) over scripted streams:
bare and full JIDs, the highest-priority resources, the types' special
cases, unknown accounts, other servers, and offline storage (bounded,
delivered with an XEP-0203 delay at the next non-negative presence).
"""

import pytest
from twisted.words.xish import domish

from communigate.cli.context import CommandContext
from communigate.xmpp.offline import KIND, OfflineMessages
from communigate.xmpp.stanzas import NS_DELAY, parse_stored, serialized

POSTMASTER = CommandContext.for_account("postmaster@example.com")


def messages(client):
    return [e for e in client.elements() if e.name == "message"]


def bodies(client):
    return [str(m.body) for m in messages(client)]


def condition(element):
    assert element["type"] == "error", element.toXml()
    return element.error.firstChildElement().name


def chat(to, body="hi", kind="chat", extra=""):
    type_attribute = f" type='{kind}'" if kind else ""
    return f"<message to='{to}'{type_attribute} id='m1'><body>{body}</body>{extra}</message>"


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


@pytest.fixture
def bob_clients(connect):
    def make(resource, priority=0, port=41000):
        client = connect(port=port).bound(resource, "bob", "builder")
        client.available(f"<presence><priority>{priority}</priority></presence>")
        return client

    return make


def test_a_message_to_the_bare_jid_reaches_the_highest_priority_resource(alice, bob_clients):
    low = bob_clients("low", 1, 41001)
    high = bob_clients("high", 5, 41002)
    low.elements()
    alice.send(chat("bob@example.com", "hello"))
    (got,) = messages(high)
    assert (got["from"], got["to"], str(got.body)) == ("alice@example.com/phone", "bob@example.com", "hello")
    assert messages(low) == []
    assert messages(alice) == []


@pytest.mark.parametrize("kind", ["chat", "normal", None])
def test_resources_of_equal_highest_priority_all_get_it(alice, bob_clients, kind):
    one = bob_clients("one", 2, 41001)
    two = bob_clients("two", 2, 41002)
    negative = bob_clients("neg", -1, 41003)
    one.elements()
    alice.send(chat("bob@example.com", "both of you", kind))
    assert bodies(one) == ["both of you"] and bodies(two) == ["both of you"]
    assert messages(negative) == []


def test_a_message_to_a_full_jid_goes_to_that_resource_only(alice, bob_clients):
    high = bob_clients("high", 5, 41001)
    low = bob_clients("low", 1, 41002)
    high.elements()
    alice.send(chat("bob@example.com/low", "just you"))
    assert bodies(low) == ["just you"] and messages(high) == []


def test_a_full_jid_reaches_a_connected_resource_that_sent_no_presence(alice, connect):
    quiet = connect(port=41009).bound("quiet", "bob", "builder")
    alice.send(chat("bob@example.com/quiet", "psst"))
    assert bodies(quiet) == ["psst"]


def test_a_chat_to_a_resource_that_is_gone_falls_back_to_the_bare_jid(alice, bob_clients):
    desk = bob_clients("desk", 0, 41001)
    desk.elements()
    alice.send(chat("bob@example.com/gone", "fallback"))
    assert bodies(desk) == ["fallback"]


@pytest.mark.parametrize("kind", ["headline", "error"])
def test_a_headline_or_error_to_a_resource_that_is_gone_is_dropped(alice, bob_clients, kind):
    desk = bob_clients("desk", 0, 41001)
    desk.elements()
    alice.send(chat("bob@example.com/gone", "x", kind))
    assert messages(desk) == [] and messages(alice) == []


def test_a_headline_to_the_bare_jid_reaches_every_non_negative_resource(alice, bob_clients):
    one = bob_clients("one", 5, 41001)
    two = bob_clients("two", 0, 41002)
    negative = bob_clients("neg", -5, 41003)
    one.elements()
    alice.send(chat("bob@example.com", "news", "headline"))
    assert bodies(one) == ["news"] and bodies(two) == ["news"] and messages(negative) == []


def test_groupchat_to_a_bare_jid_is_service_unavailable(alice, bob_clients):
    bob_clients("desk", 0, 41001)
    alice.send(chat("bob@example.com", "room?", "groupchat"))
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"


def test_an_unknown_account_and_the_server_get_service_unavailable(alice):
    alice.send(chat("nobody@example.com", "anyone?"))
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"
    assert (error["from"], error["to"]) == ("nobody@example.com", "alice@example.com/phone")
    alice.send(chat("example.com", "server?"))
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"


def test_an_error_message_is_never_answered(alice):
    alice.send(chat("nobody@example.com", "x", "error"))
    alice.send(chat("bob@example.com", "x", "error"))
    assert alice.elements() == []


def test_a_message_without_to_is_for_the_own_account(alice, connect):
    laptop = connect(port=41005).bound("laptop")
    laptop.available("<presence><priority>9</priority></presence>")
    alice.send("<message type='chat' id='n'><body>note to self</body></message>")
    (got,) = messages(laptop)
    assert got["to"] == "alice@example.com" and str(got.body) == "note to self"


def test_a_message_to_another_server_without_s2s_is_remote_server_not_found(alice):
    alice.send(chat("juliet@capulet.example", "hi"))
    (error,) = messages(alice)
    assert condition(error) == "remote-server-not-found"


def test_a_message_to_another_server_goes_to_route_remote(alice, service):
    sent = []
    service.attach_remote(type("Remote", (), {"route": lambda self, element: sent.append(element)})())
    try:
        alice.send(chat("juliet@capulet.example/balcony", "hi"))
        assert [(e["from"], e["to"]) for e in sent] == [("alice@example.com/phone", "juliet@capulet.example/balcony")]
        assert alice.elements() == []
        alice.send("<iq type='get' id='v' to='capulet.example'><query xmlns='jabber:iq:version'/></iq>")
        assert sent[-1].name == "iq"
    finally:
        service.attach_remote(None)


def test_deliver_local_takes_messages_from_another_server(service, bob_clients):
    desk = bob_clients("desk", 0, 41001)
    desk.elements()
    element = domish.Element(("jabber:client", "message"))
    element["from"] = "juliet@capulet.example/balcony"
    element["to"] = "bob@example.com"
    element["type"] = "chat"
    element.addElement("body", content="wherefore")
    service.deliver_local(element)
    (got,) = messages(desk)
    assert got["from"] == "juliet@capulet.example/balcony" and str(got.body) == "wherefore"


def test_chat_states_without_body_reach_resources_but_are_not_kept(alice, bob_clients, service):
    desk = bob_clients("desk", 0, 41001)
    desk.elements()
    composing = "<message to='bob@example.com' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    alice.send(composing)
    (got,) = messages(desk)
    assert got.composing is not None
    desk.send("<presence type='unavailable'/>")
    alice.send(composing)
    assert service.offline.count("bob@example.com") == 0
    alice.send("<message to='bob@example.com' type='chat'><store xmlns='urn:xmpp:hints'/><x xmlns='urn:example'/></message>")
    assert service.offline.count("bob@example.com") == 1


# -- offline storage ---------------------------------------------------------------


def test_a_message_for_an_account_with_no_resource_is_kept_and_delivered_with_a_delay(alice, connect, service, clock):
    clock.advance(1_700_000_000)
    alice.send(chat("bob@example.com", "while you were out"))
    assert alice.elements() == []
    assert service.offline.count("bob@example.com") == 1
    clock.advance(60)
    bob = connect(port=41001).bound("desk", "bob", "builder")
    assert messages(bob) == []
    got = [e for e in bob.available() if e.name == "message"]
    (message,) = got
    assert str(message.body) == "while you were out" and message["from"] == "alice@example.com/phone"
    (stamp,) = message.elements(NS_DELAY, "delay")
    assert stamp["stamp"] == "2023-11-14T22:13:20.000Z" and stamp["from"] == "example.com"
    assert service.offline.count("bob@example.com") == 0
    bob.send("<presence><show>away</show></presence>")
    assert messages(bob) == []


def test_offline_messages_wait_for_a_non_negative_priority(alice, connect, service):
    alice.send(chat("bob@example.com", "one"))
    alice.send(chat("bob@example.com", "two"))
    bob = connect(port=41001).bound("desk", "bob", "builder")
    assert [e for e in bob.available("<presence><priority>-1</priority></presence>") if e.name == "message"] == []
    got = [str(e.body) for e in bob.available("<presence><priority>1</priority></presence>") if e.name == "message"]
    assert got == ["one", "two"]


def test_a_resource_with_negative_priority_only_means_offline(alice, bob_clients, service):
    bob_clients("bot", -1, 41001)
    alice.send(chat("bob@example.com", "for later"))
    assert service.offline.count("bob@example.com") == 1


def test_the_offline_queue_is_bounded_and_then_service_unavailable(alice, service, context):
    result = context.interpreter.run(POSTMASTER, "UPDATEXMPPSETTINGS {MaxOfflineMessages = 2;}")
    assert result.ok, result.error
    assert service.settings.max_offline_messages == 2
    for index in range(3):
        alice.send(chat("bob@example.com", f"m{index}"))
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable" and str(error.body) == "m2"
    assert service.offline.count("bob@example.com") == 2


def test_offline_storage_turned_off_answers_service_unavailable(alice, service):
    service.apply_settings({"MaxOfflineMessages": "0"})
    alice.send(chat("bob@example.com", "nobody keeps this"))
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"


def test_stored_messages_survive_a_new_service_on_the_same_store(alice, context, clock):
    alice.send(chat("bob@example.com", "persisted"))
    again = OfflineMessages(context.store, clock, lambda: 100)
    (element,) = again.take("bob@example.com", "example.com")
    assert str(element.body) == "persisted"


def test_an_unreadable_stored_message_is_dropped_not_fatal(context, clock):
    offline = OfflineMessages(context.store, clock, lambda: 100)
    context.store.put(KIND, "bob@example.com/0000000001", "{not json")
    message = domish.Element(("jabber:client", "message"))
    message.addElement("body", content="fine")
    offline.store("bob@example.com", message)
    assert [str(e.body) for e in offline.take("bob@example.com", "example.com")] == ["fine"]
    assert offline.count("bob@example.com") == 0


def test_a_stored_stanza_round_trips_with_its_extensions():
    message = domish.Element(("jabber:client", "message"))
    message["to"] = "bob@example.com"
    message.addElement("body", content="<&> ünïcode")
    message.addElement(("urn:xmpp:receipts", "request"))
    again = parse_stored(serialized(message))
    assert str(again.body) == "<&> ünïcode" and again.request.uri == "urn:xmpp:receipts"


def test_messages_counters(alice, service, context):
    alice.send(chat("bob@example.com", "kept"))
    alice.send(chat("nobody@example.com", "refused"))
    registry = context.metrics
    assert registry.get_sample_value("communigate_xmpp_messages_total", {"outcome": "stored"}) == 1
    assert registry.get_sample_value("communigate_xmpp_messages_total", {"outcome": "refused"}) == 1
    assert registry.get_sample_value("communigate_xmpp_offline_messages") == 1


def test_prepared_jids_are_cached_within_a_bound_and_bad_ones_still_refused():
    from twisted.words.protocols.jabber.jid import InvalidFormat

    from communigate.xmpp import c2s

    assert c2s.parse_jid("Bob@Example.com/Desk") is c2s.parse_jid("Bob@Example.com/Desk")
    assert c2s.parse_jid("Bob@Example.com/Desk").full() == "bob@example.com/Desk"
    for text in ("a@@b", "a@" + "x" * 1100, "a b@example.com"):
        with pytest.raises(InvalidFormat):
            c2s.parse_jid(text)
    for index in range(c2s._CACHED_JIDS + 10):
        c2s.parse_jid(f"u{index}@example.com")
    assert c2s._cached_jid.cache_info().currsize <= c2s._CACHED_JIDS
    long = "u" * 200 + "@" + "d" * 100 + ".example"
    assert c2s.parse_jid(long) is not c2s.parse_jid(long)


def test_a_deleted_accounts_offline_messages_are_not_inherited_by_a_new_one(alice, context, service):
    alice.send(chat("bob@example.com", "for the old bob"))
    assert service.offline.count("bob@example.com") == 1
    context.directory.delete_account("bob@example.com")
    context.directory.create_account("bob@example.com", {"Password": "new"})
    assert service.offline.count("bob@example.com") == 0
