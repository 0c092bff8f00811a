"""
Dialback keys (XEP-0185) and the dialback elements (XEP-0220), sans-IO.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.words.xish import domish

from communigate.xmpp import dialback
from communigate.xmpp.parser import ElementReceived, StreamParser
from communigate.xmpp.s2s import serialize

NS_DB = "jabber:server:dialback"


def parsed(xml):
    parser = StreamParser()
    header = f"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='{NS_DB}'>"
    (event,) = parser.feed((header + xml).encode())[1:]
    assert isinstance(event, ElementReceived)
    return event.element


def test_the_key_is_the_xep_0185_hmac_of_receiving_originating_and_stream_id():
    # The example values of XEP-0185 (secret, domains, stream id).
    key = dialback.dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F")
    assert key == "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_a_key_is_valid_only_for_its_secret_domains_and_stream():
    key = dialback.dialback_key("a-secret-of-sixteen", "two.test", "one.test", "abc123")
    assert dialback.key_is_valid("a-secret-of-sixteen", key, "two.test", "one.test", "abc123")
    assert dialback.key_is_valid("a-secret-of-sixteen", f"  {key}\n", "two.test", "one.test", "abc123")
    assert not dialback.key_is_valid("another-secret-0000", key, "two.test", "one.test", "abc123")
    assert not dialback.key_is_valid("a-secret-of-sixteen", key, "one.test", "two.test", "abc123")
    assert not dialback.key_is_valid("a-secret-of-sixteen", key, "two.test", "one.test", "abc124")
    assert not dialback.key_is_valid("a-secret-of-sixteen", "not the key", "two.test", "one.test", "abc123")


def test_non_ascii_stream_ids_and_keys_are_invalid_not_errors():
    assert not dialback.key_is_valid("a-secret-of-sixteen", "k\u00e9y", "two.test", "one.test", "abc")
    assert not dialback.key_is_valid("a-secret-of-sixteen", "key", "two.test", "one.test", "\u00e9t\u00e9")


def test_international_domains_use_their_ascii_form():
    key = dialback.dialback_key("a-secret-of-sixteen", "b\u00fccher.test", "one.test", "id1")
    assert key == dialback.dialback_key("a-secret-of-sixteen", "xn--bcher-kva.test", "one.test", "id1")


@given(st.text(max_size=80), st.text(max_size=80), st.text(max_size=40), st.text(max_size=100))
def test_checking_any_key_never_raises(receiving, originating, stream_id, key):
    assert dialback.key_is_valid("a-secret-of-sixteen", key, receiving, originating, stream_id) in (True, False)


def test_requests_and_answers_round_trip_through_the_wire_form():
    request = dialback.read(parsed(serialize(dialback.result_request("one.test", "two.test", "k3y")).decode()))
    assert request == dialback.DialbackElement("result", "one.test", "two.test", None, None, "k3y")
    assert request.is_request
    verify = dialback.read(parsed(serialize(dialback.verify_request("two.test", "one.test", "s1", "k3y")).decode()))
    assert (verify.kind, verify.stream_id, verify.key) == ("verify", "s1", "k3y")
    answer = dialback.read(parsed(serialize(dialback.verify_answer("one.test", "two.test", "s1", "valid")).decode()))
    assert (answer.type, answer.stream_id, answer.is_request) == ("valid", "s1", False)
    error = dialback.read(
        parsed(serialize(dialback.result_answer("two.test", "one.test", "error", "remote-server-timeout")).decode())
    )
    assert (error.type, error.condition) == ("error", "remote-server-timeout")


def test_dialback_elements_are_written_with_the_db_prefix():
    text = serialize(dialback.result_request("one.test", "two.test", "k")).decode()
    assert text.startswith("<db:result ") and "xmlns" not in text


@pytest.mark.parametrize(
    "xml, condition",
    [
        ("<db:result to='two.test'>key</db:result>", "improper-addressing"),
        ("<db:result from='one.test'>key</db:result>", "improper-addressing"),
        ("<db:result from='a@one.test' to='two.test'>key</db:result>", "improper-addressing"),
        ("<db:result from='one.test/x' to='two.test'>key</db:result>", "improper-addressing"),
        ("<db:result from='one..test' to='two.test'>key</db:result>", "improper-addressing"),
        ("<db:result from='one.test' to='two.test'/>", "bad-format"),
        ("<db:result from='one.test' to='two.test'>" + "k" * 300 + "</db:result>", "bad-format"),
        ("<db:result from='one.test' to='two.test' type='maybe'>key</db:result>", "bad-format"),
        ("<db:verify from='one.test' to='two.test'>key</db:verify>", "bad-format"),
        ("<db:other from='one.test' to='two.test'/>", "unsupported-stanza-type"),
    ],
)
def test_malformed_dialback_elements_name_the_stream_error(xml, condition):
    with pytest.raises(dialback.DialbackFault) as raised:
        dialback.read(parsed(xml))
    assert raised.value.condition == condition


def test_domains_are_normalised():
    element = domish.Element((NS_DB, "result"))
    element["from"] = "ONE.Test"
    element["to"] = "two.test"
    element.addContent("key")
    assert dialback.read(element).sender == "one.test"
