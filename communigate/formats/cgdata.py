"""
CommuniGate Pro's textual data format: strings, data blocks, numbers,
timestamps, IP addresses, XML, arrays and dictionaries.

Why this module exists: every settings file the server keeps
(``Settings/*.settings``, account ``.settings``, ``.info``), every CLI
command argument and every CLI reply is written in this one format, so it is
the lingua franca between the storage back ends, the CLI front end and
administrators' scripts.  It is pure: text in, Python values out, and back.

Mapping between text and Python:

==========================  ============================================
``alice@example.com``       ``str`` (an *atom*); bare ``10`` is the string
``"x y"``                   ``str`` (quoted, with escapes)
``[AAEC]``                  ``bytes`` (base64; ``[AAEC] [AwQ=]`` is one block)
``#10`` ``#-5`` ``#0x1F``   ``int`` (always written in decimal)
``#YES`` ``#NO``            ``True`` / ``False``
``#T07-11-2011_16:53:05``   ``datetime.datetime`` (naive, UTC by convention)
``#T07-11-2011``            ``datetime.date``
``#TPAST`` ``#TFUTURE``     the constants `PAST` and `FUTURE`
``#I[10.0.0.1]:5060``       `IPAddress`
``#NULL#``                  ``None``
``<a x="1">t</a>``          `XMLText` (the exact text, not parsed further)
``(a, b)``                  ``list`` (tuples are written as arrays too)
``{a = b; c = d;}``         ``dict`` with ``str`` keys, order preserved
==========================  ============================================

Decisions where the format leaves room:

- ``\\e`` inside a quoted string is CommuniGate's "platform end of line"; it
  is read as ``"\\n"``.  The writer never emits ``\\e``: it writes ``\\n``,
  ``\\r``, ``\\t``, ``\\"``, ``\\\\`` and ``\\nnn`` (three decimal digits) for
  other control characters (below 0x20, and DEL).  Non-ASCII text is written
  as is inside quotes.
- ``bool`` is written as ``#YES``/``#NO`` (never as the number it subclasses)
  and those read back as ``True``/``False``.
- ``datetime`` values are written to the second: microseconds are dropped,
  and aware values are converted to UTC first.
- A data block split in parts is one ``bytes`` value: ``[AAEC][AwQ=]``
  always, and in multi-line text also with whitespace or comments between
  the parts.  Single-line text joins only touching parts, so that two
  blocks given as separate CLI arguments stay two values.
- `parse_prefix` returns the position just after the value; whitespace
  after it is *not* skipped.
- Multi-line text treats spaces, tabs, line ends, ``// ...`` to the end of a
  line and ``/* ... */`` as whitespace.  Single-line text (a CLI line) allows
  only spaces and tabs; there ``//`` is not a comment but a stray character.
- Duplicate dictionary keys are an error, not "last one wins".
"""

import base64
import datetime
import ipaddress
import re
import sys

import attrs

__all__ = [
    "DataFormatError", "IPAddress", "XMLText", "PAST", "FUTURE", "MAX_DEPTH",
    "dumps", "loads", "parse_prefix", "skip_space",
]

#: Arrays and dictionaries nested deeper than this are refused (both ways).
MAX_DEPTH = 100


class DataFormatError(ValueError):
    """
    Text that is not valid CommuniGate data.

    @ivar position: offset into the text where the problem was found.
    @ivar reason: the message without the position.
    """

    def __init__(self, reason, position, text=None):
        where = f"at offset {position}"
        if text is not None and "\n" in text[:position]:
            line = text.count("\n", 0, position) + 1
            column = position - text.rfind("\n", 0, position)
            where += f" (line {line}, column {column})"
        super().__init__(f"{reason} {where}")
        self.reason = reason
        self.position = position


@attrs.frozen
class IPAddress:
    """An IP address with an optional port: ``#I[1.2.3.4]:5060``."""

    host: str = attrs.field()
    port: "int | None" = attrs.field(default=None)

    @host.validator
    def _check_host(self, attribute, value):
        if not isinstance(value, str) or "]" in value or value.strip() != value:
            raise ValueError(f"IPAddress host must be an IP address string, not {value!r}")
        ipaddress.ip_address(value)  # raises ValueError naming the value

    @port.validator
    def _check_port(self, attribute, value):
        if value is not None and (
            type(value) is not int or not 0 <= value <= 65535
        ):
            raise ValueError(f"IPAddress port must be None or 0..65535, not {value!r}")


