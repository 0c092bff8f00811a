"""
Tests for the routing CLI commands (ROUTE, GET/SETROUTERTABLE,
GET/SET/UPDATEROUTERSETTINGS) run through the interpreter over the core
that build_core assembles, as the CLI/PWD protocol and the admin tool run
them; ROUTE's answers are checked as the CLI/PWD protocol writes them.
"""

import pytest
from twisted.internet.task import Clock

from communigate.admin.pwd import format_result
from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")
SLIDE_TABLE = (
    r'"<+(6-15d)*> = +*@telnum\e'
    r'<00(6-15d)*> = +*@telnum\e'
    r'S:<+36*@telnum> = 0*@pstn\e'
    r'S:<+*@telnum> = 00*@pstn\e'
    r'S:<*@pstn> = gatewaycaller{*}#postmaster"'
)
E164_PLAN = (
    "{E164Conversion = YES; E164CountryCode = 1; E164AreaCode = 555; "
    "E164NationalPrefix = 0; E164InternationalPrefix = 00; E164LocalNumberLength = 7;}"
)


def make_core(reactor):
    core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), reactor)
    create_initial_objects(core.directory, "example.com")
    return core


@pytest.fixture
def core():
    built = make_core(Clock())
    for line in (
        "CREATEACCOUNT alice",
        "CREATEACCOUNT bob",
        'SETACCOUNTTELNUMS alice ("+15553837461")',
    ):
        ok(built, line)
    return built


def run(core, line, context=POSTMASTER):
    return core.interpreter.run(context, line)


def reply(core, line, context=POSTMASTER) -> str:
    """
    The CLI/PWD reply line to C{line}, in inline mode, without its CRLF.
    """
    return format_result(run(core, line, context), inline=True).decode("utf-8").rstrip("\r\n")


def ok(core, line, context=POSTMASTER):
    result = run(core, line, context)
    assert result.ok, f"{line!r} failed: {result.error}"
    return result.render() if result.has_data else None


def refused(core, line, context=POSTMASTER) -> str:
    result = run(core, line, context)
    assert not result.ok, f"{line!r} succeeded with {result!r}"
    return result.error


# -- ROUTE's answers, as the issue prints them -----------------------------------------


def test_route_an_account_is_local(core):
    assert reply(core, "ROUTE alice@example.com") == '201 (LOCAL, alice@example.com, "")'


def test_route_an_application_is_pbx_on_behalf_of_its_account(core):
    assert reply(core, "ROUTE gatewaycaller{004930123456}#postmaster") == (
        '201 (PBX, postmaster@example.com, "gatewaycaller{004930123456}")'
    )


def test_route_a_remote_signal_target_is_sip(core):
    assert reply(core, "ROUTE bob@example.net signal") == (
        '201 (SIP, example.net, "sip:bob@example.net")'
    )


def test_route_a_remote_mail_target_is_smtp(core):
    assert reply(core, "ROUTE bob@example.net mail") == "201 (SMTP, example.net, bob@example.net)"


def test_route_a_null_target_is_system_null(core):
    ok(core, 'SETROUTERTABLE "<junk*> = NULL"')
    assert reply(core, "ROUTE junkmail") == '201 (SYSTEM, NULL, "")'


def test_route_a_group_is_group(core):
    ok(core, "CREATEGROUP sales")
    assert reply(core, "ROUTE sales signal") == '201 (GROUP, sales@example.com, "")'


def test_route_an_unknown_name_is_501_with_the_reason(core):
    assert reply(core, "ROUTE nobody@example.com") == "501 unknown user nobody@example.com"


def test_route_a_loop_is_501_routing_loop(core):
    ok(core, r'SETROUTERTABLE "<a> = b\e<b> = a"')
    assert reply(core, "ROUTE a").startswith("501 routing loop: 'a' was rewritten 10 times")


def test_route_an_error_record_is_501_with_its_text(core):
    ok(core, 'SETROUTERTABLE "<old> = error: moved to the new office"')
    assert reply(core, "ROUTE old signal") == "501 moved to the new office"


def test_route_an_unparsable_address_is_501_naming_it(core):
    assert reply(core, "ROUTE a@@b").startswith("501 'a@@b' is not a valid address")


# -- the seed's routing examples, end to end -----------------------------------------


