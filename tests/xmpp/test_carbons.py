"""
XEP-0280 message carbons over scripted streams: enable/disable, sent and
received copies, what is not copied, and copies of messages that came
through the Signal service from SIP.
"""

import pytest

from communigate.signal.model import Signal, Submitter
from communigate.xmpp.carbons import NS_CARBONS, NS_FORWARD

ENABLE = "<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>"


def messages(client):
    return [e for e in client.elements() if e.name == "message"]


def carbon(element):
    """(direction, inner message) of a carbon copy."""
    (wrapper,) = [c for c in element.elements() if c.uri == NS_CARBONS]
    forwarded = wrapper.firstChildElement()
    assert forwarded.uri == NS_FORWARD
    return wrapper.name, forwarded.firstChildElement()


def resource(connect, name, priority, port, user="alice", password="wonderland", carbons=True):
    client = connect(port=port).bound(name, user, password)
    client.available(f"<presence><priority>{priority}</priority></presence>")
    if carbons:
        client.send(ENABLE)
        (result,) = [e for e in client.elements() if e.getAttribute("id") == "c1"]
        assert result["type"] == "result"
    client.elements()
    return client


@pytest.fixture
def bob(connect):
    return resource(connect, "desk", 0, 40001, "bob", "builder", carbons=False)


def test_carbons_are_a_server_feature(connect):
    client = connect().bound("x")
    client.send("<iq type='get' id='d' to='example.com'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
    (reply,) = client.elements()
    features = {f["var"] for f in reply.query.elements() if f.name == "feature"}
    assert {NS_CARBONS, "msgoffline"} <= features


def test_a_sent_message_is_copied_to_the_other_enabled_resources(connect, bob):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    old = resource(connect, "old", 1, 40004, carbons=False)
    phone.send("<message type='chat' to='bob@example.com' id='s1'><body>hi bob</body></message>")
    (copy,) = messages(laptop)
    assert (copy["from"], copy["to"]) == ("alice@example.com", "alice@example.com/laptop")
    direction, inner = carbon(copy)
    assert direction == "sent" and inner["to"] == "bob@example.com" and str(inner.body) == "hi bob"
    assert messages(old) == [] and messages(phone) == []
    assert [str(m.body) for m in messages(bob)] == ["hi bob"]


def test_a_received_message_is_copied_to_the_resources_that_did_not_get_it(connect, bob):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    bob.send("<message type='chat' to='alice@example.com' id='r1'><body>hi alice</body></message>")
    (direct,) = messages(phone)
    assert str(direct.body) == "hi alice"
    (copy,) = messages(laptop)
    direction, inner = carbon(copy)
    assert direction == "received" and inner["from"] == "bob@example.com/desk"


def test_a_message_to_a_full_jid_is_copied_to_the_others(connect, bob):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    bob.send("<message type='chat' to='alice@example.com/laptop'><body>laptop only</body></message>")
    assert [str(m.body) for m in messages(laptop)] == ["laptop only"]
    (copy,) = messages(phone)
    assert carbon(copy)[0] == "received"


@pytest.mark.parametrize(
    "extra, kind",
    [
        ("<private xmlns='urn:xmpp:carbons:2'/>", "chat"),
        ("<no-copy xmlns='urn:xmpp:hints'/>", "chat"),
        ("", "headline"),
        ("<x xmlns='http://jabber.org/protocol/muc#user'/>", "chat"),
    ],
)
def test_private_no_copy_and_other_types_are_not_copied(connect, bob, extra, kind):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 5, 40003)
    phone.send(f"<message type='{kind}' to='bob@example.com'><body>secret</body>{extra}</message>")
    assert messages(laptop) == []


def test_normal_messages_are_copied_only_with_a_body(connect, bob):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    phone.send("<message to='bob@example.com'><body>normal</body></message>")
    assert len(messages(laptop)) == 1
    phone.send("<message to='bob@example.com'><subject>no body</subject></message>")
    assert messages(laptop) == []


def test_disable_stops_the_copies(connect, bob):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    laptop.send("<iq type='set' id='c2'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
    laptop.elements()
    phone.send("<message type='chat' to='bob@example.com'><body>x</body></message>")
    assert messages(laptop) == []


def test_a_carbons_get_is_bad_request(connect):
    client = connect().bound("x")
    client.send("<iq type='get' id='c3'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    (reply,) = client.elements()
    assert reply["type"] == "error" and reply.error.firstChildElement().name == "bad-request"


def test_a_message_from_sip_is_copied_to_the_lower_priority_resources(connect, context):
    phone = resource(connect, "phone", 5, 40002)
    laptop = resource(connect, "laptop", 1, 40003)
    context.signals.submit(Signal("MESSAGE", ("sip:alice@example.com",), "sip:bob@example.com",
                                  "alice@example.com", "c1", Submitter("sip"), body=b"from my phone",
                                  content_type="text/plain"))
    assert [str(m.body) for m in messages(phone)] == ["from my phone"]
    (copy,) = messages(laptop)
    direction, inner = carbon(copy)
    assert direction == "received" and inner["from"] == "bob@example.com"
