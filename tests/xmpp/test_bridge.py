"""
Unified IM through the Signal service: an XMPP message to an account is a
MESSAGE Signal that rings its phones too; a MESSAGE Signal (what the SIP
proxy submits for a SIP MESSAGE) reaches the account's XMPP resources;
what the XMPP sender sees for each final response; addresses between
sip: and JIDs.
"""

import pytest
from zope.interface.verify import verifyObject

from communigate.interfaces import IEndpoint, IEndpointSource
from communigate.signal.memory import MemoryEndpointSource, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response
from communigate.xmpp.bridge import ResourceEndpoint, address_to_jid


def messages(client):
    return [e for e in client.elements() if e.name == "message"]


def condition(element):
    assert element["type"] == "error", element.toXml()
    return element.error.firstChildElement().name


@pytest.fixture
def phones(context):
    """SIP phones as the Signal service sees them: an endpoint source."""
    source = MemoryEndpointSource()
    context.signals.add_endpoint_source(source)
    return source


@pytest.fixture
def alice(connect):
    return connect().bound("phone")


@pytest.fixture
def bob(connect):
    client = connect(port=40001).bound("desk", "bob", "builder")
    client.available()
    return client


def sip_message(to, body=b"Hello from SIP", content_type="text/plain", sender="sip:carol@example.org"):
    return Signal(
        method="MESSAGE",
        targets=(f"sip:{to}",),
        from_address=sender,
        to_address=to,
        call_id="c1@example.org",
        submitter=Submitter("sip", None, ("192.0.2.9", 5060)),
        body=body,
        content_type=content_type,
    )


def test_the_endpoint_source_and_endpoints_provide_their_interfaces(service, bob):
    source = service.bridge.source
    verifyObject(IEndpointSource, source)
    (endpoint,) = source.endpoints("bob@example.com")
    assert isinstance(endpoint, ResourceEndpoint) and verifyObject(IEndpoint, endpoint)
    assert endpoint.description == "XMPP bob@example.com/desk"
    assert source.endpoints("alice@example.com") == []


def test_an_xmpp_message_rings_the_phones_of_the_account_as_a_signal(alice, bob, phones, clock):
    phone = ScriptedEndpoint(clock, [(0, response(200))], "bob's phone")
    phones.register("bob@example.com", phone)
    alice.send("<message type='chat' to='bob@example.com' id='x1'><body>ping</body><thread>t1</thread></message>")
    (signal,) = phone.delivered
    assert (signal.method, signal.targets, signal.from_address, signal.to_address) == (
        "MESSAGE", ("bob@example.com",), "alice@example.com", "bob@example.com"
    )
    assert signal.body == b"ping" and signal.content_type == "text/plain;charset=utf-8"
    assert signal.submitter.protocol == "xmpp" and signal.submitter.account == "alice@example.com"
    (got,) = messages(bob)
    # The XMPP resource gets the original stanza, extensions included.
    assert str(got.body) == "ping" and str(got.thread) == "t1" and got["id"] == "x1"
    assert messages(alice) == []


def test_a_message_for_an_account_with_only_a_phone_goes_to_the_phone(alice, phones, clock, service):
    phone = ScriptedEndpoint(clock, [(1, response(200))], "bob's phone")
    phones.register("bob@example.com", phone)
    alice.send("<message type='chat' to='bob@example.com'><body>call me</body></message>")
    clock.advance(1)
    assert len(phone.delivered) == 1
    assert service.offline.count("bob@example.com") == 0 and messages(alice) == []


@pytest.mark.parametrize("code", [408, 480, 503])
def test_a_message_nobody_takes_is_kept_offline(alice, phones, clock, service, code):
    phones.register("bob@example.com", ScriptedEndpoint(clock, [(0, response(code))], "phone"))
    alice.send("<message type='chat' to='bob@example.com'><body>later</body></message>")
    assert service.offline.count("bob@example.com") == 1 and messages(alice) == []


def test_a_refused_message_gets_service_unavailable(alice, phones, clock, service):
    phones.register("bob@example.com", ScriptedEndpoint(clock, [(0, response(603))], "phone"))
    alice.send("<message type='chat' to='bob@example.com'><body>no</body></message>")
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"
    assert service.offline.count("bob@example.com") == 0


def test_a_signal_rule_applies_to_xmpp_messages(alice, bob, context, service):
    context.directory.set_signal_rules(
        "bob@example.com", [["5", "no IM", [["Method", "is", "MESSAGE"]], [["Reject with", "403 No IM"]]]]
    )
    alice.send("<message type='chat' to='bob@example.com'><body>blocked</body></message>")
    assert messages(bob) == []
    (error,) = messages(alice)
    assert condition(error) == "service-unavailable"


def test_a_sip_message_reaches_the_xmpp_resources(bob, context):
    task = context.signals.submit(sip_message("bob@example.com"))
    (got,) = messages(bob)
    assert (got["type"], got["from"], got["to"], str(got.body)) == (
        "chat", "carol@example.org", "bob@example.com", "Hello from SIP"
    )
    assert task.final.result.code == 200


def test_a_sip_message_to_an_account_without_resources_is_480(context, service):
    task = context.signals.submit(sip_message("bob@example.com"))
    assert task.final.result.code == 480
    assert service.offline.count("bob@example.com") == 0


def test_a_sip_body_that_is_not_plain_text_is_415(bob, context):
    task = context.signals.submit(sip_message("bob@example.com", b"<x/>", "application/im-iscomposing+xml"))
    assert task.final.result.code == 415 and messages(bob) == []


def test_characters_xml_cannot_carry_are_dropped_and_the_charset_honoured(bob, context):
    body = "a\x00b\x07c é".encode("latin-1")
    context.signals.submit(sip_message("bob@example.com", body, "text/plain; charset=ISO-8859-1"))
    (got,) = messages(bob)
    assert str(got.body) == "abc é"
    assert bob.stream.state.value == "established"


def test_an_invite_is_not_for_xmpp_resources(bob, context):
    invite = Signal("INVITE", ("sip:bob@example.com",), "carol@example.org", "bob@example.com", "i1",
                    Submitter("sip"), body=b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n", content_type="application/sdp")
    task = context.signals.submit(invite)
    assert task.final.result.code == 480 and messages(bob) == []


def test_a_resource_that_went_away_answers_480(bob, context, service):
    (endpoint,) = service.bridge.source.endpoints("bob@example.com")
    bob.lose_connection()
    answers = []

    class Responder:
        def provisional(self, answer):
            pass

        def final(self, answer):
            answers.append(answer.code)

    endpoint.deliver(sip_message("bob@example.com"), Responder())
    assert answers == [480]


@pytest.mark.parametrize(
    "address, jid",
    [
        ("sip:bob@example.com", "bob@example.com"),
        ("bob@example.com", "bob@example.com"),
        ("sips:Bob@Example.COM;transport=tls", "bob@example.com"),
        ('"Bob" <sip:bob@example.com:5060>', "bob@example.com"),
        ("tel:+15551234", "+15551234@example.com"),
        ("sip:+15551234@gw.example;user=phone", "+15551234@gw.example"),
        ("sip:a b@example.com", "example.com"),
    ],
)
def test_sender_addresses_become_bare_jids(address, jid):
    assert address_to_jid(address, "example.com") == jid
