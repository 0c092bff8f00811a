"""
Stanzas of real client streams (c2s) to other domains: the dispatcher's
hook hands them to XMPPService.route_remote, the S2S service carries them
to the other server over the in-memory network, and answers come back to
the client's stream.  Also the minimal local delivery of what other
servers send.
"""

import pytest
from prometheus_client import generate_latest
from twisted.words.xish import domish


@pytest.fixture
def service(one):
    """
    The client streams of the parent conftest (ScriptedClient, alice and
    bob at example.com) connect to server one, which serves example.com too.
    """
    directory = one.context.directory
    directory.create_domain("example.com")
    directory.create_account("alice@example.com", {"Password": "wonderland"})
    directory.create_account("bob@example.com", {"Password": "builder"})
    return one.xmpp


def error_condition(element):
    return next(c.name for c in element.error.elements() if c.name != "text")


def test_a_client_message_to_another_domain_arrives_and_the_reply_comes_back(connect, two, network):
    bob = two.session("bob", "phone")
    alice = connect().bound("laptop")
    alice.send("<message to='bob@two.test' type='chat' id='m1'><body>hello two</body></message>")
    network.flush()
    (message,) = bob.received
    assert (message["from"], message["to"], str(message.body)) == (
        "alice@example.com/laptop",
        "bob@two.test",
        "hello two",
    )
    reply = domish.Element(("jabber:client", "message"))
    reply["from"], reply["to"], reply["type"] = "bob@two.test/phone", "alice@example.com/laptop", "chat"
    reply.addElement("body", content="hello back")
    two.xmpp.route_remote(reply)
    network.flush()
    (answer,) = alice.elements()
    assert (answer.uri, answer["from"], str(answer.body)) == ("jabber:client", "bob@two.test/phone", "hello back")


def test_directed_presence_goes_to_the_other_domain_but_broadcast_presence_does_not(connect, two, network):
    bob = two.session("bob", "phone")
    alice = connect().bound("laptop")
    alice.send("<presence><priority>5</priority></presence>")
    alice.send("<presence to='bob@two.test'><status>for bob</status></presence>")
    network.flush()
    (presence,) = bob.received
    assert (presence.name, presence["from"], str(presence.status)) == (
        "presence",
        "alice@example.com/laptop",
        "for bob",
    )
    alice.send("<presence type='subscribe' to='bob@two.test'/>")
    network.flush()
    assert bob.received[-1].getAttribute("type") == "subscribe"


def test_an_iq_to_a_remote_resource_is_passed_and_its_result_returns(connect, two, network):
    bob = two.session("bob", "phone")
    alice = connect().bound("laptop")
    alice.send("<iq type='get' id='v1' to='bob@two.test/phone'><query xmlns='jabber:iq:version'/></iq>")
    network.flush()
    (iq,) = bob.received
    result = domish.Element(("jabber:client", "iq"))
    result["type"], result["id"], result["from"], result["to"] = "result", "v1", "bob@two.test/phone", iq["from"]
    two.xmpp.route_remote(result)
    network.flush()
    (answer,) = alice.elements()
    assert (answer["type"], answer["id"], answer["from"]) == ("result", "v1", "bob@two.test/phone")


def test_a_message_to_a_domain_nobody_serves_is_answered_remote_server_not_found(connect):
    alice = connect().bound("laptop")
    alice.send("<message to='carol@nowhere.test' id='m2'><body>?</body></message>")
    (error,) = alice.elements()
    assert (error["type"], error["id"], error["from"], error_condition(error)) == (
        "error",
        "m2",
        "carol@nowhere.test",
        "remote-server-not-found",
    )


def test_with_s2s_turned_off_remote_stanzas_are_not_sent(connect, one, network):
    one.xmpp.apply_settings({"S2S": "NO"})
    alice = connect().bound("laptop")
    alice.send("<message to='bob@two.test' id='m3'><body>?</body></message>")
    (error,) = alice.elements()
    assert error_condition(error) == "remote-server-not-found"
    assert network.connects == []


def test_without_a_server_to_server_service_the_sender_gets_remote_server_not_found(connect, one):
    one.s2s.stopService()
    alice = connect().bound("laptop")
    alice.send("<message to='bob@two.test' id='m4'><body>?</body></message>")
    (error,) = alice.elements()
    assert error_condition(error) == "remote-server-not-found"


def test_a_registered_message_handler_still_decides_for_remote_messages(connect, one, network):
    seen = []
    one.xmpp.dispatcher.register_kind("message", lambda session, stanza: seen.append(stanza.recipient.full()))
    alice = connect().bound("laptop")
    alice.send("<message to='bob@two.test'><body>x</body></message>")
    assert seen == ["bob@two.test"] and network.connects == []


def test_stanzas_are_counted_on_both_servers(connect, one, two, network):
    two.session("bob", "phone")
    alice = connect().bound("laptop")
    alice.send("<message to='bob@two.test'><body>x</body></message>")
    network.flush()
    sent = generate_latest(one.context.metrics).decode()
    received = generate_latest(two.context.metrics).decode()
    assert 'communigate_xmpp_s2s_stanzas_total{direction="out",kind="message"} 1.0' in sent
    assert 'communigate_xmpp_s2s_stanzas_total{direction="in",kind="message"} 1.0' in received
    assert 'communigate_xmpp_s2s_streams{direction="out"} 1.0' in sent
    assert 'communigate_xmpp_s2s_streams{direction="in"} 1.0' in received


