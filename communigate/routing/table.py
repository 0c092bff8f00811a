"""
The Router table: CommuniGate's text of rewriting records, parsed and
matched.  Pure: text in, records out; no Twisted, no I/O.

Why it exists: the Router consults the table for every address it routes
(mail recipients, Signal targets, login names), so the table is parsed and
validated once, when it is set, and matching must stay cheap for tables of
a thousand records.

Syntax, one record a line::

    ; a comment line
    <+(6-15d)*>  = +*@telnum              ; E.164 numbers to the telnum domain
    S:<(7d)*>    = localAreaCall{*}#pbx   ; Signals only
    Mail:<*@old.example> = *@new.example
    <00(6-15d)*>=+*@telnum                ; spaces around '=' are optional
    legacy = NULL                         ; a pattern without '<...>'

  - Lines end in C{\\n} or C{\\r\\n}; blank lines and comment lines are
    allowed.
  - B{Comments}: a C{;} starts a comment running to the end of the line,
    except inside the pattern's C{<...>} and inside a target's C{{...}}
    parameter list, so C{prog{a;b}#acct} passes the parameter C{a;b}.  An
    unclosed C{{} therefore swallows the rest of the line and the record is
    refused as unbalanced.
  - A type prefix C{S:}/C{Signal:}, C{M:}/C{Mail:}, C{A:}/C{Access:} (any
    case) limits a record to one L{AddressKind}; without one it applies to
    all three.  Any other C{word:} at the start of a line is refused.
  - The pattern language is in L{communigate.routing.patterns}.  A pattern
    with C{@} matches the whole address C{local@domain}; one without matches
    the local part of addresses that have no domain or whose domain is
    local.
  - The target is a template: its C{*}s are replaced, left to right, by the
    pattern's captures (it may use fewer, not more).  After substitution it
    is C{NULL} (discard), C{error} or C{error: text} (reject), an
    application (C{program{p1,p2}#account[@domain]}, C{program#account},
    C{#program}) or an address.

A table is accepted whole or not at all: L{parse_router_table} raises
L{RouterTableError} for the first bad line, naming its number and the
reason.
"""

import enum
import re
from collections.abc import Sequence

import attrs

from communigate.routing.patterns import Pattern, PatternError, compile_pattern, fold
from communigate.routing.route import AddressKind, RoutingError

__all__ = [
    "RouterTableError", "RouterRecord", "RouterMatch", "RouterTable", "TargetKind",
    "parse_router_table", "classify_target",
]

ALL_KINDS = frozenset(AddressKind)

_TYPE_PREFIXES = {
    "s": AddressKind.SIGNAL, "signal": AddressKind.SIGNAL,
    "m": AddressKind.MAIL, "mail": AddressKind.MAIL,
    "a": AddressKind.ACCESS, "access": AddressKind.ACCESS,
}
_PREFIX = re.compile(r"\s*([A-Za-z]+):")
_ERROR = re.compile(r"error(?:\s*:(.*))?", re.IGNORECASE | re.ASCII | re.DOTALL)
_NAME = r"[^\s{}#@]+"
_APPLICATION = re.compile(rf"{_NAME}(?:\{{[^{{}}]*\}})?#{_NAME}(?:@{_NAME})?|#{_NAME}")


class RouterTableError(ValueError):
    """
    A record of a Router table is not valid.

    @ivar line: the 1-based number of the bad line.
    @ivar reason: what is wrong with it.
    """

    def __init__(self, line: int, text: str, reason: str) -> None:
        super().__init__(f"line {line}: {text.strip()!r}: {reason}")
        self.line = line
        self.reason = reason


class TargetKind(enum.Enum):
    """
    What a substituted target means.
    """

    ADDRESS = "address"
    APPLICATION = "application"
    NULL = "null"
    ERROR = "error"


