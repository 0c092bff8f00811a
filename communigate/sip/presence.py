"""
SIP presence: SUBSCRIBE (RFC 6665) for the C{presence} (RFC 3856),
C{message-summary} (RFC 3842), C{dialog} (RFC 4235) and C{presence.winfo}
(RFC 3857, L{communigate.sip.winfo}) packages of local accounts, and
PUBLISH (RFC 3903) of C{presence}.

The SIP service hands us every SUBSCRIBE and PUBLISH first
(L{SIPPresence.subscribe}, L{SIPPresence.publish}); what is not ours (a
remote target, a request pre-routed elsewhere, an in-dialog SUBSCRIBE of
a dialog we did not make) goes on to the proxy.  Ours is a request whose
Request-URI names a user in a local domain:

  1. no such account: 404; an unknown package: 489 with C{Allow-Events};
     no C{Event}: 400 (SUBSCRIBE) or 489 (PUBLISH, RFC 3903 6 step 2);
     an C{Accept} without the package's body type: 406; C{Expires} below
     60 s: 423 with C{Min-Expires}; above 3600 s: cut to 3600;
  2. authentication with digest, 407 and C{Proxy-Authorization} as the
     proxy does it: always for PUBLISH (the publisher must be the
     account), for SUBSCRIBE when the From is a local domain (a subscriber
     from another domain cannot log in here; it is watcher C{From});
  3. authorization: C{presence} through the account's roster (the
     presence service answers: an unauthorised watcher is C{pending} and
     files a request the owner answers from any protocol);
     C{message-summary} and C{presence.winfo} only for the account
     itself; C{dialog} only when
     the account's C{DialogInfo} is C{YES} and its roster authorises the
     watcher (403 otherwise);
  4. the subscription dialog (L{communigate.sip.notifier}): 200 with our
     To tag, C{Expires} and C{Contact}, then a NOTIFY at once and on every
     change, to the subscriber's Contact through its Record-Route set, over
     the flow the SUBSCRIBE came on when it is behind NAT or on a stream.

PUBLISH keeps entity tags (L{communigate.sip.publication}): an initial
PUBLISH needs a PIDF body (415 for another type, 400 for a bad one, XML
with a DTD or entities included); C{SIP-If-Match} with an unknown or stale
tag gets 412; without a body it refreshes; C{Expires: 0} removes.  Each
200 carries the new C{SIP-ETag} and C{Expires}.

Registered phones are a presence source too: the service reports
accounts gaining and losing their last binding to
L{SIPPresence.registrations_changed}.
"""

from __future__ import annotations

import os

from twisted.logger import Logger

from communigate.formats import dialoginfo, message_summary, pidf, watcherinfo
from communigate.presence.roster import RosterError
from communigate.presence.service import TooManySources, TooManyWatchers, WatchStatus
from communigate.presence.state import ONLINE, REGISTRATION
from communigate.sip import proxy_rules as rules
from communigate.sip.dialog_info import CallStates, enabled_by_setting
from communigate.sip.digest import OutcomeKind
from communigate.sip.headers import HeaderError, parse_params
from communigate.sip.message import make_response
from communigate.sip.notifier import LimitReached, Notifier, State, Subscription
from communigate.sip.publication import Publications, TooManyPublications
from communigate.sip.uri import SIPURI
from communigate.sip.winfo import EVENT as WINFO_EVENT, PresenceWatchers

MIN_EXPIRES = 60
MAX_EXPIRES = 3600
DEFAULT_EXPIRES = 3600
#: Our To tags start with this, so an in-dialog SUBSCRIBE is known as ours.
TAG_PREFIX = "ps"
PURGE_INTERVAL = 600.0


class _Refusal(Exception):
    def __init__(self, status: int, reason: str | None = None, headers=()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)


def _reason(text: str) -> str:
    return " ".join(str(text).split())[:100] or "Bad Request"


