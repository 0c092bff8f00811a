"""
The HTTP front end as a protocol-module plugin: C{twistd communigate --http}.

It serves L{communigate.admin.http}: metrics, health, and later the web
admin and JSON API, which attach to the root kept on the built service.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.admin.http import HealthChecks, build_site
from communigate.interfaces import IProtocolModule
from communigate.listening import check_stream_description, stream_listeners


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
        check_stream_description(description)

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
        service = stream_listeners(context.reactor, self.name, descriptions, site)
        service.root = site.resource
        service.health_checks = health_checks
        return service


http_module = HTTPModule()