def classify_target(text: str) -> TargetKind:
    """
    What the (substituted) target C{text} is, or L{ValueError} saying why it
    is none of them.  C{NULL} and C{error} are recognised in any case.
    """
    if not text:
        raise ValueError("the target is empty")
    if fold(text) == "null":
        return TargetKind.NULL
    if _ERROR.fullmatch(text):
        return TargetKind.ERROR
    depth = 0
    for c in text:
        if c == "{":
            if depth:
                raise ValueError("nested '{' in the target")
            depth = 1
        elif c == "}":
            if not depth:
                raise ValueError("unbalanced '}' in the target")
            depth = 0
    if depth:
        raise ValueError("unbalanced '{' in the target (a ';' inside '{...}' is not a comment)")
    if "#" in text:
        if _APPLICATION.fullmatch(text) is None:
            raise ValueError(
                f"{text!r} is not an application; use program{{params}}#account[@domain], "
                "program#account or #program"
            )
        return TargetKind.APPLICATION
    if "{" in text:
        raise ValueError("parameters '{...}' need '#account' after them: program{params}#account")
    if any(c.isspace() for c in text):
        raise ValueError("white space in the target address (a rejection is 'error: text')")
    return TargetKind.ADDRESS


@attrs.frozen
class RouterRecord:
    """
    One record of the table.

    @ivar line: its 1-based line number in the table text.
    @ivar kinds: the address kinds it applies to.
    @ivar pattern: the pattern, without the angle brackets.
    @ivar target: the target template, without the comment.
    @ivar text: the whole line as written (without the line end).
    @ivar compiled: the compiled pattern.
    """

    line: int
    kinds: frozenset[AddressKind]
    pattern: str
    target: str
    text: str
    compiled: Pattern = attrs.field(eq=False, repr=False)

    def rewrite(self, captures: Sequence[str]) -> str:
        """
        The target with its C{*}s replaced by C{captures}, left to right.
        """
        pieces = self.target.split("*")
        out = [pieces[0]]
        for capture, piece in zip(captures, pieces[1:]):
            out.append(capture)
            out.append(piece)
        return "".join(out)


@attrs.frozen
class RouterMatch:
    """
    The record an address matched and what it rewrote the address into.

    @ivar captures: what each wildcard of the pattern matched, in the
        address's own case.
    """

    record: RouterRecord
    rewritten: str
    captures: tuple[str, ...] = ()

    @property
    def kind(self) -> TargetKind:
        """
        What the rewritten text is; L{RoutingError} when the captured text
        made it malformed (say a C{{} from the address inside an application
        call).
        """
        try:
            return classify_target(self.rewritten)
        except ValueError as e:
            raise RoutingError(
                f"the Router table record on line {self.record.line} rewrote the address "
                f"into {self.rewritten!r}: {e}"
            ) from None

    @property
    def error_text(self) -> str | None:
        """
        For an C{error: text} target, the text (empty for a bare C{error});
        L{None} for other targets.
        """
        found = _ERROR.fullmatch(self.rewritten)
        return None if found is None else (found.group(1) or "").strip()


def _strip_comment(text: str) -> str:
    """
    C{text} up to its first C{;} outside C{{...}}.
    """
    depth = 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(depth - 1, 0)
        elif c == ";" and not depth:
            return text[:i]
    return text


def _split_record(body: str) -> tuple[str, str]:
    """
    The pattern and target of a record (after its type prefix), the comment
    dropped; L{ValueError} saying why it is not C{<pattern> = target}.
    """
    body = body.strip()
    if body.startswith("<"):
        close = body.find(">")
        if close < 0:
            raise ValueError("unbalanced '<' in the pattern")
        pattern = body[1:close]
        rest = _strip_comment(body[close + 1:]).strip()
        if not rest.startswith("="):
            raise ValueError("expected '=' after the pattern's '>'")
        return pattern, rest[1:].strip()
    body = _strip_comment(body)
    pattern, equals, target = body.partition("=")
    if not equals:
        raise ValueError("no '='; a record is [TYPE:]<pattern> = target")
    return pattern.strip(), target.strip()


