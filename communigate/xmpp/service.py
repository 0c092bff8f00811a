"""
The XMPP service: what C{--xmpp} listens with.

It owns what all client streams share: the settings in force, the TLS
context, the session registry (L{sessions}), the stanza dispatch table
(L{dispatcher}) with the built-in XEPs (ping, version, disco), the login
throttle and the metrics.  Later slices add their handlers to
L{dispatcher} and their observers to L{sessions}.
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

from communigate.admin.throttle import LoginThrottle
from communigate.directory.errors import DirectoryError
from communigate.interfaces import IAccount
from communigate.xmpp import ping, sasl, stanza_routes, version
from communigate.xmpp.c2s import ClientStream
from communigate.xmpp.disco import ServiceDiscovery
from communigate.xmpp.dispatch import ACCOUNT, SERVER, StanzaDispatcher
from communigate.xmpp.metrics import XMPPMetrics
from communigate.xmpp.namespaces import NS_SESSION
from communigate.xmpp.sessions import SessionRegistry
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
        super().startService()

    def stopService(self):
        for stream in list(self.streams):
            stream.close("system-shutdown", "the server is shutting down")
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

    def deliver_local(self, element) -> None:
        """
        Deliver stanza C{element} to the local JID of its C{to}.
        """
        stanza_routes.deliver_to_sessions(self, element)


def _qualified(username: str, domain: str) -> str:
    return username if "@" in username else f"{username}@{domain}"
