"""
Tests for communigate.routing.table: parsing Router tables, the seed slides'
routing examples, table order, type prefixes, comments, the local-part rule,
target classification and every parse error.
"""

import pytest

from communigate.routing.route import AddressKind, RoutingError
from communigate.routing.table import (
    RouterTableError,
    TargetKind,
    classify_target,
    parse_router_table,
)

SIGNAL, MAIL, ACCESS = AddressKind.SIGNAL, AddressKind.MAIL, AddressKind.ACCESS

# The records of the "VoIP routing: best practices", "Processing calls ..."
# and "Registering to external PSTN Gateways" slides.
SLIDES = """\
; VoIP routing: best practices
<+(6-15d)*> = +*@telnum
S:<(7d)*> = localAreaCall{*}#pbx
<00(6-15d)*>=+*@telnum
S:<+36*@telnum> = 0*@pstn
S:<+*@telnum> = 00*@pstn
S:<*@pstn> = gatewaycaller{*}#postmaster
S:<incoming*@wan.ip> = gatewayincoming{*,bridge}#postmaster@localhost
S:<*@incoming.hostname> = gatewayincoming{+*,bridge,media}#pbx@localhost
"""


def rewritten(table, address, kind=SIGNAL, domain_is_local=False):
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, None
    found = table.match(local, domain, kind, domain_is_local)
    return None if found is None else found.rewritten


@pytest.fixture
def slides():
    return parse_router_table(SLIDES)


# -- the slides' examples ---------------------------------------------------

def test_e164_record_turns_a_plus_number_of_6_to_15_digits_into_telnum(slides):
    assert rewritten(slides, "+15553837461") == "+15553837461@telnum"


def test_e164_record_refuses_a_number_of_only_5_digits(slides):
    assert rewritten(slides, "+12345") is None


def test_e164_record_refuses_a_number_with_a_letter_inside(slides):
    assert rewritten(slides, "+1555x3837461") is None


def test_international_prefix_00_becomes_plus(slides):
    assert rewritten(slides, "0036301234567") == "+36301234567@telnum"


def test_seven_digit_local_call_goes_to_the_pbx_for_signals(slides):
    found = slides.match("3837461", None, SIGNAL, False)
    assert found.rewritten == "localAreaCall{3837461}#pbx"
    assert found.kind is TargetKind.APPLICATION
    assert found.record.line == 3


def test_seven_digit_record_is_not_used_for_mail(slides):
    assert slides.match("3837461", None, MAIL, False) is None


def test_hungarian_telnum_goes_to_pstn_with_national_prefix(slides):
    assert rewritten(slides, "+3612345678@telnum") == "012345678@pstn"


def test_other_telnums_go_to_pstn_with_international_prefix(slides):
    assert rewritten(slides, "+15553837461@telnum") == "0015553837461@pstn"


def test_pstn_domain_goes_to_gatewaycaller_with_the_number(slides):
    assert rewritten(slides, "0015553837461@pstn") == "gatewaycaller{0015553837461}#postmaster"


def test_gateway_registration_address_goes_to_gatewayincoming(slides):
    assert (
        rewritten(slides, "incomingGW1@wan.ip")
        == "gatewayincoming{GW1,bridge}#postmaster@localhost"
    )


def test_incoming_hostname_passes_the_number_with_plus(slides):
    assert (
        rewritten(slides, "15553837461@incoming.hostname")
        == "gatewayincoming{+15553837461,bridge,media}#pbx@localhost"
    )


def test_slides_table_has_one_record_per_non_comment_line(slides):
    assert [r.line for r in slides.records] == [2, 3, 4, 5, 6, 7, 8, 9]


# -- records and the table text ---------------------------------------------

def test_record_keeps_line_kinds_pattern_target_and_text():
    table = parse_router_table("\n  S:<*@pstn>   =  gatewaycaller{*}#pbx   ; to the gateway\n")
    (record,) = table.records
    assert record.line == 2
    assert record.kinds == frozenset([SIGNAL])
    assert record.pattern == "*@pstn"
    assert record.target == "gatewaycaller{*}#pbx"
    assert record.text == "  S:<*@pstn>   =  gatewaycaller{*}#pbx   ; to the gateway"


def test_table_text_is_returned_exactly_as_given():
    text = "; routing\r\n<a> = b   ; c\r\n\r\n"
    assert parse_router_table(text).text == text


def test_empty_table_matches_nothing():
    table = parse_router_table("")
    assert table.records == ()
    assert table.match("x", None, SIGNAL, True) is None


