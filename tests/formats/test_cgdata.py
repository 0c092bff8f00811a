"""Tests for communigate.formats.cgdata, CommuniGate's textual data format."""

import copy
import datetime
import pickle

import pytest
from hypothesis import given, strategies as st

from communigate.formats.cgdata import (
    FUTURE, MAX_DEPTH, PAST, DataFormatError, IPAddress, XMLText,
    dumps, loads, parse_prefix, skip_space,
)

EXAMPLE = ('{a="-1"; b=(1,"x y"); c=#T07-11-2011_16:53:05; '
           'd=#I[1.2.3.4]:5060; e=[AAEC]; f=#NULL#;}')
EXAMPLE_CANONICAL = ('{a = "-1"; b = (1, "x y"); c = #T07-11-2011_16:53:05; '
                     'd = #I[1.2.3.4]:5060; e = [AAEC]; f = #NULL#;}')

SETTINGS = (
    '{AccountDefaults = {CallsLimit = "-1"; CallInpFlow = ("-1", 3600); '
    'MaxSignalContacts = 10; PSTNAreaCode = "1(415)"; '
    'PSTNEmergency = "call=sip:911@telnum"; ServiceClasses = {groupware = '
    '{AccessModes = (26, Mail, Relay, Signal, XIMSS, XMPP);};};}; '
    'SignalToUnknown = Rejected; SignalRerouteAddress = pbx; '
    'LicenseAccepted = #T07-11-2011_16:53:05;}'
)

SETTINGS_MULTILINE = """\
// Server-wide settings
{
  AccountDefaults = {
    CallsLimit = "-1";          // no limit
    CallInpFlow = ("-1", 3600);
    MaxSignalContacts = 10;
    PSTNAreaCode = "1(415)";
    PSTNEmergency = "call=sip:911@telnum";
    /* classes of service,
       one per tariff */
    ServiceClasses = {
      groupware = {
\tAccessModes = (26, Mail, Relay, Signal, XIMSS, XMPP);
      };
    };
  };
  SignalToUnknown = Rejected;
  SignalRerouteAddress = pbx;
  LicenseAccepted = #T07-11-2011_16:53:05;
}
"""


def test_example_parses_to_python_values():
    value = loads(EXAMPLE)
    assert value == {
        "a": "-1",
        "b": ["1", "x y"],
        "c": datetime.datetime(2011, 11, 7, 16, 53, 5),
        "d": IPAddress("1.2.3.4", 5060),
        "e": b"\x00\x01\x02",
        "f": None,
    }
    assert dumps(value) == EXAMPLE_CANONICAL


def test_canonical_text_round_trips_exactly():
    assert dumps(loads(EXAMPLE_CANONICAL)) == EXAMPLE_CANONICAL


def test_settings_example_parses():
    value = loads(SETTINGS)
    defaults = value["AccountDefaults"]
    assert defaults["CallsLimit"] == "-1"
    assert defaults["CallInpFlow"] == ["-1", "3600"]
    assert defaults["MaxSignalContacts"] == "10"
    assert defaults["PSTNAreaCode"] == "1(415)"
    assert defaults["ServiceClasses"]["groupware"]["AccessModes"] == [
        "26", "Mail", "Relay", "Signal", "XIMSS", "XMPP"]
    assert value["SignalToUnknown"] == "Rejected"
    assert value["LicenseAccepted"] == datetime.datetime(2011, 11, 7, 16, 53, 5)
    assert list(value) == [
        "AccountDefaults", "SignalToUnknown", "SignalRerouteAddress",
        "LicenseAccepted"]
    assert dumps(value) == SETTINGS


def test_multiline_settings_with_comments_equal_single_line_settings():
    assert loads(SETTINGS_MULTILINE) == loads(SETTINGS)


# ------------------------------------------------------------ strings

@pytest.mark.parametrize("text", ["example.com", "alice@example.com", "YES",
                                  "10", "a_b.c", "x"])
