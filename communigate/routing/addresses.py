"""
Every spelling of an address, reduced to the two shapes the Router works on.

CommuniGate routes mail recipients, Signal targets and login names through
one Router, and the Router speaks the e-mail form C{local@domain}.  So each
protocol's own spelling -- a C{sip:}, C{sips:}, C{tel:} or C{xmpp:} URI, a
UUCP C{relay!domain!user} path, an RFC 821 C{<@relay:user@domain>} source
route -- is mapped onto that form here, once, and nothing downstream needs
to know URIs.  Real-time applications (C{program{params}#account}) are the
one target the e-mail form cannot carry, so they get their own shape,
L{ApplicationAddress}.

Decisions, so that every caller sees the same answers:

 - This module parses; it does not interpret.  C{NULL}, C{error} and
   C{pbx} parse as plain names; the Router table says what they mean.
 - A C{sip:}, C{sips:} or C{xmpp:} URI without a user part names a host,
   not an address, and is refused.  Requests aimed at the server itself
   (C{REGISTER sip:example.com}, C{OPTIONS}) are answered by the protocol
   front end before anything is routed, and refusing keeps the invariant
   that every L{Address} has a user part and its L{Address.email} parses
   back to the same value.
 - C{tel:+1-555-383-7461} becomes C{+15553837461@telnum}: visual
   separators go (RFC 3966), URI parameters such as C{phone-context} or
   C{ext} are dropped, and a local number stays as dialled; turning it into
   E.164 is the Router's job (see L{communigate.routing.e164}).  A SIP URI
   with C{user=phone} gets the same treatment of its user part.
 - L{sip_uri} always gives a SIP URI, also for C{+N@telnum}
   (C{sip:+N@telnum}), because the SIP module needs one whatever the
   domain; L{tel_uri} gives C{tel:+N} for a global number in C{telnum}.
 - Application parameters are split on C{,} and trimmed, so C{{a, b}}
   equals C{{a,b}}; spaces inside a parameter are kept.  C{{}} is one empty
   parameter (C{gatewaycaller{*}} with an empty match), while no braces
   at all is no parameters.
 - IPv4 hosts take the bracketed e-mail form C{[192.0.2.1]}, so a Router
   record for an IP literal matches whichever way the address came in.
"""

import ipaddress
import re
import string

import attrs

#: The special domain whose names are telephone numbers.
TELNUM_DOMAIN = "telnum"

