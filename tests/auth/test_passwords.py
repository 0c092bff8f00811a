"""
Tests for communigate.auth.passwords and the digest/SCRAM arithmetic of
communigate.auth.credentials, checked against the RFC examples.
"""

import base64
import hashlib
import hmac
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from communigate.auth.credentials import (
    ScramCredentials,
    SIPDigestCredentials,
    digest_response,
    server_signature,
)
from communigate.auth.passwords import (
    DEFAULT_ITERATIONS,
    PasswordSecrets,
    ScramSecrets,
    check_plain,
    derive_scram_secrets,
    derive_secrets,
    digest_ha1,
    generate_password,
    saslprep,
)
from communigate.formats import cgdata


def counting_bytes():
    """
    A deterministic stand-in for os.urandom: each call returns the next
    run of distinct bytes.
    """
    counter = itertools.count(1)

    def random_bytes(n):
        value = next(counter)
        return bytes([value]) * n

    return random_bytes


# --- derive_secrets and the plain hash ------------------------------------


def test_plain_hash_has_the_documented_text_form():
    secrets = derive_secrets("alice@example.com", "s3cret", random_bytes=counting_bytes())
    scheme, iterations, salt, derived = secrets.plain_hash.split("$")
    assert scheme == "pbkdf2-sha256"
    assert iterations == str(DEFAULT_ITERATIONS) == "4096"
    assert base64.b64decode(salt) == b"\x01" * 16
    assert base64.b64decode(derived) == hashlib.pbkdf2_hmac("sha256", b"s3cret", b"\x01" * 16, 4096)


def test_password_appears_nowhere_in_the_record():
    secrets = derive_secrets("alice@example.com", "Xylophone-42")
    assert "Xylophone-42" not in repr(secrets.to_dict())


def test_each_salt_is_fresh_randomness():
    asked = []

    def random_bytes(n):
        asked.append(n)
        return bytes([len(asked)]) * n

    secrets = derive_secrets("alice@example.com", "pw", random_bytes=random_bytes)
    assert asked == [16, 16, 16]
    assert secrets.scram["sha1"].salt == b"\x02" * 16
    assert secrets.scram["sha256"].salt == b"\x03" * 16


def test_check_plain_accepts_the_password_and_nothing_else():
    secrets = derive_secrets("alice@example.com", "correct horse")
    assert check_plain(secrets, "correct horse")
    assert not check_plain(secrets, "correct horse ")
    assert not check_plain(secrets, "Correct horse")
    assert not check_plain(secrets, "")


def test_check_plain_honours_the_stored_iteration_count():
    secrets = derive_secrets("alice@example.com", "pw", iterations=7)
    assert secrets.plain_iterations == 7
    assert check_plain(secrets, "pw")


def test_plain_check_treats_compatibility_forms_alike():
    # SASLprep maps U+2168 ROMAN NUMERAL NINE to "IX" and drops U+00AD.
    secrets = derive_secrets("alice@example.com", "I\u00adX")
    assert check_plain(secrets, "\u2168")


def test_password_saslprep_rejects_is_still_usable():
    secrets = derive_secrets("alice@example.com", "tab\there")
    assert check_plain(secrets, "tab\there")
    assert not check_plain(secrets, "tab here")


def test_empty_password_is_refused():
    with pytest.raises(ValueError, match="empty"):
        derive_secrets("alice@example.com", "")


@pytest.mark.parametrize("name", ["alice", "@example.com", "alice@", "a@b@c"])
def test_account_name_without_domain_is_refused(name):
    with pytest.raises(ValueError, match="user@domain"):
        derive_secrets(name, "pw")


# --- SIP digest HA1 --------------------------------------------------------


