"""
Signal Rule conditions: an opCode, an operation and a parameter, as in
CommuniGate's C{(Method, is, INVITE)}, checked against the
L{communigate.signal.model.SignalFacts} of one Signal.

Why a module of its own: every condition has its own little parameter
language (wildcard patterns, IP lists, times of day, weekday names, counts),
and all of it is parsed once, when the rule set is stored, so that a rule
set with a bad parameter is refused then and evaluation never fails later.

Operations: C{is}, C{is not}, C{in}, C{not in}, C{greater than},
C{less than}.  C{is not} is exactly "not C{is}" and C{not in} exactly
"not C{in}", also when the fact is missing (no submit address, no such
header field, no clock): a missing fact never satisfies C{is}/C{in} and
always satisfies their negations; C{greater than}/C{less than} never hold
for it.  Names of conditions and operations are read case-insensitively
and with or without spaces (C{TimeOfDay}, C{time of day}), and kept in the
canonical spelling below.

Parameters, by condition:

- C{Method}, C{RequestURI}, C{From}, C{To}, C{CallType} (C{AV}, C{IM} or
  empty), C{Authenticated} (the authenticated C{account@domain}, empty when
  none), C{Presence} (C{online}, C{away}, C{busy}, C{offline} ...):
  a pattern where C{*} matches any text, compared case-insensitively with
  the whole value; C{in} takes a comma-separated list of patterns.
  Surrounding spaces are ignored.
- C{Submit Address}: an IP address, a network C{10.0.0.0/8} or a range
  C{10.0.0.1-10.0.0.99} (optionally in brackets, C{[10.0.0.1]}); C{in}
  takes a comma-separated list of them.  An IPv4-mapped IPv6 source
  (C{::ffff:10.0.0.1}) is compared as the IPv4 address.
- C{ReqField} [our choice]: the header field name, a colon, and the
  pattern: C{X-Priority: urgent*}; with C{in}, a list of patterns after
  the colon: C{X-Priority: urgent*, high}.  The name is case-insensitive.
  The condition holds when any value of that field matches; a missing field
  holds for no pattern (so C{ReqField is not X-Foo: *} means "no X-Foo").
- C{Time Of Day} [our choice]: times are C{HH:MM} (24-hour), compared in
  whole minutes of the local time in C{facts.now}.  C{greater than 17:00}
  holds from 17:01, C{less than 09:00} until 08:59.  C{is} takes one time
  (that whole minute) or a range C{09:00-17:00} (start included, end
  excluded; C{22:00-06:00} wraps past midnight; C{24:00} may end a range);
  C{in} takes a comma-separated list of times and ranges.
- C{Current Day}: weekday names or their three-letter abbreviations, any
  case: C{is Saturday}, C{in Sat, Sunday}.
- C{RegClients}: a whole number (the target's active devices); C{is},
  C{in} (a list), C{greater than}, C{less than}.

C{facts.now} is a C{datetime.datetime} (its wall-clock fields are used as
they are), or a POSIX timestamp number, read as UTC.
"""

import datetime
import ipaddress
import re

import attrs

__all__ = ["Condition", "OPERATIONS", "OP_CODES", "glob_match", "split_list"]

IS, IS_NOT, IN, NOT_IN = "is", "is not", "in", "not in"
GREATER, LESS = "greater than", "less than"
OPERATIONS = (IS, IS_NOT, IN, NOT_IN, GREATER, LESS)

_TEXT_OPS = (IS, IS_NOT, IN, NOT_IN)
_ORDERED_OPS = OPERATIONS

#: Canonical opCode -> (kind, SignalFacts attribute, operations allowed).
_OP_CODES = {
    "Method": ("text", "method", _TEXT_OPS),
    "RequestURI": ("text", "request_uri", _TEXT_OPS),
    "From": ("text", "from_address", _TEXT_OPS),
    "To": ("text", "to_address", _TEXT_OPS),
    "CallType": ("text", "call_type", _TEXT_OPS),
    "Authenticated": ("text", "authenticated", _TEXT_OPS),
    "Presence": ("text", "presence", _TEXT_OPS),
    "Submit Address": ("address", "submit_address", _TEXT_OPS),
    "ReqField": ("field", "headers", _TEXT_OPS),
    "Time Of Day": ("time", "now", _ORDERED_OPS),
    "Current Day": ("day", "now", _TEXT_OPS),
    "RegClients": ("count", "reg_clients", _ORDERED_OPS),
}
OP_CODES = tuple(_OP_CODES)