def test_plain_strings_are_written_bare(text):
    assert dumps(text) == text
    assert loads(text) == text


@pytest.mark.parametrize("text, written", [
    ("-1", '"-1"'),
    ("1(415)", '"1(415)"'),
    ("S/MIME", '"S/MIME"'),
    ("", '""'),
    ("x y", '"x y"'),
    ("#10", '"#10"'),
    ('say "hi"', r'"say \"hi\""'),
    ("back\\slash", r'"back\\slash"'),
    ("a\r\n\tb", r'"a\r\n\tb"'),
    ("bell\x07", r'"bell\007"'),
    ("del\x7f", r'"del\127"'),
    ("Grüße ☎", '"Grüße ☎"'),
])
def test_other_strings_are_quoted_and_escaped(text, written):
    assert dumps(text) == written
    assert loads(written) == text


def test_readers_accept_extra_atom_characters():
    assert loads("a-b_c.d@e!f#g%h]i:j") == "a-b_c.d@e!f#g%h]i:j"
    assert loads("Grüße") == "Grüße"


def test_backslash_e_reads_as_line_feed():
    assert loads(r'"line1\eline2"') == "line1\nline2"


def test_three_digit_escape_is_a_decimal_character_code():
    assert loads(r'"\065\010\233"') == "A\n\xe9"


def test_atom_stops_at_brace_so_arguments_may_touch():
    text = "CREATEGROUP sales{Members=(a,b);}"
    name, pos = parse_prefix(text, 11)
    assert (name, pos) == ("sales", 17)
    settings, pos = parse_prefix(text, pos)
    assert settings == {"Members": ["a", "b"]}
    assert pos == len(text)


# ------------------------------------------------------------ typed objects

def test_numbers_are_distinct_from_numeric_atoms():
    assert loads("#10") == 10
    assert loads("10") == "10"
    assert dumps(10) == "#10"
    assert dumps("10") == "10"
    assert loads("#-5") == -5
    assert loads("#0x1F") == 31
    assert loads("#-0x10") == -16


def test_booleans_are_written_as_yes_and_no():
    assert dumps(True) == "#YES"
    assert dumps(False) == "#NO"
    assert loads("#YES") is True
    assert loads("#NO") is False
    assert loads("true") == "true"


def test_timestamps_and_dates():
    assert loads("#T07-11-2011") == datetime.date(2011, 11, 7)
    assert type(loads("#T07-11-2011")) is datetime.date
    assert dumps(datetime.date(2011, 11, 7)) == "#T07-11-2011"
    assert dumps(datetime.datetime(5, 1, 2, 3, 4, 5)) == "#T02-01-0005_03:04:05"


