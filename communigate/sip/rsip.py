"""
RSIP: accounts registering out to other SIP servers — a VoIP provider, a
PSTN gateway, a PBX upstream — so that calls to the number or address the
account holds there come back to this server.

Each account may hold several registrations (CommuniGate's
C{SETACCOUNTRSIPS account {id = {domain; fromName; targetName; period;
authName; password;};}}).  For each, the server REGISTERs
C{sip:fromName@domain} at C{domain} (located by RFC 3263), answers the
provider's digest challenge with C{authName} and C{password}, and keeps
the registration fresh every C{period}.  The Contact it registers is
C{sip:rsip-TOKEN@this-server}; a request arriving for that contact is
retargeted to C{targetName} (by default the account itself), and from
there routed like any other call: to the account's phones, its rules, a
PBX application.

Why the password is stored as given: answering a digest challenge needs
the password itself (or the HA1 of a realm only known when the
challenge comes), unlike our own accounts' passwords, of which only
derived secrets are kept.  The records are readable by administrators
only, as in CommuniGate.

An account needs C{RSIPAllowed = YES} [C]; the built-in default is NO
[D], so that accounts cannot make the server register anywhere unless an
administrator allows it.
"""

from __future__ import annotations

import hashlib
import os
import re

import attrs
from twisted.logger import Logger
from zope.interface import implementer

from communigate.auth.credentials import digest_response
from communigate.auth.passwords import digest_ha1
from communigate.formats.cgdata import dumps, loads
from communigate.interfaces import IAccountWatcher
from communigate.sip.digest import parse_auth_params
from communigate.sip.headers import HeaderError
from communigate.sip.message import Headers, Request
from communigate.sip.nexthop import try_in_turn
from communigate.sip.uri import SIPURI, URIError, parse_uri

KIND = "rsip"
ALLOWED_SETTING = "RSIPAllowed"
CONTACT_PREFIX = "rsip-"
MIN_PERIOD = 60
MAX_PERIOD = 86_400
# After a failure: the first retry, doubling up to the period.
FIRST_RETRY = 30
_PERIOD = re.compile(r"([0-9]{1,6})\s*([smhd]?)\Z", re.I)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}
_KEYS = {"domain", "fromName", "targetName", "period", "authName", "password"}


class RSIPError(ValueError):
    """
    An RSIP description that cannot be used; the message says why.
    """


@attrs.frozen
class RSIPEntry:
    """
    One registration an account keeps at another server.
    """

    id: str
    domain: str
    from_name: str
    target_name: str
    period: int
    auth_name: str
    password: str

    def as_data(self) -> dict:
        return {
            "domain": self.domain,
            "fromName": self.from_name,
            "targetName": self.target_name,
            "period": str(self.period),
            "authName": self.auth_name,
            "password": self.password,
        }


def parse_period(value) -> int:
    """
    Seconds from C{600}, C{"600"}, C{"10m"}, C{"1h"}, within 1 minute to
    1 day.
    """
    match = _PERIOD.match(str(value).strip())
    if match is None:
        raise RSIPError(f"period {value!r} is not a number of seconds or like 10m, 1h")
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if not MIN_PERIOD <= seconds <= MAX_PERIOD:
        raise RSIPError(f"period {value!r} is outside {MIN_PERIOD} s to {MAX_PERIOD} s")
    return seconds


def parse_entries(account: str, data) -> dict[str, RSIPEntry]:
    """
    The registrations of C{account} from the CLI's dictionary
    C{{id = {domain = ...; fromName = ...; ...};}}.

    @raise RSIPError: naming the entry and the problem.
    """
    if not isinstance(data, dict):
        raise RSIPError("RSIPs must be a dictionary of {id = {domain = ...; ...};}")
    entries = {}
    for entry_id, fields in data.items():
        if not isinstance(fields, dict):
            raise RSIPError(f"RSIP {entry_id!r} must be a dictionary")
        unknown = set(fields) - _KEYS
        if unknown:
            raise RSIPError(f"RSIP {entry_id!r}: unknown keys {sorted(unknown)}; use {sorted(_KEYS)}")
        if any(not isinstance(value, str) for value in fields.values()):
            raise RSIPError(f"RSIP {entry_id!r}: every value must be text")
        domain = fields.get("domain", "").strip().lower()
        try:
            uri = parse_uri(f"sip:{domain}")
        except URIError:
            uri = None
        if not domain or not isinstance(uri, SIPURI) or uri.user:
            raise RSIPError(f"RSIP {entry_id!r}: domain {domain!r} is not a host name or address")
        from_name = fields.get("fromName", "").strip() or account.split("@", 1)[0]
        if not re.fullmatch(r"[A-Za-z0-9_.!~*'()&=+$,;?/%-]{1,64}", from_name):
            raise RSIPError(f"RSIP {entry_id!r}: fromName {from_name!r} is not a SIP user name")
        target = fields.get("targetName", "").strip() or account
        if len(target) > 255 or any(c in target for c in " <>\"\r\n"):
            raise RSIPError(f"RSIP {entry_id!r}: targetName {target!r} is not an address")
        entries[entry_id] = RSIPEntry(
            id=entry_id,
            domain=domain,
            from_name=from_name,
            target_name=target,
            period=parse_period(fields.get("period", "3600")),
            auth_name=fields.get("authName", "").strip() or from_name,
            password=fields.get("password", ""),
        )
    return entries


