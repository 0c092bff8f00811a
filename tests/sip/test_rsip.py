"""
RSIP: registrations kept at other servers.  The descriptions are checked,
the registration machine answers digest challenges, refreshes, backs off
and unregisters on a Clock, and requests for its contact are retargeted.
"""

import re

import pytest
from twisted.internet.task import Clock

from communigate.auth.credentials import digest_response
from communigate.auth.passwords import digest_ha1
from communigate.sip.message import Headers, Response
from communigate.sip.rsip import (
    FIRST_RETRY,
    Registration,
    RSIPError,
    RSIPService,
    answer_challenge,
    contact_user,
    parse_entries,
    parse_period,
)
from communigate.sip.uri import parse_uri
from communigate.storage import MemoryStore

ACCOUNT = "alice@example.com"
GOOD = {"p1": {"domain": "provider.test", "fromName": "15551234", "authName": "acct77", "password": "s3cret",
               "period": "10m"}}


def test_descriptions_are_read_with_their_defaults():
    (entry,) = parse_entries(ACCOUNT, GOOD).values()
    assert (entry.domain, entry.from_name, entry.auth_name, entry.period) == ("provider.test", "15551234", "acct77", 600)
    assert entry.target_name == ACCOUNT
    (plain,) = parse_entries(ACCOUNT, {"x": {"domain": "Provider.Test:5070"}}).values()
    assert (plain.domain, plain.from_name, plain.auth_name, plain.period) == ("provider.test:5070", "alice", "alice", 3600)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"x": {"domain": ""}}, "domain"),
        ({"x": {"domain": "a b"}}, "domain"),
        ({"x": {"domain": "p.test", "period": "5"}}, "outside"),
        ({"x": {"domain": "p.test", "period": "soon"}}, "period"),
        ({"x": {"domain": "p.test", "colour": "red"}}, "unknown keys"),
        ({"x": {"domain": "p.test", "fromName": "a b"}}, "fromName"),
        ({"x": "p.test"}, "dictionary"),
        (("p.test",), "dictionary"),
    ],
)
def test_bad_descriptions_are_refused_saying_why(data, words):
    with pytest.raises(RSIPError, match=words):
        parse_entries(ACCOUNT, data)


def test_periods():
    assert [parse_period(v) for v in ("60", "10m", "1h", "1d", 90)] == [60, 600, 3600, 86400, 90]


def response(status, *headers, reason="X"):
    return Response(status, reason, Headers(list(headers)))


def test_a_challenge_is_answered_as_rfc_7616_computes():
    (entry,) = parse_entries(ACCOUNT, GOOD).values()
    challenge = response(401, ("WWW-Authenticate", 'Digest realm="provider.test", nonce="abc", qop="auth", opaque="op"'))
    name, value = answer_challenge(challenge, entry, "REGISTER", "sip:provider.test")
    assert name == "Authorization"
    fields = dict(re.findall(r'(\w+)="?([^",]+)"?', value))
    expected = digest_response(
        ha1=digest_ha1("MD5", "acct77", "provider.test", "s3cret"), nonce="abc", method="REGISTER",
        uri="sip:provider.test", qop="auth", nc="00000001", cnonce=fields["cnonce"],
    )
    assert fields["response"] == expected and fields["username"] == "acct77" and fields["opaque"] == "op"
    proxy = response(407, ("Proxy-Authenticate", 'Digest realm="r", nonce="n", algorithm=SHA-256'))
    assert answer_challenge(proxy, entry, "REGISTER", "sip:provider.test")[0] == "Proxy-Authorization"
    assert answer_challenge(response(401, ("WWW-Authenticate", "Basic realm=x")), entry, "REGISTER", "u") is None