def _parse_line(number: int, line: str) -> RouterRecord | None:
    """
    The record on one line, L{None} for a blank or comment line.
    """
    stripped = line.strip()
    if not stripped or stripped.startswith(";"):
        return None
    kinds = ALL_KINDS
    body = line
    prefix = _PREFIX.match(line)
    if prefix is not None:
        kind = _TYPE_PREFIXES.get(prefix.group(1).lower())
        if kind is None:
            raise RouterTableError(
                number, line,
                f"unknown record type {prefix.group(1)!r}; use S/Signal, M/Mail or A/Access",
            )
        kinds = frozenset([kind])
        body = line[prefix.end():]
    try:
        pattern, target = _split_record(body)
        compiled = compile_pattern(pattern)
        stars = target.count("*")
        if stars > compiled.captures:
            raise ValueError(
                f"the target has {stars} '*' but the pattern captures only {compiled.captures}"
            )
        classify_target(target.replace("*", "0"))
    except (PatternError, ValueError) as e:
        raise RouterTableError(number, line, str(e)) from None
    return RouterRecord(number, kinds, pattern, target, line, compiled)


def parse_router_table(text: str) -> "RouterTable":
    """
    Parse and validate a whole table; L{RouterTableError} for the first bad
    line, and no table at all.
    """
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        record = _parse_line(number, line.removesuffix("\r"))
        if record is not None:
            records.append(record)
    return RouterTable(text, records)


@attrs.frozen
class _KindIndex:
    """
    The records of one address kind, split so that an address only meets
    records that could match it; each list is in table order.
    """

    by_domain: dict[str, tuple[RouterRecord, ...]]
    other_domains: tuple[RouterRecord, ...]
    local_parts: tuple[RouterRecord, ...]


def _index(records: Sequence[RouterRecord], kind: AddressKind) -> _KindIndex:
    by_domain: dict[str, list[RouterRecord]] = {}
    other, local = [], []
    for record in records:
        if kind not in record.kinds:
            continue
        compiled = record.compiled
        if not compiled.has_at:
            local.append(record)
        elif compiled.domain is None:
            other.append(record)
        else:
            by_domain.setdefault(compiled.domain, []).append(record)
    return _KindIndex(
        {domain: tuple(found) for domain, found in by_domain.items()}, tuple(other), tuple(local)
    )


class RouterTable:
    """
    A parsed Router table.

    Records whose pattern has a literal domain (C{<*@d123.example>}) are
    indexed by that domain, so an address is tried only against the records
    for its own domain, those with a wildcard in the domain, and (when its
    domain is local or missing) the local-part records; the first match in
    table order among those is the first match of the whole table.
    """

    __slots__ = ("_text", "_records", "_indexes")

    def __init__(self, text: str, records: Sequence[RouterRecord]) -> None:
        self._text = text
        self._records = tuple(records)
        self._indexes = {kind: _index(self._records, kind) for kind in AddressKind}

    @property
    def text(self) -> str:
        """
        The table exactly as given, comments and all (what GETROUTERTABLE
        returns).
        """
        return self._text

    @property
    def records(self) -> tuple[RouterRecord, ...]:
        return self._records

    def __repr__(self) -> str:
        return f"<RouterTable: {len(self._records)} records>"

    def match(
        self, local: str, domain: str | None, kind: AddressKind, domain_is_local: bool
    ) -> RouterMatch | None:
        """
        The first record in table order that applies to the address
        C{local@domain} (or the bare C{local} when C{domain} is L{None}) of
        C{kind}, or L{None}.

        A record applies when C{kind} is among its kinds and either its
        pattern has an C{@} and matches the whole address, or it has none,
        the address's domain is missing or local, and it matches C{local}.
        """
        index = self._indexes[kind]
        full = local if domain is None else f"{local}@{domain}"
        candidates = []
        if "@" in full:
            folded = fold(full)
            tail = folded.rpartition("@")[2]
            candidates.append((index.by_domain.get(tail, ()), full, folded))
            candidates.append((index.other_domains, full, folded))
        if domain is None or domain_is_local:
            candidates.append((index.local_parts, local, fold(local)))
        best: RouterRecord | None = None
        best_captures: tuple[str, ...] = ()
        for records, subject, folded in candidates:
            for record in records:
                if best is not None and record.line >= best.line:
                    break
                captures = record.compiled.match(subject, folded)
                if captures is not None:
                    best, best_captures = record, captures
                    break
        if best is None:
            return None
        return RouterMatch(best, best.rewrite(best_captures), best_captures)
