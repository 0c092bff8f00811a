"""
The HTTP listener on a real socket, read with a real HTTP client.

The unit tests drive the site over an in-memory transport; this checks that
the same site works behind a listening port and Twisted's own client, as
Prometheus and a load balancer would use it.
"""

import json

import pytest
import pytest_twisted
from prometheus_client import Counter
from twisted.internet.endpoints import serverFromString
from twisted.web.client import Agent, readBody

from communigate.admin.http import HealthChecks, build_site, new_registry


# Twisted's own Agent hands readBody a transport proxy without
# abortConnection and warns about it; nothing this test can change.
@pytest.mark.filterwarnings("ignore:Using readBody with a transport")
@pytest_twisted.inlineCallbacks
def test_metrics_and_health_over_a_real_socket():
    from twisted.internet import reactor

    registry = new_registry()
    Counter("live_probe_total", "Marks this test's registry.", registry=registry).inc()
    checks = HealthChecks()
    checks.add("store", lambda: None)
    site = build_site(registry, checks, clock=reactor)
    port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    base = f"http://127.0.0.1:{port.getHost().port}".encode("ascii")
    agent = Agent(reactor)
    try:
        response = yield agent.request(b"GET", base + b"/metrics")
        metrics = yield readBody(response)
        assert response.code == 200
        assert b"live_probe_total 1.0" in metrics
        assert b"process_cpu_seconds_total" in metrics

        response = yield agent.request(b"GET", base + b"/health")
        health = json.loads((yield readBody(response)))
        assert response.code == 200
        assert health == {"status": "ok", "checks": {"store": {"status": "ok"}}}

        response = yield agent.request(b"GET", base + b"/metrics")
        metrics = yield readBody(response)
        assert (
            b'communigate_http_requests_total{code="200",path="/health"} 1.0'
            in metrics
        )
    finally:
        yield port.stopListening()
