"""
Tests for communigate.sip.digest: nonces on a Clock, the Authorization
parser, challenge headers, and the verifier logging in through a real
portal over a Directory on a MemoryStore.

Responses are computed here with hashlib directly, not with the module's
own arithmetic, so a test cannot agree with a bug.
"""

import functools
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from communigate.auth.credentials import SIPDigestCredentials
from communigate.auth.passwords import derive_secrets
from communigate.auth.realm import build_portal
from communigate.directory.directory import Directory
from communigate.interfaces import IAccount, ISIPDigestCredentials
from communigate.sip.digest import (
    DigestError,
    DigestVerifier,
    NonceManager,
    OutcomeKind,
    challenge,
    comparable_uri,
    parse_auth_params,
    parse_authorization,
)
from communigate.storage import MemoryStore

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "example.com"
REGISTRAR_URI = "sip:example.com"
SOURCE = ("udp", "192.0.2.10", 5060)
FAST_DERIVE = functools.partial(derive_secrets, iterations=1)
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
REASON_PHRASE = re.compile(r"[A-Za-z0-9 ,.()*+:;/=_-]+\Z")


def result_of(deferred):
    """
    The result of a Deferred that has already fired.
    """
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def hexhash(algorithm, text):
    return HASHES[algorithm](text.encode("utf-8")).hexdigest()


