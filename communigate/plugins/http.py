"""
The HTTP front end as a protocol-module plugin: C{twistd communigate --http}.

It serves L{communigate.admin.http}: metrics, health, and later the web
admin and JSON API, which attach to the root kept on the built service.
"""

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from communigate.admin.http import HealthChecks, build_site
from communigate.interfaces import IProtocolModule

_ALLOWED_FORMS = (
    "tcp:PORT[:interface=ADDRESS], tcp6:PORT[:interface=ADDRESS], "
    "ssl:PORT:privateKey=KEY.pem[:certKey=CERT.pem], "
    "tls:PEM_DIRECTORY[:port=PORT], unix:PATH"
)
_STREAM_KINDS = frozenset({"tcp", "tcp6", "ssl", "tls", "unix"})


def _store_check(store):
    """
    The health check of the store: one query against the database.

    L{communigate.interfaces.IStore.generation} reads the database on
    every call, so it fails when the data directory is gone, unreadable or
    locked, which is what the check is for.
    """

    def check():
        store.generation()

    return check


@implementer(IPlugin, IProtocolModule)
class HTTPModule:
    """
    The HTTP listener.

    The built service carries two attributes for the server assembly and
    later components: C{root}, the L{communigate.admin.http.IndexResource}
    to C{putChild} on, and C{health_checks}, the
    L{communigate.admin.http.HealthChecks} to C{add} further checks to.
    """

    name = "http"
    description = (
        "Where the HTTP listener (metrics, health, admin) listens; "
        "a stream endpoint such as tcp:8010:interface=127.0.0.1"
    )
    default_listen = ("tcp:8010",)

    def check_listen(self, description):
        """
        Refuse C{description} unless it is a stream server endpoint with a
        valid port.

        The endpoint is parsed and "listened" on a
        L{twisted.internet.testing.MemoryReactor}, which records the port
        and opens nothing.  An C{ssl:} description reads its key and
        certificate files here, so a missing file is reported at start-up
        instead of when the listener starts.
        """
        if not isinstance(description, str):
            raise ValueError(
                f"--http takes a string, not {description!r}; "
                f"allowed forms: {_ALLOWED_FORMS}"
            )
        kind = description.partition(":")[0].strip().lower()
        if kind not in _STREAM_KINDS:
            raise ValueError(
                f"--http {description!r}: {kind!r} is not a stream endpoint "
                f"type; allowed forms: {_ALLOWED_FORMS}"
            )
        reactor = MemoryReactor()
        failures = []
        try:
            endpoint = serverFromString(reactor, description)
            endpoint.listen(Factory()).addErrback(failures.append)
        except Exception as error:
            failures.append(error)
        if failures:
            reason = failures[0]
            if isinstance(reason, Failure):
                reason = reason.value
            raise ValueError(
                f"--http {description!r} cannot be parsed ({reason}); "
                f"allowed forms: {_ALLOWED_FORMS}"
            )
        for listening in reactor.tcpServers + reactor.sslServers:
            port = listening[0]
            if not 0 <= port <= 65535:
                raise ValueError(
                    f"--http {description!r}: port {port} is outside 0-65535; "
                    f"allowed forms: {_ALLOWED_FORMS}"
                )

    def build_service(self, context, descriptions):
        """
        One L{StreamServerEndpointService} per description, all serving
        one site, under a L{MultiService} named C{"http"}.

        Nothing is opened here; the ports open when the service starts.
        """
        health_checks = HealthChecks()
        health_checks.add("store", _store_check(context.store))
        site = build_site(
            context.metrics,
            health_checks,
            clock=context.reactor,
            server_name=context.hostname,
        )
        service = MultiService()
        service.setName(self.name)
        for description in descriptions:
            endpoint = serverFromString(context.reactor, description)
            StreamServerEndpointService(endpoint, site).setServiceParent(service)
        service.root = site.resource
        service.health_checks = health_checks
        return service


http_module = HTTPModule()
