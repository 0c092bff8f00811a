"""
The SIP registrar (RFC 3261 section 10.3) as a sans-IO request handler.

The SIP service core hands every REGISTER addressed to a local domain to
L{Registrar.handle} with where it really came from and the core's NAT
verdict, and sends the L{Response} the Deferred fires with.  Nothing here
touches a socket or a transaction, so tests drive it with parsed messages
and a L{Clock}.

Order of the checks, and why:

  1. A source the L{AuthFailureGuard} has blocked is answered 403 before
     anything costs a password check.
  2. RFC 3261 section 10.3 step 2: a C{Require} naming an extension other
     than C{path} and C{outbound} gets 420.
  3. The To URI must be SIP or SIPS (400, RFC 4475 C{unksm2}) in a local
     domain (403 otherwise; the core normally filters those).
  4. Digest authentication (step 3) in the realm of the To domain, before
     the account is looked up: an unknown user and a wrong password both
     come back 403, so nobody learns which accounts exist without a
     password.  Only an authenticated request learns 404.
  5. The AOR must name the authenticated account (step 4, aliases and
     domain aliases followed), and that account must have C{Signal} in its
     C{AccessModes} (CommuniGate's switch for real-time service).
  6. The contacts are read and checked (400, 423), then applied all or
     nothing by L{Bindings.update} (its errors carry their status).

Decisions:

  - Only SIP and SIPS contacts are bound (400 otherwise): the proxy can
    reach nothing else, and a binding it cannot use would only eat into
    C{MaxSignalContacts}.
  - Contacts are stored as their canonical URI text (C{str} of the parsed
    URI): escapes normalised, URI parameters and escaped headers kept
    (C{cparam02}, C{regescrt}), header parameters other than q, expires,
    C{+sip.instance} and C{reg-id} kept beside it (C{cparam01}).
  - RFC 3327: Path values are stored with each binding and echoed in the
    200; every 200 says C{Supported: path, outbound}.
  - RFC 5626: C{+sip.instance} (as sent, with its quotes) and C{reg-id}
    reach the bindings, which replace an old flow of the same instance and
    reg-id.  The 200 carries C{Require: outbound} when a contact of the
    request had both, which is how the UA learns the registrar did outbound
    processing.  No 439: the registrar sits behind its own edge (the core),
    and a Path from a foreign edge proxy is trusted as given.
  - The To tag of responses is derived from the Call-ID, so retransmitted
    and refreshing REGISTERs see the same tag without stored state.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from email.utils import formatdate

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from communigate.directory.errors import DirectoryError
from communigate.sip.bindings import Binding, BindingError, Bindings, ContactChange, RegisterChanges
from communigate.sip.digest import OutcomeKind
from communigate.sip.headers import WILDCARD, HeaderError, format_params, parse_auth_params
from communigate.sip.message import Request, Response, make_response
from communigate.sip.uri import SIPURI

__all__ = ["Registrar", "SUPPORTED_EXTENSIONS"]

#: The option tags a REGISTER may require of this registrar.
SUPPORTED_EXTENSIONS = ("path", "outbound")

#: Contact header parameters the registrar interprets; others are kept.
_OWN_PARAMS = frozenset(("q", "expires", "+sip.instance", "reg-id"))

_MAX_REG_ID = 2**31 - 1


class _Refusal(Exception):
    """
    An answer other than 200, raised from deep in the checks.
    """

    def __init__(self, status: int, reason: str | None = None, headers=(), count: str = "bad_request"):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        self.count = count


def signal_allowed(settings: dict) -> bool:
    """
    Whether effective settings let an account use real-time service:
    C{AccessModes} is C{All}, or a data-format array that lists C{Signal}
    (CommuniGate may put a version number first, which is skipped).
    """
    modes = settings.get("AccessModes", "All")
    if isinstance(modes, str):
        return modes.lower() == "all"
    if isinstance(modes, list):
        return any(isinstance(mode, str) and mode.lower() == "signal" for mode in modes)
    return False


def _number(value: str, lowest: int, highest: int) -> int | None:
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        return None
    number = int(value)
    return number if lowest <= number <= highest else None


def _format_q(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".")


class Registrar:
    """
    Answers REGISTER requests for local accounts.

    @ivar counts: how many requests ended in each way (C{registered},
        C{queried}, C{challenged}, C{stale}, C{refused}, C{blocked},
        C{malformed}, C{bad_request}, C{bad_extension}, C{forbidden}, C{not_found},
        C{too_brief}, C{binding_error}, C{failed}), for monitoring.
    """

    log = Logger()

    def __init__(
        self,
        directory,
        bindings: Bindings,
        verifier,
        *,
        guard=None,
        clock: IReactorTime,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        realm_for: Callable[[str], str] = lambda domain: domain,
    ) -> None:
        """
        @param directory: the L{communigate.directory.directory.Directory}
            (C{real_domain}, C{resolve_account},
            C{account_effective_settings}).
        @param verifier: a L{communigate.sip.digest.DigestVerifier}.
        @param guard: an L{communigate.sip.guard.AuthFailureGuard}, or
            L{None} to block nobody.
        @param realm_for: the digest realm of a (real) local domain.
        @raise ValueError: naming the expiry setting that is out of order.
        """
        for name, value in (
            ("min_expires", min_expires),
            ("max_expires", max_expires),
            ("default_expires", default_expires),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number of seconds, not {value!r}")
        if not min_expires <= default_expires <= max_expires:
            raise ValueError(
                "the registration expiry settings must satisfy min_expires <= default_expires <= max_expires,"
                f" not {min_expires}, {default_expires}, {max_expires}"
            )
        self._directory = directory
        self._bindings = bindings
        self._verifier = verifier
        self._guard = guard
        self._clock = clock
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._realm_for = realm_for
        self.counts: Counter[str] = Counter()
        # The Date of the 200s, formatted once a second rather than for
        # every registration (it has whole seconds).
        self._date: tuple[int, str] = (-1, "")

    # -- the entry point ------------------------------------------------------------

    def handle(self, request: Request, source, local, nat: bool) -> defer.Deferred:
        """
        Answer C{request}, a REGISTER.

        @param source: C{(transport, host, port)} it really came from.
        @param local: C{(transport, host, port)} it arrived on.
        @param nat: whether the core judged the sender to be behind a NAT.
        @return: a Deferred firing with the L{Response}; it never fails
            (an unexpected error is logged and answered 500).
        """
        try:
            result = self._start(request, source, local, nat)
        except _Refusal as refusal:
            return defer.succeed(self._refuse(request, refusal))
        except Exception:
            self.log.failure("REGISTER handling failed")
            return defer.succeed(self._answer(request, 500, count="failed"))
        if isinstance(result, defer.Deferred):
            result.addErrback(self._failed, request)
            return result
        return defer.succeed(result)

    def _failed(self, failure, request: Request) -> Response:
        self.log.failure("REGISTER handling failed", failure)
        return self._answer(request, 500, count="failed")

    def _answer(self, request: Request, status: int, reason: str | None = None, headers=(), *, count: str) -> Response:
        self.counts[count] += 1
        call_id = request.call_id or ""
        tag = hashlib.blake2b(call_id.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        return make_response(request, status, reason, to_tag=tag, headers=headers)

    def _refuse(self, request: Request, refusal: _Refusal) -> Response:
        return self._answer(request, refusal.status, refusal.reason, refusal.headers, count=refusal.count)

    # -- before authentication ----------------------------------------------------------

    def _start(self, request: Request, source, local, nat: bool):
        host = source[1]
        if self._guard is not None and self._guard.blocked(host):
            self.log.debug("REGISTER from blocked source {host} refused", host=host)
            raise _Refusal(403, "Too many failed authentications", count="blocked")
        unsupported = [tag for tag in request.headers.get_all("Require") if tag.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported:
            raise _Refusal(420, None, [("Unsupported", ", ".join(unsupported))], count="bad_extension")
        try:
            to = request.to()
        except HeaderError:
            to = None
        if to is None or not isinstance(to.uri, SIPURI):
            raise _Refusal(400, "To must be a SIP or SIPS URI")
        try:
            domain = self._directory.real_domain(to.uri.host)
        except DirectoryError:
            raise _Refusal(403, "Not a local domain", count="forbidden") from None
        realm = self._realm_for(domain)
        deferred = self._verifier.verify(
            self._credentials(request, realm), "REGISTER", str(request.uri), request.body, realm, source
        )
        deferred.addCallback(self._authenticated, request, to.uri, source, local, nat)
        return deferred

    @staticmethod
    def _credentials(request: Request, realm: str) -> str | None:
        """
        The Authorization value to check: the one for our realm when a
        client (or a proxy on its way) sent several, else the first.
        """
        values = request.headers.raw_values("Authorization")
        if len(values) > 1:
            for value in values:
                try:
                    scheme, params = parse_auth_params(value)
                except HeaderError:
                    continue
                if scheme.lower() == "digest" and params.get("realm", "").lower() == realm.lower():
                    return value
        return values[0] if values else None

    # -- after authentication -----------------------------------------------------------

    def _authenticated(self, outcome, request: Request, aor_uri: SIPURI, source, local, nat: bool) -> Response:
        try:
            account = self._authorize(outcome, aor_uri, source[1])
            return self._register(request, account, source, local, nat)
        except _Refusal as refusal:
            return self._refuse(request, refusal)

    def _authorize(self, outcome, aor_uri: SIPURI, host: str) -> str:
        """
        The canonical account the authenticated request may change.
        """
        kind = outcome.kind
        if kind is OutcomeKind.CHALLENGE:
            raise _Refusal(401, None, outcome.headers, count="challenged")
        if kind is OutcomeKind.STALE:
            raise _Refusal(401, None, outcome.headers, count="stale")
        if kind is OutcomeKind.MALFORMED:
            raise _Refusal(400, outcome.reason, count="malformed")
        if kind is not OutcomeKind.ACCEPTED:
            if self._guard is not None:
                self._guard.failed(host)
            raise _Refusal(403, "Authentication failed", count="refused")
        if self._guard is not None:
            self._guard.succeeded(host)
        account = None
        if aor_uri.user is not None:
            account = self._directory.resolve_account(f"{aor_uri.user}@{aor_uri.host}")
        if account is None:
            raise _Refusal(404, count="not_found")
        if account != outcome.account:
            raise _Refusal(403, "Not allowed to register this address", count="forbidden")
        try:
            settings = self._directory.account_effective_settings(account)
        except DirectoryError:
            raise _Refusal(404, count="not_found") from None
        if not signal_allowed(settings):
            raise _Refusal(403, "Signal access is not enabled for this account", count="forbidden")
        return account

    def _register(self, request: Request, account: str, source, local, nat: bool) -> Response:
        try:
            contacts = request.contacts()
        except HeaderError:
            raise _Refusal(400, "Malformed Contact") from None
        try:
            paths = tuple(str(hop) for hop in request.paths())
        except HeaderError:
            raise _Refusal(400, "Malformed Path") from None
        if not contacts:
            current = self._bindings.lookup(account)
            return self._ok(request, current, paths, outbound=False, count="queried")
        try:
            header_expires = request.expires()
        except HeaderError:
            raise _Refusal(400, "Malformed Expires") from None
        if contacts == (WILDCARD,):
            if header_expires != 0:
                raise _Refusal(400, "Contact * needs Expires: 0")
            changes = (ContactChange("*", 0),)
        else:
            changes = tuple(self._change(contact, header_expires) for contact in contacts)
            if any(0 < change.expires < self.min_expires for change in changes):
                raise _Refusal(
                    423, None, [("Min-Expires", str(self.min_expires))], count="too_brief"
                )
        cseq = request.cseq()
        register = RegisterChanges(
            call_id=request.call_id,
            cseq=cseq.number,
            contacts=changes,
            path=paths,
            source=source,
            local=local,
            nat=nat,
            user_agent=request.headers.get("User-Agent"),
        )
        try:
            current = self._bindings.update(account, register)
        except BindingError as error:
            raise _Refusal(error.status, error.reason, count="binding_error") from None
        self.log.debug(
            "{account} registered from {source}: {count} bindings", account=account, source=source, count=len(current)
        )
        outbound = any(change.instance is not None and change.reg_id is not None for change in changes)
        return self._ok(request, current, paths, outbound=outbound, count="registered")

    def _change(self, contact, header_expires: int | None) -> ContactChange:
        """
        One Contact as the bindings take it: expiry chosen and clamped, q,
        RFC 5626 instance and reg-id read, other parameters kept.
        """
        if not isinstance(contact.uri, SIPURI):
            raise _Refusal(400, "Contact must be a SIP or SIPS URI")
        try:
            expires = contact.expires
        except HeaderError:
            raise _Refusal(400, "Bad expires parameter in Contact") from None
        if expires is None:
            expires = self.default_expires if header_expires is None else header_expires
        try:
            q = contact.q
        except HeaderError:
            raise _Refusal(400, "Bad q value in Contact") from None
        reg_id = None
        text = contact.parameter("reg-id")
        if text is not None:
            reg_id = _number(text, 1, _MAX_REG_ID)
            if reg_id is None:
                raise _Refusal(400, "Bad reg-id in Contact")
        return ContactChange(
            contact=str(contact.uri),
            expires=min(expires, self.max_expires),
            q=1.0 if q is None else q,
            instance=contact.parameter("+sip.instance"),
            reg_id=reg_id,
            params=tuple(pair for pair in contact.parameters if pair[0].lower() not in _OWN_PARAMS),
        )

    # -- the 200 --------------------------------------------------------------------------

    def _ok(self, request: Request, current: list[Binding], paths, *, outbound: bool, count: str) -> Response:
        now = self._clock.seconds()
        headers = [("Contact", self._contact_value(binding, now)) for binding in current]
        if paths:
            headers.append(("Path", ", ".join(paths)))
        if outbound:
            headers.append(("Require", "outbound"))
        headers.append(("Supported", ", ".join(SUPPORTED_EXTENSIONS)))
        headers.append(("Date", self._date_header(now)))
        return self._answer(request, 200, headers=headers, count=count)

    def _date_header(self, now: float) -> str:
        second = int(now)
        if self._date[0] != second:
            self._date = (second, formatdate(second, usegmt=True))
        return self._date[1]

    @staticmethod
    def _contact_value(binding: Binding, now: float) -> str:
        """
        A binding as the 200 lists it (RFC 3261 section 10.3 step 8): the
        URI, the parameters the client sent, and what it has left.
        """
        params = list(binding.params)
        if binding.instance is not None:
            params.append(("+sip.instance", binding.instance))
            if binding.reg_id is not None:
                params.append(("reg-id", str(binding.reg_id)))
        if binding.q != 1.0:
            params.append(("q", _format_q(binding.q)))
        params.append(("expires", str(binding.expires_in(now))))
        return f"<{binding.contact}>{format_params(params)}"