def test_crlf_lines_parse_like_lf_lines_with_the_same_line_numbers():
    lf = parse_router_table(SLIDES)
    crlf = parse_router_table(SLIDES.replace("\n", "\r\n"))
    assert [(r.line, r.pattern, r.target, r.kinds) for r in crlf.records] == [
        (r.line, r.pattern, r.target, r.kinds) for r in lf.records
    ]


def test_error_on_a_crlf_line_names_the_line_without_the_carriage_return():
    with pytest.raises(RouterTableError) as e:
        parse_router_table("<a> = b\r\n<a b> = c\r\n")
    assert e.value.line == 2
    assert str(e.value).startswith("line 2: '<a b> = c': ")


def test_pattern_without_angle_brackets_is_accepted():
    table = parse_router_table("legacy = NULL\nold*@example.com=*@new.example")
    assert rewritten(table, "legacy") == "NULL"
    assert rewritten(table, "oldbob@Example.COM") == "bob@new.example"


# -- table order, type prefixes ---------------------------------------------

def test_first_matching_record_in_table_order_wins():
    table = parse_router_table("<*@x.com> = first\n<bob@x.com> = second\n")
    assert rewritten(table, "bob@x.com") == "first"


def test_wildcard_domain_record_before_a_literal_domain_record_wins():
    table = parse_router_table("<bob@*> = wildcard\n<*@x.com> = literal\n")
    assert rewritten(table, "bob@x.com") == "wildcard"
    assert rewritten(table, "alice@x.com") == "literal"


def test_local_part_record_before_a_domain_record_wins_in_a_local_domain():
    table = parse_router_table("<bob> = local\n<*@x.com> = domain\n")
    assert rewritten(table, "bob@x.com", domain_is_local=True) == "local"
    assert rewritten(table, "bob@x.com", domain_is_local=False) == "domain"


def test_later_record_is_used_when_the_earlier_one_is_for_another_kind():
    table = parse_router_table("M:<*@x.com> = mail\n<*@x.com> = any\n")
    assert rewritten(table, "bob@x.com", MAIL) == "mail"
    assert rewritten(table, "bob@x.com", SIGNAL) == "any"


@pytest.mark.parametrize(
    "prefix, kind",
    [
        ("S:", SIGNAL), ("s:", SIGNAL), ("Signal:", SIGNAL), ("SIGNAL:", SIGNAL),
        ("M:", MAIL), ("Mail:", MAIL), ("mail:", MAIL),
        ("A:", ACCESS), ("Access:", ACCESS), ("ACCESS:", ACCESS),
    ],
)
def test_type_prefix_in_any_case_limits_the_record_to_its_kind(prefix, kind):
    table = parse_router_table(f"{prefix}<bob> = x")
    assert table.records[0].kinds == frozenset([kind])
    for other in AddressKind:
        assert (table.match("bob", None, other, True) is not None) == (other is kind)


def test_record_without_prefix_applies_to_every_kind():
    table = parse_router_table("<bob> = x")
    assert table.records[0].kinds == frozenset(AddressKind)
    assert all(table.match("bob", None, kind, True) for kind in AddressKind)


def test_space_after_the_type_prefix_is_allowed():
    assert parse_router_table("Signal:  <bob> = x").records[0].pattern == "bob"


# -- comments ---------------------------------------------------------------

def test_comment_and_blank_lines_are_skipped():
    table = parse_router_table("; one\n\n   ; two\n\t\n<a> = b\n")
    assert [r.line for r in table.records] == [5]


def test_semicolon_after_the_target_starts_a_comment():
    table = parse_router_table("<a> = b;c\nd = e ; f")
    assert [r.target for r in table.records] == ["b", "e"]


def test_semicolon_inside_target_parameters_is_part_of_the_parameter():
    table = parse_router_table("<*> = prog{*;x,y}#acct ; comment")
    assert table.records[0].target == "prog{*;x,y}#acct"
    assert rewritten(table, "a") == "prog{a;x,y}#acct"


def test_semicolon_inside_the_angle_brackets_is_part_of_the_pattern():
    table = parse_router_table("<a;b=c> = x ; comment")
    assert table.records[0].pattern == "a;b=c"
    assert rewritten(table, "a;b=c") == "x"


def test_semicolon_outside_brackets_in_an_error_text_starts_a_comment():
    table = parse_router_table("<spam*> = error: go away; nobody reads this")
    assert table.records[0].target == "error: go away"


# -- the no-'@' local-domain rule --------------------------------------------