@attrs.frozen
class XMLText:
    """An XML element kept as its exact text; must be one well-formed element."""

    text: str = attrs.field()

    @text.validator
    def _check_text(self, attribute, value):
        if not isinstance(value, str):
            raise TypeError(f"XMLText needs a str, not {type(value).__name__}")
        if _scan_xml(value, 0) != len(value):
            raise ValueError(f"XMLText has text after its element: {value!r}")


class _TimeBoundary:
    """The type of `PAST` and `FUTURE`: timestamps before/after any other."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return self._name

    def __reduce__(self):
        # Pickle and copy by name, so the constants stay singletons.
        return self._name


PAST = _TimeBoundary("PAST")
FUTURE = _TimeBoundary("FUTURE")

# ---------------------------------------------------------------- reading

_ATOM_CHARS = r"A-Za-z0-9\-_.@!%\]:\x80-\U0010ffff"
_ATOM = re.compile(f"[{_ATOM_CHARS}][{_ATOM_CHARS}#]*")
_ATOM_CHAR = re.compile(f"[{_ATOM_CHARS}#]")
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.S)
_ESCAPE = re.compile(r'\\([0-9]{3}|["\\rnte])?')
_UNESCAPES = {'"': '"', "\\": "\\", "r": "\r", "n": "\n", "t": "\t", "e": "\n"}
_BLOCK_SPACE = re.compile(r"[ \t\r\n]+")
_NUMBER = re.compile(r"#(-?)(?:0[xX]([0-9A-Fa-f]+)|([0-9]+))")
_TIME = re.compile(
    r"#T(?:(PAST|FUTURE)|([0-9]{1,2})-([0-9]{1,2})-([0-9]{4})"
    r"(?:_([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2}))?)"
)
_IP = re.compile(r"#I\[([^\]\s]*)\](?::([0-9]{1,5}))?")
_FLAGS = {"#NULL#": None, "#YES": True, "#NO": False}
_FLAG = re.compile(r"#(?:NULL#|YES|NO)")
_SPACE_SINGLE = re.compile(r"[ \t]*")
_SINGLE_STARTS = frozenset(" \t")
_MULTI_STARTS = frozenset(" \t\r\n\f\v/")
_SPACE_MULTI = re.compile(r"(?:[ \t\r\n\f\v]+|//[^\r\n]*|/\*.*?\*/)*", re.S)
_XML_TOKEN = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>"
    r"""|<(/?)([^\s<>/"'=!?]+)((?:[^<>"']|"[^"]*"|'[^']*')*)>""",
    re.S,
)


def _found(text, pos):
    return "the end of the text" if pos >= len(text) else repr(text[pos])


def skip_space(text, pos, multiline=False):
    """
    Return the offset of the first non-whitespace character at or after
    C{pos}.  Multi-line text also skips line ends and comments; an
    unterminated ``/*`` raises `DataFormatError`.
    """
    # Most calls find no space at all: answer those without a regex.
    if text[pos:pos + 1] not in (_MULTI_STARTS if multiline else _SINGLE_STARTS):
        return pos
    if not multiline:
        return _SPACE_SINGLE.match(text, pos).end()
    pos = _SPACE_MULTI.match(text, pos).end()
    if text.startswith("/*", pos):
        raise DataFormatError("unterminated /* comment", pos, text)
    return pos


def _scan_xml(text, pos):
    """Return the offset just after the XML element that starts at C{pos}."""
    start = pos
    stack = []
    while True:
        m = _XML_TOKEN.match(text, pos)
        if m is None:
            raise DataFormatError("malformed XML tag", pos, text)
        closing, name, rest = m.groups()
        if name is None:
            if not stack:
                raise DataFormatError("expected an XML element", pos, text)
        elif closing:
            if rest.strip():
                raise DataFormatError(f"malformed XML end tag </{name}>", pos, text)
            if not stack or stack[-1] != name:
                expected = f"</{stack[-1]}>" if stack else "a start tag"
                raise DataFormatError(
                    f"XML end tag </{name}> does not match, expected {expected}",
                    pos, text)
            stack.pop()
        elif not rest.endswith("/"):
            stack.append(name)
        pos = m.end()
        if not stack:
            return pos
        pos = text.find("<", pos)
        if pos < 0:
            raise DataFormatError(
                f"unterminated XML element <{stack[-1]}>", start, text)


def _unescape(text, start, body):
    if "\\" not in body:
        return body

    def replace(m):
        code = m.group(1)
        if code is None:
            raise DataFormatError(
                "bad escape in quoted string; expected one of "
                '\\" \\\\ \\r \\n \\t \\e or \\nnn',
                start + 1 + m.start(), text)
        return chr(int(code)) if code[0].isdigit() else _UNESCAPES[code]

    return _ESCAPE.sub(replace, body)


def _quoted(text, pos):
    m = _QUOTED.match(text, pos)
    if m is None:
        raise DataFormatError("unterminated quoted string", pos, text)
    return _unescape(text, pos, m.group(1)), m.end()


def _key(text, pos):
    if text.startswith('"', pos):
        return _quoted(text, pos)
    m = _ATOM.match(text, pos)
    if m is None:
        raise DataFormatError(
            f"expected a dictionary key or '}}' but found {_found(text, pos)}",
            pos, text)
    return m.group(), m.end()


def _end_typed(text, pos, end, what):
    """Refuse a typed object glued to atom characters, like ``#12ab``."""
    if end < len(text) and _ATOM_CHAR.match(text, end):
        raise DataFormatError(f"malformed {what}", pos, text)
    return end


def _typed(text, pos):
    kind = text[pos + 1:pos + 2]
    if kind == "T":
        m = _TIME.match(text, pos)
        if m is None:
            raise DataFormatError(
                "malformed timestamp; expected #TDD-MM-YYYY_HH:MM:SS, "
                "#TDD-MM-YYYY, #TPAST or #TFUTURE", pos, text)
        end = _end_typed(text, pos, m.end(), "timestamp")
        boundary, *fields = m.groups()
        if boundary:
            return (PAST if boundary == "PAST" else FUTURE), end
        day, month, year, hour, minute, second = (
            None if f is None else int(f) for f in fields)
        try:
            if hour is None:
                return datetime.date(year, month, day), end
            return datetime.datetime(year, month, day, hour, minute, second), end
        except ValueError as e:
            raise DataFormatError(f"invalid timestamp ({e})", pos, text) from None
    if kind == "I":
        m = _IP.match(text, pos)
        if m is None:
            raise DataFormatError(
                "malformed IP address; expected #I[address] or #I[address]:port",
                pos, text)
        end = _end_typed(text, pos, m.end(), "IP address")
        host, port = m.groups()
        try:
            return IPAddress(host, None if port is None else int(port)), end
        except ValueError as e:
            raise DataFormatError(f"invalid IP address ({e})", pos, text) from None
    if kind == "(":
        raise DataFormatError("unknown-data objects #(...) are not supported", pos, text)
    m = _NUMBER.match(text, pos)
    if m is not None:
        end = _end_typed(text, pos, m.end(), "number")
        sign, hexa, decimal = m.groups()
        try:
            value = int(hexa, 16) if hexa is not None else int(decimal)
        except ValueError:
            raise DataFormatError("number too long", pos, text) from None
        return (-value if sign else value), end
    m = _FLAG.match(text, pos)
    if m is not None:
        return _FLAGS[m.group()], _end_typed(text, pos, m.end(), "#NULL#, #YES or #NO")
    raise DataFormatError(
        f"unknown object type {text[pos:pos + 12]!r}; expected #number, "
        "#T..., #I[...], #NULL#, #YES or #NO", pos, text)


def _block(text, pos, multiline):
    chunks = []
    start = pos
    while True:
        end = text.find("]", pos)
        if end < 0:
            raise DataFormatError("unterminated data block", pos, text)
        chunks.append(text[pos + 1:end])
        pos = end + 1
        after = skip_space(text, pos, multiline) if multiline else pos
        if not text.startswith("[", after):
            break
        pos = after
    try:
        value = base64.b64decode(_BLOCK_SPACE.sub("", "".join(chunks)), validate=True)
    except ValueError as e:
        raise DataFormatError(f"invalid base64 in data block ({e})", start, text) from None
    return value, pos


def _value(text, pos, multiline, depth):
    """Read the value starting exactly at C{pos}; return it and its end."""
    c = text[pos:pos + 1]
    if c == '"':
        return _quoted(text, pos)
    m = _ATOM.match(text, pos)
    if m is not None:
        return m.group(), m.end()
    if c == "#":
        return _typed(text, pos)
    if c == "(" or c == "{":
        if depth >= MAX_DEPTH:
            raise DataFormatError(f"nesting deeper than {MAX_DEPTH} levels", pos, text)
        if c == "(":
            return _array(text, pos, multiline, depth + 1)
        return _dictionary(text, pos, multiline, depth + 1)
    if c == "[":
        return _block(text, pos, multiline)
    if c == "<":
        end = _scan_xml(text, pos)
        return XMLText(text[pos:end]), end
    raise DataFormatError(f"expected a value but found {_found(text, pos)}", pos, text)


def _array(text, pos, multiline, depth):
    result = []
    pos = skip_space(text, pos + 1, multiline)
    if text.startswith(")", pos):
        return result, pos + 1
    while True:
        value, pos = _value(text, pos, multiline, depth)
        result.append(value)
        pos = skip_space(text, pos, multiline)
        c = text[pos:pos + 1]
        if c == ")":
            return result, pos + 1
        if c != ",":
            raise DataFormatError(
                f"expected ',' or ')' after array element but found {_found(text, pos)}",
                pos, text)
        pos = skip_space(text, pos + 1, multiline)


def _dictionary(text, pos, multiline, depth):
    result = {}
    pos = skip_space(text, pos + 1, multiline)
    while not text.startswith("}", pos):
        key_pos = pos
        key, pos = _key(text, pos)
        pos = skip_space(text, pos, multiline)
        if not text.startswith("=", pos):
            raise DataFormatError(
                f"expected '=' after key {_name(key)} but found {_found(text, pos)}",
                pos, text)
        pos = skip_space(text, pos + 1, multiline)
        value, pos = _value(text, pos, multiline, depth)
        if key in result:
            raise DataFormatError(f"duplicate key {_name(key)}", key_pos, text)
        result[_intern(key)] = value
        pos = skip_space(text, pos, multiline)
        if text.startswith(";", pos):
            pos = skip_space(text, pos + 1, multiline)
        elif not text.startswith("}", pos):
            raise DataFormatError(
                f"expected ';' after the value of key {_name(key)} "
                f"but found {_found(text, pos)}", pos, text)
    return result, pos + 1


def parse_prefix(text, pos=0, multiline=False):
    """
    Read one value from C{text} at C{pos}, skipping whitespace before it.

    @return: C{(value, end)} where C{end} is the offset just after the value;
        whitespace after the value is not skipped.
    @raise DataFormatError: if no valid value starts there.
    """
    pos = skip_space(text, pos, multiline)
    return _value(text, pos, multiline, 0)


# One token of the plain subset of the format that stored records are
# mostly made of: punctuation, a quoted string, or an atom.
_PLAIN_TOKEN = re.compile(
    rf'[ \t\r\n]*(?:([{{}}();=,])|"([^"\\]*(?:\\.[^"\\]*)*)"|([{_ATOM_CHARS}][{_ATOM_CHARS}#]*))', re.S
)
_NOT_PLAIN = object()


# Dictionary keys come from a small vocabulary (Settings, Kind, HA1, ...)
# repeated in every record; a server caching thousands of parsed records
# keeps one copy of each instead of one per record.
_intern = sys.intern


def _plain_loads(text):
    """
    C{text} read by one regular expression and a stack, when it holds only
    dictionaries, arrays, atoms and quoted strings without escapes (what
    directory records mostly are); L{_NOT_PLAIN} for anything else or
    anything wrong, which the full parser then reads or reports.  Three
    times faster than the full parser on a password record.
    """
    stack = []
    container = None
    key = None  # in a dictionary: the key read, waiting for its value
    expect = "value"  # value | sep (after a value) | key | eq
    result = _NOT_PLAIN
    pos = 0
    end = len(text)
    match = _PLAIN_TOKEN.match
    while True:
        m = match(text, pos)
        if m is None:
            break
        pos = m.end()
        punct, quoted, atom = m.groups()
        if punct is None:
            if quoted is not None:
                if "\\" in quoted:
                    return _NOT_PLAIN
                value = quoted
            else:
                value = atom
            if expect == "key":
                key, expect = _intern(value), "eq"
                continue
            if expect != "value":
                return _NOT_PLAIN
        elif punct == "{" or punct == "(":
            if expect != "value" or len(stack) >= MAX_DEPTH:
                return _NOT_PLAIN
            stack.append((container, key))
            if punct == "{":
                container, expect = {}, "key"
            else:
                container, expect = [], "value"
            continue
        elif punct == "}":
            if type(container) is not dict or expect != "key":
                return _NOT_PLAIN
            value = container
            container, key = stack.pop()
        elif punct == ")":
            if type(container) is not list or (expect == "value" and container):
                return _NOT_PLAIN
            value = container
            container, key = stack.pop()
        elif punct == "=":
            if expect != "eq":
                return _NOT_PLAIN
            expect = "value"
            continue
        elif punct == ";":
            if type(container) is not dict or expect != "sep":
                return _NOT_PLAIN
            expect = "key"
            continue
        else:  # ","
            if type(container) is not list or expect != "sep":
                return _NOT_PLAIN
            expect = "value"
            continue
        # a complete value
        if container is None:
            result = value
            break
        if type(container) is dict:
            if key in container:
                return _NOT_PLAIN
            container[key] = value
            expect = "sep"
            # the last entry of a dictionary may go without its ';'
            if text.startswith("}", _SPACE_SINGLE_OR_LINE.match(text, pos).end()):
                expect = "key"
        else:
            container.append(value)
            expect = "sep"
    if result is _NOT_PLAIN or _SPACE_SINGLE_OR_LINE.match(text, pos).end() != end:
        return _NOT_PLAIN
    return result


_SPACE_SINGLE_OR_LINE = re.compile(r"[ \t\r\n]*")


def loads(text, multiline=True):
    """
    Read exactly one value from C{text}; whitespace (and, if C{multiline},
    comments) may surround it, anything else is a `DataFormatError`.
    """
    if not isinstance(text, str):
        raise TypeError(f"loads needs a str, not {type(text).__name__}")
    if multiline:
        value = _plain_loads(text)
        if value is not _NOT_PLAIN:
            return value
    value, pos = parse_prefix(text, 0, multiline)
    pos = skip_space(text, pos, multiline)
    if pos < len(text):
        raise DataFormatError(
            f"unexpected {_found(text, pos)} after the value", pos, text)
    return value

# ---------------------------------------------------------------- writing

_BARE = re.compile(r"[A-Za-z0-9._@]+")
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(m):
    c = m.group()
    return _ESCAPES.get(c) or f"\\{ord(c):03d}"


def _name(s):
    """A key as it appears in error messages: always in double quotes."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, s) + '"'


def _quote(s):
    if _BARE.fullmatch(s):
        return s
    return '"' + _NEEDS_ESCAPE.sub(_escape, s) + '"'


def _dump(value, out, depth):
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("#NULL#")
    elif isinstance(value, bool):
        out.append("#YES" if value else "#NO")
    elif isinstance(value, int):
        out.append(f"#{int(value)}")
    elif isinstance(value, (list, tuple, dict)):
        if depth >= MAX_DEPTH:
            raise ValueError(f"cannot write data nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            out.append("{")
            for i, (key, item) in enumerate(value.items()):
                if not isinstance(key, str):
                    raise TypeError(
                        f"dictionary keys must be str, not {type(key).__name__}")
                out.append(" " if i else "")
                out.append(_quote(key))
                out.append(" = ")
                _dump(item, out, depth + 1)
                out.append(";")
            out.append("}")
        else:
            out.append("(")
            for i, item in enumerate(value):
                if i:
                    out.append(", ")
                _dump(item, out, depth + 1)
            out.append(")")
    elif isinstance(value, (bytes, bytearray)):
        out.append(f"[{base64.b64encode(value).decode('ascii')}]")
    elif isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            value = value.astimezone(datetime.timezone.utc)
        out.append(
            f"#T{value.day:02d}-{value.month:02d}-{value.year:04d}"
            f"_{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
    elif isinstance(value, datetime.date):
        out.append(f"#T{value.day:02d}-{value.month:02d}-{value.year:04d}")
    elif value is PAST or value is FUTURE:
        out.append(f"#T{value!r}")
    elif isinstance(value, IPAddress):
        port = "" if value.port is None else f":{value.port}"
        out.append(f"#I[{value.host}]{port}")
    elif isinstance(value, XMLText):
        out.append(value.text)
    else:
        raise TypeError(
            f"cannot write {type(value).__name__} as CommuniGate data")


def dumps(value):
    """
    Return the canonical text of C{value}: ``{a = b; c = (x, y);}``.

    @raise TypeError: for a type the format cannot hold (see the table in
        the module docstring) or a non-str dictionary key.
    @raise ValueError: for data nested deeper than `MAX_DEPTH`.
    """
    out = []
    _dump(value, out, 0)
    return "".join(out)