def client_response(
    *, algorithm, username, realm, password, method, uri, nonce, nc="00000001", cnonce="c0ffee", qop="auth"
):
    ha1 = hexhash(algorithm, f"{username}:{realm}:{password}")
    ha2 = hexhash(algorithm, f"{method}:{uri}")
    if qop is None:
        return hexhash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return hexhash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def authorization(
    nonce,
    *,
    algorithm="SHA-256",
    username="alice",
    realm=REALM,
    password="wonderland",
    method="REGISTER",
    uri=REGISTRAR_URI,
    nc="00000001",
    cnonce="c0ffee",
    qop="auth",
    response=None,
):
    if response is None:
        response = client_response(
            algorithm=algorithm,
            username=username,
            realm=realm,
            password=password,
            method=method,
            uri=uri,
            nonce=nonce,
            nc=nc,
            cnonce=cnonce,
            qop=qop,
        )
    parts = [
        f'Digest username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
    return ", ".join(parts)


@pytest.fixture
def clock():
    found = Clock()
    found.advance(1_700_000_000)
    return found


@pytest.fixture
def nonces(clock):
    return NonceManager(clock, SECRET, lifetime=300.0)


@pytest.fixture
def portal():
    directory = Directory(MemoryStore(), derive=FAST_DERIVE)
    directory.create_domain(REALM)
    directory.create_account(f"alice@{REALM}", {"Password": "wonderland"})
    directory.create_account(f"bob@{REALM}")
    return build_portal(directory)


@pytest.fixture
def verifier(portal, nonces):
    return DigestVerifier(portal, nonces)


def verify(verifier, header, *, method="REGISTER", uri=REGISTRAR_URI, body=b"", realm=REALM, proxy=False):
    return result_of(verifier.verify(header, method, uri, body, realm, SOURCE, proxy=proxy))


# -- nonces ------------------------------------------------------------------------------


def test_a_fresh_nonce_is_ok_for_its_realm_only(nonces):
    nonce = nonces.new_nonce(REALM)
    assert re.fullmatch(r"[0-9a-f]{64}", nonce)
    assert nonces.check(nonce, REALM, 1) == "ok"
    assert nonces.check(nonce, "EXAMPLE.com", 1) == "ok"
    assert nonces.check(nonce, "example.org", 1) == "invalid"


def test_two_nonces_issued_in_the_same_instant_differ(nonces):
    assert nonces.new_nonce(REALM) != nonces.new_nonce(REALM)


def test_a_nonce_expires_into_stale_after_its_lifetime(nonces, clock):
    nonce = nonces.new_nonce(REALM)
    clock.advance(299.9)
    assert nonces.check(nonce, REALM, 1) == "ok"
    clock.advance(0.1)
    assert nonces.check(nonce, REALM, 1) == "stale"


@pytest.mark.parametrize("position", [0, 20, 63])
def test_a_tampered_nonce_is_invalid(nonces, position):
    nonce = nonces.new_nonce(REALM)
    flipped = "0" if nonce[position] != "0" else "1"
    assert nonces.check(nonce[:position] + flipped + nonce[position + 1 :], REALM, 1) == "invalid"


@pytest.mark.parametrize("garbage", ["", "abc", "Z" * 64, "0" * 63, "0" * 65, "A" * 64])
def test_text_that_is_no_nonce_is_invalid(nonces, garbage):
    assert nonces.check(garbage, REALM, 1) == "invalid"


def test_a_nonce_from_another_secret_is_invalid(clock, nonces):
    other = NonceManager(clock, b"another secret, sixteen bytes or more")
    assert nonces.check(other.new_nonce(REALM), REALM, 1) == "invalid"


def test_a_nonce_bound_to_an_address_is_invalid_from_another(nonces):
    nonce = nonces.new_nonce(REALM, "192.0.2.10")
    assert nonces.check(nonce, REALM, 1, "192.0.2.10") == "ok"
    assert nonces.check(nonce, REALM, 1, "192.0.2.11") == "invalid"
    assert nonces.check(nonce, REALM, 1) == "invalid"


def test_the_nonce_count_must_grow_once_recorded(nonces):
    nonce = nonces.new_nonce(REALM)
    assert nonces.record(nonce, REALM, 1) == "ok"
    assert nonces.check(nonce, REALM, 1) == "replay"
    assert nonces.check(nonce, REALM, 2) == "ok"
    assert nonces.record(nonce, REALM, 5) == "ok"
    assert nonces.check(nonce, REALM, 4) == "replay"
    assert nonces.record(nonce, REALM, 5) == "replay"
    assert nonces.check(nonce, REALM, 6) == "ok"


def test_checking_alone_records_nothing(nonces):
    nonce = nonces.new_nonce(REALM)
    assert nonces.check(nonce, REALM, 0xFFFFFFFF) == "ok"
    assert nonces.check(nonce, REALM, 1) == "ok"
    assert nonces.tracked_count() == 0


def test_a_nonce_used_without_qop_is_good_once(nonces):
    nonce = nonces.new_nonce(REALM)
    assert nonces.record(nonce, REALM, None) == "ok"
    assert nonces.check(nonce, REALM, None) == "stale"
    assert nonces.check(nonce, REALM, 1) == "stale"


def test_nonces_from_before_the_manager_started_are_stale(clock):
    earlier = NonceManager(clock, SECRET)
    nonce = earlier.new_nonce(REALM)
    clock.advance(1)
    restarted = NonceManager(clock, SECRET)
    assert restarted.check(nonce, REALM, 1) == "stale"
    assert restarted.check(restarted.new_nonce(REALM), REALM, 1) == "ok"


def test_a_nonce_from_the_far_future_is_invalid(clock):
    ahead = Clock()
    ahead.advance(clock.seconds() + 3600)
    nonce = NonceManager(ahead, SECRET).new_nonce(REALM)
    assert NonceManager(clock, SECRET).check(nonce, REALM, 1) == "invalid"


def test_expired_nonces_are_forgotten_when_new_ones_are_recorded(nonces, clock):
    for _ in range(50):
        nonces.record(nonces.new_nonce(REALM), REALM, 1)
    assert nonces.tracked_count() == 50
    clock.advance(301)
    nonces.record(nonces.new_nonce(REALM), REALM, 1)
    assert nonces.tracked_count() == 1


def test_a_full_nonce_table_evicts_the_oldest_and_calls_it_stale(clock):
    nonces = NonceManager(clock, SECRET, max_tracked=10)
    used = []
    for _ in range(25):
        nonce = nonces.new_nonce(REALM)
        assert nonces.record(nonce, REALM, 1) == "ok"
        used.append(nonce)
        clock.advance(0.01)
    assert nonces.tracked_count() == 10
    assert nonces.evictions == 15
    # An evicted nonce must not start again at nc=1 (a replay) ...
    assert nonces.check(used[0], REALM, 1) == "stale"
    assert nonces.check(used[0], REALM, 2) == "stale"
    # ... tracked ones keep their counts, and new ones work.
    assert nonces.check(used[-1], REALM, 1) == "replay"
    assert nonces.check(used[-1], REALM, 2) == "ok"
    assert nonces.record(nonces.new_nonce(REALM), REALM, 1) == "ok"


def test_nonce_table_memory_stays_bounded_under_churn(clock):
    nonces = NonceManager(clock, SECRET, lifetime=30, max_tracked=100)
    for _ in range(5000):
        nonces.record(nonces.new_nonce(REALM), REALM, 1)
        clock.advance(0.05)
        assert nonces.tracked_count() <= 100


@pytest.mark.parametrize("secret", [b"", b"short", "a text secret long enough"])
def test_a_weak_or_missing_secret_is_refused(clock, secret):
    with pytest.raises(ValueError, match="secret"):
        NonceManager(clock, secret)


# -- parsing -------------------------------------------------------------------------------


def test_rfc_2617_example_parses():
    credentials = parse_authorization(
        'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
        " qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n"
        ' response="6629fae49393a05397450978507c4ef1",\r\n'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"',
        "GET",
    )
    assert credentials == SIPDigestCredentials(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm="MD5",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )


def test_parameter_names_scheme_and_algorithm_are_case_insensitive():
    credentials = parse_authorization(
        'DIGEST UserName="a", REALM="r", Nonce="n", URI="sip:r", Response="' + "0" * 64 + '", '
        "Algorithm=sha-256, QOP=AUTH, NC=0000000A, CNonce=x",
        "INVITE",
    )
    assert (credentials.algorithm, credentials.qop, credentials.nc) == ("SHA-256", "auth", "0000000A")


def test_quoted_strings_keep_commas_and_unescape_backslashes():
    credentials = parse_authorization(
        r'Digest username="a\"b,c\\d", realm="r", nonce="n", uri="sip:x;a=b,c", response="' + "f" * 32 + '"',
        "REGISTER",
    )
    assert credentials.username == 'a"b,c\\d'
    assert credentials.uri == "sip:x;a=b,c"
    assert credentials.qop is None and credentials.nc is None


def test_quoted_qop_and_algorithm_are_accepted():
    credentials = parse_authorization(
        'Digest username="a", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '",'
        ' algorithm="MD5", qop="auth", nc=00000001, cnonce="c"',
        "REGISTER",
    )
    assert (credentials.algorithm, credentials.qop) == ("MD5", "auth")


def test_username_star_carries_a_utf8_name():
    credentials = parse_authorization(
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"" + "0" * 32 + '"',
        "REGISTER",
    )
    assert credentials.username == "Jäsøn"


def test_empty_list_elements_are_skipped():
    assert parse_auth_params(' , a=b ,, c="d",') == {"a": "b", "c": "d"}


def test_method_and_body_come_from_the_caller():
    credentials = parse_authorization(
        'Digest username="a", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '",'
        " qop=auth-int, nc=00000001, cnonce=c",
        "MESSAGE",
        b"hello",
    )
    assert (credentials.method, credentials.body, credentials.qop) == ("MESSAGE", b"hello", "auth-int")


@pytest.mark.parametrize("value", ['Basic YWxhZGRpbjpvcGVuc2VzYW1l', 'Bearer abc', 'NTLM'])
def test_another_scheme_is_none(value):
    assert parse_authorization(value, "REGISTER") is None


VALID = 'username="a", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "No authentication scheme"),
        ("   ", "No authentication scheme"),
        ("Digest", "without parameters"),
        ("Digest   ", "without parameters"),
        ('Digest,username="a"', "Malformed authentication scheme"),
        ('Digest username="a", username="b", realm="r"', "Duplicate digest username"),
        ('Digest USERNAME="a", username="b"', "Duplicate digest username"),
        ('Digest username="a', "Unterminated"),
        ('Digest username="a\\', "Unterminated"),
        ('Digest username', "username has no value"),
        ('Digest username=', "username has no value"),
        ('Digest username=, realm="r"', "username has no value"),
        ('Digest username="a" realm="r"', "separated by commas"),
        ('Digest =x', "Malformed digest parameter list"),
        ('Digest username="a\x00b"', "Control character"),
        ('Digest username="a\\\nb"', "Line break escaped"),
        ('Digest x`y=1, ' + VALID + ", x`y=2", "Duplicate digest parameter"),
        ('Digest realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"', "without username"),
        ('Digest username="", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"', "username is empty"),
        ('Digest username="a", nonce="n", uri="u", response="' + "0" * 32 + '"', "without realm"),
        ('Digest username="a", realm="r", uri="u", response="' + "0" * 32 + '"', "without nonce"),
        ('Digest username="a", realm="r", nonce="n", response="' + "0" * 32 + '"', "without uri"),
        ('Digest username="a", realm="r", nonce="n", uri="u"', "without response"),
        ("Digest " + VALID.replace("0" * 32, "0" * 31), "not 32 hex digits"),
        ("Digest " + VALID.replace("0" * 32, "g" * 32), "not 32 hex digits"),
        ("Digest " + VALID + ", algorithm=SHA-256", "not 64 hex digits"),
        ("Digest " + VALID + ", algorithm=SHA-512-256", "Unsupported digest algorithm"),
        ("Digest " + VALID + ", qop=auth-conf, nc=00000001, cnonce=c", "Unsupported digest qop"),
        ("Digest " + VALID + ", qop=auth, cnonce=c", "without nc"),
        ("Digest " + VALID + ", qop=auth, nc=1, cnonce=c", "nc is not 8 hex digits"),
        ("Digest " + VALID + ", qop=auth, nc=0000000g, cnonce=c", "nc is not 8 hex digits"),
        ("Digest " + VALID + ", qop=auth, nc=00000000, cnonce=c", "must start at 00000001"),
        ("Digest " + VALID + ", qop=auth, nc=00000001", "without cnonce"),
        ("Digest " + VALID + ", algorithm=MD5-sess", "without cnonce"),
        ("Digest " + VALID + ", userhash=true", "userhash"),
        ("Digest " + VALID + ", username*=UTF-8''b", "both username and username*"),
        ("Digest " + VALID.replace('username="a"', "username*=latin1''a"), "ext-value"),
        ("Digest " + VALID.replace('username="a"', "username*=UTF-8''%ff"), "not valid UTF-8"),
    ],
)
def test_malformed_credentials_raise_digest_error_with_a_reason(value, reason):
    with pytest.raises(DigestError, match=re.escape(reason)) as caught:
        parse_authorization(value, "REGISTER")
    assert REASON_PHRASE.match(caught.value.reason), caught.value.reason