class Sender:
    """Keeps each REGISTER the machine sends, with its callbacks."""

    def __init__(self):
        self.sent = []

    def send_register(self, domain, user, build, on_response, on_failure):
        request = build(f"<sip:{user}@192.0.2.1:5060>", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx")
        self.sent.append((request, on_response, on_failure))

    def last(self):
        return self.sent[-1]


def registration():
    clock, sender = Clock(), Sender()
    (entry,) = parse_entries(ACCOUNT, GOOD).values()
    machine = Registration(sender, clock, ACCOUNT, entry)
    machine.start()
    clock.advance(0)
    return clock, sender, machine


def ok(machine, expires):
    return response(
        200, ("Contact", f"<sip:{machine.contact_user}@192.0.2.1:5060>;expires={expires}"), ("Expires", "3600")
    )


def test_register_challenge_answer_registered_and_refreshed():
    clock, sender, machine = registration()
    first, answered, _ = sender.last()
    assert first.headers.get("Expires") == "600" and "Authorization" not in first.headers
    assert first.headers.get("To") == "<sip:15551234@provider.test>"
    answered(response(401, ("WWW-Authenticate", 'Digest realm="provider.test", nonce="n1"')))
    second, answered, _ = sender.last()
    assert "Authorization" in second.headers and second.cseq().number == first.cseq().number + 1
    assert second.call_id == first.call_id
    answered(ok(machine, 120))
    assert machine.state == "registered" and machine.status()["expiresIn"] == "120"
    clock.advance(107)
    assert len(sender.sent) == 2
    clock.advance(1)
    assert len(sender.sent) == 3  # refreshed at 90 % of what was granted


def test_a_refused_registration_backs_off_and_tries_again():
    clock, sender, machine = registration()
    _, answered, _ = sender.last()
    answered(response(401, ("WWW-Authenticate", 'Digest realm="p", nonce="n1"')))
    _, answered, _ = sender.last()
    answered(response(401, ("WWW-Authenticate", 'Digest realm="p", nonce="n2"'), reason="Unauthorized"))
    assert machine.state == "failed" and machine.last_status == "401 Unauthorized"
    count = len(sender.sent)
    clock.advance(FIRST_RETRY)
    assert len(sender.sent) == count + 1
    sender.last()[2](408, "Request Timeout")
    clock.advance(FIRST_RETRY)
    assert len(sender.sent) == count + 1  # the second wait is twice as long
    clock.advance(FIRST_RETRY)
    assert len(sender.sent) == count + 2


def test_interval_too_brief_is_retried_with_the_minimum():
    clock, sender, machine = registration()
    _, answered, _ = sender.last()
    answered(response(423, ("Min-Expires", "900")))
    request, answered, _ = sender.last()
    assert request.headers.get("Expires") == "900"
    answered(ok(machine, 900))
    assert machine.state == "registered"


def test_stopping_unregisters():
    clock, sender, machine = registration()
    sender.last()[1](ok(machine, 600))
    machine.stop()
    request, answered, _ = sender.last()
    assert request.headers.get("Expires") == "0" and machine.state == "stopped"
    answered(response(200))
    assert machine.state == "stopped" and clock.getDelayedCalls() == []


def test_the_service_starts_allowed_accounts_and_retargets_their_contact():
    clock, sender = Clock(), Sender()
    allowed = {ACCOUNT}
    service = RSIPService(MemoryStore(), clock, sender, lambda account: account in allowed)
    service.set(ACCOUNT, {"p1": dict(GOOD["p1"], targetName="sales")})
    clock.advance(0)
    assert len(sender.sent) == 1
    user = contact_user(ACCOUNT, "p1")
    assert service.target_for(parse_uri(f"sip:{user}@192.0.2.1")) == "sales@example.com"
    assert service.target_for(parse_uri("sip:rsip-0000@192.0.2.1")) is None
    assert service.target_for(parse_uri("sip:bob@example.com")) is None
    assert [s["state"] for s in service.statuses(ACCOUNT)] == ["registering"]
    with pytest.raises(RSIPError, match="RSIPAllowed"):
        service.set("bob@example.com", GOOD)
    service.set(ACCOUNT, {})
    assert service.statuses() == [] and service.records.load(ACCOUNT) == {}
    assert service.target_for(parse_uri(f"sip:{user}@192.0.2.1")) is None


def test_an_unchanged_entry_keeps_its_registration_across_reconfiguration():
    clock, sender = Clock(), Sender()
    service = RSIPService(MemoryStore(), clock, sender, lambda account: True)
    service.set(ACCOUNT, GOOD)
    clock.advance(0)
    service.set(ACCOUNT, dict(GOOD, p2={"domain": "other.test"}))
    clock.advance(0)
    assert [request.uri.host for request, _, _ in sender.sent] == ["provider.test", "other.test"]


def test_the_sip_service_forgets_a_deleted_accounts_phones_and_registrations_out(sip):
    sip.register("alice", ("127.0.0.1", 5070))
    assert sip.service.bindings.lookup("alice@example.com")
    sip.service.rsip.records.save("alice@example.com", {"p1": GOOD["p1"]})
    sip.core.directory.delete_account("alice@example.com")
    assert sip.service.bindings.lookup("alice@example.com") == []
    assert sip.service.rsip.records.load("alice@example.com") == {}
