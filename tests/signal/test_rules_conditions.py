"""Tests for communigate.signal.conditions: every Signal Rule condition and operation."""

import datetime
import re

import pytest
from hypothesis import given, strategies as st

from communigate.signal.conditions import OPERATIONS, Condition, glob_match, split_list
from communigate.signal.model import SignalFacts

MONDAY_NOON = datetime.datetime(2024, 5, 6, 12, 0, 30)


def facts(**changes):
    values = dict(
        method="INVITE", request_uri="bob@example.com",
        from_address="alice@example.net", to_address="bob@example.com",
        call_type="AV", authenticated="alice@example.net",
        submit_address="192.0.2.10", headers=(("X-Priority", "urgent"),),
        now=MONDAY_NOON, reg_clients=2, presence="online",
    )
    values.update(changes)
    return SignalFacts(**values)


def holds(op_code, operation, parameter, **changes):
    return Condition(op_code, operation, parameter).holds(facts(**changes))


# ------------------------------------------------------------- text conditions

TEXT_FACTS = [
    ("Method", "method", "MESSAGE"),
    ("RequestURI", "request_uri", "carol@example.com"),
    ("From", "from_address", "dave@example.org"),
    ("To", "to_address", "erin@example.com"),
    ("CallType", "call_type", "IM"),
    ("Authenticated", "authenticated", "frank@example.com"),
    ("Presence", "presence", "away"),
]


@pytest.mark.parametrize("op_code, field, value", TEXT_FACTS)
def test_each_text_condition_reads_its_own_fact(op_code, field, value):
    assert holds(op_code, "is", value, **{field: value})
    assert not holds(op_code, "is", value + "x", **{field: value})
    assert holds(op_code, "is not", value + "x", **{field: value})
    assert not holds(op_code, "is not", value, **{field: value})


def test_is_compares_the_whole_value_case_insensitively():
    assert holds("Method", "is", "invite")
    assert holds("Method", "is", " INVITE ")
    assert not holds("Method", "is", "INV")


def test_star_matches_any_text_including_none():
    assert holds("From", "is", "*@example.net")
    assert holds("From", "is", "alice@*")
    assert holds("From", "is", "a*e@ex*.net")
    assert holds("From", "is", "alice@example.net*")
    assert not holds("From", "is", "*@example.com")


def test_in_takes_a_comma_separated_list_of_patterns():
    assert holds("Method", "in", "MESSAGE, invite")
    assert holds("From", "in", "*@example.org,*@example.net")
    assert not holds("Method", "in", "MESSAGE,SUBSCRIBE")


def test_not_in_is_the_negation_of_in():
    assert holds("Method", "not in", "MESSAGE, SUBSCRIBE")
    assert not holds("Method", "not in", "MESSAGE, INVITE")


def test_call_type_can_be_compared_with_empty():
    assert holds("CallType", "is", "", call_type="")
    assert not holds("CallType", "is", "", call_type="AV")
    assert holds("CallType", "in", "AV, IM", call_type="IM")


def test_authenticated_is_empty_when_no_one_authenticated():
    assert holds("Authenticated", "is", "", authenticated=None)
    assert holds("Authenticated", "is not", "*@*", authenticated=None)
    assert holds("Authenticated", "is", "*@example.net")


def test_presence_patterns():
    assert holds("Presence", "in", "online, busy")
    assert holds("Presence", "not in", "away, offline")
    assert holds("Presence", "is", "off*", presence="offline")


# ------------------------------------------------------------ Submit Address

@pytest.mark.parametrize("parameter", [
    "192.0.2.10", "[192.0.2.10]", "192.0.2.0/24", "192.0.2.1-192.0.2.20",
])
def test_submit_address_is_an_address_network_or_range(parameter):
    assert holds("Submit Address", "is", parameter)
    assert not holds("Submit Address", "is", parameter, submit_address="198.51.100.1")


def test_submit_address_in_a_cidr_list():
    lst = "10.0.0.0/8, 192.168.1.5"
    assert holds("Submit Address", "in", lst, submit_address="10.20.30.40")
    assert holds("Submit Address", "in", lst, submit_address="192.168.1.5")
    assert not holds("Submit Address", "in", lst, submit_address="192.168.1.6")
    assert holds("Submit Address", "not in", lst, submit_address="192.168.1.6")
    assert not holds("Submit Address", "not in", lst, submit_address="10.0.0.1")