def test_datetime_is_written_to_the_second_in_utc():
    aware = datetime.datetime(2011, 11, 7, 18, 53, 5, 999999,
                              tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert dumps(aware) == "#T07-11-2011_16:53:05"


def test_past_and_future_are_singleton_constants():
    assert loads("#TPAST") is PAST
    assert loads("#TFUTURE") is FUTURE
    assert dumps([PAST, FUTURE]) == "(#TPAST, #TFUTURE)"
    assert repr(PAST) == "PAST"
    assert copy.deepcopy(FUTURE) is FUTURE
    assert pickle.loads(pickle.dumps(PAST)) is PAST


@pytest.mark.parametrize("text, value", [
    ("#I[10.0.0.1]", IPAddress("10.0.0.1")),
    ("#I[10.0.0.1]:5060", IPAddress("10.0.0.1", 5060)),
    ("#I[::1]:5060", IPAddress("::1", 5060)),
    ("#I[2001:db8::7]", IPAddress("2001:db8::7")),
])
def test_ip_addresses_round_trip(text, value):
    assert loads(text) == value
    assert dumps(value) == text


def test_ip_address_refuses_bad_host_and_port():
    with pytest.raises(ValueError):
        IPAddress("example.com")
    with pytest.raises(ValueError):
        IPAddress("1.2.3.4", 70000)


def test_data_blocks_are_bytes_and_split_blocks_join():
    assert loads("[HcqHfHI=]") == b"\x1d\xca\x87|r"
    assert loads("[]") == b""
    assert loads("[AAEC][AwQ=]") == b"\x00\x01\x02\x03\x04"
    assert loads("[AAEC]\n  [AwQ=]") == b"\x00\x01\x02\x03\x04"
    assert parse_prefix("[AAEC] [AwQ=]") == (b"\x00\x01\x02", 6)
    assert loads("[AAEC\n AwQ=]") == b"\x00\x01\x02\x03\x04"
    assert dumps(b"\x00\x01\x02\x03\x04") == "[AAECAwQ=]"
    assert dumps(bytearray(b"\x00")) == "[AA==]"


def test_xml_is_kept_as_exact_text():
    text = '<a x="1>2" y=\'/\'><b/>t<!-- </a> --><a>z</a><![CDATA[</a>]]></a>'
    assert loads("(" + text + ", x)") == [XMLText(text), "x"]
    assert dumps(XMLText(text)) == text
    assert loads("<br/>") == XMLText("<br/>")


def test_xml_text_must_be_one_element():
    with pytest.raises(ValueError):
        XMLText("<a/><b/>")
    with pytest.raises(ValueError):
        XMLText("plain")


def test_arrays_and_dictionaries_use_canonical_spacing():
    assert dumps([]) == "()"
    assert dumps({}) == "{}"
    assert dumps(("a", "b")) == "(a, b)"
    assert dumps({"a": "b", "c": ["x", "y"]}) == "{a = b; c = (x, y);}"
    assert dumps({"key one": {}}) == '{"key one" = {};}'
    assert loads("( )") == []
    assert loads("{ }") == {}


def test_last_semicolon_in_dictionary_is_optional_on_read():
    assert loads("{a = b; c = d}") == {"a": "b", "c": "d"}


def test_unsupported_types_are_refused_by_dumps():
    for bad in [1.5, object(), {1: "x"}, {"x": {1, 2}}]:
        with pytest.raises(TypeError):
            dumps(bad)


def test_dumps_refuses_data_nested_too_deep():
    value = []
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    with pytest.raises(ValueError):
        dumps(value)


# ------------------------------------------------------------ whitespace

def test_parse_prefix_returns_position_after_value_without_trailing_space():
    text = "CREATEACCOUNT alice@example.com {Password = secret;}  "
    value, pos = parse_prefix(text, 13)
    assert (value, pos) == ("alice@example.com", 31)
    value, pos = parse_prefix(text, pos)
    assert value == {"Password": "secret"}
    assert pos == len(text) - 2
    assert skip_space(text, pos) == len(text)


def test_parse_prefix_after_data_block_stops_at_last_bracket():
    assert parse_prefix("[AA==] x") == (b"\x00", 6)


def test_single_line_mode_allows_only_spaces_and_tabs():
    assert parse_prefix(" \t x") == ("x", 4)
    assert skip_space("a \n b", 1) == 2
    with pytest.raises(DataFormatError, match="unexpected '/' after the value"):
        loads("x // comment", multiline=False)
    with pytest.raises(DataFormatError, match="found '\\\\n'"):
        loads("(a,\nb)", multiline=False)


def test_multiline_mode_skips_line_ends_and_comments():
    text = "  // first\n /* second\n */\t\r\n(a, // x\n b)"
    assert loads(text) == ["a", "b"]
    assert skip_space(text, 0, multiline=True) == text.index("(")


# ------------------------------------------------------------ errors

@pytest.mark.parametrize("text, message, position", [
    ("{x = y z}", "expected ';' after the value of key \"x\" but found 'z'", 7),
    ("{x y}", "expected '=' after key \"x\" but found 'y'", 3),
    ("{= y}", "expected a dictionary key or '}' but found '='", 1),
    ("{x = y;", "expected a dictionary key or '}' but found the end of the text", 7),
    ("{x = y; x = z;}", 'duplicate key "x"', 8),
    ("(a b)", "expected ',' or ')' after array element but found 'b'", 3),
    ("(a,)", "expected a value but found ')'", 3),
    ("", "expected a value but found the end of the text", 0),
    ("a b", "unexpected 'b' after the value", 2),
    ('"abc', "unterminated quoted string", 0),
    ('x = "ab\\q"', "unexpected '=' after the value", 2),
    ('"ab\\q"', "bad escape in quoted string", 3),
    ('"ab\\12"', "bad escape in quoted string", 3),
    ("[AAE]", "invalid base64 in data block", 0),
    ("[AA!A]", "invalid base64 in data block", 0),
    ("[AAEC", "unterminated data block", 0),
    ("#T32-01-2011", "invalid timestamp", 0),
    ("#T2011-01-01", "malformed timestamp", 0),
    ("#T07-11-2011_16:53:05x", "malformed timestamp", 0),
    ("#I[1.2.3]", "invalid IP address", 0),
    ("#I[1.2.3.4]:99999", "invalid IP address", 0),
    ("#I[1.2.3.4]:x", "malformed IP address", 0),
    ("#I1.2.3.4", "malformed IP address", 0),
    ("#12ab", "malformed number", 0),
    ("#NULL", "unknown object type", 0),
    ("#(1)", "unknown-data objects #(...) are not supported", 0),
    ("<a><b></a>", "XML end tag </a> does not match, expected </b>", 6),
    ("<a>text", "unterminated XML element <a>", 0),
    ("<!-- c --><a/>", "expected an XML element", 0),
    ("< a/>", "malformed XML tag", 0),
    ("/* open", "unterminated /* comment", 0),
    ("(" * (MAX_DEPTH + 1), f"nesting deeper than {MAX_DEPTH} levels", MAX_DEPTH),
])
def test_malformed_text_raises_data_format_error(text, message, position):
    with pytest.raises(DataFormatError) as info:
        loads(text)
    assert info.value.reason.startswith(message)
    assert info.value.position == position
    assert str(info.value).endswith(f"at offset {position}")
    assert isinstance(info.value, ValueError)


def test_error_message_names_line_and_column_in_multiline_text():
    with pytest.raises(DataFormatError) as info:
        loads("{\n  a = b\n  c = d;\n}")
    assert str(info.value) == (
        "expected ';' after the value of key \"a\" but found 'c' "
        "at offset 12 (line 3, column 3)")


def test_very_deep_nesting_is_a_format_error_not_a_recursion_error():
    with pytest.raises(DataFormatError):
        loads("{a=" * 100_000)
    with pytest.raises(DataFormatError):
        loads("(" * 100_000 + ")" * 100_000)


# ------------------------------------------------------------ properties

_datetimes = st.datetimes().map(lambda d: d.replace(microsecond=0))
_ips = st.builds(
    IPAddress,
    st.ip_addresses().map(str),
    st.none() | st.integers(0, 65535),
)
_xml_names = st.from_regex(r"[a-z][a-z0-9]{0,4}", fullmatch=True)
_xml_text = st.text(st.characters(blacklist_characters="<&"), max_size=8)


def _element(children):
    return st.builds(
        lambda name, attr, inner: f'<{name} k="{attr}">{"".join(inner)}</{name}>',
        _xml_names, st.text(st.characters(blacklist_characters='"<'), max_size=5),
        st.lists(children | _xml_text, max_size=3))


_xml = st.recursive(_xml_names.map(lambda n: f"<{n}/>"), _element, max_leaves=5)

scalars = (
    st.text()
    | st.integers()
    | st.booleans()
    | st.binary()
    | st.none()
    | _datetimes
    | st.dates()
    | st.sampled_from([PAST, FUTURE])
    | _ips
    | _xml.map(XMLText)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(values)
def test_any_value_round_trips_through_text(value):
    text = dumps(value)
    assert loads(text) == value
    assert loads(text, multiline=False) == value
    assert dumps(loads(text)) == text


@given(values)
def test_parse_prefix_reads_one_value_among_others(value):
    text = dumps(value)
    line = f"CMD {text} {text}"
    first, pos = parse_prefix(line, 3)
    assert first == value
    assert pos == 4 + len(text)
    second, end = parse_prefix(line, pos)
    assert second == value
    assert end == len(line)


@given(st.text())
def test_loads_on_any_text_returns_or_raises_data_format_error(text):
    for multiline in (True, False):
        try:
            loads(text, multiline=multiline)
        except DataFormatError:
            pass


_alphabet = st.sampled_from(list('{}()[]<>/="#;,\\ \t\n*-_.@!%:ATINUL0x19eYESNOPF') +
                            ["#T07-11-2011", "_16:53:05", "#I[", "#NULL#",
                             "AAEC", "<a>", "</a>", "/>", "//", "/*", "*/", "\\e"])


@given(st.lists(_alphabet).map("".join))
def test_loads_on_format_like_text_returns_or_raises_data_format_error(text):
    for multiline in (True, False):
        try:
            loads(text, multiline=multiline)
        except DataFormatError:
            pass


# -- the fast path for plain records ---------------------------------------------

from communigate.formats import cgdata as _cgdata  # noqa: E402

_plain_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='\\"'), max_size=12)
_plain_values = st.recursive(
    _plain_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_plain_text.filter(bool), children, max_size=4),
    max_leaves=20,
)