_PHONE_NUMBER = re.compile(r"\+?[0-9]{1,31}\Z")
_VISUAL_SEPARATORS = re.compile(r"[-.()]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_DOMAIN_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PROGRAM = re.compile(r"[A-Za-z0-9._-]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"\Z')

# Characters a user part may hold.  Everything else is syntax somewhere:
# '@', '%', '!' and ':' build paths, '#', '{', '}' applications, '<', '>',
# '"' display names, ',' and ';' separate lists and comments in the CLI
# and the Router table.
_LOCAL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.~*'+=$&?/^")
# What may stay unescaped in the user part of a SIP URI we write: RFC
# 3261's unreserved and user-unreserved characters, less those a reader
# might take for the start of parameters or headers.
_SIP_USER_SAFE = frozenset(string.ascii_letters + string.digits + "-_.!~*'()&=+$")


class AddressError(ValueError):
    """
    The text is not an address.

    @ivar text: the text as given.
    @ivar reason: what is wrong with it.
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is not a valid address: {reason}")
        self.text = text
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.text, self.reason))


def is_phone_number(text: str) -> bool:
    """
    Whether C{text} is a telephone number as the telnum tables hold them:
    1 to 31 digits with an optional leading C{+}.
    """
    return bool(_PHONE_NUMBER.match(text))


def _check_name(name: str, what: str) -> None:
    if not name:
        raise AddressError(name, f"the {what} is empty")
    if len(name) > 255:
        raise AddressError(name, f"the {what} is longer than 255 characters")
    for character in name:
        if character in _LOCAL_CHARACTERS:
            continue
        if character.isspace():
            raise AddressError(name, f"the {what} contains white space")
        if not character.isprintable():
            raise AddressError(name, f"the {what} contains a control character")
        if ord(character) < 128 or not character.isalnum():
            raise AddressError(name, f"{character!r} is not allowed in the {what}")


def _normal_domain(domain: str) -> str:
    name = domain.lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    if name.startswith("[") and name.endswith("]"):
        try:
            literal = ipaddress.ip_address(name[1:-1])
        except ValueError:
            raise AddressError(domain, f"{name} is not an IP address literal") from None
        return f"[{literal.compressed}]"
    try:
        return f"[{ipaddress.IPv4Address(name)}]"
    except ValueError:
        pass
    if len(name) > 253 or not all(map(_DOMAIN_LABEL.match, name.split("."))):
        raise AddressError(
            domain,
            f"{domain!r} is not a domain name: use letters, digits and hyphens "
            f"in dot-separated labels, or an IP address in brackets",
        )
    return name


def _domain_or_none(domain: str | None) -> str | None:
    return None if domain is None else _normal_domain(domain)


def _check_local(instance, attribute, local: str) -> None:
    user, *relays = local.split("%")
    if relays and not user:
        raise AddressError(local, "nothing before '%'")
    _check_name(user, "user part")
    if len(local) > 255:
        raise AddressError(local, "the user part is longer than 255 characters")
    for relay in relays:
        if not relay:
            raise AddressError(local, "nothing after '%'")
        _normal_domain(relay)


@attrs.frozen
class Address:
    """
    An address in e-mail form.

    @ivar local: the user part, case kept as written (compare with
        L{key}).  It may hold C{%} paths: C{user%domain} at C{relay} is
        "to relay first, then to user@domain".
    @ivar domain: the domain in lower case, or L{None} for a bare name or
        number that belongs to whatever domain the Router decides.
    """

    local: str = attrs.field(validator=_check_local)
    domain: str | None = attrs.field(default=None, converter=_domain_or_none)

    def email(self) -> str:
        """
        The e-mail form, which L{parse_address} reads back to this address.
        """
        return self.local if self.domain is None else f"{self.local}@{self.domain}"

    def key(self) -> str:
        """
        The e-mail form folded to lower case, as names are compared.
        """
        return self.email().lower()

    def relayed(self) -> "Address | None":
        """
        Where the relay sends it next: C{user%domain@relay} becomes
        C{user@domain}, the rightmost C{%} being the next hop, as sendmail
        reads it.  L{None} when there is no C{%} path.
        """
        if self.domain is None or "%" not in self.local:
            return None
        local, _, domain = self.local.rpartition("%")
        return Address(local, domain)


def _check_program(instance, attribute, program: str) -> None:
    if not program:
        raise AddressError(program, "the program name is empty")
    if not _PROGRAM.match(program) or not program.isascii():
        raise AddressError(
            program, f"the program name {program!r} may hold only letters, digits, -_."
        )


def _parameter_tuple(parameters) -> tuple[str, ...]:
    if isinstance(parameters, str):
        raise TypeError("parameters are a sequence of strings, not one string")
    return tuple(parameter.strip() for parameter in parameters)


def _check_parameters(instance, attribute, parameters: tuple[str, ...]) -> None:
    for parameter in parameters:
        for character in parameter:
            if character in "{},":
                raise AddressError(parameter, f"{character!r} inside a parameter")
            if not character.isprintable():
                raise AddressError(parameter, "a parameter holds a control character")


def _check_account(instance, attribute, account: str | None) -> None:
    if account is not None:
        _check_name(account, "account name")


def _check_application_domain(instance, attribute, domain: str | None) -> None:
    if domain is not None and instance.account is None:
        raise AddressError(domain, "an application without an account has no domain")


@attrs.frozen
class ApplicationAddress:
    """
    A real-time application to start: C{program{p1,p2}#account@domain},
    or C{#program} alone as Call-Control addresses allow.

    @ivar program: the application's name.
    @ivar parameters: what the task reads as C{Vars().startParameter}.
    @ivar account: the account it runs on behalf of, or L{None}.
    @ivar domain: that account's domain, or L{None} for the Router's
        choice (and always L{None} without an account).
    """

    program: str = attrs.field(validator=_check_program)
    parameters: tuple[str, ...] = attrs.field(
        default=(), converter=_parameter_tuple, validator=_check_parameters
    )
    account: str | None = attrs.field(default=None, validator=_check_account)
    domain: str | None = attrs.field(
        default=None, converter=_domain_or_none, validator=_check_application_domain
    )

    def call(self) -> str:
        """
        C{program{a,b}}: the third element of a C{ROUTE} answer.
        """
        if not self.parameters:
            return self.program
        return f"{self.program}{{{','.join(self.parameters)}}}"

    def text(self) -> str:
        """
        The canonical spelling, which L{parse_address} reads back.
        """
        if self.account is None:
            return f"#{self.call()}"
        text = f"{self.call()}#{self.account}"
        return text if self.domain is None else f"{text}@{self.domain}"


def parse_address(text: str) -> Address | ApplicationAddress:
    """
    Read any address form; L{AddressError} names the text and what is wrong.
    """
    if not isinstance(text, str):
        raise TypeError(f"an address is text, not {type(text).__name__}")
    try:
        return _parse(text.strip())
    except AddressError as error:
        raise AddressError(text, error.reason) from None


def _parse(text: str) -> Address | ApplicationAddress:
    if not text:
        raise AddressError(text, "it is empty")
    if not text.isprintable():
        raise AddressError(text, "it contains a control character")
    text = _without_display_name(text)
    if not text:
        raise AddressError(text, "the angle brackets are empty")
    if text.startswith("@"):
        return _source_route(text)
    if any(character in text for character in "#{}"):
        return _application(text)
    scheme = _SCHEME.match(text)
    if scheme:
        return _uri(scheme.group(1).lower(), text[scheme.end():])
    if "!" in text and "@" not in text:
        return _bang_path(text)
    return _plain(text)


def _without_display_name(text: str) -> str:
    if not text.endswith(">"):
        return text
    start = text.rfind("<")
    if start < 0:
        raise AddressError(text, "'>' without '<'")
    display = text[:start].strip()
    if display.startswith('"'):
        if not _QUOTED.match(display):
            raise AddressError(text, "the quoted display name is not closed")
    elif any(character in display for character in '"<>'):
        raise AddressError(text, "the display name holds '\"', '<' or '>'")
    return text[start + 1:-1]


def _plain(text: str) -> Address:
    local, at, domain = text.partition("@")
    if not at:
        return Address(local)
    if "@" in domain:
        raise AddressError(text, "more than one '@'")
    if not local:
        raise AddressError(text, "nothing before '@'")
    if not domain:
        raise AddressError(text, "nothing after '@'")
    return Address(local, domain)


def _hops_to_address(user: str, hops: list[str], text: str) -> Address:
    """
    C{user} reached through C{hops}, first hop first, as a C{%} path.
    """
    if not user or not all(hops):
        raise AddressError(text, "an empty hop in the path")
    return Address("%".join([user, *reversed(hops[1:])]), hops[0])


def _source_route(text: str) -> Address:
    route, colon, rest = text.partition(":")
    if not colon:
        raise AddressError(text, "a source route '@relay' needs ':' before the address")
    hops = route.split(",")
    if not all(hop.startswith("@") for hop in hops):
        raise AddressError(text, "each hop of a source route starts with '@'")
    target = _plain(rest)
    if target.domain is None:
        raise AddressError(text, "a source route ends in user@domain")
    return _hops_to_address(
        target.local, [hop[1:] for hop in hops] + [target.domain], text
    )


def _bang_path(text: str) -> Address:
    *hops, user = text.split("!")
    return _hops_to_address(user, hops, text)


def _application(text: str) -> ApplicationAddress:
    if text.startswith("#"):
        program, parameters, rest = _program_call(text[1:], text)
        if rest:
            raise AddressError(text, f"{rest!r} after '#program'")
        return ApplicationAddress(program, parameters)
    program, parameters, rest = _program_call(text, text)
    if not rest.startswith("#"):
        raise AddressError(text, "an application needs '#account' after the program")
    account, at, domain = rest[1:].partition("@")
    if not account:
        raise AddressError(text, "the account after '#' is empty")
    if at and not domain:
        raise AddressError(text, "nothing after '@'")
    if "@" in domain:
        raise AddressError(text, "more than one '@'")
    return ApplicationAddress(program, parameters, account, domain or None)


def _program_call(call: str, text: str) -> tuple[str, tuple[str, ...], str]:
    """
    C{program{params}rest} split into its three parts.
    """
    opening, closing = call.count("{"), call.count("}")
    if opening > 1 or closing > 1:
        raise AddressError(text, "only one '{parameters}' list, not nested")
    if opening != closing:
        raise AddressError(text, "unbalanced braces")
    if not opening:
        program, hash_, rest = call.partition("#")
        return program, (), hash_ + rest
    start, end = call.index("{"), call.index("}")
    if end < start:
        raise AddressError(text, "unbalanced braces")
    parameters = tuple(call[start + 1:end].split(","))
    return call[:start], parameters, call[end + 1:]


def _uri(scheme: str, rest: str) -> Address:
    if scheme in ("sip", "sips"):
        return _sip(rest)
    if scheme == "tel":
        return Address(_telephone_subscriber(rest), TELNUM_DOMAIN)
    if scheme == "xmpp":
        return _xmpp(rest)
    raise AddressError(
        rest, f"{scheme}: is not a supported URI scheme (use sip:, sips:, tel: or xmpp:)"
    )


def _sip(rest: str) -> Address:
    userinfo, at, hostpart = rest.partition("@")
    if not at:
        raise AddressError(
            rest, "the SIP URI has no user part; it names a host, not an address"
        )
    if "@" in hostpart:
        raise AddressError(rest, "more than one '@'")
    user = userinfo.partition(":")[0]
    hostport = re.match(r"[^;?]*", hostpart).group()
    parameters = hostpart[len(hostport):].partition("?")[0].lower().split(";")
    if "user=phone" in parameters:
        user = _telephone_subscriber(_unescape(user))
    else:
        user = _unescape(user)
    return Address(user, _host(hostport))


def _host(hostport: str) -> str:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, port = hostport[:end + 1], hostport[end + 1:]
        if end < 0 or (port and not port.startswith(":")):
            raise AddressError(hostport, "an IPv6 host is written [address]:port")
        port = port[1:]
    else:
        host, colon, port = hostport.partition(":")
        if colon and not port:
            raise AddressError(hostport, "':' without a port")
    if port and not _PORT.match(port):
        raise AddressError(hostport, f"{port!r} is not a port number")
    if not host:
        raise AddressError(hostport, "the host is empty")
    return host


def _telephone_subscriber(text: str) -> str:
    """
    The number in an RFC 3966 telephone-subscriber, separators and
    parameters dropped.
    """
    number = _VISUAL_SEPARATORS.sub("", text.partition(";")[0])
    if not is_phone_number(number):
        raise AddressError(
            text, "the telephone number must be digits with an optional leading '+'"
        )
    return number


def _xmpp(rest: str) -> Address:
    if rest.startswith("//"):
        _, slash, rest = rest[2:].partition("/")
        if not slash:
            raise AddressError(rest, "the xmpp: URI names only the account to act as")
    jid = re.split(r"[?#]", rest, maxsplit=1)[0]
    bare = jid.partition("/")[0]
    node, at, host = bare.partition("@")
    if not at:
        raise AddressError(
            rest, "the xmpp: URI has no user part; it names a server, not an address"
        )
    return Address(_unescape(node), host)


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    octets = bytearray()
    index = 0
    while index < len(text):
        character = text[index]
        if character == "%":
            escape = text[index + 1:index + 3]
            if len(escape) != 2 or not all(c in string.hexdigits for c in escape):
                raise AddressError(text, "'%' not followed by two hex digits")
            octets.append(int(escape, 16))
            index += 3
        else:
            octets.extend(character.encode("utf-8"))
            index += 1
    try:
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        raise AddressError(text, "the percent-escapes are not UTF-8") from None


def sip_uri(address: Address, *, secure: bool = False) -> str:
    """
    C{sip:user@domain} (or C{sips:}) for an address in e-mail form, with
    the user part escaped as RFC 3261 requires.
    """
    if address.domain is None:
        raise AddressError(address.email(), "a SIP URI needs a domain")
    user = "".join(
        character
        if character in _SIP_USER_SAFE
        else "".join(f"%{octet:02X}" for octet in character.encode("utf-8"))
        for character in address.local
    )
    host = address.domain
    if host.startswith("[") and ":" not in host:
        host = host[1:-1]
    return f"{'sips' if secure else 'sip'}:{user}@{host}"


def tel_uri(address: Address) -> str:
    """
    C{tel:+N} for a global number, bare or in the C{telnum} domain.
    """
    if address.domain not in (None, TELNUM_DOMAIN) or not (
        address.local.startswith("+") and is_phone_number(address.local)
    ):
        raise AddressError(
            address.email(), "only a global number (+digits) in telnum has a tel: URI"
        )
    return f"tel:{address.local}"