def test_a_digest_error_is_a_value_error():
    assert issubclass(DigestError, ValueError)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_digest_error_only(value):
    for text in (value, "Digest " + value):
        try:
            result = parse_authorization(text, "REGISTER")
        except DigestError as error:
            assert REASON_PHRASE.match(error.reason), error.reason
        else:
            assert result is None or isinstance(result, SIPDigestCredentials)


_PARAM_NAMES = st.sampled_from(
    ["username", "realm", "nonce", "uri", "response", "algorithm", "qop", "nc", "cnonce", "opaque", "x"]
)
_PARAM_VALUES = st.one_of(
    st.text(alphabet='abcdefABCDEF0123456789-",\\= \t;:@', max_size=70),
    st.sampled_from(["MD5", "SHA-256", "auth", "auth-int", "00000001", "0" * 32, "0" * 64]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_PARAM_NAMES, _PARAM_VALUES, st.booleans()), max_size=12))
def test_parameter_soup_parses_or_raises_digest_error_only(params):
    text = "Digest " + ", ".join(
        f'{name}="{value}"' if quoted else f"{name}={value}" for name, value, quoted in params
    )
    try:
        result = parse_authorization(text, "REGISTER")
    except DigestError as error:
        assert REASON_PHRASE.match(error.reason), error.reason
    else:
        assert isinstance(result, SIPDigestCredentials)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["username", "realm", "nonce", "uri", "cnonce", "opaque"]),
                       st.text(min_size=1, max_size=30).filter(lambda s: not any(c < " " or c == "\x7f" for c in s)
                                                                and all(0xD800 > ord(c) or ord(c) > 0xDFFF for c in s)),
                       min_size=1))
