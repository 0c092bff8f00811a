"""
The Router: where any address goes.

One Router serves mail, Signals and logins, so aliases, forwarders and
telephone numbers work the same for all three.  An address is routed in
passes; each pass either ends in a L{Route} or rewrites the address and
routes again, at most L{MAX_PASSES} times, so a rewriting loop is an error
and never a hang.  One pass, in order:

  1. application addresses (C{program{p}#account}) go to the PBX;
  2. C{user%domain@local} relays are unwrapped;
  3. the special domain C{telnum}: the account holding the number, then
     (for a number as dialled, without C{+}) its E.164 form, then ENUM
     (when enabled), then the Router table's C{@telnum} records;
  4. the Router table;
  5. local domains (directly or through a domain alias): account, account
     alias, forwarder, group; then E.164 conversion of a number into
     C{+N@telnum}; then the domain's C{SignalToUnknown} (or Mail/Access)
     setting;
  6. anything else is remote: SIP for Signals, SMTP for mail and access.

Everything but ENUM is synchronous; a pass that needs ENUM waits for it.
"""

import attrs
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from communigate.directory.errors import DirectoryError, UnknownObject
from communigate.interfaces import IDirectory, IRouter
from communigate.routing.addresses import (
    Address,
    AddressError,
    ApplicationAddress,
    is_phone_number,
    parse_address,
    sip_uri,
)
from communigate.routing.configuration import RouterConfiguration
from communigate.routing.e164 import is_e164, to_e164
from communigate.routing.route import AddressKind, Module, Route, RoutingError, RoutingLoop
from communigate.routing.table import RouterMatch, TargetKind, classify_target

MAX_PASSES = 10
TELNUM = "telnum"
NULL_TARGET = "NULL"

_UNKNOWN_SETTINGS = {
    AddressKind.SIGNAL: ("SignalToUnknown", "SignalRerouteAddress"),
    AddressKind.MAIL: ("MailToUnknown", "MailRerouteAddress"),
    AddressKind.ACCESS: ("AccessToUnknown", "AccessRerouteAddress"),
}


@attrs.frozen
class _Rewrite:
    """
    A pass ended in another address to route.
    """

    address: str


@attrs.frozen
class _NeedsENUM:
    """
    A pass needs an ENUM answer for C{number} before it can go on.
    """

    number: str
    address: str


def _table_target(match: RouterMatch):
    """
    What a Router table record's substituted target means.
    """
    kind = match.kind
    if kind is TargetKind.NULL:
        return Route(Module.SYSTEM, NULL_TARGET)
    if kind is TargetKind.ERROR:
        raise RoutingError(match.error_text or "rejected by the Router table")
    return _Rewrite(match.rewritten)


def _in_domain(target: str, domain: str) -> str:
    """
    C{target} with a bare name placed in C{domain}: a forwarder or reroute
    setting that says C{pbx} means the C{pbx} of its own domain, not of
    the main domain.  Other forms (applications, URIs, full addresses)
    are kept as they are.
    """
    try:
        parsed = parse_address(target)
    except AddressError as e:
        raise RoutingError(str(e)) from None
    if isinstance(parsed, Address) and parsed.domain is None:
        return Address(parsed.local, domain).email()
    return target


