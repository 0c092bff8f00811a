"""
Tests for communigate.sip.registrar: REGISTER requests parsed from bytes,
answered by a Registrar over a Directory on a MemoryStore with real digest
authentication through the portal, on a Clock.  The RFC 4475 registrar
cases are read byte-exact from ../shared/rfc4475-torture/; where auth is
not their point they meet a verifier that accepts.
"""

import functools
import re
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from communigate.auth.credentials import digest_ha1, digest_response
from communigate.auth.passwords import derive_secrets
from communigate.auth.realm import build_portal
from communigate.directory.directory import Directory
from communigate.sip.bindings import Bindings
from communigate.sip.digest import DigestVerifier, NonceManager, Outcome, OutcomeKind
from communigate.sip.guard import AuthFailureGuard
from communigate.sip.headers import parse_contact_list
from communigate.sip.message import parse_message
from communigate.sip.registrar import Registrar, signal_allowed
from communigate.storage import MemoryStore

SECRET = b"0123456789abcdef0123456789abcdef"
FAST_DERIVE = functools.partial(derive_secrets, iterations=1)
SOURCE = ("udp", "203.0.113.7", 40001)
LOCAL = ("udp", "192.0.2.1", 5060)
PHONE = "<sip:alice@10.0.0.5:5060>"
TORTURE = Path(__file__).resolve().parents[3] / "shared" / "rfc4475-torture"
if not TORTURE.exists():  # pragma: no cover - the checkout lives elsewhere
    TORTURE = Path("/work/shared/rfc4475-torture")


def result_of(deferred):
    results = []
    deferred.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]


def register_message(
    aor="alice@example.com",
    contacts=(PHONE,),
    *,
    expires=None,
    call_id="call-1@10.0.0.5",
    cseq=1,
    authorization=(),
    extra=(),
    uri="sip:example.com",
):
    lines = [
        f"REGISTER {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK" + f"{cseq}x{call_id[:6]}",
        "Max-Forwards: 70",
        f"From: <sip:{aor}>;tag=f{cseq}",
        f"To: <sip:{aor}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
    ]
    lines += [f"Contact: {contact}" for contact in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += [f"Authorization: {value}" for value in authorization]
    lines += list(extra)
    return parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode("utf-8"))


def challenges(response):
    return response.headers.raw_values("WWW-Authenticate")


def nonce_of(response):
    return re.search(r'nonce="([0-9a-f]+)"', challenges(response)[0]).group(1)


def answer(nonce, *, username="alice", password="wonderland", realm="example.com", algorithm="SHA-256", nc=1,
           uri="sip:example.com"):
    ha1 = digest_ha1(algorithm, username, realm, password)
    count = f"{nc:08x}"
    response = digest_response(
        ha1=ha1, nonce=nonce, method="REGISTER", uri=uri, algorithm=algorithm, qop="auth", nc=count, cnonce="c0ffee"
    )
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, qop=auth, nc={count}, cnonce="c0ffee"'
    )


class World:
    """
    A directory, bindings, verifier, guard and registrar on one Clock, and
    a phone's side of the digest exchange.
    """

    def __init__(self, directory=None, verifier=None):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryStore()
        self.directory = directory or Directory(self.store, derive=FAST_DERIVE)
        directory = self.directory
        directory.create_domain("example.com")
        directory.set_domain_aliases("example.com", ["example.org"])
        directory.create_account("alice@example.com", {"Password": "wonderland"})
        directory.set_account_aliases("alice@example.com", ["al"])
        directory.create_account("bob@example.com", {"Password": "builder"})
        directory.create_account("carol@example.com", {"Password": "x", "AccessModes": ["26", "Mail", "XIMSS"]})
        directory.create_account("dave@example.com", {"Password": "y", "MaxSignalContacts": "2"})
        for name in ("watson", "user", "j.user", "nulls"):
            directory.create_account(f"{name}@example.com", {"Password": "pw"})
        self.bindings = Bindings(
            self.store,
            self.clock,
            max_per_aor_setting=lambda aor: directory.account_effective_settings(aor)["MaxSignalContacts"],
        )
        self.nonces = NonceManager(self.clock, SECRET, lifetime=300.0)
        self.verifier = verifier or DigestVerifier(build_portal(directory), self.nonces)
        self.guard = AuthFailureGuard(self.clock, max_failures=3, window=60.0, cooloff=300.0)
        self.registrar = Registrar(
            directory, self.bindings, self.verifier, guard=self.guard, clock=self.clock, min_expires=60
        )

    def send(self, request, source=SOURCE, local=LOCAL, nat=False):
        return result_of(self.registrar.handle(request, source, local, nat))

    def register(self, aor="alice@example.com", *, username="alice", password="wonderland", algorithm="SHA-256",
                 cseq=1, source=SOURCE, nat=False, **kwargs):
        """
        REGISTER, answer the 401 and REGISTER again (CSeq + 1), as a phone
        does; returns the second response.
        """
        first = self.send(register_message(aor, cseq=cseq, **kwargs), source=source)
        assert first.status == 401, (first.status, first.reason)
        header = answer(nonce_of(first), username=username, password=password, algorithm=algorithm,
                        realm=re.search(r'realm="([^"]+)"', challenges(first)[0]).group(1))
        second = register_message(aor, cseq=cseq + 1, authorization=[header], **kwargs)
        return self.send(second, source=source, nat=nat)