def test_local_part_pattern_does_not_match_an_address_in_a_remote_domain():
    table = parse_router_table("<x> = y")
    assert table.match("x", "remote.com", SIGNAL, False) is None


def test_local_part_pattern_matches_an_address_in_a_local_domain():
    table = parse_router_table("<x> = y")
    assert table.match("x", "example.com", SIGNAL, True).rewritten == "y"


def test_local_part_pattern_matches_a_bare_name_without_domain():
    table = parse_router_table("<x> = y")
    assert table.match("x", None, SIGNAL, False).rewritten == "y"


def test_pattern_with_at_does_not_match_a_bare_name():
    table = parse_router_table("<x@*> = y\n<*@*> = z")
    assert table.match("x", None, SIGNAL, True) is None


def test_pattern_with_at_matches_remote_and_local_domains_alike():
    table = parse_router_table("<*@x.com> = *")
    for is_local in (True, False):
        assert table.match("bob", "x.com", SIGNAL, is_local).rewritten == "bob"


# -- matching: case, captures -----------------------------------------------

def test_literals_match_ignoring_case_and_captures_keep_the_address_case():
    table = parse_router_table("<Sales-*@Example.COM> = *@crm")
    assert rewritten(table, "sALES-BoB@example.com") == "BoB@crm"


def test_non_ascii_letters_match_only_in_their_own_case():
    table = parse_router_table("<é*> = x")
    assert rewritten(table, "ébob") == "x"
    assert rewritten(table, "Ébob") is None


def test_several_wildcards_are_substituted_left_to_right():
    table = parse_router_table("<*.*@*> = *-*-*")
    assert rewritten(table, "john.smith@x.com") == "john-smith-x.com"


def test_target_may_use_fewer_wildcards_than_the_pattern_captures():
    table = parse_router_table("<*@*> = *")
    assert rewritten(table, "bob@x.com") == "bob"


def test_each_wildcard_takes_as_little_as_it_can_left_to_right():
    table = parse_router_table("<*.*> = [*][*]")
    assert rewritten(table, "a.b.c") == "[a][b.c]"


def test_digit_wildcard_takes_the_fewest_digits_then_the_rest_goes_on():
    table = parse_router_table("<(2-4d)*(1-9d)*> = *|*")
    assert rewritten(table, "123456") == "12|3456"


def test_many_wildcards_match_a_long_address_in_linear_time():
    """
    Addresses come from the network: a backtracking matcher would need
    minutes for this pattern and address (cubic in the length or worse).
    """
    table = parse_router_table("<*a*a*a*b> = x")
    assert table.match("a" * 5000, None, SIGNAL, True) is None
    found = table.match("a" * 5000 + "b", None, SIGNAL, True)
    assert found.captures == ("", "", "", "a" * 4997)


def test_match_reports_the_captures():
    table = parse_router_table("<(3d)*-*> = x")
    assert table.match("555-Bob", None, SIGNAL, True).captures == ("555", "Bob")


# -- targets ----------------------------------------------------------------

@pytest.mark.parametrize("target", ["NULL", "null", "Null"])
def test_null_target_in_any_case_is_a_discard(target):
    found = parse_router_table(f"<x> = {target}").match("x", None, MAIL, True)
    assert found.kind is TargetKind.NULL
    assert found.error_text is None


@pytest.mark.parametrize(
    "target, text",
    [("error", ""), ("ERROR", ""), ("error:", ""), ("error: no calls here", "no calls here"),
     ("Error :busy", "busy")],
)
def test_error_target_is_a_rejection_with_its_text(target, text):
    found = parse_router_table(f"<x> = {target}").match("x", None, MAIL, True)
    assert found.kind is TargetKind.ERROR
    assert found.error_text == text


def test_error_text_can_carry_a_capture():
    found = parse_router_table("<old*> = error: * has left").match("oldbob", None, MAIL, True)
    assert found.error_text == "bob has left"


@pytest.mark.parametrize(
    "target",
    ["gatewaycaller{*}#postmaster", "prog#acct", "#voicemail",
     "gatewayincoming{*,bridge}#postmaster@localhost", "p{}#a", "p{a b, c}#a@d"],
)
def test_application_targets_are_classified_as_applications(target):
    found = parse_router_table(f"<*> = {target}").match("1", None, SIGNAL, True)
    assert found.kind is TargetKind.APPLICATION