def test_quoted_values_round_trip_through_the_parameter_parser(values):
    text = ", ".join(
        f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for name, value in values.items()
    )
    assert parse_auth_params(text) == values


_TOKEN_TEXT = st.text(alphabet="abcXYZ019.!%*_+`'~-", min_size=1, max_size=12)
_SPACE = st.text(alphabet=" \t\r\n", max_size=3)
_SEPARATOR = st.builds(lambda a, commas, b: a + "," * commas + b, _SPACE, st.integers(1, 3), _SPACE)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        _TOKEN_TEXT.map(str.lower),
        st.one_of(
            st.tuples(st.just("token"), _TOKEN_TEXT),
            st.tuples(st.just("quoted"), st.text(alphabet='ab ,;=\t"\\\x01é', max_size=12)),
        ),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_any_well_formed_parameter_list_parses_to_its_values(values, data):
    text = data.draw(_SPACE)
    for name, (form, value) in values.items():
        if form == "token":
            written = value
        else:
            escaped = "".join("\\" + char if char in '"\\' or (char < " " and char != "\t") else char for char in value)
            written = f'"{escaped}"'
        text += f"{data.draw(st.sampled_from([name, name.upper()]))}{data.draw(_SPACE)}={data.draw(_SPACE)}{written}"
        text += data.draw(_SEPARATOR)
    assert parse_auth_params(text) == {name: value for name, (_, value) in values.items()}


