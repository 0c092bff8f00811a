"""
Tests for communigate.auth.checkers, through a twisted.cred portal.
"""

import base64
import hashlib
import hmac

import attrs
import pytest
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import Interface, implementer
from zope.interface.verify import verifyObject

from communigate.auth.checkers import PlainPasswordChecker, ScramChecker, SIPDigestChecker
from communigate.auth.credentials import (
    IScramCredentials,
    ISIPDigestCredentials,
    ScramCredentials,
    SIPDigestCredentials,
    digest_response,
)
from communigate.auth.passwords import PasswordSecrets, derive_secrets, digest_ha1
from communigate.interfaces import IPasswordSecretsSource


@implementer(IPasswordSecretsSource)
class FakeSource:
    """
    Accounts in a dict, aliases in another; records refresh requests.
    """

    def __init__(self, main_domain="example.com"):
        self.main_domain = main_domain
        self.secrets = {}
        self.aliases = {}
        self.refreshed = []
        self.refresh_error = None

    def add(self, account, password, **kwargs):
        self.secrets[account] = derive_secrets(account, password, **kwargs)

    def resolve_account(self, address):
        address = address.lower()
        if "@" not in address:
            address = f"{address}@{self.main_domain}"
        address = self.aliases.get(address, address)
        return address if address in self.secrets else None

    def password_secrets(self, account):
        secrets = self.secrets.get(account)
        if isinstance(secrets, dict):
            return PasswordSecrets.from_dict(secrets)
        return secrets

    def refresh_secrets(self, account, password):
        self.refreshed.append((account, password))
        if self.refresh_error is not None:
            raise self.refresh_error
        self.add(account, password)


class IThing(Interface):
    """
    The avatar interface of the test realm.
    """


@implementer(IRealm)
class NameRealm:
    """
    Hands out the avatar ID itself, so a test sees who logged in.
    """

    def requestAvatar(self, avatarId, mind, *interfaces):
        return IThing, avatarId, lambda: None


def result_of(d):
    """
    The value a Deferred that has already fired holds, or raise its failure.
    """
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def login(source, credentials):
    portal = Portal(NameRealm(), [PlainPasswordChecker(source), SIPDigestChecker(source), ScramChecker(source)])
    interface, avatar, logout = result_of(portal.login(credentials, None, IThing))
    assert interface is IThing
    return avatar


@pytest.fixture
def source():
    source = FakeSource()
    source.add("alice@example.com", "wonderland")
    source.aliases["al@example.com"] = "alice@example.com"
    return source


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


@pytest.mark.parametrize("checker_class", [PlainPasswordChecker, SIPDigestChecker, ScramChecker])
def test_checkers_provide_icredentialschecker(checker_class, source):
    assert verifyObject(ICredentialsChecker, checker_class(source))


def test_credentials_provide_their_interfaces():
    assert verifyObject(
        ISIPDigestCredentials,
        SIPDigestCredentials(username="a", realm="r", nonce="n", method="M", uri="u", response="x"),
    )
    assert verifyObject(IScramCredentials, ScramCredentials("a", "sha1", b"m", b"p"))


def test_fake_source_provides_the_interface(source):
    assert verifyObject(IPasswordSecretsSource, source)


# --- Plain passwords -----------------------------------------------------------


@pytest.mark.parametrize("username", ["alice@example.com", "alice", "ALICE@Example.COM", "al@example.com"])
def test_plain_login_yields_the_canonical_account(source, username):
    assert login(source, UsernamePassword(username, "wonderland")) == "alice@example.com"


def test_plain_login_accepts_utf8_bytes(source):
    source.add("jose@example.com", "contraseña")
    credentials = UsernamePassword(b"jose", "contraseña".encode("utf-8"))
    assert login(source, credentials) == "jose@example.com"


@pytest.mark.parametrize(
    "username, password",
    [
        ("alice", "Wonderland"),
        ("alice", ""),
        ("nobody", "wonderland"),
        (b"\xff", b"wonderland"),
        ("alice", b"\xffwonderland"),
    ],
)
def test_plain_login_refuses_wrong_password_and_unknown_user_alike(source, username, password):
    with pytest.raises(UnauthorizedLogin) as raised:
        login(source, UsernamePassword(username, password))
    assert type(raised.value) is UnauthorizedLogin
    assert str(raised.value) == ""


def test_plain_login_does_not_refresh_current_secrets(source):
    login(source, UsernamePassword("alice", "wonderland"))
    assert source.refreshed == []


def test_plain_login_refreshes_weak_secrets(source):
    source.add("alice@example.com", "wonderland", iterations=100)
    login(source, UsernamePassword("alice", "wonderland"))
    assert source.refreshed == [("alice@example.com", "wonderland")]
    assert not source.secrets["alice@example.com"].needs_refresh("alice@example.com")


def test_plain_login_refreshes_digest_after_rename(source):
    source.secrets["alicia@example.com"] = source.secrets.pop("alice@example.com")
    assert login(source, UsernamePassword("alicia", "wonderland")) == "alicia@example.com"
    assert source.refreshed == [("alicia@example.com", "wonderland")]
    assert source.secrets["alicia@example.com"].digest_is_current("alicia@example.com")


def test_plain_login_survives_a_failing_refresh(source, logged):
    source.add("alice@example.com", "wonderland", iterations=100)
    source.refresh_error = OSError("disk full")
    assert login(source, UsernamePassword("alice", "wonderland")) == "alice@example.com"
    assert source.refreshed == [("alice@example.com", "wonderland")]
    failures = [event for event in logged if "log_failure" in event]
    assert [event["log_failure"].type for event in failures] == [OSError]


