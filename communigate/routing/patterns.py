"""
Router table patterns: the text between C{<} and C{>} in a Router record,
compiled into a matcher.

Why a module of its own: the pattern language is the one part of the Router
table with real semantics to get right (case, digit qualifiers, which text
each wildcard captures), so it is kept small, pure and testable on its own;
L{communigate.routing.table} only splits lines and indexes records.

The language:

  - any character other than C{*}, C{(}, C{)}, C{<}, C{>}, C{{}, C{}} and
    white space is a literal;
  - C{*} matches any text, possibly empty, and captures it;
  - a digit qualifier immediately before a C{*} limits it to ASCII digits:
    C{(7d)*} exactly 7 digits, C{(6-15d)*} 6 to 15 digits (C{1 <= N <= M <=
    255}; C{d} or C{D}).

Decisions where CommuniGate's documentation is silent:

  - B{Case}: literals match ignoring the case of ASCII letters only (domain
    names and CommuniGate's object names are ASCII); other characters match
    exactly.  Captures keep the address's own case.  Folding only ASCII also
    makes the table's domain index exact: a record's literal domain and an
    address's domain are compared by L{fold}, which is precisely the
    matcher's notion of "same text".
  - B{Several wildcards}: leftmost-shortest.  Going left to right, each
    wildcard takes the shortest text that still lets the rest of the pattern
    match; the last one therefore takes what is left.  So C{<*.*>} splits
    C{a.b.c} into C{a} and C{b.c}.
  - C{**} is refused: the first wildcard would always capture nothing.

Addresses come from the network, so matching must not backtrack
explosively: a pattern of plain C{*}s and literals (the common case) is
matched by finding each literal piece's first occurrence in turn, which is
linear and gives exactly the leftmost-shortest captures.  Only patterns with
digit qualifiers use a regular expression: anchored, every group
non-greedy, so its backtracking order is the same leftmost-shortest one.
Its cost is bounded by the qualifiers' digit counts, except for several
plain C{*}s in one such pattern, which administrators rarely write.
"""

import re

import attrs

__all__ = ["PatternError", "Pattern", "compile_pattern", "fold", "MAX_DIGITS"]

MAX_DIGITS = 255

_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_QUALIFIER = re.compile(r"([0-9]+)(?:-([0-9]+))?[dD]")
_NOT_LITERAL = frozenset("<>{}")


def fold(text: str) -> str:
    """
    C{text} with ASCII capitals made small: the case folding patterns use.
    """
    return text.lower() if text.isascii() else text.translate(_FOLD)


class PatternError(ValueError):
    """
    The pattern text is not a valid pattern; C{str()} says why.
    """


@attrs.frozen
class Pattern:
    """
    A compiled pattern.

    @ivar text: the pattern as written (without the angle brackets).
    @ivar regex: the anchored regular expression, used for patterns with
        digit qualifiers; use L{Pattern.match}.
    @ivar captures: how many wildcards the pattern has.
    @ivar has_at: whether the pattern has an C{@}, so that it matches whole
        C{local@domain} addresses rather than local parts.
    @ivar domain: the folded text after the pattern's last C{@} when that
        text has no wildcard (the key the table indexes the record by),
        else L{None}.
    @ivar pieces: for a pattern without digit qualifiers, its folded
        literal pieces between the wildcards (C{captures + 1} of them);
        L{None} otherwise.
    """

    text: str
    regex: re.Pattern = attrs.field(repr=False, eq=False)
    captures: int
    has_at: bool
    domain: str | None
    pieces: tuple[str, ...] | None = attrs.field(repr=False, eq=False)

    def match(self, subject: str, folded: str | None = None) -> tuple[str, ...] | None:
        """
        The captures if C{subject} matches the whole pattern, else L{None}.

        @param folded: C{fold(subject)}, when the caller tries many patterns
            on one subject and folds it once.
        """
        pieces = self.pieces
        if pieces is None:
            found = self.regex.fullmatch(subject)
            return None if found is None else found.groups()
        if folded is None:
            folded = fold(subject)  # same length: only ASCII letters change
        if len(pieces) == 1:
            return () if folded == pieces[0] else None
        first, last = pieces[0], pieces[-1]
        end = len(folded) - len(last)
        if end < len(first) or not folded.startswith(first) or not folded.endswith(last):
            return None
        start, captures = len(first), []
        for piece in pieces[1:-1]:
            at = folded.find(piece, start, end)
            if at < 0:
                return None
            captures.append(subject[start:at])
            start = at + len(piece)
        captures.append(subject[start:end])
        return tuple(captures)


def compile_pattern(text: str) -> Pattern:
    """
    Compile a pattern, or raise L{PatternError} saying what is wrong.
    """
    if not text:
        raise PatternError("the pattern is empty")
    parts: list[str] = []
    pieces: list[str] | None = [""]
    captures = 0
    last_at_tail_literal = True  # no wildcard since the last '@'
    has_at = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if i + 1 < n and text[i + 1] == "*":
                raise PatternError("'**' in the pattern: the first '*' would always be empty")
            parts.append("(.*?)")
            if pieces is not None:
                pieces.append("")
            captures += 1
            last_at_tail_literal = False
            i += 1
        elif c == "(":
            close = text.find(")", i)
            if close < 0:
                raise PatternError("unbalanced '(' in the pattern")
            parts.append(_qualifier(text[i + 1:close], text[close + 1:close + 2]))
            pieces = None
            captures += 1
            last_at_tail_literal = False
            i = close + 2
        elif c == ")":
            raise PatternError("unbalanced ')' in the pattern")
        elif c.isspace():
            raise PatternError("white space in the pattern")
        elif c in _NOT_LITERAL:
            raise PatternError(f"{c!r} is not allowed in a pattern")
        else:
            if c == "@":
                has_at = True
                last_at_tail_literal = True
            parts.append(re.escape(c))
            if pieces is not None:
                pieces[-1] += fold(c)
            i += 1
    domain = None
    if has_at and last_at_tail_literal:
        domain = fold(text.rpartition("@")[2])
    regex = re.compile("".join(parts), re.IGNORECASE | re.ASCII | re.DOTALL)
    return Pattern(
        text, regex, captures, has_at, domain, None if pieces is None else tuple(pieces)
    )


def _qualifier(spec: str, after: str) -> str:
    """
    The regular expression for the digit qualifier C{(spec)}, which must be
    followed by C{*} (C{after} is the character after the C{)}).
    """
    found = _QUALIFIER.fullmatch(spec)
    if found is None:
        raise PatternError(f"'({spec})' is not a digit qualifier; use (Nd) or (N-Md)")
    low = int(found.group(1))
    high = low if found.group(2) is None else int(found.group(2))
    if not 1 <= low <= high <= MAX_DIGITS:
        raise PatternError(
            f"digit qualifier '({spec})': the counts must satisfy 1 <= N <= M <= {MAX_DIGITS}"
        )
    if after != "*":
        raise PatternError(f"the digit qualifier '({spec})' must be followed by '*'")
    if low == high:
        return f"([0-9]{{{low}}})"
    return f"([0-9]{{{low},{high}}}?)"
