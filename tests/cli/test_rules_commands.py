"""
Tests for the Signal Rules CLI commands at the account, domain and server
levels (GET/SET...SIGNALRULES, UPDATE...SIGNALRULE), run through the
interpreter over the core that build_core assembles.
"""

import pytest
from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.signal.rules import Stage, StoredRules
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")

BUSY = '(5, busy, ((Method, is, INVITE)), (("Reject with", "486 Busy Here")))'
FORK = '(3, fork, ((Stage, is, 15)), (("Fork to", "bob@example.com")), "ring bob too")'
LOG = '(7, log, (), (("Write To Log", hello)))'


@pytest.fixture
def core():
    built = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), Clock())
    create_initial_objects(built.directory, "example.com")
    built.directory.create_account("alice@example.com")
    built.directory.set_account_aliases("alice@example.com", ["al"])
    built.directory.create_domain("other.com")
    built.directory.set_domain_aliases("other.com", ["other.org"])
    built.directory.create_account("carol@other.com")
    return built


def run(core, line, context=POSTMASTER):
    return core.interpreter.run(context, line)


def ok(core, line, context=POSTMASTER):
    result = run(core, line, context)
    assert result.ok, f"{line!r} failed: {result.error}"
    return result.render() if result.has_data else None


def refused(core, line, context=POSTMASTER) -> str:
    result = run(core, line, context)
    assert not result.ok, f"{line!r} succeeded with {result!r}"
    return result.error


def names(core, line, context=POSTMASTER):
    """
    The (priority, name) of each rule a GET line returns.
    """
    return [(rule[0], rule[1]) for rule in run(core, line, context).data]


# The three levels: how to name the owner in each command, and the GET line.
LEVELS = {
    "account": ("ACCOUNT", "alice ", "GETACCOUNTSIGNALRULES alice"),
    "domain": ("DOMAIN", "example.com ", "GETDOMAINSIGNALRULES example.com"),
    "server": ("SERVER", "", "GETSERVERSIGNALRULES"),
}


@pytest.fixture(params=sorted(LEVELS))
def level(request):
    return LEVELS[request.param]


def set_line(level, rules):
    word, owner, _ = level
    return f"SET{word}SIGNALRULES {owner}({rules})"


def update_line(level, change):
    word, owner, _ = level
    return f"UPDATE{word}SIGNALRULE {owner}{change}"


# -- every level ----------------------------------------------------------------------


def test_rules_are_empty_at_first(core, level):
    assert ok(core, level[2]) == "()"


def test_set_rules_are_read_back_in_their_canonical_form(core, level):
    ok(core, set_line(level, f"{BUSY}, {FORK}"))
    assert ok(core, level[2]) == (
        '((5, busy, ((Method, is, INVITE)), (("Reject with", "486 Busy Here"))), '
        '(3, fork, ((Stage, is, 15)), (("Fork to", bob@example.com)), "ring bob too"))'
    )


def test_set_replaces_the_whole_set(core, level):
    ok(core, set_line(level, f"{BUSY}, {FORK}"))
    ok(core, set_line(level, LOG))
    assert names(core, level[2]) == [("7", "log")]


def test_set_an_empty_array_removes_every_rule(core, level):
    ok(core, set_line(level, BUSY))
    ok(core, set_line(level, ""))
    assert ok(core, level[2]) == "()"


def test_priority_words_and_stage_words_are_stored_canonically(core, level):
    ok(core, set_line(level, '(Highest, a, ((Stage, is, "no answer")), (("Stop Processing")))'))
    assert ok(core, level[2]) == '((10, a, ((Stage, is, "no answer")), (("Stop Processing"))))'


def test_a_bad_rule_refuses_the_whole_set_naming_the_rule(core, level):
    ok(core, set_line(level, BUSY))
    error = refused(core, set_line(level, f"{LOG}, (5, bad, ((Nope, is, x)), ())"))
    assert error == (
        "Signal Rules not changed: rule at index 1 ('bad'): "
        "condition 1 (Nope, is, x): unknown condition 'Nope'"
    )
    assert names(core, level[2]) == [("5", "busy")]


@pytest.mark.parametrize("rules, reason", [
    (f"{BUSY}, {BUSY}", "rule at index 1 ('busy'): another rule has this name"),
    ("(11, x, (), ())", "bad priority 11"),
    ("(5, x, (), ((Explode)))", "unknown action 'Explode'"),
    ('(5, x, (), (("Reject with", "200 OK")))', "the code must be 400-699"),
    ('(5, x, ((Stage, is, 9999)), ())', "rule at index 0 ('x'): condition 1"),
    ("(5, x, ())", "a rule has 4 or 5 elements"),
    ('(5, "", (), ())', "the rule name must be a non-empty string"),
])
def test_bad_rule_sets_are_refused_with_the_reason(core, level, rules, reason):
    error = refused(core, set_line(level, rules))
    assert error.startswith("Signal Rules not changed: ")
    assert reason in error
    assert ok(core, level[2]) == "()"


