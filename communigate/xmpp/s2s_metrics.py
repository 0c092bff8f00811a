"""
What the server-to-server side counts, on the server's Prometheus
registry:

  - C{communigate_xmpp_s2s_stanzas_total{direction,kind}}: stanzas routed
    to (C{out}) and accepted from (C{in}) other servers;
  - C{communigate_xmpp_s2s_dialback_total{role,outcome}}: dialback
    outcomes; C{role} is C{outgoing} (our key, judged by the peer),
    C{incoming} (a peer's key, judged by its authoritative server) or
    C{authoritative} (a key we were asked about); C{outcome} is
    C{valid}, C{invalid} or C{error};
  - C{communigate_xmpp_s2s_auth_total{direction,method,outcome}}: server
    authentications; C{direction} C{out} (we authenticated to a peer) or
    C{in} (a peer to us), C{method} C{certificate} (SASL EXTERNAL) or
    C{dialback}, C{outcome} C{ok} or C{failed};
  - C{communigate_xmpp_s2s_bounced_total{condition}}: local stanzas
    answered with an error because they could not be sent;
  - C{communigate_xmpp_s2s_stream_errors_total{direction,condition}}:
    server streams we ended with a stream error;
  - C{communigate_xmpp_s2s_dropped_total{reason}}: what was dropped on
    purpose;
  - C{communigate_xmpp_s2s_streams{direction}} (read at scrape time):
    open server streams, C{in} and C{out}.
"""

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class S2SMetrics:
    """
    The counters, and a collector for the open streams.
    """

    def __init__(self, registry: CollectorRegistry, service) -> None:
        self._stanzas = Counter(
            "communigate_xmpp_s2s_stanzas",
            "XMPP stanzas to and from other servers, by direction and kind.",
            ["direction", "kind"],
            registry=registry,
        )
        self._dialback = Counter(
            "communigate_xmpp_s2s_dialback",
            "XMPP server dialback outcomes, by role and outcome.",
            ["role", "outcome"],
            registry=registry,
        )
        self._auth = Counter(
            "communigate_xmpp_s2s_auth",
            "XMPP server authentications, by direction, method and outcome.",
            ["direction", "method", "outcome"],
            registry=registry,
        )
        self._bounced = Counter(
            "communigate_xmpp_s2s_bounced",
            "Stanzas for other servers answered with an error, by condition.",
            ["condition"],
            registry=registry,
        )
        self._stream_errors = Counter(
            "communigate_xmpp_s2s_stream_errors",
            "XMPP server streams ended with a stream error.",
            ["direction", "condition"],
            registry=registry,
        )
        self._dropped = Counter(
            "communigate_xmpp_s2s_dropped",
            "What the server-to-server side dropped on purpose, by reason.",
            ["reason"],
            registry=registry,
        )
        registry.register(_StreamsCollector(service))

    def stanza(self, direction: str, kind: str) -> None:
        self._stanzas.labels(direction, kind).inc()

    def dialback(self, role: str, outcome: str) -> None:
        self._dialback.labels(role, outcome).inc()

    def auth(self, direction: str, method: str, outcome: str) -> None:
        self._auth.labels(direction, method, outcome).inc()

    def bounced(self, condition: str) -> None:
        self._bounced.labels(condition).inc()

    def stream_error(self, direction: str, condition: str) -> None:
        self._stream_errors.labels(direction, condition).inc()

    def dropped(self, reason: str) -> None:
        self._dropped.labels(reason).inc()


class _StreamsCollector(Collector):
    def __init__(self, service) -> None:
        self._service = service

    def collect(self):
        family = GaugeMetricFamily("communigate_xmpp_s2s_streams", "Open XMPP server streams.", labels=["direction"])
        family.add_metric(["in"], len(self._service.inbound))
        family.add_metric(["out"], self._service.outbound_count())
        yield family

    def describe(self):
        yield GaugeMetricFamily("communigate_xmpp_s2s_streams", "Open XMPP server streams.", labels=["direction"])
