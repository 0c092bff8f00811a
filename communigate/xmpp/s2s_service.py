"""
The server-to-server XMPP service: what C{--xmpp-s2s} listens with, and
the outgoing links to other servers.

It works for the client side, the L{communigate.xmpp.service.XMPPService}
(found by its service name C{xmpp} when it starts): it is that service's
L{IXMPPRemoteDomains}, so stanzas of local sessions for other domains
reach L{route}; stanzas that other servers send us are handed to the
client side's C{deliver_local}.  Settings (the C{S2S…}, C{DialbackSecret}
and C{DNSServers} XMPP settings), the certificate and the domains are the
client side's.

  - L{links}: one L{OutgoingLink} per (local domain, remote domain), made
    on the first stanza or dialback verification that needs it, gone when
    it fails or idles out;
  - L{inbound}: the open L{InboundStream}s;
  - DNS: one L{DNSClient} over the C{DNSServers} XMPP setting, else the
    SIP settings' C{DNSServers}, else C{/etc/resolv.conf}; the servers are
    read again for each new link, so a change applies at once.
"""

from __future__ import annotations

import random as _random

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import fail
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, serverFromString
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import InvalidFormat
from zope.interface import implementer

from communigate.dnsclient import DNSClient, parse_server_address, servers_from_resolv_conf
from communigate.interfaces import IXMPPRemoteDomains
from communigate.xmpp import dialback, s2s_dns, stanza_routes
from communigate.xmpp.c2s import parse_jid
from communigate.xmpp.s2s import S2SFailure
from communigate.xmpp.s2s_in import InboundStream
from communigate.xmpp.s2s_link import OutgoingLink
from communigate.xmpp.s2s_metrics import S2SMetrics
from communigate.xmpp.s2s_tls import S2SCertificates
from communigate.xmpp.settings import ensure_dialback_secret, stored_settings

#: The store record of the SIP settings, whose DNSServers is the fallback.
_SIP_SETTINGS = ("server", "sip-settings")


class InboundStreamFactory(Factory):
    def __init__(self, service) -> None:
        self.service = service

    def buildProtocol(self, addr):
        stream = InboundStream(self.service)
        stream.factory = self
        return stream


class _OutboundFactory(Factory):
    def __init__(self, build) -> None:
        self._build = build

    def buildProtocol(self, addr):
        return self._build()


