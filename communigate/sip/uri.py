"""
URIs as SIP carries them (RFC 3261 §19.1, RFC 3966 for ``tel:``).

``parse_uri(text)`` returns one of three immutable values:

- `SIPURI` for ``sip:`` and ``sips:``;
- `TelURI` for ``tel:`` (the Router routes telephone numbers);
- `AbsoluteURI` for any other well-formed ``scheme:rest`` (``isbn:``,
  ``http:``, ``soap.beep:``...).  Parsers accept such URIs wherever RFC 3261
  allows an absoluteURI; deciding whether a scheme is acceptable is the
  application's job: a proxy answers 416 (Unsupported URI Scheme) when the
  Request-URI is an `AbsoluteURI`, a registrar 400 when the To URI is not a
  `SIPURI` (RFC 4475 §3.3.2-3.3.4).

Text that is no URI at all raises `URIError`.

Escaping: the user, password, parameter names and values and header names
and values of a `SIPURI` are held *unescaped* (``sip:%75ser@h`` has user
``'user'``; ``%00`` is a NUL character, never a terminator) and escaped on
output only where RFC 3261 requires it.  Octets that are not UTF-8 survive as
lone surrogates (``errors='surrogateescape'``), so every URI round-trips.

IPv6 references: the ``host`` attribute holds the bare address
(``'2001:db8::1'``); the brackets are written back on output.

Equality: ``==`` is structural (same scheme, same unescaped parts, same
parameters in the same order, host compared as written), which is what a
round trip preserves and what a dict key needs.  `uri_equal` implements the
looser RFC 3261 §19.1.4 comparison (case-insensitive host and parameters,
parameters present in only one URI ignored unless they are user, ttl,
method, maddr or transport, ...); use it wherever the RFC says "compare
URIs", e.g. matching a REGISTER Contact against a stored binding.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote, unquote

import attrs

__all__ = [
    "URIError",
    "SIPURI",
    "TelURI",
    "AbsoluteURI",
    "URI",
    "parse_uri",
    "uri_equal",
]


class URIError(ValueError):
    """The text is not a URI (or not a well-formed one of its scheme)."""


# ---------------------------------------------------------------- grammar
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_NONASCII = "\x80-\U0010ffff"  # raw UTF-8 text, accepted leniently, escaped on output
_HEX2 = "%[0-9A-Fa-f]{2}"


def _run(chars: str, min_one: bool) -> str:
    """Characters of a class or %XX escapes, as an unrolled loop (no
    nested quantifiers, so no catastrophic backtracking)."""
    rest = f"[{chars}]*(?:{_HEX2}[{chars}]*)*"
    return f"(?:[{chars}]|{_HEX2}){rest}" if min_one else rest


_USER = _run(_UNRESERVED + "&=+$,;?/#" + _NONASCII, True)  # '#' tolerated (phones send it)
_PASSWORD = _run(_UNRESERVED + "&=+$," + _NONASCII, False)
_PCHARS = _run(_UNRESERVED + r"\[\]/:&+$" + _NONASCII, True)
_HCHARS = _run(_UNRESERVED + r"\[\]/?:+$" + _NONASCII, True)
_HVALUE = _run(_UNRESERVED + r"\[\]/?:+$" + _NONASCII, False)
_HOSTNAME = r"[A-Za-z0-9_\-.]+"
_IPV6REF = r"\[[0-9A-Fa-f:.]+\]"
_PVALUE = _run(_UNRESERVED + r"\[\]/:&+$" + _NONASCII, False)  # empty tolerated
_PARAMS = rf"(?:;{_PCHARS}(?:={_PVALUE})?)*"

_SIP_REST = re.compile(
    rf"(?:(?P<user>{_USER})(?::(?P<password>{_PASSWORD}))?@)?"
    rf"(?P<host>{_IPV6REF}|{_HOSTNAME})"
    r"(?::(?P<port>[0-9]{1,5}))?"
    rf"(?P<params>{_PARAMS})"
    rf"(?:\?(?P<headers>{_HCHARS}={_HVALUE}(?:&{_HCHARS}={_HVALUE})*))?"
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE = re.compile(r"[A-Za-z0-9\-_.!~*'();/?:@&=+$,%\[\]#]+")
_TEL_NUMBER = re.compile(r"[0-9A-Fa-f*#+\-.()]+")
_TEL_REST = re.compile(rf"(?P<number>{_TEL_NUMBER.pattern})(?P<params>{_PARAMS})")
_HOST_OK = re.compile(rf"{_HOSTNAME}|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
_VISUAL_SEPARATORS = re.compile(r"[\-.()]")

# Characters written unescaped on output (RFC 3261 §25.1); everything
# else becomes %XX of its UTF-8 octets.
_SAFE_USER = "!*'()&=+$,;?/"  # plus the RFC 3986 unreserved quote() always keeps
_SAFE_PASSWORD = "!*'()&=+$,"
_SAFE_PARAM = "!*'()[]/:&+$"
_SAFE_HEADER = "!*'()[]/?:+$"
_PLAIN_USER = re.compile(rf"[{_UNRESERVED}&=+$,;?/]+")
_PLAIN_PARAM = re.compile(rf"[{_UNRESERVED}\[\]/:&+$]+")


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _escape_user(text: str) -> str:
    return text if _PLAIN_USER.fullmatch(text) else _escape(text, _SAFE_USER)


def _escape_param(text: str) -> str:
    return text if _PLAIN_PARAM.fullmatch(text) else _escape(text, _SAFE_PARAM)


def _parse_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """';a=b;c' (already validated) -> (('a', 'b'), ('c', None)), unescaped."""
    if not text:
        return ()
    params = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        params.append((_unescape(name), _unescape(value) if eq else None))
    return tuple(params)


def _format_params(parameters) -> str:
    out = []
    for name, value in parameters:
        out.append(";" + _escape_param(name))
        if value is not None:
            out.append("=" + _escape_param(value))
    return "".join(out)


def _find(parameters, name: str):
    """The parameter's value, None if valueless; KeyError if absent."""
    lname = name.lower()
    for pname, value in parameters:
        if pname.lower() == lname:
            return value
    raise KeyError(name)