# -- what other servers send: the minimal local delivery -------------------------


def deliver(two, kind, sender, recipient, **attributes):
    element = domish.Element(("jabber:client", kind))
    element["from"], element["to"] = sender, recipient
    for name, value in attributes.items():
        element[name] = value
    if kind == "message":
        element.addElement("body", content="x")
    if kind == "iq":
        element.addElement(("urn:xmpp:ping", "ping"))
    two.xmpp.deliver_local(element)
    return element


def test_a_message_to_a_bare_jid_goes_to_the_highest_priority_available_resource(two):
    low = two.session("bob", "low", priority=1)
    high = two.session("bob", "high", priority=9)
    away = two.session("bob", "negative", priority=-1)
    deliver(two, "message", "alice@one.test/laptop", "bob@two.test")
    assert (len(low.received), len(high.received), len(away.received)) == (0, 1, 0)


def test_a_message_to_an_unbound_full_jid_is_treated_as_to_the_bare_jid(two):
    phone = two.session("bob", "phone")
    deliver(two, "message", "alice@one.test/laptop", "bob@two.test/gone")
    assert len(phone.received) == 1


def test_presence_probes_are_not_passed_to_clients(two):
    phone = two.session("bob", "phone")
    deliver(two, "presence", "alice@one.test/laptop", "bob@two.test", type="probe")
    # The presence service answers probes (docs/xmpp.md); clients never see them.
    assert phone.received == []


def test_a_full_jid_reaches_its_session_even_when_unavailable(two):
    quiet = two.session("bob", "quiet", available=False)
    deliver(two, "iq", "alice@one.test/laptop", "bob@two.test/quiet", type="get", id="p1")
    assert len(quiet.received) == 1


def test_presence_to_a_bare_jid_reaches_every_available_resource(two):
    first, second = two.session("bob", "a"), two.session("bob", "b")
    deliver(two, "presence", "alice@one.test/laptop", "bob@two.test")
    assert len(first.received) == len(second.received) == 1


@pytest.mark.parametrize(
    "kind, recipient, attributes",
    [
        # (A message for an existing account with no resource is kept
        # offline: tests/xmpp/test_messages.py.)
        ("message", "nobody@two.test", {}),
        ("iq", "bob@two.test", {"type": "get", "id": "p2"}),
        ("iq", "bob@two.test/gone", {"type": "set", "id": "p3"}),
        ("iq", "two.test", {"type": "get", "id": "p4"}),
    ],
)
def test_what_cannot_be_delivered_is_answered_service_unavailable(two, kind, recipient, attributes):
    sent = []
    two.xmpp.attach_remote(type("Remote", (), {"route": lambda self, element: sent.append(element)})())
    deliver(two, kind, "alice@one.test/laptop", recipient, **attributes)
    (error,) = sent
    assert (error.name, error["to"], error["from"], error_condition(error)) == (
        kind,
        "alice@one.test/laptop",
        recipient,
        "service-unavailable",
    )


@pytest.mark.parametrize(
    "kind, recipient, attributes",
    [
        ("presence", "bob@two.test", {}),
        ("presence", "nobody@two.test", {}),
        ("message", "bob@two.test", {"type": "error"}),
        ("iq", "bob@two.test/gone", {"type": "result", "id": "p5"}),
    ],
)
def test_undeliverable_presence_results_and_errors_are_dropped_not_answered(two, kind, recipient, attributes):
    sent = []
    two.xmpp.attach_remote(type("Remote", (), {"route": lambda self, element: sent.append(element)})())
    deliver(two, kind, "alice@one.test/laptop", recipient, **attributes)
    assert sent == []
    assert "communigate_xmpp_stanzas_dropped_total" in generate_latest(two.context.metrics).decode()


def test_a_stanza_from_a_domain_alias_is_sent_and_proved_as_that_domain(one, two, network):
    one.context.directory.set_domain_aliases("one.test", ["alias.test"])
    bob = two.session("bob", "phone")
    message = domish.Element(("jabber:client", "message"))
    message["from"], message["to"] = "alice@alias.test/laptop", "bob@two.test"
    message.addElement("body", content="from the alias")
    one.xmpp.route_remote(message)
    network.flush()
    (received,) = bob.received
    assert received["from"] == "alice@alias.test/laptop"
    # two.test's own dialback to alias.test was checked under that name too.
    assert [entry["Local"] for entry in one.s2s.streams() if entry["Direction"] == "out"] == [["alias.test"]]
    for server in (one, two):
        assert 'outcome="invalid"' not in generate_latest(server.context.metrics).decode()


def test_a_delivery_that_fails_is_answered_internal_server_error_and_the_stream_goes_on(one, two, network):
    alice = one.session("alice", "laptop")
    two.session("bob", "phone")

    def broken(element):
        raise RuntimeError("a bug in local delivery")

    two.xmpp.deliver_local = broken
    message = domish.Element(("jabber:client", "message"))
    message["from"], message["to"], message["id"] = "alice@one.test/laptop", "bob@two.test", "m9"
    one.xmpp.route_remote(message)
    network.flush()
    (error,) = alice.received
    assert (error["id"], error_condition(error)) == ("m9", "internal-server-error")
    inbound = [entry for entry in two.s2s.streams() if entry["Direction"] == "in"]
    assert inbound and all(entry["State"] == "established" for entry in inbound)