class RSIPStore:
    """
    The RSIP descriptions of every account, as the CLI gave them.
    """

    def __init__(self, store) -> None:
        self._store = store

    def load(self, account: str) -> dict:
        text = self._store.get(KIND, account)
        return {} if text is None else loads(text)

    def save(self, account: str, data: dict) -> None:
        with self._store.transaction():
            if data:
                self._store.put(KIND, account, dumps(data))
            else:
                self._store.delete(KIND, account)

    def accounts(self) -> list[str]:
        return self._store.keys(KIND)


def contact_user(account: str, entry_id: str) -> str:
    """
    The user part of the Contact registered for one entry: opaque, so the
    provider learns nothing of the account, and stable across restarts.
    """
    token = hashlib.blake2b(f"{account}\0{entry_id}".encode(), digest_size=8).hexdigest()
    return CONTACT_PREFIX + token


def answer_challenge(response, entry: RSIPEntry, method: str, uri: str) -> tuple[str, str] | None:
    """
    The header (name, value) answering the digest challenge of a 401 or
    407 with C{entry}'s credentials, or L{None} when it offers nothing we
    can answer.
    """
    name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    return digest_authorization(
        response.status, response.headers.raw_values(name), entry.auth_name, entry.password, method, uri
    )


def digest_authorization(
    status: int, challenges, auth_name: str, password: str, method: str, uri: str
) -> tuple[str, str] | None:
    """
    The header (name, value) answering one of the digest C{challenges}
    (the C{WWW-Authenticate} values of a 401, the C{Proxy-Authenticate}
    values of a 407) for C{auth_name} and C{password}, or L{None} when
    none offers what we can answer (MD5 or SHA-256, C{qop=auth} or none).
    """
    for value in challenges:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            continue
        try:
            params = parse_auth_params(rest)
        except (HeaderError, ValueError):
            continue
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ("MD5", "SHA-256"):
            continue
        realm = params.get("realm", "")
        nonce = params.get("nonce", "")
        if not nonce:
            continue
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        qop = "auth" if "auth" in qops else None
        cnonce = os.urandom(8).hex()
        ha1 = digest_ha1(algorithm, auth_name, realm, password)
        answer = digest_response(
            ha1=ha1, nonce=nonce, method=method, uri=uri, algorithm=algorithm,
            qop=qop, nc="00000001" if qop else None, cnonce=cnonce if qop else None,
        )
        fields = [
            f'username="{auth_name}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
            f'response="{answer}"', f"algorithm={algorithm}",
        ]
        if qop:
            fields += [f'cnonce="{cnonce}"', "qop=auth", "nc=00000001"]
        if "opaque" in params:
            fields.append(f'opaque="{params["opaque"]}"')
        header = "Authorization" if status == 401 else "Proxy-Authorization"
        return header, "Digest " + ", ".join(fields)
    return None