def test_set_needs_an_array(core, level):
    word, owner, _ = level
    assert refused(core, f"SET{word}SIGNALRULES {owner}{{}}") == (
        "Signal Rules must be an array, like (a, b)"
    )


def test_update_with_a_full_rule_of_a_new_name_appends_it(core, level):
    ok(core, set_line(level, f"{BUSY}, {FORK}"))
    ok(core, update_line(level, LOG))
    assert names(core, level[2]) == [("5", "busy"), ("3", "fork"), ("7", "log")]


def test_update_with_a_full_rule_of_a_known_name_replaces_it_in_place(core, level):
    ok(core, set_line(level, f"{BUSY}, {FORK}"))
    ok(core, update_line(level, '(9, busy, (), (("Reject with", "603")))'))
    rules = run(core, level[2]).data
    assert [rule[1] for rule in rules] == ["busy", "fork"]
    assert rules[0] == ["9", "busy", [], [["Reject with", "603"]]]


@pytest.mark.parametrize("short", ["(8, fork)", "(8, fork, ())"])
def test_update_with_fewer_than_four_elements_changes_only_the_priority(core, level, short):
    ok(core, set_line(level, f"{BUSY}, {FORK}"))
    ok(core, update_line(level, short))
    rules = run(core, level[2]).data
    assert rules[1] == [
        "8", "fork", [["Stage", "is", "15"]], [["Fork to", "bob@example.com"]], "ring bob too"
    ]
    assert rules[0][0] == "5"


def test_update_the_priority_of_an_unknown_rule_is_refused(core, level):
    ok(core, set_line(level, BUSY))
    assert refused(core, update_line(level, "(8, nosuch)")) == (
        "Signal Rules not changed: rule 'nosuch': there is no rule of this name"
    )


def test_update_with_a_bad_rule_leaves_the_set_as_it_was(core, level):
    ok(core, set_line(level, BUSY))
    error = refused(core, update_line(level, '(5, busy, (), (("Fork to")))'))
    assert error == (
        "Signal Rules not changed: rule at index 0 ('busy'): "
        "action 1 (Fork to): Fork to needs one or more addresses"
    )
    assert ok(core, level[2]) == (
        '((5, busy, ((Method, is, INVITE)), (("Reject with", "486 Busy Here"))))'
    )


def test_update_delete_removes_the_named_rule(core, level):
    ok(core, set_line(level, f"{BUSY}, {FORK}, {LOG}"))
    ok(core, update_line(level, "DELETE fork"))
    assert names(core, level[2]) == [("5", "busy"), ("7", "log")]


def test_update_delete_takes_a_quoted_name_and_any_case(core, level):
    ok(core, set_line(level, '(5, "my rule", (), ())'))
    ok(core, update_line(level, 'delete "my rule"'))
    assert ok(core, level[2]) == "()"


def test_update_delete_of_an_unknown_rule_is_refused(core, level):
    ok(core, set_line(level, BUSY))
    assert refused(core, update_line(level, "DELETE nosuch")) == (
        "Signal Rules not changed: rule 'nosuch': there is no rule of this name"
    )
    assert names(core, level[2]) == [("5", "busy")]


@pytest.mark.parametrize("change, error", [
    ("DELETE", "missing rule name"),
    ("DELETE a b", "unexpected text 'b'"),
    ("()", "Signal Rules not changed: a rule update is (priority, name [, ...]), not []"),
    ("busy", "rule must be an array, like (a, b)"),
])
def test_malformed_updates_are_refused(core, level, change, error):
    ok(core, set_line(level, BUSY))
    assert refused(core, update_line(level, change)) == error
    assert names(core, level[2]) == [("5", "busy")]


def test_the_levels_keep_separate_sets(core):
    ok(core, f"SETACCOUNTSIGNALRULES alice ({BUSY})")
    ok(core, f"SETDOMAINSIGNALRULES example.com ({FORK})")
    ok(core, f"SETSERVERSIGNALRULES ({LOG})")
    assert names(core, "GETACCOUNTSIGNALRULES alice") == [("5", "busy")]
    assert names(core, "GETDOMAINSIGNALRULES example.com") == [("3", "fork")]
    assert names(core, "GETSERVERSIGNALRULES") == [("7", "log")]
    assert ok(core, "GETACCOUNTSIGNALRULES postmaster") == "()"
    assert ok(core, "GETDOMAINSIGNALRULES other.com") == "()"


# -- accounts -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "alice@example.com", "al", "ALICE"])
def test_an_account_is_named_bare_in_full_or_by_alias(core, name):
    ok(core, f"SETACCOUNTSIGNALRULES {name} ({BUSY})")
    assert names(core, "GETACCOUNTSIGNALRULES alice@example.com") == [("5", "busy")]
    assert names(core, f"GETACCOUNTSIGNALRULES {name}") == [("5", "busy")]


