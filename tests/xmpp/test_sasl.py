"""
The SASL mechanism objects without a stream: payload coding, PLAIN
parsing, offers by TLS state, the SCRAM mechanism's steps.
"""


import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.cred.credentials import IUsernamePassword

from communigate.auth.passwords import derive_scram_secrets
from communigate.testing import ScramClient
from communigate.xmpp import sasl


def qualify(name):
    return name if "@" in name else f"{name}@example.com"


def test_plain_is_only_offered_and_accepted_with_tls():
    assert sasl.offered_mechanisms(tls=False) == ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    assert sasl.offered_mechanisms(tls=True) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    with pytest.raises(sasl.SASLFailure) as info:
        sasl.new_mechanism("PLAIN", tls=False, qualify=qualify, lookup=lambda u, h: None, decoy_key=b"k")
    assert info.value.condition == "encryption-required"
    with pytest.raises(sasl.SASLFailure) as info:
        sasl.new_mechanism("X-OAUTH2", tls=True, qualify=qualify, lookup=lambda u, h: None, decoy_key=b"k")
    assert info.value.condition == "invalid-mechanism"


@pytest.mark.parametrize(
    "text, data", [(None, None), ("", None), ("=", b""), ("YWJj", b"abc"), (" YW\nJj ", b"abc")]
)
def test_payloads_decode_as_rfc_6120_says(text, data):
    assert sasl.decode_payload(text) == data


def test_bad_base64_is_incorrect_encoding():
    with pytest.raises(sasl.SASLFailure) as info:
        sasl.decode_payload("YWJ")
    assert info.value.condition == "incorrect-encoding"


def test_payloads_encode_with_an_equals_sign_for_empty():
    assert sasl.encode_payload(None) is None
    assert sasl.encode_payload(b"") == "="
    assert sasl.encode_payload(b"abc") == "YWJj"


def test_plain_gives_qualified_username_password_credentials():
    mechanism = sasl.PlainMechanism(qualify)
    outcome = mechanism.step(b"\0alice\0secret")
    assert IUsernamePassword.providedBy(outcome.credentials)
    assert (outcome.credentials.username, outcome.credentials.password) == ("alice@example.com", "secret")
    assert outcome.authzid is None
    assert sasl.PlainMechanism(qualify).step(b"bob@example.com\0alice\0pw").authzid == "bob@example.com"


@pytest.mark.parametrize("data", [b"alice", b"\0\0pw", b"\0alice\0", b"\0a\0b\0c", b"\0\xff\0pw", b"\0" + b"a" * 256 + b"\0pw"])
def test_bad_plain_messages_are_malformed(data):
    with pytest.raises(sasl.SASLFailure) as info:
        sasl.parse_plain(data)
    assert info.value.condition == "malformed-request"


@given(st.binary(max_size=600))
def test_any_plain_bytes_parse_or_fail_as_malformed(data):
    try:
        authzid, authcid, password = sasl.parse_plain(data)
    except sasl.SASLFailure as e:
        assert e.condition == "malformed-request"
    else:
        assert authcid and password


def test_scram_mechanism_without_initial_response_asks_for_it():
    secrets = derive_scram_secrets("sha1", "pw", b"s" * 16, 4096)
    lookups = []

    def lookup(name, hash_name):
        lookups.append((name, hash_name))
        return secrets

    mechanism = sasl.new_mechanism("SCRAM-SHA-1", tls=False, qualify=qualify, lookup=lookup, decoy_key=b"k")
    assert mechanism.step(None) == sasl.Challenge(b"")
    client = ScramClient("sha1", "alice", "pw")
    challenge = mechanism.step(client.first())
    assert lookups == [("alice@example.com", "sha1")]
    outcome = mechanism.step(client.final(challenge.data))
    assert outcome.username == "alice@example.com"
    assert outcome.credentials.username == "alice@example.com"
    assert outcome.credentials.check_scram(secrets)
    assert client.verify(mechanism.success_data())


def test_scram_with_an_empty_first_message_is_malformed():
    mechanism = sasl.new_mechanism("SCRAM-SHA-256", tls=True, qualify=qualify, lookup=lambda u, h: None, decoy_key=b"k")
    with pytest.raises(sasl.SASLFailure) as info:
        mechanism.step(b"")
    assert info.value.condition == "malformed-request"


def test_scram_failures_keep_the_rfc_condition():
    mechanism = sasl.new_mechanism("SCRAM-SHA-256", tls=True, qualify=qualify, lookup=lambda u, h: None, decoy_key=b"k")
    with pytest.raises(sasl.SASLFailure) as info:
        mechanism.step(b"p=tls-exporter,,n=a,r=b")
    assert info.value.condition == "not-authorized"