def _key(name):
    return "".join(name.split()).lower()


_OP_CODE_KEYS = {_key(name): name for name in _OP_CODES}
_OPERATION_KEYS = {_key(name): name for name in OPERATIONS}

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday",
         "saturday", "sunday")
_DAY_KEYS = {**{day: i for i, day in enumerate(_DAYS)},
             **{day[:3]: i for i, day in enumerate(_DAYS)}}
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_COUNT = re.compile(r"[0-9]{1,9}")


# ------------------------------------------------------------ helpers

def glob_match(pattern: str, value: str) -> bool:
    """
    Whether C{value} matches C{pattern}, where C{*} matches any text
    (also none), case-insensitively.  Linear in practice: no regular
    expression, so no pattern can make it backtrack badly.
    """
    pattern, value = pattern.casefold(), value.casefold()
    parts = pattern.split("*")
    if len(parts) == 1:
        return value == pattern
    head, tail = parts[0], parts[-1]
    if len(value) < len(head) + len(tail):
        return False
    if not (value.startswith(head) and value.endswith(tail)):
        return False
    middle = value[len(head):len(value) - len(tail)]
    pos = 0
    for part in parts[1:-1]:
        found = middle.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def split_list(text: str) -> list[str]:
    """C{"a, b ,c"} -> C{["a", "b", "c"]}: comma-separated, spaces stripped."""
    return [item.strip() for item in text.split(",")]


def _nonempty_items(text, what):
    items = [item for item in split_list(text) if item]
    if not items:
        raise ValueError(f"expected a list of {what}, got {text!r}")
    return items


def _ip(text):
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    address = ipaddress.ip_address(text)
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address_item(text):
    """One item of an IP list, as a predicate on an ip_address."""
    try:
        if "/" in text:
            network = ipaddress.ip_network(text.strip("[] "), strict=False)
            return lambda a: a.version == network.version and a in network
        if "-" in text:
            low, high = (_ip(part) for part in text.split("-", 1))
            if low.version != high.version or low > high:
                raise ValueError("not an ascending range of one IP version")
            return lambda a: a.version == low.version and low <= a <= high
        single = _ip(text)
    except ValueError as e:
        raise ValueError(f"bad IP address, network or range {text!r}: {e}") from None
    return lambda a: a == single


def _minute(text, end=False):
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"bad time {text!r}: expected HH:MM")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ValueError(f"bad time {text!r}: expected 00:00 to 23:59")
    return hours * 60 + minutes


def _time_item(text):
    """A time or a range of times, as a predicate on a minute of the day."""
    if "-" not in text:
        minute = _minute(text)
        return lambda m: m == minute
    first, last = text.split("-", 1)
    start, end = _minute(first), _minute(last, end=True)
    if start == end:
        raise ValueError(f"bad time range {text!r}: it starts where it ends")
    if start < end:
        return lambda m: start <= m < end
    return lambda m: m >= start or m < end


def _day(text):
    try:
        return _DAY_KEYS[text.strip().lower()]
    except KeyError:
        raise ValueError(
            f"bad day {text!r}: expected a weekday name (Monday ... Sunday)"
        ) from None


def _count(text):
    text = text.strip()
    if _COUNT.fullmatch(text) is None:
        raise ValueError(f"bad number {text!r}: expected a whole number")
    return int(text)


# ----------------------------------------------------- reading the facts

def _text_fact(value):
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _address_fact(value):
    if not isinstance(value, str):
        return None
    try:
        return _ip(value)
    except ValueError:
        return None


def _clock(value):
    """C{facts.now} as a datetime, or None."""
    if isinstance(value, datetime.datetime):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _minute_fact(value):
    now = _clock(value)
    return None if now is None else now.hour * 60 + now.minute


def _day_fact(value):
    now = _clock(value)
    return None if now is None else now.weekday()