def test_an_e164_number_reaches_the_account_holding_it(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    assert reply(core, "ROUTE +15553837461 signal") == '201 (LOCAL, alice@example.com, "")'


def test_an_international_number_ends_in_the_gateway_application(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    assert reply(core, "ROUTE 0036301234567 signal") == (
        '201 (PBX, postmaster@example.com, "gatewaycaller{0301234567}")'
    )


def test_an_unassigned_e164_number_goes_out_with_the_international_prefix(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    assert reply(core, "ROUTE +4930123456 signal") == (
        '201 (PBX, postmaster@example.com, "gatewaycaller{004930123456}")'
    )


def test_the_gateway_records_are_signal_only(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    assert reply(core, "ROUTE 0036301234567 mail") == (
        "501 unknown telephone number +36301234567"
    )


def test_a_local_number_becomes_e164_and_reaches_its_holder(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    ok(core, f"SETROUTERSETTINGS {E164_PLAN}")
    assert reply(core, "ROUTE 3837461 signal") == '201 (LOCAL, alice@example.com, "")'


def test_a_national_number_becomes_e164_with_the_country_code(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    ok(core, f"SETROUTERSETTINGS {E164_PLAN}")
    assert reply(core, "ROUTE 03637111298 signal") == (
        '201 (PBX, postmaster@example.com, "gatewaycaller{0013637111298}")'
    )
    ok(core, 'SETACCOUNTTELNUMS bob ("+13637111298")')
    assert reply(core, "ROUTE 03637111298 signal") == '201 (LOCAL, bob@example.com, "")'


def test_without_the_dialling_plan_a_local_number_is_an_unknown_name(core):
    ok(core, f"SETROUTERTABLE {SLIDE_TABLE}")
    assert reply(core, "ROUTE 3837461 signal") == "501 unknown user 3837461@example.com"


def test_the_admin_tool_core_routes_without_enum():
    offline = make_core(None)
    ok(offline, f"SETROUTERTABLE {SLIDE_TABLE}")
    ok(offline, 'UPDATEROUTERSETTINGS {ENUMRouting = YES; ENUMServers = ("192.0.2.53");}')
    assert reply(offline, "ROUTE +4930123456 signal") == (
        '201 (PBX, postmaster@example.com, "gatewaycaller{004930123456}")'
    )


# -- ROUTE's arguments ----------------------------------------------------------------


@pytest.mark.parametrize("word", ["signal", "SIGNAL", "Signal"])
def test_route_signal_word_in_any_case(core, word):
    ok(core, 'SETROUTERTABLE "S:<x> = NULL"')
    assert reply(core, f"ROUTE x {word}") == '201 (SYSTEM, NULL, "")'


@pytest.mark.parametrize("words, prefix", [
    ("mail", "M:"), ("MAIL", "M:"), ("Access", "A:"), ("access", "A:"), ("", "A:"),
])
def test_route_mail_and_access_words_and_access_by_default(core, words, prefix):
    ok(core, f'SETROUTERTABLE "{prefix}<x> = NULL"')
    assert reply(core, f"ROUTE x {words}".strip()) == '201 (SYSTEM, NULL, "")'
    assert reply(core, "ROUTE x signal") == "501 unknown user x@example.com"


@pytest.mark.parametrize("address", [
    "+15553837461",
    "tel:+1-555-383-7461",
    "sip:alice@example.com",
    "sip:alice@example.com;transport=tcp",
    '"alice@example.com"',
    '"Alice <sip:alice@example.com>"',
    "<sip:alice@example.com>",
    "ALICE",
])
def test_route_reads_unquoted_numbers_uris_and_quoted_forms(core, address):
    assert reply(core, f"ROUTE {address} signal") == '201 (LOCAL, alice@example.com, "")'


def test_route_a_hash_program_runs_on_behalf_of_the_caller(core):
    assert reply(core, "ROUTE #echo signal") == "201 (PBX, postmaster@example.com, echo)"


def test_route_accepts_a_tab_between_its_arguments(core):
    ok(core, 'SETROUTERTABLE "S:<x> = NULL"')
    assert reply(core, "ROUTE x\tsignal") == '201 (SYSTEM, NULL, "")'


def test_route_needs_an_address(core):
    assert refused(core, "ROUTE") == "missing address"


def test_route_refuses_an_unknown_address_type(core):
    assert refused(core, "ROUTE alice phone") == "unexpected text 'phone'"


# -- the Router table ------------------------------------------------------------------


def test_get_router_table_is_empty_at_first(core):
    assert ok(core, "GETROUTERTABLE") == '""'


def test_set_router_table_joins_escaped_line_ends_and_get_returns_it(core):
    ok(core, r'SETROUTERTABLE "<a> = alice ; first\e; a comment\eS:<*@pstn> = NULL"')
    assert run(core, "GETROUTERTABLE").data == (
        "<a> = alice ; first\n; a comment\nS:<*@pstn> = NULL"
    )
    assert reply(core, "ROUTE a") == '201 (LOCAL, alice@example.com, "")'


def test_set_router_table_also_takes_newline_escapes(core):
    ok(core, r'SETROUTERTABLE "<a> = alice\n<b> = bob"')
    assert reply(core, "ROUTE b") == '201 (LOCAL, bob@example.com, "")'


def test_a_bad_record_refuses_the_table_naming_its_line_and_keeps_the_old_one(core):
    ok(core, 'SETROUTERTABLE "<a> = alice"')
    error = refused(core, r'SETROUTERTABLE "<a> = bob\e\e<b> = prog{x#acct\e<c> = NULL"')
    assert error.startswith("Router table not changed: line 3: '<b> = prog{x#acct': ")
    assert "unbalanced '{'" in error
    assert run(core, "GETROUTERTABLE").data == "<a> = alice"
    assert reply(core, "ROUTE a") == '201 (LOCAL, alice@example.com, "")'


@pytest.mark.parametrize("table, reason", [
    ('"Q:<a> = b"', "unknown record type 'Q'"),
    ('"<a = b"', "unbalanced '<'"),
    ('"<a> b"', "expected '='"),
    ('"<a*> = **@x"', "the target has 2 '*' but the pattern captures only 1"),
])
def test_bad_records_are_refused_with_the_reason(core, table, reason):
    assert reason in refused(core, f"SETROUTERTABLE {table}")
    assert run(core, "GETROUTERTABLE").data == ""


def test_set_router_table_needs_a_string(core):
    assert refused(core, "SETROUTERTABLE (a, b)") == "Router table text must be a string"
    assert refused(core, "SETROUTERTABLE") == "missing Router table text"


def test_an_empty_table_clears_the_old_one(core):
    ok(core, 'SETROUTERTABLE "<a> = alice"')
    ok(core, 'SETROUTERTABLE ""')
    assert reply(core, "ROUTE a") == "501 unknown user a@example.com"


def test_router_commands_need_an_administrator(core):
    alice = CommandContext.for_account("alice@example.com")
    for line in ("ROUTE bob", "GETROUTERTABLE", 'SETROUTERTABLE ""', "GETROUTERSETTINGS",
                 "SETROUTERSETTINGS {}", "UPDATEROUTERSETTINGS {}"):
        assert refused(core, line, alice).startswith("access denied")


# -- the Router settings ---------------------------------------------------------------


def test_router_settings_are_empty_at_first(core):
    assert ok(core, "GETROUTERSETTINGS") == "{}"


def test_set_router_settings_replaces_them_all(core):
    ok(core, f"SETROUTERSETTINGS {E164_PLAN}")
    ok(core, "SETROUTERSETTINGS {ENUMRouting = NO;}")
    assert run(core, "GETROUTERSETTINGS").data == {"ENUMRouting": "NO"}


def test_update_router_settings_changes_only_the_keys_given(core):
    ok(core, f"SETROUTERSETTINGS {E164_PLAN}")
    ok(core, "UPDATEROUTERSETTINGS {E164AreaCode = 212; ENUMRouting = NO;}")
    settings = run(core, "GETROUTERSETTINGS").data
    assert settings["E164AreaCode"] == "212"
    assert settings["ENUMRouting"] == "NO"
    assert settings["E164CountryCode"] == "1"


def test_update_router_settings_default_removes_a_key(core):
    ok(core, f"SETROUTERSETTINGS {E164_PLAN}")
    ok(core, "UPDATEROUTERSETTINGS {E164LocalNumberLength = default;}")
    settings = run(core, "GETROUTERSETTINGS").data
    assert "E164LocalNumberLength" not in settings
    assert reply(core, "ROUTE 3837461 signal") == "501 unknown user 3837461@example.com"


def test_set_router_settings_drops_default_values(core):
    ok(core, "SETROUTERSETTINGS {ENUMRouting = default; E164CountryCode = 44;}")
    assert run(core, "GETROUTERSETTINGS").data == {"E164CountryCode": "44"}


@pytest.mark.parametrize("command", ["SETROUTERSETTINGS", "UPDATEROUTERSETTINGS"])
@pytest.mark.parametrize("settings, reason", [
    ("{E164LocalNumberLength = 99;}", "E164LocalNumberLength must be a number from 0 to 15"),
    ("{E164NationalPrefix = 0; E164InternationalPrefix = 0;}", "must differ, both are '0'"),
    ("{ENUMRouting = maybe;}", "ENUMRouting must be YES or NO, not 'maybe'"),
    ("{ENUMServers = (dns.example);}", "ENUMServers entry 'dns.example' is not ip"),
    ("{ENUMDomains = e164.arpa;}", "ENUMDomains must be an array of domain names"),
])
def test_bad_router_settings_are_refused_naming_the_key(core, command, settings, reason):
    ok(core, "SETROUTERSETTINGS {E164CountryCode = 44;}")
    error = refused(core, f"{command} {settings}")
    assert error.startswith("Router settings not changed: ")
    assert reason in error
    assert run(core, "GETROUTERSETTINGS").data == {"E164CountryCode": "44"}


def test_router_settings_must_be_a_dictionary(core):
    assert refused(core, "SETROUTERSETTINGS (a)") == (
        "Router settings must be a dictionary, like {Key = value;}"
    )
    assert refused(core, "UPDATEROUTERSETTINGS {} more") == "unexpected text 'more'"