class Registration:
    """
    One entry's registration machine: REGISTER, answer a challenge once
    per attempt, refresh before the granted expiry, back off after
    failures, unregister when stopped.

    @ivar state: C{"registering"}, C{"registered"}, C{"failed"} or
        C{"stopped"}.
    """

    log = Logger()

    def __init__(self, sender, clock, account: str, entry: RSIPEntry) -> None:
        self._sender = sender
        self._clock = clock
        self.account = account
        self.entry = entry
        self.contact_user = contact_user(account, entry.id)
        self.call_id = f"{os.urandom(10).hex()}@rsip"
        self.tag = os.urandom(6).hex()
        self.cseq = 0
        self.state = "registering"
        self.last_status = ""
        self.registered_until = 0.0
        self._retry = FIRST_RETRY
        self._timer = None
        self._expires = entry.period

    def start(self) -> None:
        self._schedule(0)

    def stop(self) -> None:
        """
        Stop refreshing and, if registered, remove the registration.
        """
        registered = self.state == "registered"
        self.state = "stopped"
        self._cancel()
        if registered:
            self._send(expires=0)

    def status(self) -> dict:
        now = self._clock.seconds()
        data = {
            "id": self.entry.id,
            "domain": self.entry.domain,
            "fromName": self.entry.from_name,
            "targetName": self.entry.target_name,
            "state": self.state,
            "lastStatus": self.last_status,
        }
        if self.state == "registered":
            data["expiresIn"] = str(max(0, int(self.registered_until - now)))
        return data

    # -- timers -------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        self._cancel()
        self._timer = self._clock.callLater(delay, self._due)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _due(self) -> None:
        self._timer = None
        if self.state != "stopped":
            self._send(expires=self._expires)

    # -- the exchange -------------------------------------------------------------

    def _send(self, expires: int, authorization: tuple[str, str] | None = None) -> None:
        self.cseq += 1
        entry = self.entry
        target = f"sip:{entry.domain}"
        aor = f"sip:{entry.from_name}@{entry.domain}"
        stopping = expires == 0

        def build(contact: str, via: str) -> Request:
            headers = [
                ("Via", via),
                ("Max-Forwards", "70"),
                ("From", f"<{aor}>;tag={self.tag}"),
                ("To", f"<{aor}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} REGISTER"),
                ("Contact", contact),
                ("Expires", str(expires)),
                ("User-Agent", "communigate"),
            ]
            if authorization is not None:
                headers.append(authorization)
            return Request("REGISTER", parse_uri(target), Headers(headers))

        def answered(response) -> None:
            if stopping or self.state == "stopped":
                return
            self._answered(response, expires, authorization is not None, target)

        def failed(status: int, reason: str) -> None:
            if stopping or self.state == "stopped":
                return
            self._failed(f"{status} {reason}")

        self._sender.send_register(entry.domain, self.contact_user, build, answered, failed)

    def _answered(self, response, expires: int, had_credentials: bool, target: str) -> None:
        status = response.status
        if status < 200:
            return
        self.last_status = f"{status} {response.reason}"
        if status in (401, 407) and not had_credentials:
            header = answer_challenge(response, self.entry, "REGISTER", target)
            if header is not None:
                self._send(expires, header)
                return
        if 200 <= status < 300:
            granted = _granted_expiry(response, self.contact_user, expires)
            self.state = "registered"
            self.registered_until = self._clock.seconds() + granted
            self._retry = FIRST_RETRY
            # Refresh before it runs out: at 90 % of what was granted, and
            # at least a few seconds ahead.
            self._schedule(max(1.0, min(granted * 0.9, granted - 5)))
            self.log.info(
                "RSIP {account}/{id} registered at {domain} for {granted} s",
                account=self.account, id=self.entry.id, domain=self.entry.domain, granted=granted,
            )
            return
        if status == 423:
            minimum = _number(response.headers.get("Min-Expires"))
            if minimum is not None and expires < minimum <= MAX_PERIOD:
                self._expires = minimum
                self._send(minimum)
                return
        self._failed(self.last_status)

    def _failed(self, why: str) -> None:
        self.state = "failed"
        self.last_status = why
        self.registered_until = 0.0
        delay = self._retry
        self._retry = min(self._retry * 2, self.entry.period)
        self.log.info(
            "RSIP {account}/{id} at {domain} failed ({why}); trying again in {delay} s",
            account=self.account, id=self.entry.id, domain=self.entry.domain, why=why, delay=delay,
        )
        self._schedule(delay)


def _number(text) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _granted_expiry(response, user: str, asked: int) -> int:
    """
    What the registrar granted our contact: its C{expires} parameter in the
    200's Contact list, else the Expires header, else what we asked.
    """
    try:
        contacts = response.contacts()
    except HeaderError:
        contacts = ()
    for contact in contacts:
        uri = getattr(contact, "uri", None)
        if isinstance(uri, SIPURI) and uri.user == user:
            try:
                expires = contact.expires
            except HeaderError:
                expires = None
            if expires is not None:
                return max(1, expires)
    try:
        header = response.expires()
    except HeaderError:
        header = None
    return max(1, header if header is not None else asked)