@pytest.fixture
def world():
    return World()


def contacts_of(response):
    found = []
    for line in response.headers.raw_values("Contact"):
        found.extend(parse_contact_list(line))
    return found


# -- digest authentication -------------------------------------------------------------


def test_a_first_register_is_challenged_with_sha256_then_md5(world):
    response = world.send(register_message())
    assert response.status == 401
    first, second = challenges(response)
    assert "algorithm=SHA-256" in first and 'qop="auth"' in first and 'realm="example.com"' in first
    assert "algorithm=MD5" in second
    assert response.to().tag is not None
    assert world.bindings.lookup("alice@example.com") == []


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_an_answered_challenge_registers_the_contact_with_the_default_expiry(world, algorithm):
    response = world.register(algorithm=algorithm)
    assert response.status == 200
    (contact,) = contacts_of(response)
    assert str(contact.uri) == "sip:alice@10.0.0.5:5060"
    assert contact.expires == 3600
    assert response.headers.get("Date").endswith(" GMT")
    (binding,) = world.bindings.lookup("alice@example.com")
    assert binding.contact == "sip:alice@10.0.0.5:5060"
    assert binding.expires_at == world.clock.seconds() + 3600


def test_a_wrong_password_is_forbidden_and_the_guard_blocks_the_source_after_three(world):
    for attempt in range(3):
        first = world.send(register_message(cseq=2 * attempt + 1))
        wrong = answer(nonce_of(first), password="guess")
        response = world.send(register_message(cseq=2 * attempt + 2, authorization=[wrong]))
        assert (response.status, response.reason) == (403, "Authentication failed")
    assert world.guard.blocked(SOURCE[1])
    blocked = world.send(register_message(cseq=10))
    assert (blocked.status, blocked.reason) == (403, "Too many failed authentications")
    assert world.registrar.counts["blocked"] == 1
    assert world.send(register_message(cseq=11), source=("udp", "198.51.100.1", 5060)).status == 401
    world.clock.advance(301)
    assert world.register(cseq=12).status == 200


def test_an_unknown_user_gets_the_same_refusal_as_a_wrong_password(world):
    first = world.send(register_message("nobody@example.com"))
    assert first.status == 401
    response = world.send(
        register_message("nobody@example.com", cseq=2, authorization=[answer(nonce_of(first), username="nobody")])
    )
    assert (response.status, response.reason) == (403, "Authentication failed")


def test_an_answer_with_an_expired_nonce_gets_401_stale(world):
    first = world.send(register_message())
    world.clock.advance(301)
    response = world.send(register_message(cseq=2, authorization=[answer(nonce_of(first))]))
    assert response.status == 401
    assert all("stale=true" in value for value in challenges(response))
    assert world.registrar.counts["stale"] == 1
    assert not world.guard.tracked_count()


def test_a_malformed_authorization_is_a_bad_request_with_the_reason(world):
    response = world.send(register_message(authorization=['Digest username="alice", realm="example.com"']))
    assert response.status == 400
    assert "nonce" in response.reason


def test_of_several_authorization_headers_the_one_for_our_realm_counts(world):
    first = world.send(register_message())
    foreign = answer(nonce_of(first), realm="elsewhere.example")
    ours = answer(nonce_of(first))
    response = world.send(register_message(cseq=2, authorization=[foreign, ours]))
    assert response.status == 200