def test_submit_address_ipv6_and_mapped_ipv4():
    assert holds("Submit Address", "in", "2001:db8::/32", submit_address="2001:db8::5")
    assert not holds("Submit Address", "in", "2001:db8::/32", submit_address="10.0.0.1")
    assert holds("Submit Address", "in", "10.0.0.0/8", submit_address="::ffff:10.1.2.3")
    assert not holds("Submit Address", "in", "10.0.0.0/8", submit_address="2001:db8::5")


@pytest.mark.parametrize("missing", [None, "not-an-ip", ""])
def test_a_missing_submit_address_is_in_nothing(missing):
    assert not holds("Submit Address", "in", "0.0.0.0/0", submit_address=missing)
    assert holds("Submit Address", "not in", "0.0.0.0/0", submit_address=missing)
    assert holds("Submit Address", "is not", "192.0.2.10", submit_address=missing)


# ------------------------------------------------------------------ ReqField

def test_req_field_is_name_colon_pattern():
    assert holds("ReqField", "is", "X-Priority: urgent*")
    assert holds("ReqField", "is", "x-priority:URGENT")
    assert not holds("ReqField", "is", "X-Priority: low")
    assert holds("ReqField", "is not", "X-Priority: low")


def test_req_field_in_takes_patterns_after_the_colon():
    assert holds("ReqField", "in", "X-Priority: low, urg*")
    assert not holds("ReqField", "in", "X-Priority: low, normal")
    assert holds("ReqField", "not in", "X-Priority: low, normal")


def test_req_field_holds_when_any_value_of_the_field_matches():
    headers = (("Via", "a"), ("X-Tag", "one"), ("x-tag", "two"))
    assert holds("ReqField", "is", "X-Tag: two", headers=headers)
    assert holds("ReqField", "in", "X-Tag: zero, one", headers=headers)


def test_a_missing_header_field_matches_no_pattern():
    assert not holds("ReqField", "is", "X-Missing: *")
    assert holds("ReqField", "is not", "X-Missing: *")


# --------------------------------------------------------------- Time Of Day

def at(hour, minute, second=0):
    return datetime.datetime(2024, 5, 6, hour, minute, second)


def test_time_of_day_greater_and_less_than_in_whole_minutes():
    assert not holds("Time Of Day", "greater than", "17:00", now=at(17, 0, 59))
    assert holds("Time Of Day", "greater than", "17:00", now=at(17, 1))
    assert holds("Time Of Day", "less than", "09:00", now=at(8, 59, 59))
    assert not holds("Time Of Day", "less than", "09:00", now=at(9, 0))


def test_time_of_day_is_a_minute_or_a_range():
    assert holds("Time Of Day", "is", "12:00")
    assert not holds("Time Of Day", "is", "12:01")
    assert holds("Time Of Day", "is", "09:00-17:00", now=at(9, 0))
    assert holds("Time Of Day", "is", "09:00-17:00", now=at(16, 59))
    assert not holds("Time Of Day", "is", "09:00-17:00", now=at(17, 0))
    assert not holds("Time Of Day", "is", "09:00-17:00", now=at(8, 59))
    assert holds("Time Of Day", "is not", "09:00-17:00", now=at(20, 0))


def test_time_of_day_range_wraps_past_midnight():
    assert holds("Time Of Day", "is", "22:00-06:00", now=at(23, 30))
    assert holds("Time Of Day", "is", "22:00-06:00", now=at(5, 59))
    assert not holds("Time Of Day", "is", "22:00-06:00", now=at(6, 0))
    assert holds("Time Of Day", "is", "18:00-24:00", now=at(23, 59))
    assert holds("Time Of Day", "is", "00:00-24:00", now=at(0, 0))
    assert holds("Time Of Day", "is", "00:00-24:00", now=at(23, 59))


def test_time_of_day_in_a_list_of_times_and_ranges():
    lst = "08:00-09:00, 12:00, 13:30-14:00"
    assert holds("Time Of Day", "in", lst, now=at(8, 30))
    assert holds("Time Of Day", "in", lst, now=at(12, 0))
    assert holds("Time Of Day", "in", lst, now=at(13, 45))
    assert not holds("Time Of Day", "in", lst, now=at(10, 0))
    assert holds("Time Of Day", "not in", lst, now=at(10, 0))


def test_time_of_day_reads_a_timestamp_as_utc():
    noon = datetime.datetime(2024, 5, 6, 12, 0, tzinfo=datetime.timezone.utc).timestamp()
    assert holds("Time Of Day", "is", "12:00", now=noon)
    assert holds("Current Day", "is", "Monday", now=noon)