@given(_plain_values)
def test_plain_records_take_the_fast_path_and_read_the_same(value):
    text = dumps(value)
    fast = _cgdata._plain_loads(text)
    if "\\" not in text:  # escapes are the full parser's
        assert fast is not _cgdata._NOT_PLAIN
    assert fast is _cgdata._NOT_PLAIN or fast == value
    assert loads(text) == value


@given(st.text(alphabet=' \n{}();=,"ab1@\\#/', max_size=40))
def test_the_fast_path_agrees_with_the_full_parser_or_steps_aside(text):
    """
    Whatever the text, the fast path either reads what the full parser
    reads or leaves the text to it (which then reads it or says why not).
    """
    fast = _cgdata._plain_loads(text)
    try:
        full = _cgdata._value(text, _cgdata.skip_space(text, 0, True), True, 0)
        end = _cgdata.skip_space(text, full[1], True)
        expected = full[0] if end == len(text) else _cgdata._NOT_PLAIN
    except DataFormatError:
        expected = _cgdata._NOT_PLAIN
    if fast is not _cgdata._NOT_PLAIN:
        assert fast == expected


def test_the_fast_path_steps_aside_for_everything_else():
    for text in ("{a = #1;}", "{a = [AAEC];}", "{a = b; a = c;}", '{a = "x\\ny";}', "{a = b; // c\n}",
                 "{a = <x/>;}", "(a,)", "{a = b", "{a = (b c);}", "{a b;}", "a b", "{= b;}"):
        assert _cgdata._plain_loads(text) is _cgdata._NOT_PLAIN, text


def test_a_dictionary_may_end_without_its_last_semicolon():
    assert loads("{a = b; c = (d, e)}") == {"a": "b", "c": ["d", "e"]}
    assert _cgdata._plain_loads("{a = b; c = (d, e)}") == {"a": "b", "c": ["d", "e"]}


@pytest.mark.parametrize(
    "first, second",
    [
        ("{Kind = account; Account = u1;}", "{Kind = alias; Account = u2;}"),  # the plain reader
        ('{Kind = "acc\\"ount"; Account = #1;}', '{Kind = #2; Account = "a\\tb";}'),  # the full parser
    ],
)
def test_parsed_dictionaries_share_one_copy_of_each_key(first, second):
    # A server caches thousands of parsed records with the same keys.
    a, b = loads(first), loads(second)
    assert list(a) == list(b) == ["Kind", "Account"]
    for key_a, key_b in zip(a, b):
        assert key_a is key_b
