"""
Tests for the Router: the order of resolution of its module docstring, over
a real directory on a MemoryStore and the stored Router configuration, with
ENUM through a fake lookup whose Deferreds the tests fire.
"""

import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from communigate.directory import Directory
from communigate.interfaces import IRouter
from communigate.routing.configuration import RouterConfiguration
from communigate.routing.route import AddressKind, Module, Route, RoutingError, RoutingLoop
from communigate.routing.router import MAX_PASSES, Router
from communigate.routing.table import RouterTableError
from communigate.storage import MemoryStore

SIGNAL, MAIL, ACCESS = AddressKind.SIGNAL, AddressKind.MAIL, AddressKind.ACCESS

E164_PLAN = {
    "E164Conversion": "YES",
    "E164CountryCode": "1",
    "E164AreaCode": "555",
    "E164NationalPrefix": "0",
    "E164InternationalPrefix": "00",
    "E164LocalNumberLength": "7",
}

SLIDE_TABLE = "\n".join([
    "<+(6-15d)*> = +*@telnum",
    "<00(6-15d)*> = +*@telnum",
    "S:<+36*@telnum> = 0*@pstn",
    "S:<+*@telnum> = 00*@pstn",
    "S:<*@pstn> = gatewaycaller{*}#postmaster",
])