# -- challenges ----------------------------------------------------------------------------


def test_challenge_offers_sha256_before_md5_with_qop_auth():
    headers = challenge(REALM, "abc")
    assert headers == [
        ("WWW-Authenticate", 'Digest realm="example.com", nonce="abc", algorithm=SHA-256, qop="auth"'),
        ("WWW-Authenticate", 'Digest realm="example.com", nonce="abc", algorithm=MD5, qop="auth"'),
    ]


def test_proxy_challenge_is_proxy_authenticate_with_stale_and_opaque():
    headers = challenge("a\"b", "abc", algorithms=["md5"], stale=True, opaque="op", proxy=True)
    assert headers == [
        ("Proxy-Authenticate", 'Digest realm="a\\"b", nonce="abc", opaque="op", stale=true, algorithm=MD5, qop="auth"')
    ]


def test_challenge_parameters_parse_back():
    (_, value), _ = challenge(REALM, "n0nce", stale=True, opaque="o")
    scheme, _, rest = value.partition(" ")
    assert scheme == "Digest"
    assert parse_auth_params(rest) == {
        "realm": REALM,
        "nonce": "n0nce",
        "opaque": "o",
        "stale": "true",
        "algorithm": "SHA-256",
        "qop": "auth",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"algorithms": ()}, "at least one"), ({"algorithms": ("SHA-512",)}, "unknown digest algorithm")],
)
def test_challenge_refuses_bad_algorithms(kwargs, message):
    with pytest.raises(ValueError, match=message):
        challenge(REALM, "n", **kwargs)


def test_challenge_refuses_line_breaks():
    with pytest.raises(ValueError, match="line breaks"):
        challenge("evil\r\nVia: x", "n")


# -- the verifier with a real portal ------------------------------------------------------


def fresh_nonce(verifier):
    """
    The nonce of a challenge, as a phone would read it.
    """
    outcome = verify(verifier, None)
    assert outcome.kind is OutcomeKind.CHALLENGE
    _, value = outcome.headers[0]
    return parse_auth_params(value.partition(" ")[2])["nonce"]


