"""
The XMPP service: what C{--xmpp} listens with.

It owns what all client streams share: the settings in force, the TLS
context, the session registry (L{sessions}), the stanza dispatch table
(L{dispatcher}) with the built-in XEPs (ping, version, disco), the login
throttle and the metrics; and the IM parts built on them: the roster
(L{roster}), presence (L{presence}), messages (L{messages}), offline
storage (L{offline}), the Signal bridge (L{bridge}), stream management
(L{stream_management}) and carbons (L{carbons}).

Every stanza for a local JID, whoever sent it (a local resource, another
server, the Signal bridge), goes through L{XMPPService.deliver_local}; a
stanza for another domain goes to C{route_remote} when the
server-to-server side has added it, else the sender gets
C{remote-server-not-found}.
"""

from __future__ import annotations

import os

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber.jid import InvalidFormat

from communigate.admin.throttle import LoginThrottle
from communigate.directory.errors import DirectoryError
from communigate.interfaces import IAccount
from communigate.xmpp import ping, sasl, stanza_routes, version
from communigate.xmpp.bridge import SignalBridge
from communigate.xmpp.c2s import ClientStream, parse_jid
from communigate.xmpp.carbons import Carbons
from communigate.xmpp.disco import ServiceDiscovery
from communigate.xmpp.dispatch import ACCOUNT, SERVER, StanzaDispatcher, error_reply
from communigate.xmpp.im import MessageRouter
from communigate.xmpp.metrics import XMPPMetrics
from communigate.xmpp.namespaces import NS_SESSION
from communigate.xmpp.accounts import XMPPAccountEnds
from communigate.xmpp.offline import OfflineMessages
from communigate.xmpp.presence import XMPPPresence
from communigate.xmpp.roster import XMPPRoster
from communigate.xmpp.sessions import SessionRegistry
from communigate.xmpp.sm import StreamManagement
from communigate.xmpp.settings import XMPPSettings, checked, stored_settings
from communigate.xmpp.tls import CertificateError, ensure_generated, load_context


class ClientStreamFactory(Factory):
    """
    Builds a L{ClientStream} per connection.
    """

    def __init__(self, service) -> None:
        self.service = service

    def buildProtocol(self, addr):
        stream = ClientStream(self.service)
        stream.factory = self
        return stream