def test_ha1_is_stored_for_both_username_forms_and_algorithms():
    secrets = derive_secrets("alice@example.com", "pw")
    assert dict(secrets.ha1) == {
        ("MD5", "alice"): hashlib.md5(b"alice:example.com:pw").hexdigest(),
        ("MD5", "alice@example.com"): hashlib.md5(b"alice@example.com:example.com:pw").hexdigest(),
        ("SHA-256", "alice"): hashlib.sha256(b"alice:example.com:pw").hexdigest(),
        ("SHA-256", "alice@example.com"): hashlib.sha256(b"alice@example.com:example.com:pw").hexdigest(),
    }
    assert (secrets.digest_username, secrets.digest_realm) == ("alice", "example.com")


def test_ha1_for_finds_either_username_form():
    secrets = derive_secrets("alice@example.com", "pw")
    assert secrets.ha1_for("alice", "example.com", "MD5") == secrets.ha1[("MD5", "alice")]
    full = secrets.ha1[("SHA-256", "alice@example.com")]
    assert secrets.ha1_for("alice@example.com", "example.com", "SHA-256") == full
    assert secrets.ha1_for("alice@EXAMPLE.com", "Example.COM", "sha-256") == full


def test_ha1_for_gives_the_base_hash_for_session_variants():
    secrets = derive_secrets("alice@example.com", "pw")
    assert secrets.ha1_for("alice", "example.com", "MD5-sess") == secrets.ha1[("MD5", "alice")]
    assert secrets.ha1_for("alice", "example.com", "SHA-256-sess") == secrets.ha1[("SHA-256", "alice")]


@pytest.mark.parametrize(
    "username, realm, algorithm",
    [
        ("bob", "example.com", "MD5"),
        ("Alice", "example.com", "MD5"),
        ("alice@other.com", "example.com", "MD5"),
        ("alice", "other.com", "MD5"),
        ("alice", "example.com", "SHA-512-256"),
        ("alice", "example.com", "MD5-sessions"),
    ],
)
def test_ha1_for_has_nothing_for_other_names_realms_or_algorithms(username, realm, algorithm):
    secrets = derive_secrets("alice@example.com", "pw")
    assert secrets.ha1_for(username, realm, algorithm) is None


def test_digest_goes_stale_when_account_is_renamed():
    secrets = derive_secrets("alice@example.com", "pw")
    assert secrets.digest_is_current("alice@example.com")
    assert secrets.digest_is_current("Alice@Example.com")
    assert not secrets.digest_is_current("alicia@example.com")
    assert not secrets.digest_is_current("alice@example.org")


def test_needs_refresh_after_rename_or_with_weak_counts():
    assert not derive_secrets("alice@example.com", "pw").needs_refresh("alice@example.com")
    assert derive_secrets("alice@example.com", "pw").needs_refresh("alicia@example.com")
    assert derive_secrets("alice@example.com", "pw", iterations=1000).needs_refresh("alice@example.com")


def test_needs_refresh_when_a_scram_entry_is_weak_or_missing():
    secrets = derive_secrets("alice@example.com", "pw")
    weak = derive_scram_secrets("sha1", "pw", b"salt", 100)
    record = secrets.to_dict()
    record["SCRAM"]["sha1"] = weak.to_dict()
    assert PasswordSecrets.from_dict(record).needs_refresh("alice@example.com")
    del record["SCRAM"]["sha1"]
    assert PasswordSecrets.from_dict(record).needs_refresh("alice@example.com")


# --- The stored record ------------------------------------------------------


def test_record_is_immutable_and_hashable():
    secrets = derive_secrets("alice@example.com", "pw", random_bytes=counting_bytes())
    again = derive_secrets("alice@example.com", "pw", random_bytes=counting_bytes())
    assert secrets == again
    assert hash(secrets) == hash(again)
    with pytest.raises(TypeError):
        secrets.ha1[("MD5", "alice")] = "0" * 32
    with pytest.raises(TypeError):
        secrets.scram["sha1"] = None


def test_to_dict_holds_only_strings_dicts_and_lists():
    def only_text(value):
        if isinstance(value, str):
            return True
        if isinstance(value, dict):
            return all(isinstance(k, str) and only_text(v) for k, v in value.items())
        if isinstance(value, list):
            return all(only_text(v) for v in value)
        return False

    assert only_text(derive_secrets("alice@example.com", "pw").to_dict())