@implementer(IXMPPRemoteDomains)
class S2SService(MultiService):
    """
    Server-to-server XMPP for one server.

    @param xmpp: the client-side service; by default the sibling service
        named C{xmpp}, found when this one starts.
    @param connect: C{(ip, port, build) -> Deferred(protocol)}, how links
        connect; by default TCP through the context's reactor.
    @param locate: C{(domain) -> Deferred([(ip, port), ...])}; by default
        DNS (L{s2s_dns.locate}).
    @param random: the SRV weighted selection's random source.
    @param certificates: the L{IS2SCertificates} of STARTTLS; by default
        L{S2SCertificates} over the XMPP certificate and
        C{S2STrustedCAFile}.
    """

    log = Logger()

    def __init__(
        self, context, descriptions, *, xmpp=None, connect=None, locate=None, random=None, certificates=None
    ) -> None:
        super().__init__()
        self.setName("xmpp-s2s")
        self.context = context
        self.clock = context.reactor
        self.xmpp = xmpp
        self.links: dict[tuple[str, str], OutgoingLink] = {}
        self.inbound: set[InboundStream] = set()
        self.metrics = S2SMetrics(context.metrics, self)
        self.factory = InboundStreamFactory(self)
        self._connect = connect
        self._locate = locate
        self._random = random if random is not None else _random.SystemRandom()
        self._dns: DNSClient | None = None
        self._certificates = certificates
        self._attached = False
        for description in descriptions:
            endpoint = serverFromString(context.reactor, description)
            StreamServerEndpointService(endpoint, self.factory).setServiceParent(self)

    # -- lifecycle -----------------------------------------------------------------

    def startService(self) -> None:
        if self.xmpp is None:
            try:
                self.xmpp = self.parent.getServiceNamed("xmpp")
            except (AttributeError, KeyError):
                self.log.error("Server-to-server XMPP needs the XMPP service (--xmpp): not listening")
                Service.startService(self)
                return
        self.xmpp.attach_remote(self)
        self._attached = True
        self.secret()
        if not self.settings.certificate_file:
            self.log.info(
                "XMPP s2s: our certificate is the generated self-signed one, which other servers do not "
                "trust: they authenticate us by dialback (set CertificateFile for SASL EXTERNAL)"
            )
        super().startService()

    def stopService(self):
        if not self._attached:
            Service.stopService(self)
            return None
        for link in list(self.links.values()):
            link.close()
        for stream in list(self.inbound):
            stream.close("system-shutdown", "the server is shutting down")
        if self.xmpp.remote is self:
            self.xmpp.attach_remote(None)
        self._attached = False
        return super().stopService()

    # -- what the client side has ----------------------------------------------------

    @property
    def settings(self):
        return self.xmpp.settings

    @property
    def tls_context(self):
        return self.xmpp.tls_context

    @property
    def certificates(self):
        """
        The L{IS2SCertificates} STARTTLS uses, in and out.
        """
        if self._certificates is None:
            self._certificates = S2SCertificates(self.xmpp, self._trusted_ca_path, self._crl_path)
        return self._certificates

    def _trusted_ca_path(self) -> str:
        name = self.settings.s2s_trusted_ca_file
        return self.xmpp.certificate_path(name) if name else ""

    def _crl_path(self) -> str:
        name = self.settings.s2s_crl_file
        return self.xmpp.certificate_path(name) if name else ""

    def default_domain(self) -> str:
        return self.xmpp.default_domain()

    def local_domain(self, name: str) -> str | None:
        return self.xmpp.local_domain(name)

    # -- IXMPPRemoteDomains -------------------------------------------------------

    def route(self, element) -> None:
        sender, target = _jid(element, "from"), _jid(element, "to")
        if sender is None or target is None:
            self.metrics.dropped("stanza for a remote domain without a valid from and to")
            return
        local = self.xmpp.local_domain(sender.host)
        if local is None:
            self.metrics.dropped("stanza for a remote domain not from a local domain")
            self.log.info(
                "XMPP s2s: a stanza from {sender} (not local) to {target} dropped",
                sender=sender.full(),
                target=target.full(),
            )
            return
        if self.xmpp.local_domain(target.host) is not None:
            self.xmpp.deliver_local(element)
            return
        if not self.settings.s2s:
            self.bounce(element, "remote-server-not-found", "server-to-server XMPP is turned off here")
            return
        # The link speaks for the domain the stanza names (an alias too):
        # the remote server checks the stanza's from against it.
        self._link(sender.host, target.host).send(element)

    def streams(self) -> list[dict]:
        now = self.clock.seconds()
        found = []
        for link in sorted(self.links.values(), key=lambda link: link.started):
            found.append({**link.details, "Since": str(int(now - link.started))})
        for stream in sorted(self.inbound, key=lambda stream: stream.started):
            found.append({**stream.details, "Since": str(int(now - stream.started))})
        return found

    def outbound_count(self) -> int:
        return sum(1 for link in self.links.values() if link.stream is not None and not link.stream.closed)

    def _link(self, local: str, remote: str) -> OutgoingLink:
        link = self.links.get((local, remote))
        if link is None:
            link = OutgoingLink(self, local, remote)
            self.links[(local, remote)] = link
        return link

    def link_closed(self, link: OutgoingLink) -> None:
        if self.links.get((link.local, link.remote)) is link:
            del self.links[(link.local, link.remote)]

    # -- dialback ----------------------------------------------------------------------

    def secret(self) -> str:
        """
        The dialback secret in force, generated and stored the first time.
        """
        secret = self.settings.dialback_secret
        if secret:
            return secret
        secret = ensure_dialback_secret(self.context.store)
        try:
            self.xmpp.apply_settings(stored_settings(self.context.store))
        except ValueError as e:
            self.log.error("XMPP settings are invalid ({error})", error=e)
        return secret

    def dialback_key(self, receiving: str, originating: str, stream_id: str) -> str:
        return dialback.dialback_key(self.secret(), receiving, originating, stream_id)

    def check_key(self, key: str, *, receiving: str, originating: str, stream_id: str) -> str:
        """
        C{valid} when C{key} is the one we made for that stream, else
        C{invalid}.
        """
        valid = dialback.key_is_valid(self.secret(), key, receiving, originating, stream_id)
        return dialback.VALID if valid else dialback.INVALID

    def verify_peer(self, local: str, remote: str, stream_id: str, key: str):
        """
        Ask C{remote}'s authoritative server about C{key}, which it sent
        on our incoming stream C{stream_id} to send to C{local}.

        @return: a Deferred firing with C{valid} or C{invalid}, or failing
            with L{S2SFailure} when the answer could not be had.
        """
        if not self.settings.s2s:
            return fail(S2SFailure("remote-server-not-found", "server-to-server XMPP is turned off here"))
        return self._link(local, remote).verify(stream_id, key)

    # -- stanzas -------------------------------------------------------------------------

    def deliver_inbound(self, element) -> None:
        self.xmpp.deliver_local(element)

    def route_remote(self, element) -> None:
        self.xmpp.route_remote(element)

    def bounce(self, element, condition: str, text: str | None = None) -> None:
        """
        Answer a local sender's stanza with C{condition}: it could not be
        sent.
        """
        self.metrics.bounced(condition)
        stanza_routes.bounce(self.xmpp, element, condition, text)

    # -- streams -------------------------------------------------------------------------

    def inbound_opened(self, stream: InboundStream) -> None:
        self.inbound.add(stream)

    def inbound_closed(self, stream: InboundStream) -> None:
        self.inbound.discard(stream)

    # -- the network --------------------------------------------------------------------

    def locate(self, domain: str):
        if self._locate is not None:
            return self._locate(domain)
        client = self._dns_client()
        if client is None:
            return fail(S2SFailure("remote-server-not-found", "no DNS servers (DNSServers setting, resolv.conf)"))
        return s2s_dns.locate(client, domain, self._random)

    def _dns_client(self) -> DNSClient | None:
        servers = list(self.settings.dns_servers) or _sip_dns_servers(self.context.store) or servers_from_resolv_conf()
        if not servers:
            return None
        if self._dns is None:
            self._dns = DNSClient(self.clock, servers, registry=self.context.metrics)
        elif self._dns.servers != servers:
            self._dns.servers = servers
        return self._dns

    def connect(self, host: str, port: int, build):
        if self._connect is not None:
            return self._connect(host, port, build)
        kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
        endpoint = kind(self.clock, host, port, timeout=self.settings.s2s_connect_timeout)
        return endpoint.connect(_OutboundFactory(build))


def _jid(element, attribute: str):
    text = element.getAttribute(attribute)
    if not text:
        return None
    try:
        return parse_jid(text)
    except InvalidFormat:
        return None


def _sip_dns_servers(store) -> list[tuple[str, int]]:
    from communigate.formats.cgdata import loads

    text = store.get(*_SIP_SETTINGS)
    if not text:
        return []
    try:
        value = loads(text).get("DNSServers", "")
        return [parse_server_address(entry) for entry in str(value).split(",") if entry.strip()]
    except (ValueError, AttributeError):
        return []