def _with(parameters, name: str, value):
    lname = name.lower()
    kept = tuple(p for p in parameters if p[0].lower() != lname)
    if len(kept) == len(parameters):
        return parameters + ((name, value),)
    # replace in place, keeping the position of the first occurrence
    out, done = [], False
    for p in parameters:
        if p[0].lower() == lname:
            if not done:
                out.append((name, value))
                done = True
        else:
            out.append(p)
    return tuple(out)


def _without(parameters, name: str):
    lname = name.lower()
    return tuple(p for p in parameters if p[0].lower() != lname)


class _Parameters:
    """Shared parameter accessors; subclasses have a ``parameters`` field."""

    __slots__ = ()

    def parameter(self, name: str, default: str | None = None) -> str | None:
        """The value of a parameter (case-insensitive name); ``default`` when
        absent or valueless (use `has_parameter` to tell those apart)."""
        try:
            value = _find(self.parameters, name)
        except KeyError:
            return default
        return default if value is None else value

    def has_parameter(self, name: str) -> bool:
        try:
            _find(self.parameters, name)
        except KeyError:
            return False
        return True

    def with_parameter(self, name: str, value: str | None = None):
        """A copy with ``name`` set (replacing any value it had)."""
        return attrs.evolve(self, parameters=_with(self.parameters, name, value))

    def with_parameters(self, *pairs: tuple[str, str | None]):
        """
        A copy with each C{(name, value)} set in turn, as many
        L{with_parameter} calls would, making one copy instead of one each
        (a server stamps C{rport} and C{received} on every request).
        """
        parameters = self.parameters
        for name, value in pairs:
            parameters = _with(parameters, name, value)
        return attrs.evolve(self, parameters=parameters)

    def without_parameter(self, name: str):
        return attrs.evolve(self, parameters=_without(self.parameters, name))