def test_another_accounts_credentials_cannot_register_an_address(world):
    response = world.register("bob@example.com", username="alice", password="wonderland")
    assert (response.status, response.reason) == (403, "Not allowed to register this address")
    assert world.bindings.lookup("bob@example.com") == []


def test_an_authenticated_register_for_an_unknown_address_is_not_found(world):
    response = world.register("ghost@example.com")
    assert response.status == 404


def test_a_register_for_a_foreign_domain_is_forbidden(world):
    response = world.send(register_message("alice@elsewhere.example"))
    assert (response.status, response.reason) == (403, "Not a local domain")


def test_an_account_alias_and_a_domain_alias_register_the_account(world):
    assert world.register("al@example.com").status == 200
    assert world.register("alice@example.org", contacts=["<sip:alice@10.0.0.6>"], call_id="other").status == 200
    found = {binding.contact for binding in world.bindings.lookup("alice@example.com")}
    assert found == {"sip:alice@10.0.0.5:5060", "sip:alice@10.0.0.6"}


def test_an_account_without_signal_access_is_forbidden(world):
    response = world.register("carol@example.com", username="carol", password="x")
    assert (response.status, response.reason) == (403, "Signal access is not enabled for this account")


def test_access_modes_all_or_an_array_with_signal_allow_registration():
    assert signal_allowed({"AccessModes": "All"})
    assert signal_allowed({"AccessModes": ["26", "Mail", "Signal"]})
    assert not signal_allowed({"AccessModes": "None"})
    assert not signal_allowed({"AccessModes": ["Mail"]})


def test_the_max_signal_contacts_cap_refuses_a_third_contact(world):
    contacts = ["<sip:dave@10.0.0.1>", "<sip:dave@10.0.0.2>"]
    assert world.register("dave@example.com", username="dave", password="y", contacts=contacts).status == 200
    response = world.register(
        "dave@example.com", username="dave", password="y", contacts=["<sip:dave@10.0.0.3>"], call_id="x", cseq=5
    )
    assert response.status == 403
    assert "MaxSignalContacts" in response.reason
    assert len(world.bindings.lookup("dave@example.com")) == 2


def test_a_require_of_an_unknown_extension_gets_420_with_unsupported(world):
    response = world.send(register_message(extra=["Require: path, foo"]))
    assert response.status == 420
    assert response.headers.get("Unsupported") == "foo"


# -- contacts and expiry ---------------------------------------------------------------


def test_a_refresh_extends_the_binding_without_adding_one(world):
    world.register()
    world.clock.advance(1000)
    response = world.register(cseq=3, expires=600)
    (contact,) = contacts_of(response)
    assert contact.expires == 600
    assert len(world.bindings.lookup("alice@example.com")) == 1


def test_expires_zero_removes_the_contact(world):
    world.register(contacts=[PHONE, "<sip:alice@10.0.0.9>"])
    response = world.register(cseq=3, contacts=[PHONE + ";expires=0"])
    assert [str(c.uri) for c in contacts_of(response)] == ["sip:alice@10.0.0.9"]


def test_star_with_expires_zero_removes_every_binding(world):
    world.register(contacts=[PHONE, "<sip:alice@10.0.0.9>"])
    response = world.register(cseq=3, contacts=["*"], expires=0)
    assert response.status == 200
    assert contacts_of(response) == []
    assert world.bindings.lookup("alice@example.com") == []


@pytest.mark.parametrize(
    "contacts, expires",
    [(["*"], None), (["*"], 60), (["*", PHONE], 0)],
    ids=["no-expires", "non-zero-expires", "with-another-contact"],
)
def test_star_needs_expires_zero_and_must_stand_alone(world, contacts, expires):
    world.register()
    response = world.register(cseq=3, contacts=contacts, expires=expires)
    assert response.status == 400
    assert len(world.bindings.lookup("alice@example.com")) == 1


def test_an_expiry_below_the_minimum_is_interval_too_brief(world):
    response = world.register(expires=30)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"
    assert world.bindings.lookup("alice@example.com") == []


def test_expiries_above_the_maximum_are_clamped_and_the_contact_parameter_wins(world):
    response = world.register(contacts=[PHONE + ";expires=99999", "<sip:alice@10.0.0.9>"], expires=120)
    assert sorted(c.expires for c in contacts_of(response)) == [120, 3600]