def _event(request) -> tuple[str, str | None] | None:
    value = request.headers.get("Event")
    if value is None:
        return None
    package, _, rest = value.partition(";")
    event_id = None
    try:
        for name, param in parse_params(";" + rest if rest else ""):
            if name.lower() == "id":
                event_id = param
    except HeaderError:
        raise _Refusal(400, "Malformed Event header") from None
    package = package.strip().lower()
    if not package:
        raise _Refusal(400, "Malformed Event header")
    return package, event_id


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepts(request, content_type: str) -> bool:
    values = request.headers.get_all("Accept")
    if not values:
        return True
    major = content_type.split("/", 1)[0]
    for value in values:
        kind = _media_type(value)
        if kind in (content_type, "*/*", f"{major}/*"):
            return True
    return False


class _Package:
    """What the three event packages share."""

    name = ""
    content_type = ""

    def __init__(self, module: SIPPresence) -> None:
        self._module = module
        self._notifier = module.notifier

    def authorize(self, account: str, watcher: str, authenticated: str | None) -> None:
        """Raise L{_Refusal} when C{watcher} may not subscribe at all."""

    def attach(self, subscription: Subscription, handle) -> None:
        if subscription.state is State.TERMINATED:
            handle.cancel()
        else:
            subscription.on_end = handle.cancel

    def refreshed(self, subscription: Subscription) -> None:
        """A refresh: the current state again (RFC 6665 4.2.1.2)."""
        self._notifier.renotify(subscription)


class _PresencePackage(_Package):
    name = "presence"
    content_type = pidf.CONTENT_TYPE

    def body(self, account: str, state) -> bytes:
        return pidf.serialize(pidf.document_for(f"sip:{account}", state))

    def start(self, subscription: Subscription, fetch: bool) -> None:
        presence = self._module.presence
        if fetch:
            # RFC 6665 4.4.3: a fetch is a subscription that ends at once;
            # it asks nothing of the owner's roster.
            if self._module.roster.is_authorized(subscription.account, subscription.watcher):
                body = self.body(subscription.account, presence.state(subscription.account))
                self._notifier.notify(subscription, State.ACTIVE, body, self.content_type)
            else:
                self._notifier.notify(subscription, State.PENDING)
            return

        watchers = self._module.watchers

        def changed(event):
            if event.status is WatchStatus.ACTIVE:
                body = self.body(subscription.account, event.state)
                self._notifier.notify(subscription, State.ACTIVE, body, self.content_type)
            elif event.status is WatchStatus.PENDING:
                self._notifier.notify(subscription, State.PENDING)
            else:
                self._notifier.terminate(subscription, event.reason or "rejected")
                return
            if watchers is not None:
                watchers.presence_status(subscription, event.status.value)

        handle = presence.watch(subscription.account, subscription.watcher, changed, ask=True)

        def ended():
            handle.cancel()
            if watchers is not None:
                watchers.presence_ended(subscription)

        if subscription.state is State.TERMINATED:
            ended()
        else:
            subscription.on_end = ended


class _MessageSummaryPackage(_Package):
    name = "message-summary"
    content_type = message_summary.CONTENT_TYPE

    def authorize(self, account: str, watcher: str, authenticated: str | None) -> None:
        if authenticated != account:
            raise _Refusal(403, "Only the account itself may watch its messages")

    def start(self, subscription: Subscription, fetch: bool) -> None:
        def changed(counts):
            body = message_summary.serialize(
                f"sip:{subscription.account}", counts.new, counts.old, counts.urgent_new, counts.urgent_old
            )
            self._notifier.notify(subscription, State.ACTIVE, body, self.content_type)

        self.attach(subscription, self._module.message_waiting.watch(subscription.account, changed))


class _DialogPackage(_Package):
    name = "dialog"
    content_type = dialoginfo.CONTENT_TYPE

    def authorize(self, account: str, watcher: str, authenticated: str | None) -> None:
        if not self._module.calls_enabled(account):
            raise _Refusal(403, "Dialog information is not enabled for this account")
        if not self._module.roster.is_authorized(account, watcher):
            raise _Refusal(403, "Not authorized by the account's roster")

    def start(self, subscription: Subscription, fetch: bool) -> None:
        def changed(dialogs):
            info = dialoginfo.DialogInfo(f"sip:{subscription.account}", subscription.version, "full", dialogs)
            subscription.version += 1
            self._notifier.notify(subscription, State.ACTIVE, dialoginfo.serialize(info), self.content_type)

        self.attach(subscription, self._module.calls.watch(subscription.account, changed))