@pytest.mark.parametrize("target", ["+*@telnum", "0*@pstn", "user@domain", "name", "errors@x.com"])
def test_address_targets_are_classified_as_addresses(target):
    found = parse_router_table(f"<*> = {target}").match("1", None, SIGNAL, True)
    assert found.kind is TargetKind.ADDRESS


def test_target_is_classified_after_substitution():
    table = parse_router_table("<to-*> = *")
    assert table.match("to-NULL", None, MAIL, True).kind is TargetKind.NULL
    assert table.match("to-error", None, MAIL, True).kind is TargetKind.ERROR
    assert table.match("to-#echo", None, MAIL, True).kind is TargetKind.APPLICATION


def test_capture_that_breaks_an_application_call_is_a_routing_error_naming_the_line():
    found = parse_router_table("\n<*@pstn> = gw{*}#pbx").match("a}b", "pstn", SIGNAL, False)
    assert found.rewritten == "gw{a}b}#pbx"
    with pytest.raises(RoutingError, match="line 2"):
        found.kind


def test_classify_target_explains_a_malformed_target():
    with pytest.raises(ValueError, match="not an application"):
        classify_target("a#b#c")


# -- parse errors -----------------------------------------------------------

@pytest.mark.parametrize(
    "line, reason",
    [
        ("<+(6-15d*> = x", "unbalanced '(' in the pattern"),
        ("<a)b> = x", "unbalanced ')' in the pattern"),
        ("<(7x)*> = x", "'(7x)' is not a digit qualifier"),
        ("<(d)*> = x", "'(d)' is not a digit qualifier"),
        ("<(9-3d)*> = x", "1 <= N <= M <= 255"),
        ("<(0d)*> = x", "1 <= N <= M <= 255"),
        ("<(300d)*> = x", "1 <= N <= M <= 255"),
        ("<(7d)> = x", "must be followed by '*'"),
        ("<(7d)x*> = x", "must be followed by '*'"),
        ("<a**> = x", "'**' in the pattern"),
        ("<a b> = x", "white space in the pattern"),
        ("<a<b> = x", "'<' is not allowed in a pattern"),
        ("<a{b}> = x", "'{' is not allowed in a pattern"),
        ("<> = x", "the pattern is empty"),
        (" = x", "the pattern is empty"),
        ("<abc = x", "unbalanced '<' in the pattern"),
        ("<abc> x", "expected '=' after the pattern's '>'"),
        ("<abc>", "expected '=' after the pattern's '>'"),
        ("abc", "no '='"),
        ("S: ; only a prefix", "no '='"),
        ("RelayAll:<*@x> = y", "unknown record type 'RelayAll'"),
        ("<a> =", "the target is empty"),
        ("<a> = ; comment", "the target is empty"),
        ("<a*> = *@*", "the target has 2 '*' but the pattern captures only 1"),
        ("<a> = *", "the target has 1 '*' but the pattern captures only 0"),
        ("<*> = p{*#a", "unbalanced '{' in the target"),
        ("<*> = p{a;b#x ; comment?", "unbalanced '{' in the target"),
        ("<*> = p}#x", "unbalanced '}' in the target"),
        ("<*> = p{a{b}}#x", "nested '{' in the target"),
        ("<*> = p#a#b", "is not an application"),
        ("<*> = {x}#acct", "is not an application"),
        ("<*> = #prog@dom", "is not an application"),
        ("<*> = p{x}", "need '#account' after them"),
        ("<a> = b c", "white space in the target address"),
        ("<a> = x = y", "white space in the target address"),
    ],
)
def test_bad_record_is_refused_naming_its_line_and_reason(line, reason):
    text = "; a comment\n<ok> = fine\n" + line + "\n<ok2> = fine\n"
    with pytest.raises(RouterTableError) as e:
        parse_router_table(text)
    assert e.value.line == 3
    assert str(e.value).startswith(f"line 3: {line.strip()!r}: ")
    assert reason in str(e.value)
    assert reason in e.value.reason


def test_router_table_error_is_a_value_error():
    with pytest.raises(ValueError):
        parse_router_table("<a b> = c")


def test_first_bad_line_is_reported_when_several_are_bad():
    with pytest.raises(RouterTableError) as e:
        parse_router_table("<a> = b\n<(7d)> = x\n<a b> = c\n")
    assert e.value.line == 2


def test_bad_record_at_the_end_refuses_the_whole_table():
    good = "".join(f"<a{i}> = b{i}\n" for i in range(100))
    with pytest.raises(RouterTableError) as e:
        parse_router_table(good + "<bad")
    assert e.value.line == 101
