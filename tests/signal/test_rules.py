"""Tests for communigate.signal.rules: the rule model, its data form, update and delete."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from communigate.formats.cgdata import dumps, loads
from communigate.signal.conditions import Condition
from communigate.signal.model import Decision, Signal, SignalFacts, Submitter, response
from communigate.signal.rules import (
    DISCARD, FORK, LOG, REDIRECT, REJECT, STOP,
    Action, Rule, RulesError, SignalRules, Stage,
    delete_rule, evaluate, merged, parse_rules, rules_as_data, update_rule,
)


def parse(text):
    return parse_rules(loads(text))


def one(text):
    (rule,) = parse("(" + text + ")")
    return rule


# ------------------------------------------------------------------ parsing

def test_a_rule_reads_into_the_model():
    rule = one('(5, Busy, ((Method, is, INVITE)), (("Reject with", "486 Busy Here")), "note")')
    assert rule == Rule(
        priority=5, name="Busy", stage=Stage.IMMEDIATELY,
        conditions=(Condition("Method", "is", "INVITE"),),
        actions=(Action(REJECT, "486 Busy Here"),), comment="note")
    assert rule.actions[0].rejection == response(486, "Busy Here")


def test_a_rule_set_parses_from_data_format_text_and_keeps_its_order():
    rules = parse('((7, A, (), (("Stop Processing"))), (3, B, (), ()), (5, C, (), ()))')
    assert [r.name for r in rules] == ["A", "B", "C"]
    assert rules[0].actions == (Action(STOP),)


def test_an_empty_rule_set_is_allowed():
    assert parse_rules([]) == ()
    assert parse_rules(()) == ()


@pytest.mark.parametrize("given, priority", [
    ("5", 5), (5, 5), ("0", 0), ("10", 10), (" 7 ", 7),
    ("Inactive", 0), ("inactive", 0), ("Highest", 10), ("HIGHEST", 10),
])
def test_priority_forms(given, priority):
    assert parse_rules([[given, "r", [], []]])[0].priority == priority


@pytest.mark.parametrize("given", ["11", "-1", "x", "", True, 5.5, None, ["5"]])
def test_bad_priority_is_refused_naming_the_rule(given):
    with pytest.raises(RulesError, match=r"rule at index 0 \('r'\): bad priority") as e:
        parse_rules([[given, "r", [], []]])
    assert (e.value.index, e.value.name) == (0, "r")


@pytest.mark.parametrize("value, stage", [
    ("0", Stage.IMMEDIATELY), ("immediately", Stage.IMMEDIATELY),
    ("15", Stage.after(15)), (15, Stage.after(15)), ("1", Stage.after(1)),
    ("600", Stage.after(600)),
    ("995", Stage.NO_ANSWER), ("No Answer", Stage.NO_ANSWER), ("no  answer", Stage.NO_ANSWER),
    ("997", Stage.BUSY), ("busy", Stage.BUSY),
    ("999", Stage.ERROR), ("Error", Stage.ERROR),
])
def test_stage_pseudo_condition_forms(value, stage):
    rule = parse_rules([["5", "r", [["Method", "is", "INVITE"], ["Stage", "is", value]], []]])[0]
    assert rule.stage == stage
    assert rule.conditions == (Condition("Method", "is", "INVITE"),)


def test_a_rule_without_a_stage_runs_immediately():
    assert one("(5, r, (), ())").stage == Stage.IMMEDIATELY


def test_stage_seconds_only_for_timed_stages():
    assert Stage.after(15).seconds == 15
    assert Stage.IMMEDIATELY.seconds is None
    assert Stage.BUSY.seconds is None
    assert Stage.NO_ANSWER.code == 995 and Stage.ERROR.code == 999
    assert repr(Stage.after(15)) == "Stage.after(15)"
    assert repr(Stage.NO_ANSWER) == "Stage.NO_ANSWER"


@pytest.mark.parametrize("seconds", [0, 601, -1, "15", 1.5])
def test_stage_after_refuses_a_bad_delay(seconds):
    with pytest.raises(ValueError, match="bad delay"):
        Stage.after(seconds)


@pytest.mark.parametrize("condition, message", [
    (["Stage", "is", "601"], "bad stage 601"),
    (["Stage", "is", "0.5"], "bad stage '0.5'"),
    (["Stage", "is", "later"], "bad stage 'later'"),
    (["Stage", "is", "-1"], "bad stage '-1'"),
    (["Stage", "is not", "15"], "Stage takes only 'is'"),
])
def test_bad_stage_is_refused_naming_the_rule(condition, message):
    with pytest.raises(RulesError, match=r"rule at index 0 \('r'\): condition 1 .*"
                       + re.escape(message)):
        parse_rules([["5", "r", [condition], []]])


def test_two_stages_in_one_rule_are_refused():
    with pytest.raises(RulesError, match="condition 2 .*one Stage"):
        parse_rules([["5", "r", [["Stage", "is", "15"], ["Stage", "is", "busy"]], []]])


@pytest.mark.parametrize("rule, message", [
    ("A rule", "a rule must be an array"),
    (["5", "r", []], "a rule has 4 or 5 elements"),
    (["5", "r", [], [], "", "extra"], "a rule has 4 or 5 elements"),
    (["5", 7, [], []], "the rule name must be a non-empty string"),
    (["5", "", [], []], "the rule name must be a non-empty string"),
    (["5", "r", "Method", []], "conditions must be an array"),
    (["5", "r", [], "Stop"], "actions must be an array"),
    (["5", "r", [], [], ["x"]], "the comment must be a string"),
    (["5", "r", [["Method", "is"]], []], "condition 1 must be an array (opCode, operation, parameter)"),
    (["5", "r", ["Method"], []], "condition 1 must be an array"),
    (["5", "r", [], [["Fork to", "a", "b"]]], "action 1 must be an array (action [, parameter])"),
    (["5", "r", [], [[]]], "action 1 must be an array"),
    (["5", "r", [], ["Stop Processing"]], "action 1 must be an array"),
    (["5", "r", [["Methd", "is", "INVITE"]], []], "unknown condition 'Methd'"),
    (["5", "r", [["Method", "equals", "INVITE"]], []], "unknown operation 'equals'"),
    (["5", "r", [["Method", "greater than", "A"]], []], "Method cannot use 'greater than'"),
    (["5", "r", [["Time Of Day", "less than", "9am"]], []], "bad time '9am'"),
    (["5", "r", [["RegClients", "is", "many"]], []], "bad number 'many'"),
    (["5", "r", [["Submit Address", "in", "10.0.0.0/8, nowhere"]], []], "bad IP address"),
    (["5", "r", [["ReqField", "is", "urgent"]], []], "Field-Name: pattern"),
    (["5", "r", [], [["Ring Bell"]]], "unknown action 'Ring Bell'"),
    (["5", "r", [], [["Reject with", "200 OK"]]], "the code must be 400-699"),
    (["5", "r", [], [["Fork to"]]], "Fork to needs one or more addresses"),
    (["5", "r", [], [["Redirect to", " , "]]], "Redirect to needs one or more addresses"),
    (["5", "r", [], [["Redirect to", "<sip:a@b"]]], "unbalanced <"),
    (["5", "r", [], [["Stop Processing", "now"]]], "Stop Processing takes no parameter"),
    (["5", "r", [], [["Discard Rules", "all"]]], "Discard Rules takes no parameter"),
    (["5", "r", [], [["Write To Log", ["x"]]]], "action parameter must be a string"),
])
def test_every_parse_error_names_the_rule_and_the_reason(rule, message):
    rules = [["5", "fine", [], []], rule]
    with pytest.raises(RulesError, match=re.escape(message)) as e:
        parse_rules(rules)
    assert e.value.index == 1
    assert str(e.value).startswith("rule at index 1")
    if isinstance(rule, list) and len(rule) > 1 and rule[1] == "r":
        assert e.value.name == "r"
        assert "('r')" in str(e.value)


def test_a_rule_set_that_is_not_an_array_is_refused():
    with pytest.raises(RulesError, match="signal rules must be an array"):
        parse_rules("(5, r, (), ())")
    with pytest.raises(RulesError, match="signal rules must be an array"):
        parse_rules(None)


def test_a_rule_set_with_one_bad_rule_is_rejected_whole():
    with pytest.raises(RulesError, match=r"rule at index 2 \('bad'\)"):
        parse('((5, a, (), ()), (5, b, (), ()), (5, bad, ((Methd, is, X)), ()), (5, c, (), ()))')


def test_duplicate_rule_names_are_refused():
    with pytest.raises(RulesError, match=r"rule at index 1 \('a'\): another rule has this name"):
        parse('((5, a, (), ()), (6, a, (), ()))')


def test_names_are_read_in_any_case_and_written_canonically():
    rule = one('(5, r, ((method, "IS NOT", INVITE), (timeofday, "greaterthan", "17:00")),'
               ' (("fork TO", bob), ("stopprocessing")))')
    assert rules_as_data([rule])[0][2:] == [
        [["Method", "is not", "INVITE"], ["Time Of Day", "greater than", "17:00"]],
        [["Fork to", "bob"], ["Stop Processing"]],
    ]


def test_numbers_from_the_data_format_are_read_as_text():
    rule = one("(#5, r, ((RegClients, \"greater than\", #1), (Stage, is, #15)), ((\"Reject with\", #486)))")
    assert rule.priority == 5
    assert rule.stage == Stage.after(15)
    assert rule.conditions[0].parameter == "1"
    assert rule.actions[0].rejection == response(486)


def test_an_empty_parameter_of_stop_and_discard_is_dropped():
    rule = one('(5, r, (), (("Stop Processing", ""), ("Discard Rules", "")))')
    assert rule.actions == (Action(STOP), Action(DISCARD))


@pytest.mark.parametrize("parameter, code, reason", [
    ("486 Busy Here", 486, "Busy Here"),
    ("486", 486, "Busy Here"),
    ("480  Away for lunch ", 480, "Away for lunch"),
    ("600 Busy Everywhere", 600, "Busy Everywhere"),
    ("Not today", 603, "Not today"),
    ("", 603, "Decline"),
    (None, 603, "Decline"),
    ("12 monkeys", 603, "12 monkeys"),
])
def test_reject_with_parameter_forms(parameter, code, reason):
    assert Action(REJECT, parameter).rejection == response(code, reason)


def test_addresses_split_on_commas_outside_brackets_and_quotes():
    action = Action(FORK, 'bob, <sip:a,b@x.example>, "Carol, C" <sip:c@y>, #app')
    assert action.addresses == ("bob", "<sip:a,b@x.example>", '"Carol, C" <sip:c@y>', "#app")
    assert Action(REDIRECT, "x@dom").addresses == ("x@dom",)
    assert Action(LOG, "hi").addresses == () and Action(LOG, "hi").rejection is None


def test_rule_validates_its_fields():
    with pytest.raises(ValueError, match="bad priority"):
        Rule(11, "r")
    with pytest.raises(ValueError, match="rule name"):
        Rule(5, "")
    with pytest.raises(TypeError, match="conditions must hold Conditions"):
        Rule(5, "r", conditions=[("Method", "is", "INVITE")])
    with pytest.raises(TypeError, match="actions must hold Actions"):
        Rule(5, "r", actions=[("Stop Processing",)])
    assert not Rule(0, "r").active and Rule(1, "r").active


# ------------------------------------------------------------- writing back

def test_rules_as_data_is_canonical():
    rules = parse('((Highest, a, ((Stage, is, "No Answer"), (Method, is, INVITE)),'
                  ' (("Redirect to", "#voicemail"))), (#3, b, ((Stage, is, "15")), ()),'
                  ' (0, c, (), (("Discard Rules")), "why"))')
    assert rules_as_data(rules) == [
        ["10", "a", [["Stage", "is", "no answer"], ["Method", "is", "INVITE"]],
         [["Redirect to", "#voicemail"]]],
        ["3", "b", [["Stage", "is", "15"]], []],
        ["0", "c", [], [["Discard Rules"]], "why"],
    ]
    assert dumps(rules_as_data(rules)[1]) == "(3, b, ((Stage, is, 15)), ())"


# ------------------------------------------------------------ update, delete

BASE = '((5, a, (), ()), (6, b, ((Method, is, INVITE)), (("Stop Processing"))), (7, c, (), ()))'


def test_update_with_a_full_rule_replaces_the_rule_of_that_name_in_place():
    rules = parse(BASE)
    updated = update_rule(rules, loads('(2, b, (), (("Fork to", x)))'))
    assert [r.name for r in updated] == ["a", "b", "c"]
    assert updated[1] == Rule(2, "b", actions=[Action(FORK, "x")])
    assert rules == parse(BASE)


def test_update_with_a_new_name_appends_the_rule():
    updated = update_rule(parse(BASE), ["4", "d", [], []])
    assert [r.name for r in updated] == ["a", "b", "c", "d"]
    assert update_rule((), ["4", "d", [], []]) == (Rule(4, "d"),)


@pytest.mark.parametrize("data", [["9", "b"], [9, "b", "ignored"], ["Highest", "b"]])
def test_update_with_fewer_than_four_elements_changes_only_the_priority(data):
    rules = parse(BASE)
    updated = update_rule(rules, data)
    assert updated[1].priority == (10 if data[0] == "Highest" else 9)
    assert updated[1].conditions == rules[1].conditions
    assert updated[1].actions == rules[1].actions
    assert [r.name for r in updated] == ["a", "b", "c"]


def test_update_of_the_priority_of_an_unknown_rule_is_refused():
    with pytest.raises(RulesError, match="rule 'zz': there is no rule of this name"):
        update_rule(parse(BASE), ["5", "zz"])


@pytest.mark.parametrize("data, message", [
    (["5"], r"a rule update is \(priority, name"),
    ("b", r"a rule update is \(priority, name"),
    (["12", "b"], r"rule at index 1 \('b'\): bad priority"),
    (["5", "b", [["Methd", "is", "x"]], []], r"rule at index 1 \('b'\): condition 1"),
    (["5", "new", [], [["Ring"]]], r"rule at index 3 \('new'\): action 1"),
])
def test_bad_updates_are_refused(data, message):
    with pytest.raises(RulesError, match=message):
        update_rule(parse(BASE), data)


def test_delete_removes_the_rule_of_that_name():
    assert [r.name for r in delete_rule(parse(BASE), "b")] == ["a", "c"]


def test_delete_of_an_unknown_rule_is_refused():
    with pytest.raises(RulesError, match="rule 'zz': there is no rule of this name") as e:
        delete_rule(parse(BASE), "zz")
    assert e.value.index is None and e.value.name == "zz"


# ------------------------------------------------------------ properties

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
WORDS = st.text("abcxyz*@. -", max_size=10)
IP = st.sampled_from(["10.0.0.0/8", "192.168.1.5", "2001:db8::/32", "[10.1.2.3]",
                      "10.0.0.1-10.0.0.9"])
TIME = st.builds("{:02d}:{:02d}".format, st.integers(0, 23), st.integers(0, 59))
DAY = st.sampled_from(["Monday", "sat", "SUNDAY", "Wed"])


@st.composite
def conditions(draw):
    op_code = draw(st.sampled_from([
        "Method", "RequestURI", "From", "To", "CallType", "Authenticated", "Presence",
        "Submit Address", "ReqField", "Time Of Day", "Current Day", "RegClients"]))
    listed = draw(st.booleans())
    operation = draw(st.sampled_from(["in", "not in"] if listed else ["is", "is not"]))
    count = draw(st.integers(1, 3)) if listed else 1
    if op_code == "Submit Address":
        items = draw(st.lists(IP, min_size=count, max_size=count))
    elif op_code == "Time Of Day":
        if not listed and draw(st.booleans()):
            operation = draw(st.sampled_from(["greater than", "less than"]))
            items = [draw(TIME)]
        else:
            items = draw(st.lists(TIME, min_size=count, max_size=count))
    elif op_code == "Current Day":
        items = draw(st.lists(DAY, min_size=count, max_size=count))
    elif op_code == "RegClients":
        if not listed:
            operation = draw(st.sampled_from(["is", "is not", "greater than", "less than"]))
        items = [str(n) for n in draw(st.lists(st.integers(0, 99), min_size=count, max_size=count))]
    else:
        items = draw(st.lists(WORDS.map(lambda s: s.replace(",", "")),
                              min_size=count, max_size=count))
    parameter = ", ".join(items)
    if op_code == "ReqField":
        parameter = draw(st.sampled_from(["X-Priority", "Subject"])) + ": " + parameter
    return Condition(op_code, operation, parameter)


ADDRESSES = st.lists(st.sampled_from(["bob", "x@dom", "#app", "<sip:a@b>", "tel:+15551234"]),
                     min_size=1, max_size=3).map(", ".join)

ACTIONS = st.one_of(
    st.builds(Action, st.just(REJECT), st.one_of(
        st.none(), st.sampled_from(["486 Busy Here", "603", "Go away"]))),
    st.builds(Action, st.sampled_from([REDIRECT, FORK]), ADDRESSES),
    st.builds(Action, st.sampled_from([STOP, DISCARD])),
    st.builds(Action, st.just(LOG), st.one_of(st.none(), TEXT)),
)

STAGES = st.one_of(
    st.sampled_from([Stage.IMMEDIATELY, Stage.NO_ANSWER, Stage.BUSY, Stage.ERROR]),
    st.integers(1, 600).map(Stage.after),
)


@st.composite
def rule_sets(draw):
    names = draw(st.lists(TEXT.filter(bool), unique=True, max_size=5))
    return tuple(
        Rule(draw(st.integers(0, 10)), name, draw(STAGES),
             draw(st.lists(conditions(), max_size=3)),
             draw(st.lists(ACTIONS, max_size=3)), draw(TEXT))
        for name in names)


@settings(max_examples=200)
@given(rule_sets())
def test_rules_as_data_reads_back_as_the_same_rules(rules):
    assert parse_rules(rules_as_data(rules)) == rules


@settings(max_examples=100)
@given(rule_sets())
def test_rules_survive_the_data_format_text(rules):
    assert parse_rules(loads(dumps(rules_as_data(rules)))) == rules


DATA = st.recursive(
    st.one_of(st.sampled_from(["5", "0", "Method", "is", "in", "Stage", "busy", "15",
                               "Reject with", "Fork to", "Stop Processing", "x@y", ""]),
              st.integers(-2, 700), st.none(), TEXT),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300)
@given(st.lists(DATA, max_size=4))
def test_any_data_either_parses_or_raises_rules_error(data):
    try:
        rules = parse_rules(data)
    except RulesError:
        return
    assert parse_rules(rules_as_data(rules)) == rules


# ------------------------------------------------ evaluation properties

WEIRD = st.one_of(st.none(), st.text(max_size=10), st.integers(), st.floats(), st.booleans())

FACTS = st.builds(
    SignalFacts,
    method=st.one_of(st.sampled_from(["INVITE", "MESSAGE"]), WEIRD),
    request_uri=WEIRD, from_address=WEIRD, to_address=WEIRD,
    call_type=st.one_of(st.sampled_from(["AV", "IM", ""]), WEIRD),
    authenticated=WEIRD,
    submit_address=st.one_of(
        st.sampled_from(["10.1.2.3", "::ffff:10.0.0.1", "2001:db8::1", "[10.0.0.1]"]), WEIRD),
    headers=st.one_of(
        st.lists(st.tuples(st.sampled_from(["X-Priority", "subject", "Via"]), WEIRD)).map(tuple),
        st.lists(WEIRD).map(tuple), WEIRD),
    now=st.one_of(st.datetimes(), st.floats(), st.integers(), WEIRD),
    reg_clients=st.one_of(st.integers(-5, 50), WEIRD),
    presence=WEIRD,
)


@settings(max_examples=300)
@given(st.lists(conditions(), max_size=6), FACTS)
def test_random_condition_sets_evaluation_never_raises(condition_set, facts):
    for condition in condition_set:
        assert condition.holds(facts) in (True, False)
    rule = Rule(5, "r", conditions=condition_set, actions=[Action(LOG, "hit")])
    decision, discarded = evaluate([rule], facts, "bob@example.com")
    assert decision.log in ((), ("hit",)) and not discarded


class Levels:
    def __init__(self, server, domain, account):
        self.levels = (server, domain, account)

    def server_signal_rules(self):
        return self.levels[0]

    def domain_signal_rules(self, domain):
        return self.levels[1]

    def account_signal_rules(self, account):
        return self.levels[2]


SIGNAL = Signal("INVITE", ("bob@example.com",), "alice@example.net", "bob@example.com",
                "c1", Submitter("sip"))


@settings(max_examples=150)
@given(rule_sets(), rule_sets(), rule_sets(), FACTS,
       st.sampled_from([None, "bob@example.com"]))
def test_random_rule_sets_plan_and_decide_without_raising(server, domain, account, facts, target):
    plan = SignalRules(Levels(server, domain, account)).plan(SIGNAL, target, facts)
    decisions = [plan.immediate(), *(plan.after(s) for s in plan.delays()),
                 plan.on_failure(486), plan.on_failure(408), plan.on_failure(500)]
    assert all(isinstance(d, Decision) for d in decisions)


def _group(level, rule):
    """0-4: server > 5, domain > 5, account, domain <= 5, server <= 5."""
    if level == "account":
        return 2
    high = rule.priority > 5
    return {("server", True): 0, ("domain", True): 1,
            ("domain", False): 3, ("server", False): 4}[level, high]


@given(rule_sets(), rule_sets(), rule_sets(),
       st.sampled_from([Stage.IMMEDIATELY, Stage.BUSY, Stage.after(15)]))
def test_merged_is_the_stage_active_rules_by_group_then_priority_then_order(
        server, domain, account, stage):
    tagged = [(level, position, rule)
              for level, rules in (("server", server), ("domain", domain), ("account", account))
              for position, rule in enumerate(rules)
              if rule.active and rule.stage == stage]
    tagged.sort(key=lambda t: (_group(t[0], t[2]), -t[2].priority))
    assert [id(r) for r in merged(server, domain, account, stage)] == [id(t[2]) for t in tagged]
