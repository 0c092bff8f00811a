"""Tests for communigate.signal.rules: merging, evaluation and the rule plan of a Signal."""

import datetime

import pytest
from zope.interface.verify import verifyObject

from communigate.formats.cgdata import loads
from communigate.interfaces import ISignalRules
from communigate.signal.model import NOTHING, Decision, Signal, SignalFacts, Submitter, response
from communigate.signal.rules import (
    RulePlan, SignalRules, Stage, evaluate, merged, parse_rules,
)

MONDAY_NOON = datetime.datetime(2024, 5, 6, 12, 0)


def rules(text):
    return parse_rules(loads(text))


def facts(**changes):
    values = dict(
        method="INVITE", request_uri="bob@example.com",
        from_address="alice@example.net", to_address="bob@example.com",
        call_type="AV", authenticated=None, submit_address="192.0.2.10",
        headers=(), now=MONDAY_NOON, reg_clients=1, presence="online",
    )
    values.update(changes)
    return SignalFacts(**values)


def signal(in_dialog=False, method="INVITE"):
    return Signal(
        method=method, targets=("bob@example.com",), from_address="alice@example.net",
        to_address="bob@example.com", call_id="c1",
        submitter=Submitter("sip", address=("192.0.2.10", 5060)), in_dialog=in_dialog)


class Source:
    """Rules by level, as the directory gives them; records what was asked."""

    def __init__(self, server="()", domains=None, accounts=None):
        self.server = rules(server)
        self.domains = {k: rules(v) for k, v in (domains or {}).items()}
        self.accounts = {k: rules(v) for k, v in (accounts or {}).items()}
        self.asked = []

    def server_signal_rules(self):
        self.asked.append(("server",))
        return self.server

    def domain_signal_rules(self, domain):
        self.asked.append(("domain", domain))
        return self.domains.get(domain, ())

    def account_signal_rules(self, account):
        self.asked.append(("account", account))
        return self.accounts.get(account, ())


def plan_for(account_rules, account="bob@example.com", domain_rules="()", server="()",
             **fact_changes):
    source = Source(server, {"example.com": domain_rules}, {"bob@example.com": account_rules})
    return SignalRules(source).plan(signal(), account, facts(**fact_changes))


def log_rule(priority, name, stage=None):
    stage = f'(Stage, is, "{stage}")' if stage else ""
    return f'({priority}, "{name}", ({stage}), (("Write To Log", "{name}")))'


# --------------------------------------------------- acceptance tests 11-15

def test_signal_rules_provider_provides_the_interface():
    assert verifyObject(ISignalRules, SignalRules(Source()))


def test_in_dialog_signal_gets_a_plan_where_every_stage_is_nothing():
    everything = ('((5, now, (), (("Reject with", "486"))),'
                  ' (5, later, ((Stage, is, 15)), (("Fork to", x))),'
                  ' (5, busy, ((Stage, is, busy)), (("Redirect to", vm))),'
                  ' (5, noanswer, ((Stage, is, "no answer")), (("Redirect to", vm))),'
                  ' (5, error, ((Stage, is, error)), (("Redirect to", vm))))')
    source = Source(everything, {"example.com": everything}, {"bob@example.com": everything})
    for account in ("bob@example.com", None):
        plan = SignalRules(source).plan(signal(in_dialog=True), account, facts())
        assert plan.immediate() == NOTHING
        assert plan.delays() == ()
        assert plan.after(15) == NOTHING
        for code in (486, 600, 603, 408, 480, 404, 500):
            assert plan.on_failure(response(code)) == NOTHING
    assert source.asked == []


def test_method_is_invite_redirect_gives_a_redirect_decision():
    plan = plan_for('((5, r, ((Method, is, INVITE)), (("Redirect to", "x@dom"))))')
    assert plan.immediate() == Decision(redirect=("x@dom",))


def test_redirect_rule_does_not_fire_for_another_method():
    plan = plan_for('((5, r, ((Method, is, INVITE)), (("Redirect to", "x@dom"))))',
                    method="MESSAGE")
    assert plan.immediate() == NOTHING