def test_without_a_clock_time_conditions_hold_only_negated():
    assert not holds("Time Of Day", "is", "00:00-24:00", now=None)
    assert not holds("Time Of Day", "greater than", "00:00", now=None)
    assert not holds("Time Of Day", "less than", "23:59", now=None)
    assert holds("Time Of Day", "not in", "12:00", now=None)
    assert not holds("Current Day", "in", "Mon,Tue,Wed,Thu,Fri,Sat,Sun", now=None)


# --------------------------------------------------------------- Current Day

def test_current_day_by_name_in_any_case():
    assert holds("Current Day", "is", "Monday")
    assert holds("Current Day", "is", "monday")
    assert holds("Current Day", "is", "MON")
    assert not holds("Current Day", "is", "Tuesday")
    assert holds("Current Day", "is not", "Tuesday")


def test_current_day_in_a_list():
    saturday = datetime.datetime(2024, 5, 11, 10, 0)
    assert holds("Current Day", "in", "Saturday,Sunday", now=saturday)
    assert not holds("Current Day", "in", "Saturday,Sunday")
    assert holds("Current Day", "not in", "Saturday, Sunday")


# ---------------------------------------------------------------- RegClients

def test_reg_clients_is_greater_less_and_in():
    assert holds("RegClients", "is", "2")
    assert not holds("RegClients", "is", "0")
    assert holds("RegClients", "is not", "0")
    assert holds("RegClients", "greater than", "1")
    assert not holds("RegClients", "greater than", "2")
    assert holds("RegClients", "less than", "3")
    assert not holds("RegClients", "less than", "2")
    assert holds("RegClients", "in", "0, 2")
    assert holds("RegClients", "not in", "0, 1")
    assert holds("RegClients", "is", "0", reg_clients=0)


def test_reg_clients_takes_a_number_from_the_data_format():
    assert Condition("RegClients", "greater than", 1).parameter == "1"
    assert holds("RegClients", "greater than", 1)


# -------------------------------------------------- names, errors, helpers

def test_names_are_read_in_any_case_and_spacing_and_kept_canonical():
    condition = Condition("time of day", "GREATER THAN", "17:00")
    assert (condition.op_code, condition.operation) == ("Time Of Day", "greater than")
    assert Condition("submitaddress", "NotIn", "10.0.0.0/8").op_code == "Submit Address"
    assert Condition("requesturi", "is", "*") == Condition("RequestURI", "is", "*")


@pytest.mark.parametrize("op_code, operation, parameter, message", [
    ("Methd", "is", "INVITE", "unknown condition 'Methd'"),
    ("Method", "equals", "INVITE", "unknown operation 'equals'"),
    ("Method", "greater than", "INVITE", "Method cannot use 'greater than'"),
    ("Current Day", "less than", "Friday", "Current Day cannot use 'less than'"),
    ("Time Of Day", "is", "25:00", "bad time '25:00'"),
    ("Time Of Day", "greater than", "noon", "bad time 'noon'"),
    ("Time Of Day", "is", "09:00-09:00", "starts where it ends"),
    ("Time Of Day", "is", "24:00", "bad time"),
    ("Time Of Day", "in", " , ", "expected a list of times"),
    ("RegClients", "is", "two", "bad number 'two'"),
    ("RegClients", "greater than", "-1", "bad number '-1'"),
    ("Current Day", "is", "Caturday", "bad day 'Caturday'"),
    ("Submit Address", "in", "10.0.0.0/33", "bad IP address, network or range"),
    ("Submit Address", "is", "10.0.0.9-10.0.0.1", "ascending range"),
    ("Submit Address", "is", "example.com", "bad IP address"),
    ("ReqField", "is", "urgent", "expected 'Field-Name: pattern'"),
    ("ReqField", "is", ": urgent", "expected 'Field-Name: pattern'"),
    (5, "is", "x", "condition must be a string"),
    ("Method", "is", None, "parameter must be a string"),
])
def test_bad_conditions_are_refused_with_the_reason(op_code, operation, parameter, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Condition(op_code, operation, parameter)


def test_split_list_strips_items():
    assert split_list(" a,b , c ") == ["a", "b", "c"]


def _reference(pattern, value):
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


@given(st.text("abAB*", max_size=8), st.text("abAB", max_size=10))
def test_glob_match_agrees_with_a_regular_expression(pattern, value):
    assert glob_match(pattern, value) == _reference(pattern, value)


@given(st.text(max_size=20))
def test_star_matches_everything_and_a_text_matches_itself(value):
    assert glob_match("*", value)
    assert glob_match(value.replace("*", ""), value.replace("*", ""))


def test_every_operation_has_a_name():
    assert OPERATIONS == ("is", "is not", "in", "not in", "greater than", "less than")