def test_star_is_the_callers_own_account(core):
    alice = CommandContext.for_account("alice@example.com")
    ok(core, f"SETACCOUNTSIGNALRULES * ({BUSY})")
    assert names(core, "GETACCOUNTSIGNALRULES postmaster") == [("5", "busy")]
    ok(core, "UPDATEACCOUNTSIGNALRULE * (2, busy)")
    assert names(core, "GETACCOUNTSIGNALRULES *") == [("2", "busy")]
    ok(core, "UPDATEACCOUNTSIGNALRULE * DELETE busy")
    assert ok(core, "GETACCOUNTSIGNALRULES *") == "()"
    assert ok(core, "GETACCOUNTSIGNALRULES alice") == "()"
    assert refused(core, "GETACCOUNTSIGNALRULES *", alice).startswith("access denied")


def test_a_bare_account_name_is_in_the_callers_domain(core):
    ok(core, "CREATEACCOUNT carol@example.com")
    ok(core, f"SETACCOUNTSIGNALRULES carol ({BUSY})")
    assert ok(core, "GETACCOUNTSIGNALRULES carol@other.com") == "()"
    ok(core, f"SETACCOUNTSIGNALRULES carol@other.org ({LOG})")
    assert names(core, "GETACCOUNTSIGNALRULES carol@other.com") == [("7", "log")]


@pytest.mark.parametrize("line", [
    "GETACCOUNTSIGNALRULES ghost",
    "SETACCOUNTSIGNALRULES ghost ()",
    f"UPDATEACCOUNTSIGNALRULE ghost {BUSY}",
    "UPDATEACCOUNTSIGNALRULE ghost DELETE busy",
])
def test_an_unknown_account_is_refused(core, line):
    assert refused(core, line) == "unknown account ghost@example.com"


def test_an_account_command_needs_an_account_name(core):
    assert refused(core, "GETACCOUNTSIGNALRULES") == "missing account name"


# -- domains --------------------------------------------------------------------------


def test_a_domain_alias_names_the_real_domain(core):
    ok(core, f"SETDOMAINSIGNALRULES other.org ({BUSY})")
    assert names(core, "GETDOMAINSIGNALRULES other.com") == [("5", "busy")]
    ok(core, "UPDATEDOMAINSIGNALRULE OTHER.ORG DELETE busy")
    assert ok(core, "GETDOMAINSIGNALRULES other.com") == "()"


@pytest.mark.parametrize("line", [
    "GETDOMAINSIGNALRULES nowhere.example",
    "SETDOMAINSIGNALRULES nowhere.example ()",
    f"UPDATEDOMAINSIGNALRULE nowhere.example {BUSY}",
    "UPDATEDOMAINSIGNALRULE nowhere.example DELETE busy",
])
def test_an_unknown_domain_is_refused(core, line):
    assert refused(core, line) == "unknown domain 'nowhere.example'"


def test_a_domain_command_needs_a_domain_name(core):
    assert refused(core, "GETDOMAINSIGNALRULES") == "missing domain name"


# -- the server -----------------------------------------------------------------------


def test_get_server_rules_takes_no_arguments(core):
    assert refused(core, "GETSERVERSIGNALRULES example.com") == "unexpected text 'example.com'"


def test_rules_commands_need_an_administrator(core):
    alice = CommandContext.for_account("alice@example.com")
    for line in ("GETSERVERSIGNALRULES", "SETDOMAINSIGNALRULES example.com ()",
                 "UPDATEACCOUNTSIGNALRULE alice DELETE x"):
        assert refused(core, line, alice).startswith("access denied")


def test_stored_rules_are_what_the_signal_service_reads(core):
    ok(core, f"SETACCOUNTSIGNALRULES alice ({BUSY})")
    ok(core, f"SETDOMAINSIGNALRULES example.com ({FORK})")
    ok(core, f"SETSERVERSIGNALRULES ({LOG})")
    stored = StoredRules(core.directory)
    assert [rule.name for rule in stored.account_signal_rules("alice@example.com")] == ["busy"]
    assert [rule.name for rule in stored.domain_signal_rules("example.com")] == ["fork"]
    assert [rule.name for rule in stored.server_signal_rules()] == ["log"]
    (fork,) = stored.domain_signal_rules("example.com")
    assert fork.stage == Stage.after(15)
    assert fork.comment == "ring bob too"


def test_stored_rules_are_parsed_once_per_stored_version_and_a_change_is_read_at_once(core):
    ok(core, f"SETACCOUNTSIGNALRULES alice ({BUSY})")
    stored = StoredRules(core.directory)
    first = stored.account_signal_rules("alice@example.com")
    assert stored.account_signal_rules("alice@example.com") is first  # not parsed again
    ok(core, f"SETACCOUNTSIGNALRULES alice ({BUSY}, {FORK})")
    assert [rule.name for rule in stored.account_signal_rules("alice@example.com")] == ["busy", "fork"]
    ok(core, "SETACCOUNTSIGNALRULES alice ()")
    assert stored.account_signal_rules("alice@example.com") == ()
    assert stored.domain_signal_rules("example.com") == ()  # none stored: nothing kept for it
