"""
Tests for the HTTP listener's resources and its protocol-module plugin.

Requests go through the whole L{twisted.web.server.Site} over a
L{StringTransport}, so status codes, 404s and the request counter are
exercised exactly as a client would see them, without sockets or time.
"""

import json

import attrs
import pytest
from prometheus_client import CollectorRegistry, Counter
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.plugin import IPlugin, getPlugins
from twisted.web.resource import Resource
from zope.interface.verify import verifyObject

import communigate.plugins
from communigate.admin.http import HealthChecks, build_site, new_registry
from communigate.context import ServerContext
from communigate.interfaces import IProtocolModule
from communigate.plugins.http import http_module


@attrs.frozen
class Response:
    code: int
    headers: dict
    body: bytes


def request(site, path, method=b"GET"):
    """
    Send one HTTP/1.1 request to C{site} over an in-memory transport and
    parse the response.
    """
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        method + b" " + path + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), headers, body)


def make_site(checks=None, registry=None):
    registry = registry if registry is not None else CollectorRegistry()
    checks = checks if checks is not None else HealthChecks()
    return build_site(registry, checks, clock=Clock()), registry


def requests_counted(registry, path, code):
    value = registry.get_sample_value(
        "communigate_http_requests_total", {"path": path, "code": code}
    )
    return value or 0


class FakeStore:
    """
    Just enough of an L{IStore} for the health check: a generation read
    that fails when C{broken} is set.
    """

    def __init__(self):
        self.broken = None

    def generation(self):
        if self.broken is not None:
            raise self.broken
        return 7


def make_context(reactor, store=None):
    return ServerContext(
        reactor=reactor,
        config=None,
        store=store if store is not None else FakeStore(),
        directory=None,
        portal=None,
        interpreter=None,
        metrics=CollectorRegistry(),
        hostname="example.com",
    )


# /metrics


def test_metrics_exposes_counters_of_the_given_registry_only():
    site, registry = make_site()
    Counter("ours_total", "Registered on the site's registry.", registry=registry).inc()
    other = CollectorRegistry()
    Counter("theirs_total", "Registered elsewhere.", registry=other).inc()

    response = request(site, b"/metrics")

    assert response.code == 200
    assert b"ours_total 1.0" in response.body
    assert b"theirs_total" not in response.body
    assert response.headers[b"content-type"].startswith(b"text/plain")


def test_new_registry_carries_process_platform_and_gc_metrics():
    site, _ = make_site(registry=new_registry())

    body = request(site, b"/metrics").body

    assert b"python_info" in body
    assert b"python_gc_objects_collected_total" in body
    assert b"process_cpu_seconds_total" in body


def test_new_registry_is_fresh_each_time():
    first, second = new_registry(), new_registry()
    Counter("only_first_total", "x", registry=first)

    assert second.get_sample_value("only_first_total") is None


# /health


def test_health_is_200_ok_when_every_check_passes():
    checks = HealthChecks()
    checks.add("store", lambda: None)
    site, _ = make_site(checks)

    response = request(site, b"/health")

    assert response.code == 200
    assert response.headers[b"content-type"] == b"application/json"
    assert json.loads(response.body) == {
        "status": "ok",
        "checks": {"store": {"status": "ok"}},
    }


def test_health_is_503_with_the_message_of_a_check_that_raises():
    def broken():
        raise OSError("database is locked")

    checks = HealthChecks()
    checks.add("clock", lambda: None)
    checks.add("store", broken)
    site, _ = make_site(checks)

    response = request(site, b"/health")

    assert response.code == 503
    report = json.loads(response.body)
    assert report["status"] == "failing"
    assert report["checks"]["clock"] == {"status": "ok"}
    assert report["checks"]["store"]["status"] == "failing"
    assert "database is locked" in report["checks"]["store"]["message"]


def test_health_is_503_when_a_check_returns_a_message():
    checks = HealthChecks()
    checks.add("disk", lambda: "disk almost full")
    site, _ = make_site(checks)

    response = request(site, b"/health")

    assert response.code == 503
    assert json.loads(response.body)["checks"]["disk"] == {
        "status": "failing",
        "message": "disk almost full",
    }


def test_health_treats_an_unexpected_check_result_as_failing():
    checks = HealthChecks()
    checks.add("odd", lambda: True)

    assert "True" in checks.run()["odd"]


def test_health_checks_refuse_a_duplicate_name():
    checks = HealthChecks()
    checks.add("store", lambda: None)

    with pytest.raises(ValueError, match="store"):
        checks.add("store", lambda: None)


def test_health_without_checks_is_ok():
    site, _ = make_site()

    response = request(site, b"/health")

    assert response.code == 200
    assert json.loads(response.body) == {"status": "ok", "checks": {}}


@pytest.fixture
def capture_log():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_health_logs_a_failure_once_and_the_recovery(capture_log):
    state = {"message": "down"}
    checks = HealthChecks()
    checks.add("store", lambda: state["message"])

    checks.run()
    checks.run()
    state["message"] = None
    checks.run()

    events = [event for event in capture_log if event.get("check") == "store"]
    assert [event["log_level"].name for event in events] == ["warn", "info"]
    assert events[0]["check_message"] == "down"