def test_no_credentials_get_a_challenge(verifier):
    outcome = verify(verifier, None)
    assert outcome.kind is OutcomeKind.CHALLENGE
    assert [name for name, _ in outcome.headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    assert "algorithm=SHA-256" in outcome.headers[0][1]
    assert "algorithm=MD5" in outcome.headers[1][1]
    assert "stale" not in outcome.headers[0][1]


def test_a_proxy_challenge_uses_proxy_authenticate(verifier):
    outcome = verify(verifier, "", method="INVITE", uri="sip:bob@example.com", proxy=True)
    assert {name for name, _ in outcome.headers} == {"Proxy-Authenticate"}


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
@pytest.mark.parametrize("username", ["alice", "alice@example.com"])
def test_a_right_response_logs_in_with_either_algorithm_and_username_form(verifier, algorithm, username):
    nonce = fresh_nonce(verifier)
    outcome = verify(verifier, authorization(nonce, algorithm=algorithm, username=username))
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.account == "alice@example.com"
    assert outcome.username == username
    assert IAccount.providedBy(outcome.avatar)
    assert outcome.avatar.effective_settings()["MaxSignalContacts"] == "10"


def test_a_response_without_qop_logs_in_once(verifier):
    nonce = fresh_nonce(verifier)
    header = authorization(nonce, algorithm="MD5", qop=None)
    assert verify(verifier, header).kind is OutcomeKind.ACCEPTED
    again = verify(verifier, header)
    assert again.kind is OutcomeKind.STALE
    assert "stale=true" in again.headers[0][1]


def test_auth_int_hashes_the_body(verifier):
    nonce = fresh_nonce(verifier)
    body = b"v=0\r\n"
    ha1 = hexhash("MD5", "alice:example.com:wonderland")
    ha2 = hexhash("MD5", f"MESSAGE:sip:bob@example.com:{hashlib.md5(body).hexdigest()}")
    response = hexhash("MD5", f"{ha1}:{nonce}:00000001:c:auth-int:{ha2}")
    header = authorization(
        nonce, algorithm="MD5", method="MESSAGE", uri="sip:bob@example.com", qop="auth-int", cnonce="c", response=response
    )
    assert verify(verifier, header, method="MESSAGE", uri="sip:bob@example.com", body=body).accepted
    header2 = header.replace("nc=00000001", "nc=00000002")
    assert not verify(verifier, header2, method="MESSAGE", uri="sip:bob@example.com", body=b"other").accepted


def test_the_next_nonce_count_is_accepted_and_a_repeated_one_refused(verifier):
    nonce = fresh_nonce(verifier)
    assert verify(verifier, authorization(nonce, nc="00000001")).accepted
    assert verify(verifier, authorization(nonce, nc="00000002")).accepted
    replayed = verify(verifier, authorization(nonce, nc="00000002"))
    assert replayed.kind is OutcomeKind.REFUSED
    assert replayed.reason == "nonce count replayed"
    assert verify(verifier, authorization(nonce, nc="00000001")).kind is OutcomeKind.REFUSED
    assert verify(verifier, authorization(nonce, nc="00000003")).accepted


def test_a_wrong_response_cannot_advance_the_nonce_count(verifier):
    nonce = fresh_nonce(verifier)
    bogus = authorization(nonce, nc="ffffffff", password="guess")
    assert verify(verifier, bogus).kind is OutcomeKind.REFUSED
    assert verify(verifier, authorization(nonce, nc="00000001")).accepted


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"password": "guess"}, "wrong credentials"),
        ({"username": "nobody"}, "wrong credentials"),
        ({"username": "bob"}, "wrong credentials"),
        ({"username": "alice@example.org"}, "wrong credentials"),
    ],
)
def test_wrong_password_unknown_user_and_no_password_are_refused_alike(verifier, kwargs, reason):
    nonce = fresh_nonce(verifier)
    outcome = verify(verifier, authorization(nonce, **kwargs))
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.reason == reason
    assert outcome.account is None
    assert outcome.headers and "stale" not in outcome.headers[0][1]


def test_a_stale_nonce_with_a_right_response_asks_for_a_retry_with_stale(verifier, clock):
    nonce = fresh_nonce(verifier)
    clock.advance(301)
    outcome = verify(verifier, authorization(nonce))
    assert outcome.kind is OutcomeKind.STALE
    assert all("stale=true" in value for _, value in outcome.headers)
    (_, value), _ = outcome.headers
    retry_nonce = parse_auth_params(value.partition(" ")[2])["nonce"]
    assert retry_nonce != nonce
    assert verify(verifier, authorization(retry_nonce)).accepted


def test_a_stale_nonce_with_a_wrong_response_is_refused_not_stale(verifier, clock):
    nonce = fresh_nonce(verifier)
    clock.advance(301)
    outcome = verify(verifier, authorization(nonce, password="guess"))
    assert outcome.kind is OutcomeKind.REFUSED
    assert "stale" not in outcome.headers[0][1]


def test_a_tampered_nonce_never_logs_in(verifier):
    nonce = fresh_nonce(verifier)
    forged = ("1" if nonce[0] != "1" else "2") + nonce[1:]
    # The header edited after the client computed its response ...
    edited = authorization(nonce).replace(nonce, forged)
    assert verify(verifier, edited).kind is OutcomeKind.REFUSED
    # ... and a client that computed a right response over a forged nonce.
    outcome = verify(verifier, authorization(forged))
    assert outcome.kind is OutcomeKind.STALE
    assert not outcome.accepted


def test_a_nonce_issued_for_another_realm_is_not_accepted(portal, nonces):
    verifier = DigestVerifier(portal, nonces)
    other_nonce = nonces.new_nonce("example.org")
    outcome = verify(verifier, authorization(other_nonce))
    assert outcome.kind is OutcomeKind.STALE


def test_credentials_for_another_realm_get_a_challenge_for_ours(verifier):
    nonce = fresh_nonce(verifier)
    outcome = verify(verifier, authorization(nonce, realm="example.org"))
    assert outcome.kind is OutcomeKind.CHALLENGE
    assert outcome.reason == "credentials for another realm"
    assert 'realm="example.com"' in outcome.headers[0][1]


