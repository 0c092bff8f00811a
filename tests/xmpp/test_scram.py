"""
The SCRAM server machine: message grammar, the exchange against a client
written from the RFC, decoys for unknown users, and the RFC test vectors.
"""

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from communigate.auth.passwords import derive_scram_secrets
from communigate.testing import ScramClient
from communigate.xmpp.scram import (
    ScramError,
    ScramServer,
    ScramState,
    decoy_secrets,
    escape_saslname,
    parse_client_final,
    parse_client_first,
    unescape_saslname,
)



KEY = b"k" * 32


def server_for(hash_name, secrets_by_user, nonce=b"\x01" * 18):
    return ScramServer(hash_name, secrets_by_user.get, KEY, random=lambda n: nonce[:n])


def run(server, client):
    server_first = server.receive_first(client.first())
    credentials = server.receive_final(client.final(server_first))
    return server_first, credentials


def test_rfc_7677_example_exchange_produces_the_rfc_messages():
    # RFC 7677 section 3: user "user", password "pencil".
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    secrets = derive_scram_secrets("sha256", "pencil", salt, 4096)
    server = ScramServer("sha256", {"user": secrets}.get, KEY)
    # The server's half of the nonce is its own; the salt, count and proof
    # arithmetic are the RFC's.
    client = ScramClient("sha256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    server_first, credentials = run(server, client)
    assert server_first.startswith(b"r=rOprNGfwEbeRWgbNEkqO")
    assert b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096" in server_first
    assert credentials.check_scram(secrets)
    assert client.verify(server.server_final())
    assert server.state is ScramState.SUCCEEDED


def test_rfc_5802_sha1_vector_checks_out():
    # RFC 5802 section 5 with its fixed nonces.
    salt = base64.b64decode("QSXCR+Q6sek8bf92")
    secrets = derive_scram_secrets("sha1", "pencil", salt, 4096)
    server = ScramServer("sha1", {"user": secrets}.get, KEY, random=lambda n: b"\x02" * n)
    first = server.receive_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL")
    nonce = first.decode().split(",")[0][2:]
    assert nonce.startswith("fyko+d2lbbFgONRv9qkxdawL")
    client = ScramClient("sha1", "user", "pencil")
    credentials = server.receive_final(client.final(first))
    assert credentials.check_scram(secrets)
    assert client.verify(server.server_final())


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_a_wrong_password_gives_credentials_that_fail_the_check(hash_name):
    secrets = derive_scram_secrets(hash_name, "right", b"salt" * 4, 4096)
    server = server_for(hash_name, {"alice": secrets})
    _, credentials = run(server, ScramClient(hash_name, "alice", "wrong"))
    assert not credentials.check_scram(secrets)


def test_an_unknown_user_gets_the_same_decoy_salt_every_time():
    first_a = server_for("sha256", {}).receive_first(b"n,,n=nobody,r=abc")
    first_b = server_for("sha256", {}).receive_first(b"n,,n=nobody,r=abc")
    first_c = server_for("sha256", {}).receive_first(b"n,,n=other,r=abc")
    salt = lambda message: message.split(b",")[1]  # noqa: E731
    assert salt(first_a) == salt(first_b) != salt(first_c)
    assert b"i=4096" in first_a
    assert decoy_secrets("sha1", "x", KEY).salt != decoy_secrets("sha256", "x", KEY).salt


def test_the_final_message_must_repeat_the_nonce_and_gs2_header():
    secrets = derive_scram_secrets("sha1", "pw", b"salt" * 4, 4096)
    server = server_for("sha1", {"u": secrets})
    first = server.receive_first(b"n,,n=u,r=abc")
    nonce = first.decode().split(",")[0][2:]
    with pytest.raises(ScramError) as info:
        server.receive_final(f"c=biws,r={nonce}x,p=AAAA".encode())
    assert info.value.condition == "not-authorized"
    assert server.state is ScramState.FAILED
    server = server_for("sha1", {"u": secrets})
    server.receive_first(b"n,,n=u,r=abc")
    with pytest.raises(ScramError):
        server.receive_final(f"c={base64.b64encode(b'y,,').decode()},r={nonce},p=AAAA".encode())


def test_messages_out_of_order_fail():
    server = server_for("sha1", {})
    with pytest.raises(ScramError):
        server.receive_final(b"c=biws,r=abc,p=AAAA")
    with pytest.raises(RuntimeError):
        server_for("sha1", {}).server_final()


@pytest.mark.parametrize(
    "message, condition",
    [
        (b"", "malformed-request"),
        (b"n,,", "malformed-request"),
        (b"x,,n=u,r=a", "malformed-request"),
        (b"p=tls-unique,,n=u,r=a", "not-authorized"),
        (b"n,,m=ext,n=u,r=a", "malformed-request"),
        (b"n,,n=,r=a", "malformed-request"),
        (b"n,,n=a=2Bb,r=a", "malformed-request"),
        (b"n,,n=u,r=a,b", "malformed-request"),
        (b"n,,r=a,n=u", "malformed-request"),
        (b"n,,n=u,r=a b", "malformed-request"),
        (b"n,z=x,n=u,r=a", "malformed-request"),
        (b"n,,n=\xff,r=a", "malformed-request"),
    ],
)
def test_bad_client_first_messages_are_refused(message, condition):
    with pytest.raises(ScramError) as info:
        parse_client_first(message)
    assert info.value.condition == condition


def test_client_first_parses_authzid_flag_and_extensions():
    first = parse_client_first(b"y,a=bob,n=al=2Cice=3D,r=abc,x=ext")
    assert (first.flag, first.authzid, first.username, first.nonce) == ("y", "bob", "al,ice=", "abc")
    assert first.gs2_header == "y,a=bob,"
    assert first.bare == "n=al=2Cice=3D,r=abc,x=ext"


@pytest.mark.parametrize(
    "message",
    [b"c=biws,r=abc", b"c=biws,p=AAAA", b"c=b!ws,r=abc,p=AAAA", b"c=biws,r=abc,p=", b"r=abc,c=biws,p=AAAA", b"c=biws,r=abc,p=AAA"],
)
def test_bad_client_final_messages_are_malformed(message):
    with pytest.raises(ScramError) as info:
        parse_client_final(message)
    assert info.value.condition == "malformed-request"


saslnames = st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s)


@given(saslnames)
def test_saslname_escaping_round_trips(name):
    escaped = escape_saslname(name)
    assert "," not in escaped
    assert unescape_saslname(escaped) == name


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_client_first_bytes_parse_or_raise_scram_error(data):
    try:
        first = parse_client_first(data)
    except ScramError as e:
        assert e.condition in ("malformed-request", "not-authorized")
    else:
        assert first.username and first.nonce


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_client_final_bytes_parse_or_raise_scram_error(data):
    try:
        parse_client_final(data)
    except ScramError as e:
        assert e.condition == "malformed-request"


@settings(max_examples=25, deadline=None)
@given(
    hash_name=st.sampled_from(["sha1", "sha256"]),
    username=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20),
    password=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
    nonce=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789+/-_.", min_size=1, max_size=30),
)
def test_the_exchange_succeeds_for_any_name_password_and_nonce(hash_name, username, password, nonce):
    secrets = derive_scram_secrets(hash_name, password, b"0123456789abcdef", 64)
    server = ScramServer(hash_name, {username: secrets}.get, KEY)
    client = ScramClient(hash_name, username, password, nonce=nonce)
    _, credentials = run(server, client)
    assert credentials.username == username
    assert credentials.check_scram(secrets)
    assert client.verify(server.server_final())