# / and unknown paths


def test_index_names_the_server_and_lists_the_endpoints():
    site = build_site(
        CollectorRegistry(), HealthChecks(), clock=Clock(), server_name="example.com"
    )

    response = request(site, b"/")

    assert response.code == 200
    assert response.headers[b"content-type"] == b"text/plain; charset=utf-8"
    text = response.body.decode("utf-8")
    assert "example.com" in text
    assert "/metrics" in text
    assert "/health" in text


def test_index_lists_children_added_later():
    site, _ = make_site()
    admin = Resource()
    admin.summary = "web administration"
    site.resource.putChild(b"admin", admin)

    lines = request(site, b"/").body.decode().splitlines()
    assert ["/admin", "web", "administration"] in [line.split() for line in lines]


@pytest.mark.parametrize("path", [b"/nothing", b"/metrics/extra", b"/health/x"])
def test_unknown_paths_are_404(path):
    site, _ = make_site()

    assert request(site, path).code == 404


# Twisted renders its 405 page with a class it has itself deprecated.
@pytest.mark.filterwarnings("ignore:twisted.web.resource._UnsafeErrorPage")
def test_other_methods_are_refused():
    site, _ = make_site()

    assert request(site, b"/metrics", method=b"POST").code == 405


# the request counter


def test_requests_are_counted_by_path_and_code():
    checks = HealthChecks()
    checks.add("store", lambda: "down")
    site, registry = make_site(checks)

    request(site, b"/metrics")
    request(site, b"/metrics")
    request(site, b"/health")
    request(site, b"/")

    assert requests_counted(registry, "/metrics", "200") == 2
    assert requests_counted(registry, "/health", "503") == 1
    assert requests_counted(registry, "/", "200") == 1


def test_unknown_paths_share_one_label():
    site, registry = make_site()

    request(site, b"/a")
    request(site, b"/b/c")
    request(site, b"/metrics/extra")

    assert requests_counted(registry, "other", "404") == 2
    assert requests_counted(registry, "/metrics", "404") == 1
    assert registry.get_sample_value(
        "communigate_http_requests_total", {"path": "/a", "code": "404"}
    ) is None


def test_build_site_twice_on_one_registry_is_refused():
    registry = CollectorRegistry()
    build_site(registry, HealthChecks(), clock=Clock())

    with pytest.raises(ValueError):
        build_site(registry, HealthChecks(), clock=Clock())


# the plugin


def test_plugin_provides_its_interfaces():
    assert verifyObject(IProtocolModule, http_module)
    assert verifyObject(IPlugin, http_module)
    assert http_module.name == "http"
    assert http_module.default_listen == ("tcp:8010",)


def test_plugin_is_found_among_protocol_modules():
    names = [module.name for module in getPlugins(IProtocolModule, communigate.plugins)]

    assert "http" in names


@pytest.mark.parametrize(
    "description",
    [
        "tcp:8010",
        "tcp:0",
        "tcp:port=8010:interface=127.0.0.1",
        "tcp6:8010:interface=\\:\\:1",
        "unix:/var/run/communigate-http.sock",
    ],
)
def test_check_listen_accepts_stream_endpoints(description):
    http_module.check_listen(description)


@pytest.mark.parametrize(
    "description",
    [
        "udp:5060",
        "garbage",
        "",
        "tcp:http",
        "tcp:70000",
        "ssl:443:privateKey=/nonexistent/key.pem",
        b"tcp:8010",
    ],
)
def test_check_listen_refuses_with_the_allowed_forms(description):
    with pytest.raises(ValueError) as raised:
        http_module.check_listen(description)

    message = str(raised.value)
    assert "tcp:PORT" in message
    assert "ssl:PORT" in message
    assert "unix:PATH" in message


def test_check_listen_opens_nothing(tmp_path):
    socket_path = tmp_path / "http.sock"

    http_module.check_listen(f"unix:{socket_path}")

    assert not socket_path.exists()


def test_build_service_listens_on_each_description_when_started():
    reactor = MemoryReactorClock()
    service = http_module.build_service(
        make_context(reactor), ["tcp:8010:interface=127.0.0.1", "tcp:8011"]
    )

    assert reactor.tcpServers == []
    service.startService()

    ports = [(port, interface) for port, _, _, interface in reactor.tcpServers]
    assert ports == [(8010, "127.0.0.1"), (8011, "")]
    assert all(isinstance(child, StreamServerEndpointService) for child in service)
    service.stopService()


def test_built_service_serves_the_site_with_a_store_check():
    reactor = MemoryReactorClock()
    store = FakeStore()
    context = make_context(reactor, store)
    service = http_module.build_service(context, ["tcp:8010"])
    service.startService()
    site = reactor.tcpServers[0][1]

    assert request(site, b"/health").code == 200
    store.broken = RuntimeError("no such table: records")
    response = request(site, b"/health")
    assert response.code == 503
    assert "no such table" in json.loads(response.body)["checks"]["store"]["message"]
    assert site.resource is service.root
    assert service.health_checks.names() == ["store"]
    assert b"example.com" in request(site, b"/").body
    assert requests_counted(context.metrics, "/health", "503") == 1
    service.stopService()