@implementer(IRouter)
class Router:
    """
    The L{IRouter} over a directory and the stored Router configuration.

    @param enum_lookup: C{(e164_number) -> Deferred[str | None]} giving the
        URI ENUM finds for a number, or L{None} when ENUM routing is off.
        It is asked only for E.164 numbers (C{+} and 6 to 15 digits); a
        failed lookup counts as no answer.
    """

    log = Logger()

    def __init__(
        self,
        directory: IDirectory,
        configuration: RouterConfiguration,
        enum_lookup=None,
    ) -> None:
        self._directory = directory
        self._configuration = configuration
        self._enum_lookup = enum_lookup

    def route(self, address, kind=AddressKind.ACCESS, on_behalf_of=None) -> defer.Deferred:
        # Anything raised (a RoutingError, or the store failing) goes into
        # the Deferred, as IRouter promises; it never escapes to the caller.
        return defer.maybeDeferred(
            self._route, str(address), kind, on_behalf_of, MAX_PASSES, frozenset()
        )

    def route_now(self, address, kind=AddressKind.ACCESS, on_behalf_of=None) -> Route:
        """
        Route without waiting: for callers that cannot wait (the CLI on a
        data directory); ENUM counts as finding nothing.
        """
        results = []
        d = self._route(str(address), kind, on_behalf_of, MAX_PASSES, frozenset(), wait=False)
        d.addBoth(results.append)
        outcome = results[0]
        if isinstance(outcome, Route):
            return outcome
        outcome.raiseException()

    def _route(self, text, kind, on_behalf_of, passes, asked, wait=True) -> defer.Deferred:
        original = text
        while True:
            if passes <= 0:
                raise RoutingLoop(
                    f"routing loop: {original!r} was rewritten {MAX_PASSES} times "
                    f"without reaching a destination"
                )
            passes -= 1
            outcome = self._pass(text, kind, on_behalf_of, asked)
            if isinstance(outcome, Route):
                return defer.succeed(outcome)
            if isinstance(outcome, _Rewrite):
                text = outcome.address
                continue
            asked = asked | {outcome.number}
            if self._enum_lookup is None or not wait:
                continue
            return self._after_enum(outcome, kind, on_behalf_of, passes, asked)

    def _after_enum(self, needs, kind, on_behalf_of, passes, asked) -> defer.Deferred:
        def failed(failure):
            self.log.failure(
                "ENUM lookup of {number} failed; routing on without it",
                failure, number=needs.number,
            )
            return None

        def found(uri):
            return self._route(uri or needs.address, kind, on_behalf_of, passes, asked)

        d = defer.maybeDeferred(self._enum_lookup, needs.number)
        return d.addErrback(failed).addCallback(found)

    # -- one pass ----------------------------------------------------------

    def _pass(self, text: str, kind: AddressKind, on_behalf_of, asked):
        try:
            address = parse_address(text)
        except AddressError as e:
            raise RoutingError(str(e)) from e
        if isinstance(address, ApplicationAddress):
            return self._application(address, on_behalf_of)
        main = self._directory.main_domain()
        domain = address.domain or main
        local_domain = self._local_domain(domain)
        relayed = address.relayed()
        if relayed is not None and local_domain is not None:
            return _Rewrite(relayed.email())
        if domain == TELNUM:
            return self._telnum(address.local, kind, asked)
        match = self._configuration.table.match(
            address.local, address.domain, kind, local_domain is not None
        )
        if match is not None:
            return _table_target(match)
        if local_domain is not None:
            return self._local(address.local, local_domain, kind)
        if domain is None:
            raise RoutingError(f"{text!r} names no domain and there is no main domain")
        if kind is AddressKind.SIGNAL:
            return Route(Module.SIP, domain, sip_uri(address))
        return Route(Module.SMTP, domain, address.email())

    def _local_domain(self, domain: str | None) -> str | None:
        if domain is None or domain == TELNUM:
            return None
        try:
            return self._directory.real_domain(domain)
        except DirectoryError:
            return None

    def _application(self, address: ApplicationAddress, on_behalf_of) -> Route:
        if address.account is None:
            if on_behalf_of is None:
                raise RoutingError(
                    f"{address.text()!r} names no account to run {address.program!r} for"
                )
            account_address = on_behalf_of
        elif address.domain is None:
            account_address = address.account
        else:
            account_address = f"{address.account}@{address.domain}"
        account = self._directory.resolve_account(account_address)
        if account is None:
            raise RoutingError(f"unknown account {account_address!r} for {address.program!r}")
        return Route(Module.PBX, account, address.call())

    def _telnum(self, number: str, kind: AddressKind, asked):
        owner = self._directory.telnum_owner(number)
        if owner is not None:
            return Route(Module.LOCAL, owner)
        if not number.startswith("+"):
            # A number as dialled (tel:3837461) is converted as in a local
            # domain, so the telnum tables and ENUM see one spelling.
            converted = to_e164(number, self._configuration.e164)
            if converted is not None:
                return _Rewrite(f"{converted}@{TELNUM}")
        if (
            kind is AddressKind.SIGNAL
            and self._enum_lookup is not None
            and number not in asked
            and is_e164(number)
        ):
            return _NeedsENUM(number, f"{number}@{TELNUM}")
        match = self._configuration.table.match(number, TELNUM, kind, False)
        if match is not None:
            return _table_target(match)
        raise RoutingError(f"unknown telephone number {number}")

    def _local(self, local: str, domain: str, kind: AddressKind):
        name = local.lower()
        entry = self._directory.name_entry(name, domain)
        if entry is not None:
            found, target = entry
            if found == "account":
                return Route(Module.LOCAL, f"{target}@{domain}")
            if found == "alias":
                return Route(Module.LOCAL, f"{target}@{domain}")
            if found == "forwarder":
                return _Rewrite(_in_domain(target, domain))
            if found == "group":
                return Route(Module.GROUP, f"{name}@{domain}")
        if is_phone_number(local):
            number = to_e164(local, self._configuration.e164)
            if number is not None:
                return _Rewrite(f"{number}@{TELNUM}")
        return self._unknown(local, domain, kind)

    def _unknown(self, local: str, domain: str, kind: AddressKind):
        mode_key, reroute_key = _UNKNOWN_SETTINGS[kind]
        try:
            found = self._directory.domain_effective_settings(domain)
        except UnknownObject:
            found = {}
        mode = str(found.get(mode_key, "Rejected")).lower()
        if mode.startswith("discard"):
            return Route(Module.SYSTEM, NULL_TARGET)
        if mode.startswith("reroute"):
            target = str(found.get(reroute_key, "")).strip().replace("*", local)
            if target:
                return self._reroute(target, local, domain, reroute_key)
        raise RoutingError(f"unknown user {local}@{domain}")

    def _reroute(self, target: str, local: str, domain: str, key: str):
        """
        Where the domain's reroute setting C{key} sends an unknown name:
        C{NULL} discards, C{error} (or C{error: text}) rejects, and a bare
        name (C{pbx}) is in the unknown name's own domain.
        """
        try:
            kind = classify_target(target)
        except ValueError as e:
            raise RoutingError(f"{key} of {domain} is {target!r}: {e}") from None
        if kind is TargetKind.NULL:
            return Route(Module.SYSTEM, NULL_TARGET)
        if kind is TargetKind.ERROR:
            reason = target.partition(":")[2].strip()
            raise RoutingError(reason or f"unknown user {local}@{domain}")
        return _Rewrite(_in_domain(target, domain))
