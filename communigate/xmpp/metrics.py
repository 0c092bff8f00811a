"""
What the XMPP service counts, on the server's Prometheus registry:

  - C{communigate_xmpp_logins_total{mechanism,outcome}}: SASL attempts by
    mechanism, C{ok} or the failure condition;
  - C{communigate_xmpp_stanzas_total{direction,kind}}: stanzas in and out;
  - C{communigate_xmpp_stream_errors_total{condition}}: streams we ended
    with a stream error;
  - C{communigate_xmpp_stanzas_dropped_total{reason}}: stanzas deliberately
    not answered;
  - C{communigate_xmpp_bound_total}: resources bound since start;
  - C{communigate_xmpp_streams} and C{communigate_xmpp_sessions} (gauges
    read at scrape time): open client connections, bound resources.
"""

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class XMPPMetrics:
    """
    The counters, and a collector for what is open now.
    """

    def __init__(self, registry: CollectorRegistry, service) -> None:
        self._logins = Counter(
            "communigate_xmpp_logins", "XMPP SASL attempts, by mechanism and outcome.",
            ["mechanism", "outcome"], registry=registry,
        )
        self._stanzas = Counter(
            "communigate_xmpp_stanzas", "XMPP stanzas, by direction and kind.",
            ["direction", "kind"], registry=registry,
        )
        self._stream_errors = Counter(
            "communigate_xmpp_stream_errors", "XMPP streams ended with a stream error, by condition.",
            ["condition"], registry=registry,
        )
        self._dropped = Counter(
            "communigate_xmpp_stanzas_dropped", "XMPP stanzas not answered on purpose, by reason.",
            ["reason"], registry=registry,
        )
        self._bound = Counter(
            "communigate_xmpp_bound", "XMPP resources bound.", registry=registry,
        )
        registry.register(_OpenCollector(service))

    def login(self, mechanism: str, outcome: str) -> None:
        self._logins.labels(mechanism, outcome).inc()

    def stanza(self, direction: str, kind: str) -> None:
        self._stanzas.labels(direction, kind).inc()

    def stream_error(self, condition: str) -> None:
        self._stream_errors.labels(condition).inc()

    def dropped(self, reason: str) -> None:
        self._dropped.labels(reason).inc()

    def bound(self) -> None:
        self._bound.inc()


class _OpenCollector(Collector):
    def __init__(self, service) -> None:
        self._service = service

    def collect(self):
        yield GaugeMetricFamily("communigate_xmpp_streams", "Open XMPP client connections.", value=len(self._service.streams))
        yield GaugeMetricFamily("communigate_xmpp_sessions", "Bound XMPP resources.", value=len(self._service.sessions))

    def describe(self):
        yield GaugeMetricFamily("communigate_xmpp_streams", "Open XMPP client connections.")
        yield GaugeMetricFamily("communigate_xmpp_sessions", "Bound XMPP resources.")
