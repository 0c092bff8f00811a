"""
Hypothesis properties of Router table matching.

The oracle here is written independently of the module: a recursive
matcher that tries each wildcard's shortest text first (the documented
leftmost-shortest rule) and a linear scan over the records in table order.
Checking the table against it on random tables and addresses shows both
that the compiled patterns keep the documented semantics and that the
domain index never changes which record is the first match.
"""

import re
import string

from hypothesis import assume, given, settings, strategies as st

from communigate.routing.route import AddressKind
from communigate.routing.table import parse_router_table

SPECIAL = set("*()<>{}")
# Characters a literal pattern may hold: anything but the pattern language's
# own, white space and line ends.  ';' and '=' are included on purpose: they
# are plain characters inside '<...>'.
literal_char = st.characters(
    blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
    blacklist_characters="".join(SPECIAL),
).filter(lambda c: not c.isspace())
literal = st.text(literal_char, min_size=1, max_size=12)
kinds = st.sampled_from(list(AddressKind))


def ascii_fold(text):
    return "".join(c.lower() if c.isascii() else c for c in text)


def recase(data, text):
    """
    C{text} with the case of each ASCII letter chosen at random.
    """
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(
        c.swapcase() if flip and c.isascii() else c for c, flip in zip(text, flips)
    )


def split(address):
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, None)


# -- the independent oracle -------------------------------------------------

def tokens(pattern):
    """
    The pattern as a list of literal characters and (low, high) wildcards,
    high None meaning any text.
    """
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "*":
            out.append((0, None))
            i += 1
        elif pattern[i] == "(":
            close = pattern.index(")", i)
            low, _, high = pattern[i + 1:close - 1].partition("-")
            out.append((int(low), int(high or low)))
            i = close + 2
        else:
            out.append(pattern[i])
            i += 1
    return out


def oracle_match(toks, subject):
    """
    The captures of the leftmost-shortest match of the whole subject, or None.
    """
    def go(t, s):
        if t == len(toks):
            return () if s == len(subject) else None
        token = toks[t]
        if isinstance(token, str):
            if s < len(subject) and ascii_fold(subject[s]) == ascii_fold(token):
                return go(t + 1, s + 1)
            return None
        low, high = token
        for end in range(s, len(subject) + 1):
            piece = subject[s:end]
            if high is not None:
                if piece and piece[-1] not in string.digits:
                    break
                if len(piece) > high:
                    break
                if len(piece) < low:
                    continue
            rest = go(t + 1, end)
            if rest is not None:
                return (piece,) + rest
        return None

    return go(0, 0)


def oracle_rewrite(target, captures):
    out, used = [], iter(captures)
    for c in target:
        out.append(next(used) if c == "*" else c)
    return "".join(out)


def naive_match(table, local, domain, kind, domain_is_local):
    """
    Every record in table order, no index: the first that applies.
    """
    full = local if domain is None else f"{local}@{domain}"
    for record in table.records:
        if kind not in record.kinds:
            continue
        if "@" in record.pattern:
            captures = oracle_match(tokens(record.pattern), full)
        elif domain is None or domain_is_local:
            captures = oracle_match(tokens(record.pattern), local)
        else:
            continue
        if captures is not None:
            return record.line, oracle_rewrite(record.target, captures)
    return None


# -- literal patterns -------------------------------------------------------

@given(literal, st.data())
def test_literal_pattern_matches_its_own_text_in_any_ascii_case(text, data):
    table = parse_router_table(f"<{text}> = t")
    local, domain = split(recase(data, text))
    assert table.match(local, domain, AddressKind.SIGNAL, True).rewritten == "t"


@given(literal, st.text(max_size=12))
def test_literal_pattern_matches_nothing_but_its_own_text(text, other):
    assume(ascii_fold(other) != ascii_fold(text))
    table = parse_router_table(f"<{text}> = t")
    for candidate in (other, text + other, other + text, text[:-1]):
        if ascii_fold(candidate) == ascii_fold(text):
            continue
        # Given whole, as a bare name: a local-part pattern would rightly
        # match the local part of "text@anything".
        assert table.match(candidate, None, AddressKind.SIGNAL, True) is None


# -- one wildcard -----------------------------------------------------------

@given(st.text(literal_char, max_size=6), st.text(literal_char, max_size=6),
       st.text(max_size=12), st.data())
def test_prefix_star_suffix_matches_any_such_address_capturing_the_middle(
    prefix, suffix, middle, data
):
    table = parse_router_table(f"<{prefix}*{suffix}> = [*]")
    address = recase(data, prefix) + middle + recase(data, suffix)
    found = table.match(address, None, AddressKind.MAIL, True)
    assert found.captures == (middle,)
    assert found.rewritten == f"[{middle}]"


@given(st.text(string.digits, min_size=1, max_size=20), st.integers(1, 8), st.integers(0, 8))
def test_digit_qualifier_matches_exactly_the_digit_strings_of_its_length_range(
    digits, low, extra
):
    high = low + extra
    table = parse_router_table(f"<+({low}-{high}d)*> = *")
    found = table.match("+" + digits, None, AddressKind.SIGNAL, True)
    assert (found is not None) == (low <= len(digits) <= high)


@given(st.text(string.ascii_letters, min_size=1, max_size=6), st.text(max_size=12))
def test_first_of_several_wildcards_stops_at_the_first_separator(head, tail):
    table = parse_router_table("<*.*> = *")
    found = table.match(f"{head}.{tail}", None, AddressKind.ACCESS, True)
    assert found.captures == (head, tail)


# -- the index against a linear scan ----------------------------------------

local_piece = st.sampled_from(["a", "b", "1", "2", ".", "*", "(2d)*", "(1-3d)*"])
domain_pattern = st.sampled_from(
    [None, "x.com", "X.COM", "y.org", "z.net", "*", "*.com", "x.*", "*@y.org"]
)


@st.composite
def records(draw, number):
    pieces = draw(st.lists(local_piece, min_size=1, max_size=4))
    pattern = re.sub(r"(?<!\))\*\*+", "*", "".join(pieces))  # '**' is refused
    domain = draw(domain_pattern)
    if domain is not None:
        pattern = f"{pattern}@{domain}"
    captures = pattern.count("*")
    stars = draw(st.integers(0, captures))
    prefix = draw(st.sampled_from(["", "S:", "M:", "A:", "Signal:"]))
    target = f"r{number}" + "-*" * stars
    return f"{prefix}<{pattern}> = {target}"


@st.composite
def tables(draw):
    size = draw(st.integers(0, 12))
    lines = [draw(records(i)) for i in range(size)]
    return parse_router_table("\n".join(lines))


address_local = st.text("ab12.AB", max_size=6)
address_domain = st.sampled_from(
    [None, "x.com", "X.Com", "y.org", "z.net", "q.com", "x.co", "x.com@y.org", ""]
)


@settings(max_examples=300)
@given(tables(), address_local, address_domain, kinds, st.booleans())
def test_indexed_match_equals_a_linear_scan_of_the_table(
    table, local, domain, kind, domain_is_local
):
    found = table.match(local, domain, kind, domain_is_local)
    got = None if found is None else (found.record.line, found.rewritten)
    assert got == naive_match(table, local, domain, kind, domain_is_local)