class XMPPService(MultiService):
    """
    The XMPP client-to-server side of one server.

    @ivar sessions: the L{communigate.interfaces.IXMPPSessions}.
    @ivar dispatcher: the L{StanzaDispatcher} handlers register into.
    @ivar disco: the L{ServiceDiscovery} features are added to.
    @ivar streams: the open client streams (authenticated or not).
    @ivar tls_context: what STARTTLS uses, or L{None} without a usable
        certificate.
    """

    log = Logger()

    def __init__(self, context, descriptions) -> None:
        super().__init__()
        self.setName("xmpp")
        self.context = context
        self.descriptions = tuple(descriptions)
        self.clock = context.reactor
        self.settings = XMPPSettings()
        self.tls_context = None
        self._certificate_source: str | None = None
        self.streams: set = set()
        self.sessions = SessionRegistry(max_resources=lambda account: self.settings.max_resources)
        self.metrics = XMPPMetrics(context.metrics, self)
        self.dispatcher = StanzaDispatcher(
            self.sessions, self.is_local_domain, count_dropped=self.metrics.dropped, route_remote=self.route_remote
        )
        # The IXMPPRemoteDomains of the server-to-server service, when
        # there is one (it attaches itself when it starts).
        self.remote = None
        # RFC 3921 session establishment, which RFC 6120 clients may still
        # send after binding: nothing to do, so an empty result.
        self.dispatcher.register_iq(NS_SESSION, "session", lambda session, stanza: None, scopes=(SERVER, ACCOUNT))
        ping.install(self.dispatcher)
        version.install(self.dispatcher)
        self.disco = ServiceDiscovery(self.dispatcher)
        self.disco.install()
        self._stream_features: list = []
        self.offline = OfflineMessages(context.store, self.clock, lambda: self.settings.max_offline_messages)
        context.directory.watch_accounts(XMPPAccountEnds(self))
        self.carbons = Carbons(self)
        self.roster = XMPPRoster(self)
        self.presence = XMPPPresence(self)
        self.messages = MessageRouter(self)
        self.bridge = SignalBridge(self)
        self.stream_management = StreamManagement(self)
        for part in (self.carbons, self.roster, self.presence, self.messages, self.stream_management):
            part.install()
        self.dispatcher.set_remote(self._to_remote)
        # XEP-0160: messages are kept for accounts that are offline.
        self.disco.add_feature(SERVER, "msgoffline")
        self.throttle = LoginThrottle(self.clock)
        self._decoy_key = os.urandom(32)
        self.factory = ClientStreamFactory(self)
        for description in self.descriptions:
            endpoint = serverFromString(context.reactor, description)
            StreamServerEndpointService(endpoint, self.factory).setServiceParent(self)

    # -- lifecycle -----------------------------------------------------------

    def startService(self) -> None:
        try:
            self.apply_settings(stored_settings(self.context.store))
        except ValueError as e:
            self.log.error("XMPP settings are invalid ({error}); using the built-in values", error=e)
            self.apply_settings({})
        self.roster.start()
        self.presence.start()
        self.bridge.start()
        super().startService()

    def stopService(self):
        for stream in list(self.streams):
            stream.close("system-shutdown", "the server is shutting down")
        for session in self.sessions.all_sessions():
            # Sessions waiting for resumption have no stream any more; the
            # others end now rather than when their connection is gone, so
            # unacknowledged messages are kept while the store is open.
            session.close("system-shutdown", "the server is shutting down")
            session.finish_session()
        self.presence.stop()
        self.roster.stop()
        return super().stopService()

    def apply_settings(self, settings: dict) -> None:
        """
        Put the XMPP settings in force (at start and when they change).

        @raise ValueError: a setting is invalid.
        """
        from communigate.xmpp.settings import DEFAULT_SETTINGS

        self.settings = checked({**DEFAULT_SETTINGS, **settings})
        source = self.settings.certificate_file
        if source != self._certificate_source or self.tls_context is None:
            self._certificate_source = source
            self.tls_context = self._load_tls()

    def certificate_path(self, name: str) -> str:
        """
        Where C{CertificateFile} C{name} is: relative names are in the
        data directory.
        """
        return os.path.join(self.context.config.data_dir or ".", name)

    def _load_tls(self):
        name = self.settings.certificate_file
        try:
            if name:
                path = self.certificate_path(name)
            else:
                path = ensure_generated(self.context.config.data_dir or ".", self._domains())
            context = load_context(path)
        except (CertificateError, OSError, ValueError) as e:
            self.log.error("XMPP STARTTLS is unavailable: {error}", error=e)
            return None
        self.log.info("XMPP STARTTLS uses the certificate in {path}", path=path)
        return context

    def _domains(self) -> list[str]:
        directory = self.context.directory
        main = directory.main_domain() or self.context.hostname
        return [main] + [d for d in directory.list_domains() if d != main]

    # -- stream features and routing ----------------------------------------------

    def add_stream_feature(self, feature) -> None:
        """
        Offer C{feature(stream)} (an element) with resource binding.
        """
        self._stream_features.append(feature)

    def stream_features(self, stream) -> list:
        """
        The extra features offered to C{stream} after authentication.
        """
        return [feature(stream) for feature in self._stream_features]

    def local_account(self, address: str) -> str | None:
        """
        The canonical account C{address} (a bare JID, aliases followed)
        names, or L{None}.
        """
        try:
            return self.context.directory.resolve_account(address)
        except (DirectoryError, ValueError):
            return None

    def route(self, element) -> None:
        """
        Send C{element} (C{to} and C{from} set) on its way: to a local JID
        through L{deliver_local}, to anything else through the
        server-to-server side.
        """
        try:
            recipient = parse_jid(element.getAttribute("to", ""))
        except InvalidFormat:
            self.metrics.dropped("stanza to an invalid JID")
            return
        if self.is_local_domain(recipient.host):
            self.deliver_local(element)
        else:
            self._to_remote(element)

    def deliver_local(self, element) -> None:
        """
        Deliver C{element}, a stanza for a JID of a local domain, with C{to}
        and C{from} set: from a local session, from another server or from
        the Signal bridge.  Messages follow RFC 6121 section 8.5 (and go
        through the Signal service when they carry a body), presence
        section 4, IQs to a bound full JID go to that resource.
        """
        try:
            recipient = parse_jid(element.getAttribute("to", ""))
        except InvalidFormat:
            self.metrics.dropped("stanza to an invalid JID")
            return
        account = self.local_account(recipient.userhost()) if recipient.user is not None else None
        if element.name == "message":
            self.messages.deliver(element, recipient, account)
        elif element.name == "presence":
            self.presence.deliver(element, recipient, account)
        elif element.name == "iq":
            self._iq_for_local(element, recipient, account)
        else:
            self.metrics.dropped("not a stanza")

    def _iq_for_local(self, element, recipient, account) -> None:
        if account is not None and recipient.resource is not None:
            session = self.sessions.resource(account, recipient.resource)
            if session is not None:
                session.send(element)
                return
        if element.getAttribute("type") in ("get", "set") and element.getAttribute("from"):
            self.route(error_reply(element, "service-unavailable"))
        else:
            self.metrics.dropped("IQ for no resource")

    def _to_remote(self, element) -> None:
        remote = getattr(self, "route_remote", None)
        if remote is not None:
            remote(element)
            return
        kind = element.getAttribute("type")
        if element.name == "presence" and kind not in ("subscribe", "subscribed", "unsubscribe", "unsubscribed"):
            self.metrics.dropped("presence for a domain not served here")
            return
        if kind == "error" or not element.getAttribute("from"):
            self.metrics.dropped("error for a domain not served here")
            return
        self.route(error_reply(element, "remote-server-not-found", "no route to that domain"))

    # -- what streams ask ----------------------------------------------------

    def stream_opened(self, stream) -> None:
        self.streams.add(stream)

    def stream_closed(self, stream) -> None:
        self.streams.discard(stream)

    def default_domain(self) -> str:
        return self.context.directory.main_domain() or self.context.hostname

    def local_domain(self, name: str) -> str | None:
        """
        The (real) domain served here that C{name} names, directly or as a
        domain alias, or L{None}.
        """
        if not name or len(name) > 1023:
            return None
        try:
            return self.context.directory.real_domain(name)
        except (DirectoryError, ValueError):
            return None

    def is_local_domain(self, name: str) -> bool:
        return self.local_domain(name) is not None

    def resolve_account(self, address: str, domain: str) -> str | None:
        """
        The canonical account C{address} names; a bare name is in C{domain}.
        """
        try:
            return self.context.directory.resolve_account(_qualified(address, domain))
        except (DirectoryError, ValueError):
            return None

    def new_mechanism(self, name: str, *, tls: bool, domain: str) -> sasl.SASLMechanism:
        return sasl.new_mechanism(
            name,
            tls=tls,
            qualify=lambda username: _qualified(username, domain),
            lookup=self._scram_secrets,
            decoy_key=self._decoy_key,
        )

    def _scram_secrets(self, username: str, hash_name: str):
        directory = self.context.directory
        try:
            account = directory.resolve_account(username)
            secrets = directory.password_secrets(account) if account is not None else None
        except (DirectoryError, ValueError):
            return None
        return None if secrets is None else secrets.scram.get(hash_name)

    def login(self, credentials, mind, host: str) -> defer.Deferred:
        """
        Log in through the portal, after the delay the login throttle asks
        of C{host}; fires with C{(IAccount, avatar, logout)} or fails with
        L{UnauthorizedLogin}.  Cancelling it stops the wait.
        """
        delay = self.throttle.delay_for(host)
        waiting = []

        def cancel(d):
            if waiting and waiting[0].active():
                waiting[0].cancel()

        result = defer.Deferred(cancel)

        def check():
            waiting.clear()
            d = self.context.portal.login(credentials, mind, IAccount)
            d.addCallbacks(succeeded, failed)
            d.addBoth(deliver)

        def deliver(outcome):
            if result.called:
                return None
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)

        def succeeded(outcome):
            self.throttle.record_success(host)
            return outcome

        def failed(failure):
            if failure.check(UnauthorizedLogin):
                self.throttle.record_failure(host)
            return failure

        if delay > 0:
            waiting.append(self.clock.callLater(delay, check))
        else:
            check()
        return result

    def record_login_failure(self, host: str) -> None:
        self.throttle.record_failure(host)

    # -- stanzas that leave a session ------------------------------------------

    def attach_remote(self, remote) -> None:
        """
        Send stanzas for remote domains to C{remote} (an
        L{communigate.interfaces.IXMPPRemoteDomains}), or to nobody
        (L{None}): they are bounced.
        """
        self.remote = remote

    def route_remote(self, element) -> None:
        """
        Send stanza C{element} (from a local JID) to the remote domain of
        its C{to} over server-to-server; without that, the sender gets
        C{remote-server-not-found}.
        """
        if self.remote is None:
            stanza_routes.bounce(self, element, "remote-server-not-found", "server-to-server XMPP is not enabled here")
        else:
            self.remote.route(element)



def _qualified(username: str, domain: str) -> str:
    return username if "@" in username else f"{username}@{domain}"