class FakeEnum:
    """
    An ENUM lookup whose answers the test gives: each call records the
    number and returns a Deferred the test fires.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, number):
        d = defer.Deferred()
        self.pending.append((number, d))
        return d

    @property
    def asked(self):
        return [number for number, _ in self.pending]

    def answer(self, uri, index=-1):
        self.pending[index][1].callback(uri)


class World:
    """
    A directory with two domains and a Router over it:

      - example.com (main): postmaster, alice (+15553837461), bob (alias
        201), pbx, forwarder fwd -> alice@example.com, group sales;
      - other.com (alias other.org): carol, pbx.
    """

    def __init__(self, enum=None):
        self.store = MemoryStore()
        self.directory = Directory(self.store)
        self.configuration = RouterConfiguration(self.store)
        self.enum = enum
        self.router = Router(self.directory, self.configuration, enum)
        d = self.directory
        d.create_domain("example.com")
        d.create_domain("other.com")
        d.set_domain_aliases("other.com", ["other.org"])
        for account in ("postmaster", "alice", "bob", "pbx", "carol@other.com",
                        "pbx@other.com"):
            d.create_account(account)
        d.set_account_telnums("alice", ["+15553837461"])
        d.set_account_aliases("bob", ["201"])
        d.create_forwarder("fwd", "alice@example.com")
        d.create_group("sales", {"Members": ["alice", "bob"]})

    def table(self, *lines):
        self.configuration.set_table("\n".join(lines))

    def plan(self, **changes):
        self.configuration.set_settings({**E164_PLAN, **changes})

    def domain_settings(self, domain="example.com", **values):
        self.directory.change_domain_settings(domain, values, replace=False)

    def route(self, address, kind=ACCESS, on_behalf_of=None):
        """
        The Route of a routing that finished; its exception if it failed.
        """
        d = self.router.route(address, kind, on_behalf_of)
        results = []
        d.addBoth(results.append)
        assert results, f"routing {address!r} has not finished"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def pending(self, address, kind=SIGNAL):
        """
        Start a routing that must wait; a list that gets its outcome.
        """
        results = []
        self.router.route(address, kind).addBoth(results.append)
        assert results == [], f"routing {address!r} did not wait: {results}"
        return results


def local(account):
    return Route(Module.LOCAL, account)


NULL = Route(Module.SYSTEM, "NULL")


@pytest.fixture
def world():
    return World()


@pytest.fixture
def enum_world():
    return World(FakeEnum())


def test_router_provides_irouter(world):
    assert verifyObject(IRouter, world.router)


# -- 1. applications ------------------------------------------------------------------


def test_an_application_with_parameters_runs_on_behalf_of_its_account(world):
    assert world.route("gatewaycaller{a,b}#alice", SIGNAL) == Route(
        Module.PBX, "alice@example.com", "gatewaycaller{a,b}"
    )


def test_an_application_account_may_name_its_domain_or_an_alias(world):
    assert world.route("ivrmenu{main}#carol@other.org") == Route(
        Module.PBX, "carol@other.com", "ivrmenu{main}"
    )
    assert world.route("voicemail#201") == Route(Module.PBX, "bob@example.com", "voicemail")


def test_a_hash_program_runs_on_behalf_of_the_caller(world):
    assert world.route("#echo", SIGNAL, on_behalf_of="alice@example.com") == Route(
        Module.PBX, "alice@example.com", "echo"
    )


def test_a_hash_program_without_a_caller_is_an_error(world):
    with pytest.raises(RoutingError, match="names no account to run 'echo'"):
        world.route("#echo", SIGNAL)


@pytest.mark.parametrize("address", ["app#ghost", "app{x}#alice@other.com"])
def test_an_application_for_an_unknown_account_is_an_error(world, address):
    with pytest.raises(RoutingError, match="unknown account"):
        world.route(address)


def test_applications_are_not_matched_against_the_router_table(world):
    world.table("<*@*> = NULL", "<*> = NULL")
    assert world.route("app#alice").module == Module.PBX


# -- 2. relays ------------------------------------------------------------------------


def test_a_percent_path_through_a_local_relay_is_unwrapped(world):
    assert world.route("alice%example.com@other.com") == local("alice@example.com")
    assert world.route("bob%example.net@example.com", SIGNAL) == Route(
        Module.SIP, "example.net", "sip:bob@example.net"
    )


def test_a_percent_path_through_a_remote_relay_goes_to_the_relay(world):
    assert world.route("bob%example.net@relay.example", MAIL) == Route(
        Module.SMTP, "relay.example", "bob%example.net@relay.example"
    )


# -- 3. telnum ------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["+15553837461@telnum", "tel:+1-555-383-7461"])
def test_a_number_held_by_an_account_reaches_it(world, address):
    for kind in AddressKind:
        assert world.route(address, kind) == local("alice@example.com")


def test_the_holder_of_a_number_comes_before_enum_and_the_table(enum_world):
    enum_world.table("<+*@telnum> = NULL")
    assert enum_world.route("+15553837461@telnum", SIGNAL) == local("alice@example.com")
    assert enum_world.enum.asked == []


def test_an_unassigned_number_waits_for_enum_and_routes_its_answer(enum_world):
    results = enum_world.pending("+4930123456@telnum")
    assert enum_world.enum.asked == ["+4930123456"]
    enum_world.enum.answer("sip:info@example.net")
    assert results == [Route(Module.SIP, "example.net", "sip:info@example.net")]


def test_an_enum_answer_is_routed_on_like_any_address(enum_world):
    results = enum_world.pending("+4930123456@telnum")
    enum_world.enum.answer("sip:201@example.com")
    assert results == [local("bob@example.com")]


def test_no_enum_answer_falls_to_the_tables_telnum_records(enum_world):
    enum_world.table(SLIDE_TABLE)
    results = enum_world.pending("+4930123456@telnum")
    enum_world.enum.answer(None)
    assert results == [Route(Module.PBX, "postmaster@example.com", "gatewaycaller{004930123456}")]


def test_an_unknown_number_without_a_table_record_is_an_error(enum_world):
    results = enum_world.pending("+4930123456@telnum")
    enum_world.enum.answer(None)
    assert isinstance(results[0], Failure)
    assert results[0].check(RoutingError)
    assert str(results[0].value) == "unknown telephone number +4930123456"


def test_an_enum_answer_naming_the_same_number_is_not_looked_up_again(enum_world):
    enum_world.table("S:<+*@telnum> = 00*@pstn")
    results = enum_world.pending("+4930123456@telnum")
    enum_world.enum.answer("tel:+49-30-123456")
    assert enum_world.enum.asked == ["+4930123456"]
    assert results == [Route(Module.SIP, "pstn", "sip:004930123456@pstn")]


@pytest.mark.parametrize("kind", [MAIL, ACCESS])
def test_enum_is_asked_only_for_signals(enum_world, kind):
    enum_world.table("<+*@telnum> = +*@pstn.example")
    assert enum_world.route("+4930123456@telnum", kind) == Route(
        Module.SMTP, "pstn.example", "+4930123456@pstn.example"
    )
    assert enum_world.enum.asked == []


def test_without_enum_an_unassigned_number_goes_straight_to_the_table(world):
    world.table(SLIDE_TABLE)
    assert world.route("+4930123456@telnum", SIGNAL) == Route(
        Module.PBX, "postmaster@example.com", "gatewaycaller{004930123456}"
    )


@pytest.mark.parametrize("number", ["5551234", "+12345", "foo", "+0123456789"])
def test_enum_is_asked_only_for_e164_numbers(enum_world, number):
    with pytest.raises(RoutingError, match=re.escape(f"unknown telephone number {number}")):
        enum_world.route(f"{number}@telnum", SIGNAL)
    assert enum_world.enum.asked == []


def test_a_failed_enum_lookup_routes_on_without_it_and_is_logged(enum_world):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        enum_world.table(SLIDE_TABLE)
        results = enum_world.pending("+4930123456@telnum")
        enum_world.enum.pending[0][1].errback(ValueError("resolver broke"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert results == [Route(Module.PBX, "postmaster@example.com", "gatewaycaller{004930123456}")]
    failures = [e for e in events if "log_failure" in e]
    assert [e["number"] for e in failures] == ["+4930123456"]
    assert failures[0]["log_failure"].check(ValueError)


def test_an_enum_lookup_raising_at_once_also_routes_on():
    def broken(number):
        raise RuntimeError("no resolver")

    world = World(broken)
    world.table("<+*@telnum> = NULL")
    assert world.route("+4930123456@telnum", SIGNAL) == NULL


def test_a_dialled_number_in_telnum_is_converted_to_e164(world):
    with pytest.raises(RoutingError, match="unknown telephone number 3837461"):
        world.route("tel:3837461", SIGNAL)
    world.plan()
    assert world.route("tel:3837461", SIGNAL) == local("alice@example.com")


def test_a_dialled_number_held_as_dialled_is_found_before_conversion(world):
    world.plan()
    world.directory.set_account_telnums("bob", ["3837461"])
    assert world.route("3837461@telnum") == local("bob@example.com")
    assert world.route("3837461@example.com") == local("alice@example.com")


def test_route_now_skips_enum(enum_world):
    enum_world.table(SLIDE_TABLE)
    assert enum_world.router.route_now("+4930123456@telnum", SIGNAL) == Route(
        Module.PBX, "postmaster@example.com", "gatewaycaller{004930123456}"
    )
    assert enum_world.enum.asked == []


def test_route_now_raises_routing_errors(world):
    with pytest.raises(RoutingError, match="unknown user nobody@example.com"):
        world.router.route_now("nobody")


# -- 4. the Router table --------------------------------------------------------------


def test_a_table_record_shadows_an_account(world):
    world.table("<alice> = bob")
    assert world.route("alice") == local("bob@example.com")
    assert world.route("alice@example.com", SIGNAL) == local("bob@example.com")


def test_the_first_matching_record_wins(world):
    world.table("<x*> = alice", "<xy*> = bob")
    assert world.route("xyz") == local("alice@example.com")


def test_a_whole_address_record_applies_to_remote_domains(world):
    world.table("<*@old.example> = *@example.net")
    assert world.route("joe@old.example", MAIL) == Route(
        Module.SMTP, "example.net", "joe@example.net"
    )


def test_a_record_without_at_matches_only_local_and_bare_names(world):
    world.table("<info> = alice")
    assert world.route("info") == local("alice@example.com")
    assert world.route("info@example.com") == local("alice@example.com")
    assert world.route("info@other.org") == local("alice@example.com")
    assert world.route("info@example.net", MAIL) == Route(
        Module.SMTP, "example.net", "info@example.net"
    )


def test_a_signal_record_starts_the_gateway_with_the_user_part(world):
    world.table("Signal:<*@pstn> = gatewaycaller{*}#pbx")
    assert world.route("5551234@pstn", SIGNAL) == Route(
        Module.PBX, "pbx@example.com", "gatewaycaller{5551234}"
    )


@pytest.mark.parametrize("kind", [MAIL, ACCESS])
def test_a_signal_record_is_ignored_for_mail_and_access(world, kind):
    world.table("S:<*@pstn> = gatewaycaller{*}#pbx")
    assert world.route("5551234@pstn", kind) == Route(Module.SMTP, "pstn", "5551234@pstn")


@pytest.mark.parametrize("prefix, kind", [
    ("S:", SIGNAL), ("Signal:", SIGNAL), ("M:", MAIL), ("mail:", MAIL),
    ("A:", ACCESS), ("ACCESS:", ACCESS),
])
def test_a_type_prefix_limits_a_record_to_its_kind(world, prefix, kind):
    world.table(f"{prefix}<x> = NULL")
    for other in AddressKind:
        if other is kind:
            assert world.route("x", other) == NULL
        else:
            with pytest.raises(RoutingError, match="unknown user x@example.com"):
                world.route("x", other)


@pytest.mark.parametrize("target", ["NULL", "null"])
def test_a_null_target_discards(world, target):
    world.table(f"<spam*> = {target}")
    assert world.route("spammer", SIGNAL) == NULL


def test_an_error_target_rejects(world):
    world.table("<old> = error")
    with pytest.raises(RoutingError, match="rejected by the Router table"):
        world.route("old")


def test_an_error_target_with_text_rejects_with_the_text(world):
    world.table("<gone*> = error: * moved away")
    with pytest.raises(RoutingError) as caught:
        world.route("gonejoe")
    assert str(caught.value) == "joe moved away"


def test_a_rewritten_address_is_routed_again(world):
    world.table("<boss> = fwd", "<*@legacy.example> = *")
    assert world.route("boss@legacy.example") == local("alice@example.com")


# -- 5. local domains -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["alice", "alice@example.com", "ALICE@Example.COM",
                                     "sip:alice@example.com", "<sip:alice@example.com>"])
def test_an_account_is_local(world, address):
    assert world.route(address, SIGNAL) == local("alice@example.com")


@pytest.mark.parametrize("kind", list(AddressKind))
def test_an_account_alias_routes_to_its_account_for_every_kind(world, kind):
    assert world.route("201@example.com", kind) == local("bob@example.com")


def test_a_domain_alias_reaches_the_real_domain(world):
    assert world.route("carol@other.org", SIGNAL) == local("carol@other.com")


def test_a_forwarder_is_rewritten_and_routed_again(world):
    assert world.route("fwd", SIGNAL) == local("alice@example.com")
    world.directory.create_forwarder("away", "bob@example.net")
    assert world.route("away", SIGNAL) == Route(Module.SIP, "example.net", "sip:bob@example.net")


def test_a_forwarders_bare_target_is_in_the_forwarders_domain(world):
    world.directory.create_forwarder("desk@other.com", "carol")
    assert world.route("desk@other.com") == local("carol@other.com")


def test_a_group_is_a_group_route(world):
    assert world.route("sales", SIGNAL) == Route(Module.GROUP, "sales@example.com")


def test_local_objects_come_before_the_unknown_name_setting(world):
    world.domain_settings(SignalToUnknown="Discarded")
    assert world.route("bob", SIGNAL) == local("bob@example.com")


# -- 5. numbers in local domains ------------------------------------------------------


@pytest.mark.parametrize("dialled", ["3837461", "3837461@example.com", "03837461"])
def test_a_dialled_number_is_converted_to_e164_and_reaches_its_holder(world, dialled):
    world.plan(E164AreaCode="555")
    world.directory.set_account_telnums("bob", ["+13837461"])
    expected = "bob@example.com" if dialled == "03837461" else "alice@example.com"
    assert world.route(dialled, SIGNAL) == local(expected)


def test_national_and_international_prefixes_are_converted(world):
    world.plan()
    world.directory.set_account_telnums("carol@other.com", ["+13637111298"])
    assert world.route("03637111298", SIGNAL) == local("carol@other.com")
    with pytest.raises(RoutingError, match=r"unknown telephone number \+36301234567"):
        world.route("0036301234567", SIGNAL)


def test_a_global_number_in_a_local_domain_goes_to_telnum_without_conversion(world):
    assert world.route("+15553837461@example.com") == local("alice@example.com")


def test_without_conversion_a_dialled_number_is_an_unknown_name(world):
    with pytest.raises(RoutingError, match="unknown user 3837461@example.com"):
        world.route("3837461", SIGNAL)


def test_a_numeric_alias_wins_over_e164_conversion(world):
    world.plan(E164LocalNumberLength="3")
    world.directory.set_account_telnums("carol@other.com", ["+1555201"])
    assert world.route("201", SIGNAL) == local("bob@example.com")
    with pytest.raises(RoutingError, match=r"unknown telephone number \+1555202"):
        world.route("202", SIGNAL)
    world.directory.set_account_telnums("carol@other.com", ["+1555202"])
    assert world.route("202", SIGNAL) == local("carol@other.com")


def test_a_number_that_does_not_convert_is_an_unknown_name(world):
    world.plan()
    with pytest.raises(RoutingError, match="unknown user 12@example.com"):
        world.route("12", SIGNAL)


# -- 5. unknown names -----------------------------------------------------------------

UNKNOWN_SETTINGS = [
    (SIGNAL, "SignalToUnknown", "SignalRerouteAddress"),
    (MAIL, "MailToUnknown", "MailRerouteAddress"),
    (ACCESS, "AccessToUnknown", "AccessRerouteAddress"),
]


@pytest.mark.parametrize("kind, mode, _", UNKNOWN_SETTINGS)
def test_an_unknown_name_is_rejected_by_default_and_when_rejected(world, kind, mode, _):
    with pytest.raises(RoutingError, match="unknown user nobody@example.com"):
        world.route("nobody", kind)
    world.domain_settings(**{mode: "Rejected"})
    with pytest.raises(RoutingError, match="unknown user nobody@example.com"):
        world.route("nobody", kind)


@pytest.mark.parametrize("kind, mode, _", UNKNOWN_SETTINGS)
def test_an_unknown_name_is_discarded_when_discarded(world, kind, mode, _):
    world.domain_settings(**{mode: "Discarded"})
    assert world.route("nobody", kind) == NULL


@pytest.mark.parametrize("kind, mode, address", UNKNOWN_SETTINGS)
def test_an_unknown_name_is_rerouted_with_star_replaced_by_the_name(world, kind, mode, address):
    world.domain_settings(**{mode: "Rerouted", address: "*@example.net"})
    expected = (
        Route(Module.SIP, "example.net", "sip:nobody@example.net")
        if kind is SIGNAL
        else Route(Module.SMTP, "example.net", "nobody@example.net")
    )
    assert world.route("nobody", kind) == expected


@pytest.mark.parametrize("kind, mode, address", UNKNOWN_SETTINGS)
def test_each_kind_reads_only_its_own_unknown_settings(world, kind, mode, address):
    world.domain_settings(**{mode: "Rerouted", address: "pbx"})
    for other in AddressKind:
        if other is kind:
            assert world.route("nobody", other) == local("pbx@example.com")
        else:
            with pytest.raises(RoutingError, match="unknown user"):
                world.route("nobody", other)


def test_rerouting_to_an_application_passes_the_unknown_name(world):
    world.domain_settings(SignalToUnknown="Rerouted", SignalRerouteAddress="voicemail{*}#pbx")
    assert world.route("nobody", SIGNAL) == Route(
        Module.PBX, "pbx@example.com", "voicemail{nobody}"
    )


def test_a_bare_reroute_address_is_in_the_unknown_names_domain(world):
    world.domain_settings("other.com", SignalToUnknown="Rerouted", SignalRerouteAddress="pbx")
    assert world.route("nobody@other.org", SIGNAL) == local("pbx@other.com")


def test_a_null_reroute_address_discards(world):
    world.domain_settings(AccessToUnknown="Rerouted", AccessRerouteAddress="NULL")
    assert world.route("nobody") == NULL


def test_an_error_reroute_address_rejects(world):
    world.domain_settings(AccessToUnknown="Rerouted", AccessRerouteAddress="error")
    with pytest.raises(RoutingError) as caught:
        world.route("nobody")
    assert str(caught.value) == "unknown user nobody@example.com"
    world.domain_settings(AccessToUnknown="Rerouted", AccessRerouteAddress="error: no such user")
    with pytest.raises(RoutingError) as caught:
        world.route("nobody")
    assert str(caught.value) == "no such user"


def test_rerouted_without_a_reroute_address_rejects(world):
    world.domain_settings(SignalToUnknown="Rerouted")
    with pytest.raises(RoutingError, match="unknown user nobody@example.com"):
        world.route("nobody", SIGNAL)


def test_server_domain_defaults_apply_to_unknown_names(world):
    world.directory.change_server_domain_defaults({"MailToUnknown": "Discarded"}, replace=False)
    assert world.route("nobody", MAIL) == NULL


# -- 6. remote ------------------------------------------------------------------------


def test_a_remote_address_is_sip_for_signals_and_smtp_otherwise(world):
    assert world.route("bob@example.net", SIGNAL) == Route(
        Module.SIP, "example.net", "sip:bob@example.net"
    )
    assert world.route("bob@example.net", MAIL) == Route(
        Module.SMTP, "example.net", "bob@example.net"
    )
    assert world.route("bob@example.net", ACCESS) == Route(
        Module.SMTP, "example.net", "bob@example.net"
    )


def test_a_remote_ip_literal_keeps_its_brackets_as_host(world):
    assert world.route("sip:bob@192.0.2.1:5060", SIGNAL) == Route(
        Module.SIP, "[192.0.2.1]", "sip:bob@192.0.2.1"
    )


def test_a_bare_name_without_a_main_domain_is_an_error():
    store = MemoryStore()
    router = Router(Directory(store), RouterConfiguration(store))
    for kind in AddressKind:
        with pytest.raises(RoutingError, match="no main domain"):
            router.route_now("bob", kind)


@pytest.mark.parametrize("text", ["", "a b", "a@@b", "sip:example.net", "mailto:x@y"])
def test_an_unparsable_address_is_a_routing_error_naming_it(world, text):
    with pytest.raises(RoutingError, match="is not a valid address"):
        world.route(text)


# -- loops ----------------------------------------------------------------------------


def test_a_table_loop_is_a_routing_loop(world):
    world.table("<a> = b", "<b> = a")
    with pytest.raises(RoutingLoop, match="routing loop: 'a' was rewritten 10 times"):
        world.route("a")


def test_a_forwarder_loop_is_a_routing_loop(world):
    world.directory.create_forwarder("ping", "pong")
    world.directory.create_forwarder("pong", "ping@example.com")
    with pytest.raises(RoutingLoop):
        world.route("ping", SIGNAL)


def test_rerouting_to_an_unknown_name_is_a_routing_loop(world):
    world.domain_settings(SignalToUnknown="Rerouted", SignalRerouteAddress="ghost")
    with pytest.raises(RoutingLoop):
        world.route("nobody", SIGNAL)


def test_an_ever_growing_rewrite_ends_in_a_routing_loop(world):
    world.table("<*@grow.example> = x*@grow.example")
    with pytest.raises(RoutingLoop):
        world.route("a@grow.example")


def chain_of(rewrites):
    """
    A table rewriting c0 -> c1 -> ... -> alice: C{rewrites} rewrites.
    """
    return [f"<c{n}> = c{n + 1}" for n in range(rewrites - 1)] + [f"<c{rewrites - 1}> = alice"]


def test_nine_rewrites_reach_a_destination_and_ten_are_a_loop(world):
    world.table(*chain_of(MAX_PASSES - 1))
    assert world.route("c0") == local("alice@example.com")
    world.table(*chain_of(MAX_PASSES))
    with pytest.raises(RoutingLoop):
        world.route("c0")


def test_a_loop_through_enum_answers_ends(enum_world):
    enum_world.table("S:<+*@telnum> = +1*@telnum")
    results = enum_world.pending("+4930123456@telnum")
    for _ in range(MAX_PASSES):
        if results:
            break
        enum_world.enum.answer(None)
    assert results and isinstance(results[0], Failure)
    assert results[0].check(RoutingLoop)


# -- the digest's acceptance tests about routing ---------------------------------------


def test_acceptance_1_an_account_routes_to_local_delivery_naming_it(world):
    assert world.route("alice@example.com", SIGNAL) == local("alice@example.com")


@pytest.mark.parametrize("kind", list(AddressKind))
def test_acceptance_2_an_account_alias_routes_as_its_account_for_every_kind(world, kind):
    assert world.route("201@example.com", kind) == world.route("bob@example.com", kind)


def test_acceptance_3_a_forwarder_to_another_domain_redirects_a_signal(world):
    world.directory.create_forwarder("f@other.com", "carol@example.net")
    assert world.route("f@other.com", SIGNAL) == Route(
        Module.SIP, "example.net", "sip:carol@example.net"
    )


def test_acceptance_4_and_5_the_pstn_record_starts_the_gateway_for_signals_only(world):
    world.table("Signal:<*@pstn> = gatewaycaller{*}#pbx")
    assert world.route("5551234@pstn", SIGNAL) == Route(
        Module.PBX, "pbx@example.com", "gatewaycaller{5551234}"
    )
    assert world.route("5551234@pstn", MAIL) == Route(Module.SMTP, "pstn", "5551234@pstn")


def test_acceptance_6_a_rewrite_chain_deeper_than_the_cap_is_a_loop_not_a_hang(world):
    world.table(*chain_of(50))
    with pytest.raises(RoutingLoop, match="routing loop"):
        world.route("c0", SIGNAL)


def test_acceptance_7_a_number_set_with_telnums_resolves_and_an_unknown_one_falls_through(world):
    world.directory.set_account_telnums("bob", ["5551000"])
    assert world.route("5551000@telnum", SIGNAL) == local("bob@example.com")
    world.table("<*@telnum> = gatewaycaller{*}#pbx")
    assert world.route("5551001@telnum", SIGNAL) == Route(
        Module.PBX, "pbx@example.com", "gatewaycaller{5551001}"
    )


def test_acceptance_8_unknown_name_rejected_or_rerouted(world):
    world.domain_settings(SignalToUnknown="Rejected")
    with pytest.raises(RoutingError):
        world.route("nobody", SIGNAL)
    world.domain_settings(SignalToUnknown="Rerouted", SignalRerouteAddress="pbx")
    assert world.route("nobody", SIGNAL) == local("pbx@example.com")


# -- the stored configuration is read as it changes -----------------------------------


def test_a_new_table_takes_effect_at_once(world):
    world.table("<x> = alice")
    assert world.route("x") == local("alice@example.com")
    world.table("<x> = bob")
    assert world.route("x") == local("bob@example.com")


def test_a_refused_table_leaves_routing_as_it_was(world):
    world.table("<x> = alice")
    with pytest.raises(RouterTableError):
        world.table("<x> = bob", "nonsense")
    assert world.route("x") == local("alice@example.com")


# -- properties -----------------------------------------------------------------------

PATTERNS = ["*", "a*", "*@*", "+(1-3d)*", "(2d)*", "*@telnum", "x*@example.com", "*@pstn",
            "*%*", "alice", "+*@telnum", "*@other.org", "b*@*.example"]
TARGETS = ["*", "*@example.com", "NULL", "error", "error: no *", "gatewaycaller{*}#alice",
           "+*@telnum", "#app", "*@example.net", "x*", "fwd", "a*@other.com", "sip:*@example.net",
           "*@pstn"]
PREFIXES = ["", "S:", "M:", "A:"]
record = st.builds(
    lambda prefix, pattern, target: f"{prefix}<{pattern}> = {target}",
    st.sampled_from(PREFIXES), st.sampled_from(PATTERNS), st.sampled_from(TARGETS),
)
ADDRESS_ALPHABET = string.ascii_letters[:6] + string.digits[:4] + "@%!#{}:+.<>\"* -_"
addresses = st.one_of(
    st.text(max_size=30),
    st.text(ADDRESS_ALPHABET, max_size=30),
    st.builds("{}@{}".format,
              st.sampled_from(["alice", "201", "fwd", "sales", "+15553837461", "3837461",
                               "nobody", "a", "ab", "+4930123", "x1", "b%c"]),
              st.sampled_from(["example.com", "other.org", "telnum", "pstn", "example.net",
                               "x.example"])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(record, max_size=6),
    address=addresses,
    kind=st.sampled_from(list(AddressKind)),
    on_behalf_of=st.sampled_from([None, "alice@example.com", "ghost", "not an address"]),
    plan=st.booleans(),
    unknown=st.sampled_from(["Rejected", "Discarded", "Rerouted"]),
    reroute=st.sampled_from(["", "*", "pbx", "*@example.net", "NULL", "error", "#app"]),
)
def test_route_now_finishes_with_a_route_or_a_routing_error(
    lines, address, kind, on_behalf_of, plan, unknown, reroute
):
    world = World()
    try:
        world.table(*lines)
    except RouterTableError:
        assume(False)
    if plan:
        world.plan()
    world.domain_settings(
        SignalToUnknown=unknown, MailToUnknown=unknown, AccessToUnknown=unknown,
        SignalRerouteAddress=reroute, MailRerouteAddress=reroute, AccessRerouteAddress=reroute,
    )
    try:
        result = world.router.route_now(address, kind, on_behalf_of)
    except RoutingError:
        return
    assert isinstance(result, Route)
    assert result.module in {Module.LOCAL, Module.PBX, Module.SIP, Module.SMTP,
                             Module.SYSTEM, Module.GROUP}
    assert result.host


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(record, max_size=6),
    address=addresses,
    answers=st.lists(st.sampled_from([None, "sip:x@example.net", "tel:+4930123456", "junk uri",
                                      "sip:alice@example.com", "mailto:a@b"]), max_size=12),
)
def test_route_with_enum_finishes_with_a_route_or_a_routing_error(lines, address, answers):
    answers = list(answers)

    def enum(number):
        return defer.succeed(answers.pop() if answers else None)

    world = World(enum)
    try:
        world.table(*lines)
    except RouterTableError:
        assume(False)
    results = []
    world.router.route(address, SIGNAL).addBoth(results.append)
    assert len(results) == 1
    if isinstance(results[0], Failure):
        assert results[0].check(RoutingError), results[0].getTraceback()
    else:
        assert isinstance(results[0], Route)