def hex_digits(length):
    return st.text(alphabet="0123456789abcdef", min_size=length, max_size=length)


name_parts = st.text(min_size=1).filter(lambda s: "@" not in s)


@st.composite
def scram_secrets(draw, hash_name):
    size = hashlib.new(hash_name).digest_size
    return ScramSecrets(
        hash_name=hash_name,
        salt=draw(st.binary(min_size=1, max_size=64)),
        iterations=draw(st.integers(min_value=1, max_value=10**7)),
        stored_key=draw(st.binary(min_size=size, max_size=size)),
        server_key=draw(st.binary(min_size=size, max_size=size)),
    )


@st.composite
def password_secrets(draw):
    iterations = draw(st.integers(min_value=1, max_value=10**7))
    salt = draw(st.binary(min_size=1, max_size=64))
    derived = draw(st.binary(min_size=32, max_size=32))
    plain = f"pbkdf2-sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"
    ha1 = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(["MD5", "SHA-256"]), st.text()),
            st.just(None),
        )
    )
    ha1 = {key: draw(hex_digits(32 if key[0] == "MD5" else 64)) for key in ha1}
    hash_names = draw(st.sets(st.sampled_from(["sha1", "sha256"])))
    return PasswordSecrets(
        plain_hash=plain,
        digest_username=draw(name_parts),
        digest_realm=draw(name_parts),
        ha1=ha1,
        scram={name: draw(scram_secrets(name)) for name in hash_names},
    )


@given(password_secrets())
def test_record_round_trips_exactly_through_to_dict(secrets):
    assert PasswordSecrets.from_dict(secrets.to_dict()) == secrets


@given(st.text(), st.text(min_size=1), st.text().filter(lambda s: "@" not in s and s))
def test_derived_record_round_trips_exactly(local, password, domain):
    local = local.replace("@", "") or "x"
    secrets = derive_secrets(f"{local}@{domain}", password, iterations=1)
    assert PasswordSecrets.from_dict(secrets.to_dict()) == secrets


@given(password_secrets())
def test_record_round_trips_exactly_through_the_data_format(secrets):
    text = cgdata.dumps(secrets.to_dict())
    assert PasswordSecrets.from_dict(cgdata.loads(text)) == secrets


stored_values = st.recursive(
    st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=20,
)


@given(stored_values)
def test_from_dict_rejects_arbitrary_values_only_with_value_error(value):
    with pytest.raises(ValueError, match="damaged password record"):
        PasswordSecrets.from_dict(value)


def damage(record, path, value):
    *parents, last = path
    target = record
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return record


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("PlainHash",), KeyError, "no PlainHash"),
        (("PlainHash",), "md5$1$AA==$AA==", "plain-password hash is not in the form"),
        (("PlainHash",), "pbkdf2-sha256$0$AAAA$" + "A" * 44, "not a positive decimal"),
        (("PlainHash",), "pbkdf2-sha256$10$!!$" + "A" * 44, "salt is not valid base64"),
        (("PlainHash",), "pbkdf2-sha256$10$AAAA$AAAA", "wrong length"),
        (("DigestUser",), "", "digest_username"),
        (("DigestRealm",), ["example.com"], "digest_realm"),
        (("HA1",), "MD5", "HA1 is not a dictionary"),
        (("HA1", "MD5", "alice"), "xyz", "MD5 HA1 of 'alice' is not 32"),
        (("HA1", "SHA-1"), {"alice": "0" * 40}, "unknown digest algorithm 'SHA-1'"),
        (("SCRAM", "sha1", "Iterations"), "4096.0", "SCRAM-sha1 Iterations is not a positive"),
        (("SCRAM", "sha1", "Salt"), "", "salt must be non-empty"),
        (("SCRAM", "sha256", "StoredKey"), "AAAA", "SCRAM-sha256 stored_key must be 32 bytes"),
        (("SCRAM", "sha256", "ServerKey"), KeyError, "SCRAM-sha256 has no ServerKey"),
        (("SCRAM", "md5"), {}, "unknown SCRAM hash 'md5'"),
    ],
)
def test_from_dict_names_the_damage(path, value, message):
    record = damage(derive_secrets("alice@example.com", "pw").to_dict(), path, value)
    with pytest.raises(ValueError, match="damaged password record") as raised:
        PasswordSecrets.from_dict(record)
    assert message in str(raised.value)