def test_reject_with_486_gives_486():
    plan = plan_for('((5, r, ((Method, is, INVITE)), (("Reject with", "486"))))')
    assert plan.immediate().reject == response(486, "Busy Here")


def test_stage_15_fork_rule_is_in_delays_and_forks_after_15_seconds():
    plan = plan_for('((5, r, ((Stage, is, 15)), (("Fork to", "carol"))))')
    assert plan.immediate() == NOTHING
    assert plan.delays() == (15,)
    assert plan.after(10) == NOTHING
    assert plan.after(15) == Decision(fork=("carol@example.com",))


def test_delays_are_sorted_and_distinct_over_all_levels():
    plan = plan_for(
        '((5, a, ((Stage, is, 30)), (("Fork to", a))), (5, b, ((Stage, is, 5)), ()),'
        ' (0, off, ((Stage, is, 7)), (("Fork to", c))))',
        domain_rules='((5, d, ((Stage, is, 30)), (("Fork to", d))))',
        server='((5, s, ((Stage, is, 20)), (("Fork to", s))))')
    assert plan.delays() == (5, 20, 30)
    assert plan.after(30) == Decision(fork=("a@example.com", "d@example.com"))


FAILURE_RULES = ('((5, busy, ((Stage, is, busy)), (("Redirect to", "busy"))),'
                 ' (5, noanswer, ((Stage, is, "no answer")), (("Redirect to", "noanswer"))),'
                 ' (5, error, ((Stage, is, error)), (("Redirect to", "error"))))')


@pytest.mark.parametrize("code, fired", [
    (486, "busy"), (600, "busy"), (603, "busy"),
    (408, "noanswer"), (480, "noanswer"),
    (404, "error"), (500, "error"), (503, "error"), (487, "error"), (488, "error"),
])
def test_failure_stage_rules_fire_only_for_their_codes(code, fired):
    plan = plan_for(FAILURE_RULES)
    assert plan.immediate() == NOTHING
    assert plan.on_failure(response(code)) == Decision(redirect=(f"{fired}@example.com",))


@pytest.mark.parametrize("code", [100, 180, 200, 302])
def test_a_response_that_is_not_a_failure_fires_no_failure_rule(code):
    assert plan_for(FAILURE_RULES).on_failure(response(code)) == NOTHING


def test_on_failure_also_takes_a_bare_code():
    assert plan_for(FAILURE_RULES).on_failure(486) == Decision(redirect=("busy@example.com",))


def test_merge_order_server_high_then_account_then_domain_low():
    plan = plan_for(
        f"({log_rule(3, 'account 3', 15)}, {log_rule(9, 'account 9', 15)})",
        domain_rules=f"({log_rule(2, 'domain 2', 15)})",
        server=f"({log_rule(7, 'server 7', 15)})")
    assert plan.after(15).log == ("server 7", "account 9", "account 3", "domain 2")


def test_merge_order_of_all_five_groups_with_priority_ties_in_stored_order():
    server = (f"({log_rule(5, 'S5', 'busy')}, {log_rule(8, 'S8', 'busy')},"
              f" {log_rule(1, 'S1', 'busy')}, {log_rule(6, 'S6', 'busy')})")
    domain = (f"({log_rule(5, 'D5', 'busy')}, {log_rule(6, 'D6a', 'busy')},"
              f" {log_rule(9, 'D9', 'busy')}, {log_rule(6, 'D6b', 'busy')},"
              f" {log_rule(0, 'D0', 'busy')})")
    account = (f"({log_rule(1, 'A1', 'busy')}, {log_rule(10, 'A10', 'busy')},"
               f" {log_rule(6, 'A6', 'busy')})")
    plan = plan_for(account, domain_rules=domain, server=server)
    expected = ("S8", "S6", "D9", "D6a", "D6b", "A10", "A6", "A1", "D5", "S5", "S1")
    assert [r.name for r in plan.rules(Stage.BUSY)] == list(expected)
    assert plan.on_failure(response(486)).log == expected