def test_a_register_without_contacts_lists_the_bindings_with_what_is_left(world):
    world.register(contacts=[PHONE + ";q=0.5", "<sip:alice@10.0.0.9>"])
    world.clock.advance(100)
    response = world.register(cseq=3, contacts=[])
    assert response.status == 200
    assert [(str(c.uri), c.q, c.expires) for c in contacts_of(response)] == [
        ("sip:alice@10.0.0.9", None, 3500),
        ("sip:alice@10.0.0.5:5060", 0.5, 3500),
    ]
    assert world.registrar.counts["queried"] == 1


@pytest.mark.parametrize(
    "contact, reason",
    [
        (PHONE + ";q=2", "Bad q value in Contact"),
        (PHONE + ";expires=soon", "Bad expires parameter in Contact"),
        (PHONE + ";+sip.instance=\"<urn:uuid:1>\";reg-id=0", "Bad reg-id in Contact"),
        ("<tel:+15551234>", "Contact must be a SIP or SIPS URI"),
        ("<sip:alice@10.0.0.5", "Malformed Contact"),
    ],
)
def test_bad_contacts_are_bad_requests_naming_the_fault(world, contact, reason):
    response = world.register(contacts=[contact])
    assert (response.status, response.reason) == (400, reason)


def test_a_malformed_expires_header_is_a_bad_request(world):
    response = world.register(expires="never")
    assert (response.status, response.reason) == (400, "Malformed Expires")


def test_an_out_of_order_cseq_fails_with_500(world):
    world.register(cseq=10)
    response = world.register(cseq=3, expires=600)
    assert response.status == 500
    assert "Out of order" in response.reason


def test_bindings_carry_source_local_nat_path_and_user_agent(world):
    path = "<sip:edge.example.com;lr;ob>"
    response = world.register(nat=True, extra=[f"Path: {path}", "User-Agent: Phone/1.0"])
    assert response.headers.get("Path") == path
    assert response.headers.get("Supported") == "path, outbound"
    (binding,) = world.bindings.lookup("alice@example.com")
    assert (binding.source, binding.local, binding.nat) == (SOURCE, LOCAL, True)
    assert binding.path == (path,)
    assert binding.user_agent == "Phone/1.0"


def test_outbound_contacts_keep_instance_and_reg_id_and_the_200_requires_outbound(world):
    instance = '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'
    contact = f"<sip:alice@10.0.0.5;ob>;+sip.instance={instance};reg-id=1;q=0.7;methods=\"INVITE\""
    response = world.register(contacts=[contact])
    assert response.headers.get("Require") == "outbound"
    (listed,) = contacts_of(response)
    assert listed.parameter("+sip.instance") == instance
    assert listed.parameter("reg-id") == "1"
    assert listed.q == 0.7
    assert listed.parameter("methods") == '"INVITE"'
    (binding,) = world.bindings.lookup("alice@example.com")
    assert (binding.instance, binding.reg_id, binding.params) == (instance, 1, (("methods", '"INVITE"'),))


def test_a_plain_register_does_not_require_outbound(world):
    assert world.register().headers.get("Require") is None


def test_registrations_survive_a_restart_of_the_bindings(world):
    world.register()
    world.clock.advance(600)
    restarted = Bindings(world.store, world.clock)
    assert restarted.load() == 1
    registrar = Registrar(world.directory, restarted, world.verifier, clock=world.clock)
    first = result_of(registrar.handle(register_message(contacts=[], cseq=5), SOURCE, LOCAL, False))
    query = register_message(contacts=[], cseq=6, authorization=[answer(nonce_of(first))])
    (contact,) = contacts_of(result_of(registrar.handle(query, SOURCE, LOCAL, False)))
    assert (str(contact.uri), contact.expires) == ("sip:alice@10.0.0.5:5060", 3000)


def test_a_store_failure_is_answered_500_not_raised(world):
    def broken(aor, changes):
        raise OSError("disk full")

    world.bindings.update = broken
    response = world.register()
    assert response.status == 500
    assert world.registrar.counts["failed"] == 1