@implementer(IAccountWatcher)
class RSIPService:
    """
    Every account's registrations, kept as the stored descriptions say,
    and the retargeting of the requests that come back for them.

    @param sender: sends REGISTERs: C{send_register(domain, contact_user,
        build, on_response, on_failure)} where C{build(contact, via)} makes
        the request once the flow is known.
    @param allowed: C{account -> bool}, the account's C{RSIPAllowed}.
    """

    log = Logger()

    def __init__(self, store, clock, sender, allowed) -> None:
        self.records = RSIPStore(store)
        self._clock = clock
        self._sender = sender
        self._allowed = allowed
        self._running: dict[tuple[str, str], Registration] = {}
        self._by_contact: dict[str, Registration] = {}

    def start(self) -> None:
        for account in self.records.accounts():
            self.reconfigure(account)

    def stop(self) -> None:
        for registration in list(self._running.values()):
            registration.stop()
        self._running.clear()
        self._by_contact.clear()

    def entries(self, account: str) -> dict[str, RSIPEntry]:
        try:
            return parse_entries(account, self.records.load(account))
        except (RSIPError, ValueError) as error:
            self.log.warn("Stored RSIPs of {account} are unusable: {error}", account=account, error=str(error))
            return {}

    def set(self, account: str, data) -> None:
        """
        Replace C{account}'s registrations (checked first) and put the new
        ones in force.

        @raise RSIPError: a bad description, or the account may not.
        """
        entries = parse_entries(account, data)
        if entries and not self._allowed(account):
            raise RSIPError(f"{account} may not register out: its {ALLOWED_SETTING} is not YES")
        self.records.save(account, {entry_id: entry.as_data() for entry_id, entry in entries.items()})
        self.reconfigure(account)

    def reconfigure(self, account: str) -> None:
        """
        Start, keep or stop C{account}'s registrations to match what is
        stored (an unchanged entry keeps its registration).
        """
        wanted = self.entries(account) if self._allowed(account) else {}
        for (owner, entry_id), registration in list(self._running.items()):
            if owner == account and wanted.get(entry_id) != registration.entry:
                registration.stop()
                del self._running[(owner, entry_id)]
                self._by_contact.pop(registration.contact_user, None)
        for entry_id, entry in wanted.items():
            if (account, entry_id) not in self._running:
                registration = Registration(self._sender, self._clock, account, entry)
                self._running[(account, entry_id)] = registration
                self._by_contact[registration.contact_user] = registration
                registration.start()

    # IAccountWatcher: a deleted account stops registering out (its
    # registrations are not refreshed; providers let them expire) and a
    # renamed one's move with it.
    def account_removed(self, account: str) -> None:
        self.records.save(account, {})
        self.reconfigure(account)

    def account_renamed(self, old: str, new: str) -> None:
        data = self.records.load(old)
        if data:
            self.records.save(new, data)
            self.account_removed(old)
            self.reconfigure(new)

    def statuses(self, account: str | None = None) -> list[dict]:
        return [
            dict(registration.status(), account=owner)
            for (owner, _), registration in sorted(self._running.items())
            if account is None or owner == account
        ]

    @property
    def registered_out(self) -> bool:
        """
        Whether any registration is kept: without one, requests need no
        look at their Request-URI for RSIP contacts.
        """
        return bool(self._by_contact)

    def target_for(self, uri) -> str | None:
        """
        The address a request for one of our registered contacts goes
        to, or L{None} when C{uri} is not such a contact.
        """
        user = getattr(uri, "user", None)
        if not user or not user.startswith(CONTACT_PREFIX):
            return None
        registration = self._by_contact.get(user)
        if registration is None:
            return None
        target = registration.entry.target_name
        if "@" not in target:
            target = f"{target}@{registration.account.split('@', 1)[1]}"
        return target


class RSIPSender:
    """
    Sends a registration's REGISTERs through a SIP service: locates the
    provider by RFC 3263, names this server in Via and Contact as the
    provider will reach it, and tries the servers found in turn.
    """

    def __init__(self, service) -> None:
        self._service = service

    def send_register(self, domain, user, build, on_response, on_failure) -> None:
        from communigate.sip.proxy import Branch
        from communigate.sip.transaction import MAGIC_COOKIE

        service = self._service
        try:
            located = service.proxy.hops.locate(parse_uri(f"sip:{domain}"))
        except (OSError, ValueError, URIError) as error:
            on_failure(503, str(error)[:80])
            return

        def attempt(flow, next_one):
            give_up = next_one or on_failure
            kind = "udp" if flow.transport == "udp" else "tcp"
            host, port = service.advertised_address(kind, flow.remote[0])
            shown = f"[{host}]" if ":" in host else host
            branch = f"{MAGIC_COOKIE}rs{os.urandom(8).hex()}"
            via = f"SIP/2.0/{flow.transport.upper()} {shown}:{port};branch={branch};rport"
            parameters = "" if flow.transport == "udp" else f";transport={flow.transport}"
            request = build(f"<sip:{user}@{shown}:{port}{parameters}>", via)

            def answered(response):
                if response.status == 503 and next_one is not None:
                    next_one(503, response.reason)
                else:
                    on_response(response)

            try:
                service.transactions.send_request(
                    request,
                    lambda message: service.transport.send(message, flow),
                    flow.reliable,
                    Branch(answered, give_up),
                )
            except OSError as error:
                give_up(503, str(error)[:80])

        def found(flows):
            try_in_turn(flows, attempt, lambda: on_failure(503, f"cannot reach {domain}"))

        def lookup_failed(failure):
            on_failure(503, failure.getErrorMessage()[:80])

        located.addCallbacks(found, lookup_failed)