def test_merged_keeps_only_active_rules_of_the_stage():
    server = rules(f"({log_rule(7, 's7')}, {log_rule(3, 's3', 15)}, {log_rule(0, 's0')})")
    account = rules(f"({log_rule(2, 'a2')}, {log_rule(4, 'a4', 'busy')})")
    assert [r.name for r in merged(server, (), account, Stage.IMMEDIATELY)] == ["s7", "a2"]
    assert [r.name for r in merged(server, (), account, Stage.after(15))] == ["s3"]
    assert [r.name for r in merged(server, (), account, Stage.BUSY)] == ["a4"]


def test_plan_without_account_holds_only_the_server_immediate_rules():
    source = Source(
        server=f"({log_rule(7, 'server now')}, {log_rule(3, 'server later', 15)})",
        domains={"example.com": f"({log_rule(9, 'domain')})"},
        accounts={"bob@example.com": f"({log_rule(9, 'account')})"})
    plan = SignalRules(source).plan(signal(), None, facts())
    assert plan.immediate().log == ("server now",)
    assert plan.delays() == ()
    assert source.asked == [("server",)]


def test_plan_for_an_account_leaves_out_the_server_immediate_rules():
    plan = plan_for(f"({log_rule(5, 'account')})",
                    server=f"({log_rule(9, 'server now')}, {log_rule(9, 'server later', 15)})")
    assert plan.immediate().log == ("account",)
    assert plan.after(15).log == ("server later",)


def test_domain_rules_are_those_of_the_account_domain():
    source = Source(domains={"example.com": f"({log_rule(5, 'example')})",
                             "other.org": f"({log_rule(5, 'other')})"})
    plan = SignalRules(source).plan(signal(), "carol@other.org", facts())
    assert plan.immediate().log == ("other",)
    assert ("domain", "other.org") in source.asked
    assert ("account", "carol@other.org") in source.asked


def test_priority_zero_rules_never_run():
    assert plan_for('((0, r, (), (("Reject with", "486"))))').immediate() == NOTHING
    assert plan_for('((Inactive, r, ((Stage, is, 15)), (("Fork to", x))))').delays() == ()


# ----------------------------------------------------------------- actions

def test_a_rule_without_conditions_always_fires_and_all_conditions_must_hold():
    plan = plan_for('((5, always, (), (("Write To Log", always))),'
                    ' (5, both, ((Method, is, INVITE), (CallType, is, AV)), (("Write To Log", both))),'
                    ' (5, one, ((Method, is, INVITE), (CallType, is, IM)), (("Write To Log", one))))')
    assert plan.immediate().log == ("always", "both")


def test_redirect_and_fork_qualify_bare_names_with_the_account_domain():
    plan = plan_for('((5, r, (), (("Fork to", "carol, dave@else.org, #voicemail, pbx#postmaster"),'
                    ' ("Redirect to", "erin, <sip:f@g.example>, tel:+15551234, +15550000"))))')
    assert plan.immediate() == Decision(
        fork=("carol@example.com", "dave@else.org", "#voicemail", "pbx#postmaster"),
        redirect=("erin@example.com", "<sip:f@g.example>", "tel:+15551234",
                  "+15550000@example.com"))


def test_bare_names_stay_bare_without_an_account():
    source = Source(server='((5, r, (), (("Redirect to", "carol"))))')
    assert SignalRules(source).plan(signal(), None, facts()).immediate() == Decision(
        redirect=("carol",))


def test_forks_add_up_across_rules_without_repeats():
    plan = plan_for('((9, a, (), (("Fork to", "x, y"))), (5, b, (), (("Fork to", "y, z"))))')
    assert plan.immediate().fork == ("x@example.com", "y@example.com", "z@example.com")


def test_reject_ends_the_stage_so_the_first_reject_wins():
    plan = plan_for('((9, a, (), (("Fork to", x), ("Reject with", "486"), ("Write To Log", no))),'
                    ' (5, b, (), (("Reject with", "603"))))')
    assert plan.immediate() == Decision(reject=response(486), fork=("x@example.com",))