# --- SASLprep (RFC 4013 section 3 examples) ---------------------------------


@pytest.mark.parametrize(
    "given_text, prepared",
    [
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),
    ],
)
def test_saslprep_maps_and_normalizes(given_text, prepared):
    assert saslprep(given_text) == prepared


@pytest.mark.parametrize("given_text", ["\u0007", "\u0627\u0031", "\u00ad", ""])
def test_saslprep_rejects_prohibited_bidi_and_empty(given_text):
    with pytest.raises(ValueError):
        saslprep(given_text)


# --- Digest responses (RFC 2617 section 3.5, RFC 7616 section 3.9.1) --------


def test_rfc2617_md5_example():
    ha1 = digest_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    response = digest_response(
        ha1=ha1,
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


RFC7616 = dict(
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    method="GET",
    uri="/dir/index.html",
    qop="auth",
    nc="00000001",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)


def test_rfc7616_sha256_example():
    ha1 = digest_ha1("SHA-256", "Mufasa", "http-auth@example.org", "Circle of Life")
    response = digest_response(ha1=ha1, algorithm="SHA-256", **RFC7616)
    assert response == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc7616_md5_example():
    ha1 = digest_ha1("MD5", "Mufasa", "http-auth@example.org", "Circle of Life")
    assert digest_response(ha1=ha1, **RFC7616) == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc2069_form_without_qop():
    ha1 = digest_ha1("MD5", "alice", "example.com", "pw")
    ha2 = hashlib.md5(b"REGISTER:sip:example.com").hexdigest()
    expected = hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()
    assert digest_response(ha1=ha1, nonce="abc", method="REGISTER", uri="sip:example.com") == expected


def test_session_variant_rehashes_ha1_with_nonces():
    ha1 = digest_ha1("SHA-256", "alice", "example.com", "pw")
    session = hashlib.sha256(f"{ha1}:n:c".encode()).hexdigest()
    common = dict(nonce="n", method="INVITE", uri="sip:bob@example.com", qop="auth", nc="00000001", cnonce="c")
    assert digest_response(ha1=ha1, algorithm="SHA-256-sess", **common) == digest_response(
        ha1=session, algorithm="SHA-256", **common
    )


def test_auth_int_hashes_the_body():
    ha1 = digest_ha1("MD5", "alice", "example.com", "pw")
    common = dict(ha1=ha1, nonce="n", method="INVITE", uri="sip:b@x", qop="auth-int", nc="00000001", cnonce="c")
    ha2 = hashlib.md5(b"INVITE:sip:b@x:" + hashlib.md5(b"v=0\r\n").hexdigest().encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()
    assert digest_response(body=b"v=0\r\n", **common) == expected
    assert digest_response(body=b"v=1\r\n", **common) != expected


@pytest.mark.parametrize(
    "changes",
    [
        dict(algorithm="SHA-512-256"),
        dict(qop="auth-conf"),
        dict(cnonce=None),
        dict(nc=None),
        dict(qop=None, algorithm="MD5-sess", cnonce=None),
    ],
)
def test_digest_response_refuses_what_it_cannot_compute(changes):
    arguments = dict(ha1="0" * 32, **RFC7616)
    arguments.update(changes)
    with pytest.raises(ValueError):
        digest_response(**arguments)


def test_sip_digest_credentials_check_the_response():
    ha1 = digest_ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    fields = dict(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert SIPDigestCredentials(response="6629fae49393a05397450978507c4ef1", **fields).check_ha1(ha1)
    assert SIPDigestCredentials(response="6629FAE49393A05397450978507C4EF1", **fields).check_ha1(ha1)
    assert not SIPDigestCredentials(response="6629fae49393a05397450978507c4ef0", **fields).check_ha1(ha1)
    assert not SIPDigestCredentials(response="ünïcode", **fields).check_ha1(ha1)
    assert not SIPDigestCredentials(response="6629fae49393a05397450978507c4ef1", **fields).check_ha1("0" * 32)
    broken = dict(fields, qop="auth-conf")
    assert not SIPDigestCredentials(response="6629fae49393a05397450978507c4ef1", **broken).check_ha1(ha1)


# --- SCRAM (RFC 5802 section 5, RFC 7677 section 3) --------------------------


def scram_exchange(client_first, server_first, client_final):
    """
    The AuthMessage and the proof of an example exchange.
    """
    bare = client_first.split(",", 2)[2]
    without_proof, _, proof = client_final.rpartition(",p=")
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    return auth_message, base64.b64decode(proof)


SCRAM_EXAMPLES = [
    pytest.param(
        "sha1",
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        id="RFC5802-SCRAM-SHA-1",
    ),
    pytest.param(
        "sha256",
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        id="RFC7677-SCRAM-SHA-256",
    ),
]


@pytest.mark.parametrize("hash_name, client_first, server_first, client_final, verifier", SCRAM_EXAMPLES)
def test_scram_rfc_example_verifies(hash_name, client_first, server_first, client_final, verifier):
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    secrets = derive_scram_secrets(hash_name, "pencil", base64.b64decode(fields["s"]), int(fields["i"]))
    auth_message, proof = scram_exchange(client_first, server_first, client_final)
    assert ScramCredentials("user", hash_name, auth_message, proof).check_scram(secrets)
    assert server_signature(secrets, auth_message) == base64.b64decode(verifier)


@pytest.mark.parametrize("hash_name, client_first, server_first, client_final, verifier", SCRAM_EXAMPLES)
def test_scram_refuses_wrong_password_proof_or_hash(hash_name, client_first, server_first, client_final, verifier):
    fields = dict(part.split("=", 1) for part in server_first.split(","))
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    auth_message, proof = scram_exchange(client_first, server_first, client_final)
    wrong_password = derive_scram_secrets(hash_name, "pencil2", salt, iterations)
    assert not ScramCredentials("user", hash_name, auth_message, proof).check_scram(wrong_password)
    right = derive_scram_secrets(hash_name, "pencil", salt, iterations)
    flipped = bytes([proof[0] ^ 1]) + proof[1:]
    assert not ScramCredentials("user", hash_name, auth_message, flipped).check_scram(right)
    assert not ScramCredentials("user", hash_name, auth_message, proof[:-1]).check_scram(right)
    assert not ScramCredentials("user", hash_name, auth_message + b"x", proof).check_scram(right)
    other = "sha256" if hash_name == "sha1" else "sha1"
    assert not ScramCredentials("user", other, auth_message, proof).check_scram(right)


def test_derived_scram_secrets_match_a_client_computing_from_the_password():
    secrets = derive_secrets("alice@example.com", "pencil")
    scram = secrets.scram["sha256"]
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", scram.salt, scram.iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    auth_message = b"n=alice,r=abc,r=abcdef,s=...,i=4096,c=biws,r=abcdef"
    signature = hmac.digest(scram.stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    assert ScramCredentials("alice", "sha256", auth_message, proof).check_scram(scram)


# --- generate_password -------------------------------------------------------


def test_generated_passwords_avoid_ambiguous_characters():
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 16
        assert not set(password) & set("0O1lIio")
    assert len(generate_password(40)) == 40


def test_generated_password_length_must_be_positive():
    with pytest.raises(ValueError):
        generate_password(0)