# ------------------------------------------------------------------- SIP
@attrs.frozen
class SIPURI(_Parameters):
    """A ``sip:``/``sips:`` URI; parts unescaped, host without brackets."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None = None
    parameters: tuple[tuple[str, str | None], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.scheme != "sip" and self.scheme != "sips":
            raise URIError(f"SIPURI scheme must be 'sip' or 'sips', not {self.scheme!r}")
        if self.user == "":
            raise URIError("empty user part (use None for no user)")
        if not _HOST_OK.fullmatch(self.host):
            raise URIError(f"invalid host {self.host!r}")
        if self.port is not None and not 0 <= self.port <= 65535:
            raise URIError(f"invalid port {self.port!r}")

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape_user(self.user))
            if self.password is not None:
                parts.append(":" + _escape(self.password, _SAFE_PASSWORD))
            parts.append("@")
        parts.append(f"[{self.host}]" if ":" in self.host else self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.parameters:
            parts.append(_format_params(self.parameters))
        if self.headers:
            parts.append(
                "?"
                + "&".join(
                    _escape(n, _SAFE_HEADER) + "=" + _escape(v, _SAFE_HEADER)
                    for n, v in self.headers
                )
            )
        return "".join(parts)

    serialize = __str__

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased, or None."""
        value = self.parameter("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True when the URI carries the loose-routing ``lr`` parameter."""
        return self.has_parameter("lr")

    @property
    def maddr(self) -> str | None:
        return self.parameter("maddr")

    @property
    def host_port(self) -> str:
        """``host[:port]`` as written in a URI or Via (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def with_host(self, host: str, port: int | None = None) -> SIPURI:
        return attrs.evolve(self, host=host, port=port)

    def with_user(self, user: str | None) -> SIPURI:
        return attrs.evolve(self, user=user, password=None if user is None else self.password)

    def without_headers(self) -> SIPURI:
        return attrs.evolve(self, headers=()) if self.headers else self

    def address_of_record(self) -> SIPURI:
        """The canonical AOR of RFC 3261 §10.3: scheme, user and host,
        lower-cased host, no port, parameters or headers."""
        return SIPURI(self.scheme, self.user, None, self.host.lower())


def _parse_sip(scheme: str, rest: str, text: str) -> SIPURI:
    m = _SIP_REST.fullmatch(rest)
    if m is None:
        raise URIError(f"malformed {scheme} URI {text!r}")
    user, password, host, port, params, headers = m.groups()
    if host[0] == "[":
        host = host[1:-1]
    if port is not None:
        port = int(port)
        if port > 65535:
            raise URIError(f"port out of range in {text!r}")
    if user is not None:
        user = _unescape(user)
        if password is not None:
            password = _unescape(password)
    hdrs = ()
    if headers:
        hdrs = tuple(
            (_unescape(n), _unescape(v))
            for n, _, v in (h.partition("=") for h in headers.split("&"))
        )
    return SIPURI(scheme, user, password, host, port, _parse_params(params), hdrs)


# ------------------------------------------------------------------- tel
@attrs.frozen
class TelURI(_Parameters):
    """A ``tel:`` URI (RFC 3966): the number as written (visual separators
    kept) and its parameters (``phone-context``, ``ext``, ...)."""

    number: str
    parameters: tuple[tuple[str, str | None], ...] = ()

    scheme = "tel"

    def __attrs_post_init__(self) -> None:
        if not _TEL_NUMBER.fullmatch(self.number):
            raise URIError(f"invalid telephone number {self.number!r}")

    def __str__(self) -> str:
        return "tel:" + self.number + _format_params(self.parameters)

    serialize = __str__

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        """The number without visual separators (``+1-201-555`` -> ``+1201555``)."""
        return _VISUAL_SEPARATORS.sub("", self.number)


def _parse_tel(rest: str, text: str) -> TelURI:
    m = _TEL_REST.fullmatch(rest)
    if m is None:
        raise URIError(f"malformed tel URI {text!r}")
    return TelURI(m.group("number"), _parse_params(m.group("params")))


# --------------------------------------------------------------- other
@attrs.frozen
class AbsoluteURI:
    """Any other URI: the scheme (lower-cased) and the rest, kept opaque."""

    scheme: str
    opaque: str

    def __attrs_post_init__(self) -> None:
        if not _SCHEME.fullmatch(self.scheme) or not _OPAQUE.fullmatch(self.opaque):
            raise URIError(f"invalid URI {self.scheme!r}:{self.opaque!r}")

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    serialize = __str__


URI = SIPURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> URI:
    """Parse a URI; raise `URIError` if ``text`` is not one.

    Results are immutable, so the most recent ones are cached: the same
    Request-URI, From, To and Contact URIs come back with every REGISTER.
    """
    if len(text) > 256:
        return _parse_uri(text)
    return _cached_parse_uri(text)


def _parse_uri(text: str) -> URI:
    scheme, colon, rest = text.partition(":")
    lscheme = scheme.lower()
    if lscheme == "sip" or lscheme == "sips":
        return _parse_sip(lscheme, rest, text)
    if not colon or not _SCHEME.fullmatch(scheme):
        raise URIError(f"not a URI: {text!r}")
    if lscheme == "tel":
        return _parse_tel(rest, text)
    if not _OPAQUE.fullmatch(rest):
        raise URIError(f"malformed URI {text!r}")
    return AbsoluteURI(lscheme, rest)


_cached_parse_uri = functools.lru_cache(maxsize=8192)(_parse_uri)


# ------------------------------------------------------------ comparison
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


def _host_key(host: str) -> str:
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            pass
    return host.lower()


def _param_map(parameters) -> dict[str, str | None]:
    return {
        n.lower(): (v.lower() if v is not None else None) for n, v in parameters
    }


def uri_equal(a: URI, b: URI) -> bool:
    """Compare two URIs as RFC 3261 §19.1.4 (SIP), RFC 3966 §4 (tel) say.

    SIP: same scheme; user and password equal case-sensitively after
    unescaping; host case-insensitive; ports equal (an absent port does
    *not* equal 5060); the parameters user, ttl, method, maddr and
    transport present in both or neither and equal; any other parameter
    equal when present in both; header components all present in both and
    equal.  tel: equal numbers once visual separators are removed (hex
    digits case-insensitive) and equal parameter sets.  Other schemes:
    scheme case-insensitive, the rest exactly.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, SIPURI):
        if (
            a.scheme != b.scheme
            or a.user != b.user
            or a.password != b.password
            or a.port != b.port
            or _host_key(a.host) != _host_key(b.host)
        ):
            return False
        pa, pb = _param_map(a.parameters), _param_map(b.parameters)
        for name in _MUST_MATCH:
            if pa.get(name, ...) != pb.get(name, ...):
                return False
        for name, value in pa.items():
            if name in pb and pb[name] != value:
                return False
        ha = {(n.lower(), v) for n, v in a.headers}
        hb = {(n.lower(), v) for n, v in b.headers}
        return ha == hb
    if isinstance(a, TelURI):
        return a.digits.lower() == b.digits.lower() and _param_map(
            a.parameters
        ) == _param_map(b.parameters)
    return a.scheme == b.scheme and a.opaque == b.opaque