def test_a_verifier_failure_is_answered_500(world):
    class Broken:
        def verify(self, *args, **kwargs):
            return defer.fail(RuntimeError("store gone"))

    registrar = Registrar(world.directory, world.bindings, Broken(), clock=world.clock)
    response = result_of(registrar.handle(register_message(), SOURCE, LOCAL, False))
    assert response.status == 500


def test_expiry_settings_out_of_order_are_refused_by_name(world):
    with pytest.raises(ValueError, match="min_expires <= default_expires <= max_expires"):
        Registrar(world.directory, world.bindings, world.verifier, clock=world.clock, min_expires=7200)
    with pytest.raises(ValueError, match="max_expires must be a positive"):
        Registrar(world.directory, world.bindings, world.verifier, clock=world.clock, max_expires=0)


# -- RFC 4475 --------------------------------------------------------------------------


class Accepting:
    """
    A verifier that takes every request as coming from C{account}.
    """

    def __init__(self, account):
        self.account = account

    def verify(self, header, method, uri, body, realm, source=None):
        return defer.succeed(Outcome(OutcomeKind.ACCEPTED, account=self.account))


class OddNames(Directory):
    """
    The directory cannot hold C{null-%00-null} as a name; this one
    resolves it to an account, as an external directory might.
    """

    def resolve_account(self, address):
        if address == "null-\x00-null@example.com":
            return "nulls@example.com"
        return super().resolve_account(address)


def torture(name):
    return parse_message((TORTURE / name).read_bytes())


def test_torture_escnull_binds_two_distinct_contacts_with_escaped_nuls():
    world = World(directory=OddNames(MemoryStore(), derive=FAST_DERIVE), verifier=Accepting("nulls@example.com"))
    response = world.send(torture("escnull.dat"))
    assert response.status == 200
    found = sorted(binding.contact for binding in world.bindings.lookup("nulls@example.com"))
    assert found == ["sip:%00%00@host5.example.com", "sip:%00@host5.example.com"]
    assert sorted(c.uri.user for c in contacts_of(response)) == ["\x00", "\x00\x00"]


def test_torture_cparam01_an_addr_spec_parameter_belongs_to_the_header():
    world = World(verifier=Accepting("watson@example.com"))
    assert world.send(torture("cparam01.dat")).status == 200
    (binding,) = world.bindings.lookup("watson@example.com")
    assert binding.contact == "sip:+19725552222@gw1.example.net"
    assert binding.params == (("unknownparam", None),)


def test_torture_cparam02_a_parameter_inside_brackets_stays_in_the_uri():
    world = World(verifier=Accepting("watson@example.com"))
    assert world.send(torture("cparam02.dat")).status == 200
    (binding,) = world.bindings.lookup("watson@example.com")
    assert binding.contact == "sip:+19725552222@gw1.example.net;unknownparam"
    assert binding.params == ()


@pytest.mark.parametrize("name", ["regescrt.dat", "regbadct.dat"])
def test_torture_an_escaped_route_header_in_the_contact_uri_is_kept(name):
    world = World(verifier=Accepting("user@example.com"))
    response = world.send(torture(name))
    assert response.status == 200
    (binding,) = world.bindings.lookup("user@example.com")
    assert binding.contact == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    (listed,) = contacts_of(response)
    assert listed.uri.headers == (("Route", "<sip:sip.example.com>"),)


def test_torture_regaut01_an_unknown_authorization_scheme_gets_a_digest_challenge(world):
    response = world.send(torture("regaut01.dat"), source=("tcp", "192.0.2.253", 5060))
    assert response.status == 401
    assert challenges(response)[0].startswith("Digest ")
    assert world.bindings.lookup("j.user@example.com") == []


def test_torture_unksm2_a_non_sip_to_uri_is_a_bad_request(world):
    response = world.send(torture("unksm2.dat"))
    assert (response.status, response.reason) == (400, "To must be a SIP or SIPS URI")


def test_the_date_of_each_200_is_the_clock_s_second(world):
    from email.utils import formatdate

    world.clock.advance(1_700_000_000.2 - world.clock.seconds())
    first = world.register(cseq=10).headers.get("Date")
    world.clock.advance(0.7)
    assert world.register(cseq=20).headers.get("Date") == first == formatdate(1_700_000_000, usegmt=True)
    world.clock.advance(0.1)
    assert world.register(cseq=30).headers.get("Date") == formatdate(1_700_000_001, usegmt=True)