def test_redirect_ends_the_stage():
    plan = plan_for('((9, a, (), (("Redirect to", x), ("Reject with", "486"))),'
                    ' (5, b, (), (("Redirect to", y))))')
    assert plan.immediate() == Decision(redirect=("x@example.com",))


def test_write_to_log_adds_lines_and_without_text_writes_the_rule_name():
    plan = plan_for('((9, a, (), (("Write To Log", "first"), ("Write To Log", "second"))),'
                    ' (5, "rule b", (), (("Write To Log"))))')
    assert plan.immediate() == Decision(log=("first", "second", "rule b"))


def test_stop_processing_ends_the_stage_but_not_later_stages():
    plan = plan_for('((9, a, (), (("Fork to", x), ("Stop Processing"), ("Fork to", y))),'
                    ' (5, b, (), (("Fork to", z))),'
                    ' (5, c, ((Stage, is, 15)), (("Fork to", w))))')
    assert plan.immediate() == Decision(fork=("x@example.com",))
    assert not plan.discarded
    assert plan.delays() == (15,)
    assert plan.after(15) == Decision(fork=("w@example.com",))


def test_discard_rules_ends_the_stage_and_every_later_stage():
    plan = plan_for('((9, a, (), (("Fork to", x), ("Discard Rules"), ("Fork to", y))),'
                    ' (5, b, (), (("Fork to", z))),'
                    ' (5, c, ((Stage, is, 15)), (("Fork to", w))),'
                    ' (5, d, ((Stage, is, busy)), (("Redirect to", vm))))')
    assert plan.immediate() == Decision(fork=("x@example.com",))
    assert plan.discarded
    assert plan.delays() == ()
    assert plan.after(15) == NOTHING
    assert plan.on_failure(response(486)) == NOTHING
    assert plan.immediate() == Decision(fork=("x@example.com",))


def test_discard_in_a_timed_stage_silences_the_failure_stages():
    plan = plan_for('((5, c, ((Stage, is, 15)), (("Discard Rules"))),'
                    ' (5, d, ((Stage, is, busy)), (("Redirect to", vm))))')
    assert plan.immediate() == NOTHING
    assert plan.after(15) == NOTHING
    assert plan.discarded
    assert plan.on_failure(response(486)) == NOTHING


def test_conditions_see_the_time_and_day_of_the_facts():
    text = ('((5, hours, (("Time Of Day", in, "09:00-17:00"), ("Current Day", "not in", "Sat, Sun")),'
            ' (("Write To Log", office))), (5, night, (("Time Of Day", "greater than", "20:00")),'
            ' (("Redirect to", "#voicemail"))))')
    assert plan_for(text).immediate() == Decision(log=("office",))
    saturday_night = datetime.datetime(2024, 5, 11, 21, 0)
    assert plan_for(text, now=saturday_night).immediate() == Decision(redirect=("#voicemail",))


def test_submit_address_cidr_rule():
    text = '((5, lan, (("Submit Address", in, "10.0.0.0/8, 192.168.1.5")), (("Reject with", "403 LAN only"))))'
    assert plan_for(text, submit_address="10.9.8.7").immediate().reject == response(403, "LAN only")
    assert plan_for(text, submit_address="192.168.1.6").immediate() == NOTHING


def test_evaluate_returns_the_decision_and_whether_rules_were_discarded():
    set_ = rules('((5, a, (), (("Fork to", x), ("Discard Rules"))))')
    assert evaluate(set_, facts(), "u@dom") == (Decision(fork=("x@dom",)), True)
    assert evaluate((), facts()) == (NOTHING, False)


def test_an_empty_plan_answers_nothing():
    plan = RulePlan({}, facts())
    assert (plan.immediate(), plan.delays(), plan.after(15), plan.on_failure(486)) == (
        NOTHING, (), NOTHING, NOTHING)