def test_plain_login_does_not_refresh_on_failure(source):
    source.add("alice@example.com", "wonderland", iterations=100)
    with pytest.raises(UnauthorizedLogin):
        login(source, UsernamePassword("alice", "wrong"))
    assert source.refreshed == []


def test_refusal_reason_is_logged_without_the_password(source, logged):
    with pytest.raises(UnauthorizedLogin):
        login(source, UsernamePassword("alice", "not-the-password"))
    refusals = [event for event in logged if event.get("reason") == "wrong password"]
    assert len(refusals) == 1
    assert "not-the-password" not in repr(logged)


# --- SIP digest ----------------------------------------------------------------


def sip_credentials(username, password, realm="example.com", algorithm="MD5", **overrides):
    fields = dict(
        username=username,
        realm=realm,
        nonce="8f1c2a",
        method="REGISTER",
        uri="sip:example.com",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce="c0ffee",
    )
    fields.update(overrides)
    base = algorithm.upper().removesuffix("-SESS")
    ha1 = digest_ha1(base, username, realm, password)
    response = digest_response(
        ha1=ha1,
        nonce=fields["nonce"],
        method=fields["method"],
        uri=fields["uri"],
        algorithm=algorithm,
        qop=fields["qop"],
        nc=fields["nc"],
        cnonce=fields["cnonce"],
    )
    return SIPDigestCredentials(response=response, **fields)


@pytest.mark.parametrize("username", ["alice", "alice@example.com"])
@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
def test_sip_digest_login_with_either_username_form(source, username, algorithm):
    credentials = sip_credentials(username, "wonderland", algorithm=algorithm)
    assert login(source, credentials) == "alice@example.com"


def test_sip_digest_login_in_another_domain_uses_its_realm(source):
    source.add("bob@other.org", "builder")
    assert login(source, sip_credentials("bob", "builder", realm="other.org")) == "bob@other.org"


def test_sip_digest_rfc2069_form(source):
    credentials = sip_credentials("alice", "wonderland", qop=None, nc=None, cnonce=None)
    assert login(source, credentials) == "alice@example.com"


@pytest.mark.parametrize(
    "credentials",
    [
        sip_credentials("alice", "Wonderland"),
        sip_credentials("nobody", "wonderland"),
        sip_credentials("alice", "wonderland", realm="other.org"),
        attrs.evolve(sip_credentials("alice", "wonderland"), nc="00000002"),
        attrs.evolve(sip_credentials("alice", "wonderland"), algorithm="SHA-512-256"),
        sip_credentials("al", "wonderland"),
    ],
    ids=["wrong password", "unknown user", "wrong realm", "tampered nc", "unknown algorithm", "alias has no HA1"],
)
def test_sip_digest_refuses_wrong_password_unknown_user_and_other_realms(source, credentials):
    with pytest.raises(UnauthorizedLogin):
        login(source, credentials)


def test_sip_digest_refuses_stale_hashes_after_rename(source):
    source.secrets["alicia@example.com"] = source.secrets.pop("alice@example.com")
    source.aliases["alice@example.com"] = "alicia@example.com"
    for username in ["alicia", "alice"]:
        with pytest.raises(UnauthorizedLogin):
            login(source, sip_credentials(username, "wonderland"))
    assert source.refreshed == []


def test_sip_digest_works_again_once_a_plain_login_refreshed(source):
    source.secrets["alicia@example.com"] = source.secrets.pop("alice@example.com")
    login(source, UsernamePassword("alicia", "wonderland"))
    assert login(source, sip_credentials("alicia", "wonderland")) == "alicia@example.com"


# --- SCRAM --------------------------------------------------------------------


def scram_credentials(username, password, secrets, hash_name="sha256"):
    scram = secrets.scram[hash_name]
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), scram.salt, scram.iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    salt = base64.b64encode(scram.salt).decode()
    auth_message = f"n={username},r=abc,r=abcxyz,s={salt},i={scram.iterations},c=biws,r=abcxyz".encode()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return ScramCredentials(username, hash_name, auth_message, proof)


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
@pytest.mark.parametrize("username", ["alice", "alice@example.com", "al@example.com"])
def test_scram_login_yields_the_canonical_account(source, hash_name, username):
    secrets = source.secrets["alice@example.com"]
    assert login(source, scram_credentials(username, "wonderland", secrets, hash_name)) == "alice@example.com"


def test_scram_refuses_wrong_password_and_unknown_user(source):
    secrets = source.secrets["alice@example.com"]
    with pytest.raises(UnauthorizedLogin):
        login(source, scram_credentials("alice", "Wonderland", secrets))
    with pytest.raises(UnauthorizedLogin):
        login(source, scram_credentials("nobody", "wonderland", secrets))


def test_scram_refuses_a_hash_without_stored_keys(source):
    secrets = source.secrets["alice@example.com"]
    record = secrets.to_dict()
    del record["SCRAM"]["sha1"]
    source.secrets["alice@example.com"] = type(secrets).from_dict(record)
    with pytest.raises(UnauthorizedLogin):
        login(source, scram_credentials("alice", "wonderland", secrets, "sha1"))


def test_damaged_record_refuses_login_and_logs(source, logged):
    secrets = source.secrets["alice@example.com"]
    record = secrets.to_dict()
    record["PlainHash"] = "garbage"
    source.secrets["alice@example.com"] = record
    attempts = [
        UsernamePassword("alice", "wonderland"),
        sip_credentials("alice", "wonderland"),
        scram_credentials("alice", "wonderland", secrets),
    ]
    for credentials in attempts:
        with pytest.raises(UnauthorizedLogin):
            login(source, credentials)
    failures = [event for event in logged if "log_failure" in event]
    assert [event["log_failure"].type for event in failures] == [ValueError] * 3
    assert source.refreshed == []