def _count_fact(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _field_values(name):
    def values(headers):
        found = []
        try:
            for field, value in headers or ():
                if isinstance(field, str) and field.strip().lower() == name:
                    found.append(_text_fact(value))
        except (TypeError, ValueError):
            return []
        return found
    return values


# ------------------------------------------------------------ compiling

def _single_or_list(operation, parameter, item, what):
    if operation == IS:
        return [item(parameter.strip())]
    return [item(text) for text in _nonempty_items(parameter, what)]


def _compile(kind, operation, parameter):
    """
    The predicate of C{is}/C{in}/C{greater than}/C{less than} on the
    fact as read for C{kind}; raises ValueError for a bad parameter.
    """
    if kind == "text":
        patterns = [parameter.strip()] if operation == IS else split_list(parameter)
        return _text_fact, lambda v: any(glob_match(p, v) for p in patterns)
    if kind == "field":
        name, colon, rest = parameter.partition(":")
        name = name.strip().lower()
        if not colon or not name or any(c.isspace() for c in name):
            raise ValueError(
                f"bad ReqField parameter {parameter!r}: expected"
                " 'Field-Name: pattern'")
        patterns = [rest.strip()] if operation == IS else split_list(rest)
        return _field_values(name), lambda values: any(
            glob_match(p, v) for p in patterns for v in values)
    if kind == "address":
        tests = _single_or_list(operation, parameter, _address_item, "IP addresses")
        return _address_fact, lambda a: a is not None and any(t(a) for t in tests)
    if kind == "day":
        days = {_day(d) for d in _single_or_list(operation, parameter, str, "days")}
        return _day_fact, lambda d: d is not None and d in days
    if kind == "time":
        if operation in (GREATER, LESS):
            limit = _minute(parameter)
            if operation == GREATER:
                return _minute_fact, lambda m: m is not None and m > limit
            return _minute_fact, lambda m: m is not None and m < limit
        tests = _single_or_list(operation, parameter, _time_item, "times")
        return _minute_fact, lambda m: m is not None and any(t(m) for t in tests)
    # count
    if operation in (GREATER, LESS):
        limit = _count(parameter)
        if operation == GREATER:
            return _count_fact, lambda n: n is not None and n > limit
        return _count_fact, lambda n: n is not None and n < limit
    counts = set(_single_or_list(operation, parameter, _count, "numbers"))
    return _count_fact, lambda n: n is not None and n in counts


def _canonical(table, what):
    def convert(name):
        if not isinstance(name, str):
            raise ValueError(f"{what} must be a string, not {name!r}")
        try:
            return table[_key(name)]
        except KeyError:
            raise ValueError(f"unknown {what} {name!r}") from None
    return convert


def _parameter(value):
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"condition parameter must be a string, not {value!r}")
    return value


@attrs.frozen
class Condition:
    """
    One rule condition, checked and compiled when it is made.

    @ivar op_code: the canonical condition name (C{Method}, C{ReqField} ...).
    @ivar operation: the canonical operation (C{is}, C{not in} ...).
    @ivar parameter: the parameter text as given.
    @raise ValueError: an unknown name or operation, an operation the
        condition does not take, or a bad parameter; the message says which.
    """

    op_code: str = attrs.field(converter=_canonical(_OP_CODE_KEYS, "condition"))
    operation: str = attrs.field(converter=_canonical(_OPERATION_KEYS, "operation"))
    parameter: str = attrs.field(converter=_parameter)
    _fact = attrs.field(init=False, eq=False, repr=False)
    _test = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self):
        kind, attribute, operations = _OP_CODES[self.op_code]
        if self.operation not in operations:
            raise ValueError(
                f"{self.op_code} cannot use {self.operation!r}; it takes "
                + ", ".join(repr(o) for o in operations))
        base = {IS_NOT: IS, NOT_IN: IN}.get(self.operation, self.operation)
        read, test = _compile(kind, base, self.parameter)
        negate = base != self.operation
        object.__setattr__(
            self, "_fact", lambda facts: read(getattr(facts, attribute, None)))
        object.__setattr__(
            self, "_test", (lambda v: not test(v)) if negate else test)

    def holds(self, facts) -> bool:
        """Whether this condition holds for C{facts} (a SignalFacts)."""
        return bool(self._test(self._fact(facts)))