def test_another_scheme_gets_a_challenge(verifier):
    assert verify(verifier, "Basic YWxpY2U6d29uZGVybGFuZA==").kind is OutcomeKind.CHALLENGE


def test_an_algorithm_not_offered_gets_a_challenge(portal, nonces):
    verifier = DigestVerifier(portal, nonces, algorithms=["SHA-256"])
    nonce = fresh_nonce(verifier)
    outcome = verify(verifier, authorization(nonce, algorithm="MD5"))
    assert outcome.kind is OutcomeKind.CHALLENGE
    assert [value.count("algorithm=SHA-256") for _, value in outcome.headers] == [1]


def test_a_digest_uri_other_than_the_request_uri_is_a_bad_request(verifier):
    nonce = fresh_nonce(verifier)
    header = authorization(nonce, uri="sip:elsewhere.example")
    outcome = verify(verifier, header)
    assert outcome.kind is OutcomeKind.MALFORMED
    assert outcome.reason == "Digest uri does not match the Request-URI"


def test_the_uri_comparison_forgives_only_scheme_and_host_case(verifier):
    nonce = fresh_nonce(verifier)
    header = authorization(nonce, uri="SIP:Example.COM;transport=udp")
    assert verify(verifier, header, uri="sip:example.com;transport=udp").accepted
    assert comparable_uri("sip:Alice@Example.com:5060;Lr?X=Y") == "sip:Alice@example.com:5060;Lr?X=Y"
    assert comparable_uri("sip:example.com") != comparable_uri("sip:example.com:5060")
    assert comparable_uri("/dir/index.html") == "/dir/index.html"


def test_a_malformed_header_is_a_bad_request_with_its_reason(verifier):
    outcome = verify(verifier, 'Digest username="a", username="b"')
    assert outcome.kind is OutcomeKind.MALFORMED
    assert outcome.reason == "Duplicate digest username"
    assert outcome.headers == ()


def test_nonces_bound_to_the_source_refuse_another_host(portal, nonces):
    verifier = DigestVerifier(portal, nonces, bind_to_source=True)
    nonce = fresh_nonce(verifier)  # challenged at SOURCE
    header = authorization(nonce)
    moved = result_of(verifier.verify(header, "REGISTER", REGISTRAR_URI, b"", REALM, ("udp", "192.0.2.99", 5060)))
    assert moved.kind is OutcomeKind.STALE
    same_host = result_of(verifier.verify(header, "REGISTER", REGISTRAR_URI, b"", REALM, ("udp", "192.0.2.10", 6000)))
    assert same_host.accepted


def test_a_store_failure_is_a_failed_deferred_not_a_refusal(nonces):
    @implementer(ICredentialsChecker)
    class BrokenChecker:
        credentialInterfaces = (ISIPDigestCredentials,)

        def requestAvatarId(self, credentials):
            return defer.fail(RuntimeError("disk on fire"))

    verifier = DigestVerifier(Portal(NameRealm(), [BrokenChecker()]), nonces)
    nonce = fresh_nonce(verifier)
    failure = result_of(verifier.verify(authorization(nonce), "REGISTER", REGISTRAR_URI, b"", REALM, SOURCE))
    assert failure.check(RuntimeError)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_header_text_gives_an_outcome(value):
    verifier = DigestVerifier(AcceptAllPortal(), FixedNonces())
    outcome = result_of(verifier.verify(value, "REGISTER", REGISTRAR_URI, b"", REALM, SOURCE))
    assert outcome.kind in OutcomeKind


def test_verifier_refuses_unknown_algorithms(portal, nonces):
    with pytest.raises(ValueError, match="unknown digest algorithm"):
        DigestVerifier(portal, nonces, algorithms=["SHA-1"])
    with pytest.raises(ValueError, match="at least one"):
        DigestVerifier(portal, nonces, algorithms=[])


# -- RFC examples through the verifier -----------------------------------------------------
#
# The RFC realms contain '@', which no account domain can, so these run
# through a portal whose checker holds the example passwords, and through
# nonces that accept the examples' fixed nonces.


class FixedNonces:
    def new_nonce(self, realm, address=None):
        return "fixed"

    def check(self, nonce, realm, nc, address=None):
        return "ok"

    def record(self, nonce, realm, nc, address=None):
        return "ok"