class _WatcherInfoPackage(_Package):
    """C{presence.winfo} (RFC 3857): the owner's view of its watchers."""

    name = WINFO_EVENT
    content_type = watcherinfo.CONTENT_TYPE

    def authorize(self, account: str, watcher: str, authenticated: str | None) -> None:
        if authenticated != account or self._module.watchers is None:
            raise _Refusal(403, "Only the account itself may watch its watchers")

    def start(self, subscription: Subscription, fetch: bool) -> None:
        self._module.watchers.subscribed(subscription, fetch)

    def refreshed(self, subscription: Subscription) -> None:
        self._module.watchers.refreshed(subscription)


class SIPPresence:
    """
    The presence part of one SIP service.

    @param service: the L{communigate.sip.service.SIPService}: its context
        (directory, presence, roster, message_waiting, reactor, metrics),
        C{verifier}, C{guard}, C{proxy} (C{is_local_domain}, C{is_us},
        C{flow_for_uri}, C{send_request}) and C{address_for}.
    """

    log = Logger()

    def __init__(self, service) -> None:
        self._service = service
        context = service.context
        self._clock = context.reactor
        self._directory = context.directory
        self.presence = context.presence
        self.roster = context.roster
        self.message_waiting = context.message_waiting
        self.calls_enabled = enabled_by_setting(self._directory)
        self.calls = CallStates(self._clock, enabled=self.calls_enabled, account_of=self._directory.resolve_account)
        self.notifier = Notifier(
            self._clock, self._send_request, service.address_for, registry=context.metrics
        )
        self.publications = None if self.presence is None else Publications(self._clock, self.presence)
        self.watchers = (
            None if self.presence is None or self.roster is None
            else PresenceWatchers(self._clock, self.notifier, self.roster)
        )
        self.packages = {
            package.name: package
            for package in (
                _PresencePackage(self), _MessageSummaryPackage(self), _DialogPackage(self), _WatcherInfoPackage(self)
            )
        }
        self.allow_events = ", ".join(self.packages)
        self._purger = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._purger = self._clock.callLater(PURGE_INTERVAL, self._purge)
        if self.watchers is not None:
            self.watchers.start()

    def _purge(self) -> None:
        self.calls.purge()
        self._purger = self._clock.callLater(PURGE_INTERVAL, self._purge)

    def stop(self) -> None:
        if self._purger is not None and self._purger.active():
            self._purger.cancel()
        self._purger = None
        if self.watchers is not None:
            self.watchers.stop()
        self.notifier.stop()
        if self.publications is not None:
            self.publications.stop()

    def _send_request(self, request, flow, user) -> None:
        self._service.proxy.send_request(request, flow, user)

    # -- registrations ------------------------------------------------------------

    def registrations_changed(self, account: str, registered: bool) -> None:
        """
        C{account} gained its first live binding or lost its last one.  A
        loss is checked again on the next turn of the reactor: a REGISTER
        that replaces a phone's only contact drops it and adds the new one
        in one change, which must not show the account offline.
        """
        if self.presence is None:
            return
        if registered:
            try:
                self.presence.publish(account, (REGISTRATION, account), ONLINE)
            except (TooManySources, ValueError) as error:
                self.log.info("Registration of {account} not shown as presence: {error}", account=account,
                              error=error)
        else:
            self._clock.callLater(0, self._maybe_unregistered, account)

    def _maybe_unregistered(self, account: str) -> None:
        if self._service.bindings.count(account) == 0:
            self.presence.withdraw(account, (REGISTRATION, account))

    # -- what is ours ------------------------------------------------------------

    def _target(self, request) -> str | None:
        """
        The account a request for us names; L{None} when it is not ours
        (the proxy takes it).

        @raise _Refusal: 404 for an unknown name in a local domain.
        """
        uri = request.uri
        proxy = self._service.proxy
        if not isinstance(uri, SIPURI) or not uri.user or not proxy.is_local_domain(uri.host):
            return None
        try:
            routes = request.routes()
        except HeaderError:
            return None
        if any(not proxy.is_us(route.uri) for route in routes):
            return None
        account = self._directory.resolve_account(f"{uri.user}@{uri.host}")
        if account is None:
            raise _Refusal(404, "No such account")
        return account

    def _respond(self, request, transaction, status: int, reason=None, headers=()) -> None:
        transaction.respond(rules.refuse(request, status, reason, headers=headers))

    def _expires(self, request) -> int:
        try:
            expires = request.expires()
        except HeaderError:
            raise _Refusal(400, "Malformed Expires") from None
        if expires is None:
            return DEFAULT_EXPIRES
        if 0 < expires < MIN_EXPIRES:
            raise _Refusal(423, None, [("Min-Expires", str(MIN_EXPIRES))])
        return min(expires, MAX_EXPIRES)

    def _authenticate(self, request, flow, transaction, realm: str, proceed) -> None:
        service = self._service
        host = flow.remote[0]
        if service.guard.blocked(host):
            self._respond(request, transaction, 403, "Too many failed authentications")
            return
        d = service.verifier.verify(
            request.headers.get("Proxy-Authorization"),
            request.method,
            str(request.uri),
            request.body,
            realm,
            (flow.transport, flow.remote[0], flow.remote[1]),
            proxy=True,
        )

        def decided(outcome):
            if outcome.kind is OutcomeKind.ACCEPTED:
                service.guard.succeeded(host)
                self._guarded(request, transaction, proceed, outcome.account)
            elif outcome.kind in (OutcomeKind.CHALLENGE, OutcomeKind.STALE):
                self._respond(request, transaction, 407, headers=outcome.headers)
            elif outcome.kind is OutcomeKind.MALFORMED:
                self._respond(request, transaction, 400, _reason(outcome.reason))
            else:
                service.guard.failed(host)
                self._respond(request, transaction, 403, "Authentication failed")

        def failed(failure):
            self.log.failure("{method} authentication failed", failure, method=request.method)
            self._respond(request, transaction, 500)

        d.addCallbacks(decided, failed)

    def _guarded(self, request, transaction, step, *args) -> None:
        try:
            step(*args)
        except _Refusal as refusal:
            self._respond(request, transaction, refusal.status, refusal.reason, refusal.headers)
        except (HeaderError, ValueError) as error:
            self.log.info("bad {method}: {error}", method=request.method, error=error)
            self._respond(request, transaction, 400, _reason(str(error)))

    # -- SUBSCRIBE --------------------------------------------------------------------

    def subscribe(self, request, flow, transaction, nat: bool = False) -> bool:
        """
        Handle C{request} (a SUBSCRIBE) if it is ours; L{False} hands it to
        the proxy.
        """
        if self.presence is None:
            return False
        try:
            to = request.to()
            request.from_()
        except HeaderError:
            return False
        if to.tag is not None:
            if not self._is_our_dialog(request, to.tag):
                return False
            if transaction is not None:
                self._guarded(request, transaction, self._refresh, request, to.tag, transaction)
            return True
        try:
            account = self._target(request)
        except _Refusal as refusal:
            if transaction is not None:
                self._respond(request, transaction, refusal.status, refusal.reason, refusal.headers)
            return True
        if account is None:
            return False
        if transaction is not None:
            self._guarded(request, transaction, self._new_subscription, request, flow, transaction, account, nat)
        return True

    def _is_our_dialog(self, request, local_tag: str) -> bool:
        """
        Whether an in-dialog SUBSCRIBE belongs to a subscription of ours:
        one we know, or one sent to our own Contact (no user part, our
        address) with a tag of our form (481 then).  Other dialogs'
        SUBSCRIBEs are the proxy's.
        """
        if not local_tag.startswith(TAG_PREFIX):
            return False
        try:
            event = _event(request)
            from_tag = request.from_().tag or ""
        except (_Refusal, HeaderError):
            event = None
        if event is not None and self.notifier.find(request.call_id, local_tag, from_tag, *event) is not None:
            return True
        uri = request.uri
        return (
            isinstance(uri, SIPURI)
            and not uri.user
            and (uri.host, uri.port or 5060) in self._service.local_hosts()
        )

    def _package_of(self, request):
        event = _event(request)
        if event is None:
            raise _Refusal(400, "Missing Event header")
        package, event_id = event
        handler = self.packages.get(package)
        if handler is None:
            raise _Refusal(489, None, [("Allow-Events", self.allow_events)])
        return handler, event_id

    def _new_subscription(self, request, flow, transaction, account: str, nat: bool) -> None:
        package, event_id = self._package_of(request)
        if not _accepts(request, package.content_type):
            raise _Refusal(406, None, [("Accept", package.content_type)])
        expires = self._expires(request)
        contacts = request.contacts()
        if len(contacts) != 1 or not isinstance(getattr(contacts[0], "uri", None), SIPURI):
            raise _Refusal(400, "SUBSCRIBE needs one SIP Contact")
        try:
            self.notifier.check_room(account)
        except LimitReached as limit:
            raise _Refusal(limit.status, limit.reason, [("Retry-After", "60")] if limit.status == 503 else []) from None
        from_ = request.from_()
        caller = from_.uri
        if isinstance(caller, SIPURI) and self._service.proxy.is_local_domain(caller.host):
            realm = self._directory.real_domain(caller.host)
            self._authenticate(
                request, flow, transaction, realm,
                lambda authenticated: self._subscribe_as(
                    request, flow, transaction, account, nat, package, event_id, expires, authenticated
                ),
            )
            return
        watcher = f"{caller.user}@{caller.host}" if isinstance(caller, SIPURI) and caller.user else str(caller)
        self._subscribe_as(request, flow, transaction, account, nat, package, event_id, expires, None, watcher)

    def _notify_flow(self, request, flow, contact, route_set, nat: bool):
        """Where the NOTIFYs of a new subscription go."""
        proxy = self._service.proxy
        if route_set:
            first = request.record_routes()[0].uri
            if not proxy.is_us(first):
                try:
                    return proxy.flow_for_uri(first)
                except OSError:
                    return flow
        if nat or flow.reliable:
            return flow
        try:
            return proxy.flow_for_uri(contact, local=flow.local)
        except OSError:
            return flow

    def _subscribe_as(self, request, flow, transaction, account, nat, package, event_id, expires,
                      authenticated, watcher=None) -> None:
        watcher = authenticated or watcher
        package.authorize(account, watcher, authenticated)
        contact = request.contacts()[0].uri
        route_set = tuple(str(route) for route in request.record_routes())
        host, port = self._service.address_for("udp" if flow.transport == "udp" else "tcp")
        local_tag = f"{TAG_PREFIX}{os.urandom(8).hex()}"
        local_contact = f"<sip:{host}:{port};transport={flow.transport}>"
        subscription = Subscription(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_().tag or "",
            package=package.name,
            event_id=event_id,
            account=account,
            watcher=watcher,
            local_uri=f"sip:{account}",
            remote=request.headers.get("From"),
            remote_target=str(contact),
            route_set=route_set,
            flow=self._notify_flow(request, flow, contact, route_set, nat),
            local_contact=local_contact,
            expires_at=0.0,
            remote_cseq=request.cseq().number,
        )
        try:
            self.notifier.add(subscription, max(expires, 1))
        except LimitReached as limit:
            headers = [("Retry-After", "60")] if limit.status == 503 else []
            raise _Refusal(limit.status, limit.reason, headers) from None
        try:
            package.start(subscription, fetch=expires == 0)
        except (TooManyWatchers, RosterError) as error:
            self.notifier.drop(subscription)
            raise _Refusal(403, _reason(str(error))) from None
        except Exception:
            self.notifier.drop(subscription)
            raise
        transaction.respond(
            make_response(
                request, 200, to_tag=local_tag,
                headers=[("Expires", str(expires)), ("Contact", local_contact), ("Allow-Events", self.allow_events)],
            )
        )
        if expires == 0:
            self.notifier.terminate(subscription, "timeout")
        self.notifier.release(subscription)
        self.log.debug("{watcher} subscribed to {package} of {account}", watcher=watcher, package=package.name,
                       account=account)

    def _refresh(self, request, local_tag: str, transaction) -> None:
        event = _event(request)
        if event is None:
            raise _Refusal(400, "Missing Event header")
        package, event_id = event
        subscription = self.notifier.find(request.call_id, local_tag, request.from_().tag or "", package, event_id)
        if subscription is None:
            raise _Refusal(481, "Subscription does not exist")
        cseq = request.cseq().number
        if cseq <= subscription.remote_cseq:
            raise _Refusal(500, "CSeq out of order")
        expires = self._expires(request)
        if expires == 0:
            subscription.remote_cseq = cseq
            transaction.respond(make_response(request, 200, headers=[("Expires", "0")]))
            self.notifier.terminate(subscription, "timeout")
            return
        self.notifier.refresh(subscription, expires, cseq)
        transaction.respond(make_response(request, 200, headers=[("Expires", str(expires))]))
        self.packages[subscription.package].refreshed(subscription)

    # -- PUBLISH -----------------------------------------------------------------------

    def publish(self, request, flow, transaction) -> bool:
        """
        Handle C{request} (a PUBLISH) if it is ours; L{False} hands it to
        the proxy.
        """
        if self.presence is None:
            return False
        try:
            account = self._target(request)
        except _Refusal as refusal:
            if transaction is not None:
                self._respond(request, transaction, refusal.status, refusal.reason, refusal.headers)
            return True
        except HeaderError:
            return False
        if account is None:
            return False
        if transaction is not None:
            self._guarded(request, transaction, self._publication, request, flow, transaction, account)
        return True

    def _publication(self, request, flow, transaction, account: str) -> None:
        event = _event(request)
        if event is None or event[0] != "presence":
            raise _Refusal(489, None, [("Allow-Events", "presence")])
        expires = self._expires(request)
        realm = self._directory.real_domain(account.partition("@")[2])
        self._authenticate(
            request, flow, transaction, realm,
            lambda authenticated: self._published(request, transaction, account, expires, authenticated),
        )

    def _published(self, request, transaction, account: str, expires: int, authenticated: str) -> None:
        if authenticated != account:
            raise _Refusal(403, "Only the account itself may publish its presence")
        state = None
        if request.body:
            if _media_type(request.headers.get("Content-Type")) != pidf.CONTENT_TYPE:
                raise _Refusal(415, None, [("Accept", pidf.CONTENT_TYPE)])
            try:
                state = pidf.state_of(pidf.parse(request.body))
            except pidf.PIDFError as error:
                raise _Refusal(400, _reason(f"Bad PIDF: {error}")) from None
        tag = request.headers.get("SIP-If-Match")
        if tag is not None:
            publication = self.publications.find(account, tag.strip())
            if publication is None:
                raise _Refusal(412)
            if expires == 0:
                self.publications.remove(publication)
                self._respond(request, transaction, 200, headers=[("SIP-ETag", publication.etag), ("Expires", "0")])
                return
            etag = self.publications.refresh(publication, expires, state)
        else:
            if state is None:
                raise _Refusal(400, "An initial PUBLISH needs a PIDF body")
            if expires == 0:
                raise _Refusal(400, "Expires 0 needs SIP-If-Match")
            try:
                etag = self.publications.add(account, state, expires).etag
            except TooManySources as error:
                raise _Refusal(403, _reason(str(error))) from None
            except TooManyPublications as error:
                raise _Refusal(503, _reason(str(error)), [("Retry-After", "60")]) from None
        self._respond(request, transaction, 200, headers=[("SIP-ETag", etag), ("Expires", str(expires))])