@implementer(IAccount)
class NamedAccount:
    def __init__(self, name):
        self.name = name
        self.domain = name.partition("@")[2]

    def effective_settings(self):
        return {}

    def logout(self):
        pass


@implementer(IRealm)
class NameRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        return IAccount, NamedAccount(avatarId), lambda: None


@implementer(ICredentialsChecker)
class ExamplePasswords:
    credentialInterfaces = (ISIPDigestCredentials,)

    def __init__(self, passwords):
        self.passwords = passwords

    def requestAvatarId(self, credentials):
        password = self.passwords.get((credentials.username, credentials.realm))
        base = credentials.algorithm.upper().removesuffix("-SESS")
        if password is not None:
            ha1 = hexhash(base, f"{credentials.username}:{credentials.realm}:{password}")
            if credentials.check_ha1(ha1):
                return defer.succeed(credentials.username)
        return defer.fail(UnauthorizedLogin())


def AcceptAllPortal():
    @implementer(ICredentialsChecker)
    class AcceptAll:
        credentialInterfaces = (ISIPDigestCredentials,)

        def requestAvatarId(self, credentials):
            return defer.succeed("any@example.com")

    return Portal(NameRealm(), [AcceptAll()])


RFC_PORTAL = functools.partial(
    lambda: Portal(
        NameRealm(),
        [
            ExamplePasswords(
                {
                    ("Mufasa", "testrealm@host.com"): "Circle Of Life",
                    ("Mufasa", "http-auth@example.org"): "Circle of Life",
                }
            )
        ],
    )
)

RFC_2617 = (
    'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
    " qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n"
    ' response="6629fae49393a05397450978507c4ef1",\r\n'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

RFC_7616 = (
    'Digest username="Mufasa",\r\n realm="http-auth@example.org",\r\n uri="/dir/index.html",\r\n'
    " algorithm={algorithm},\r\n nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n"
    " nc=00000001,\r\n cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n"
    ' response="{response}",\r\n opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


@pytest.mark.parametrize(
    ("header", "realm"),
    [
        (RFC_2617, "testrealm@host.com"),
        (RFC_7616.format(algorithm="MD5", response="8ca523f5e9506fed4657c9700eebdbec"), "http-auth@example.org"),
        (
            RFC_7616.format(
                algorithm="SHA-256", response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
            ),
            "http-auth@example.org",
        ),
    ],
    ids=["rfc2617-md5", "rfc7616-md5", "rfc7616-sha256"],
)
def test_rfc_examples_are_accepted_and_a_changed_response_is_not(header, realm):
    verifier = DigestVerifier(RFC_PORTAL(), FixedNonces())
    outcome = result_of(verifier.verify(header, "GET", "/dir/index.html", b"", realm, SOURCE))
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.account == "Mufasa"
    response = re.search(r'response="([0-9a-f]+)"', header).group(1)
    changed = header.replace(response, ("0" if response[0] != "0" else "1") + response[1:])
    outcome = result_of(verifier.verify(changed, "GET", "/dir/index.html", b"", realm, SOURCE))
    assert outcome.kind is OutcomeKind.REFUSED
    outcome = result_of(verifier.verify(header, "POST", "/dir/index.html", b"", realm, SOURCE))
    assert outcome.kind is OutcomeKind.REFUSED


def test_the_highest_count_is_remembered_and_the_issue_time_with_it(nonces, clock):
    # Both are kept packed in one number per tracked nonce.
    nonce = nonces.new_nonce(REALM)
    assert nonces.record(nonce, REALM, 0xFFFFFFFE) == "ok"
    assert nonces.record(nonce, REALM, 0xFFFFFFFF) == "ok"
    assert nonces.check(nonce, REALM, 0xFFFFFFFF) == "replay"
    for _ in range(20):  # nothing tracked expires while it is live
        clock.advance(14)
        nonces.record(nonces.new_nonce(REALM), REALM, 1)
    assert nonces.check(nonce, REALM, 0xFFFFFFFF) == "replay"
    clock.advance(300 - 280)
    nonces.record(nonces.new_nonce(REALM), REALM, 1)
    assert nonces.check(nonce, REALM, 0xFFFFFFFF) == "stale"
    assert nonces.tracked_count() == 21  # it alone expired, and was forgotten


def test_a_count_beyond_eight_hex_digits_is_refused(nonces):
    with pytest.raises(ValueError, match="8 hex digits"):
        nonces.record(nonces.new_nonce(REALM), REALM, 0x100000000)
