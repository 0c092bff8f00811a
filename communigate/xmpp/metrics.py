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
  - C{communigate_xmpp_messages_total{outcome}}: messages for local JIDs:
    C{delivered} (to a resource), C{signal} (submitted as a Signal),
    C{stored} (kept offline), C{offline delivered}, C{refused} (the
    sender got an error);
  - C{communigate_xmpp_subscriptions_total{kind}}: subscription stanzas
    (subscribe, subscribed, unsubscribe, unsubscribed) from clients and
    other servers;
  - C{communigate_xmpp_carbons_total{direction}}: carbon copies sent;
  - C{communigate_xmpp_stream_management_total{event}}: C{enabled},
    C{resumed}, C{resume failed};
  - C{communigate_xmpp_offline_messages} (gauge, read at scrape time):
    messages kept offline, all accounts together;
  - C{communigate_xmpp_streams} and C{communigate_xmpp_sessions} (gauges
    read at scrape time): open client connections, bound resources.
"""

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from communigate.counters import Labelled


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
        self._messages = Counter(
            "communigate_xmpp_messages", "XMPP messages for local JIDs, by outcome.",
            ["outcome"], registry=registry,
        )
        self._subscriptions = Counter(
            "communigate_xmpp_subscriptions", "XMPP subscription stanzas, by kind.",
            ["kind"], registry=registry,
        )
        self._carbons = Counter(
            "communigate_xmpp_carbons", "XMPP carbon copies sent, by direction.",
            ["direction"], registry=registry,
        )
        self._management = Counter(
            "communigate_xmpp_stream_management", "XMPP stream management events.",
            ["event"], registry=registry,
        )
        registry.register(_OpenCollector(service))
        self._stanza_counts = Labelled(self._stanzas)
        self._message_counts = Labelled(self._messages)

    def login(self, mechanism: str, outcome: str) -> None:
        self._logins.labels(mechanism, outcome).inc()

    def stanza(self, direction: str, kind: str) -> None:
        self._stanza_counts.inc(direction, kind)

    def stream_error(self, condition: str) -> None:
        self._stream_errors.labels(condition).inc()

    def dropped(self, reason: str) -> None:
        self._dropped.labels(reason).inc()

    def bound(self) -> None:
        self._bound.inc()

    def message(self, outcome: str) -> None:
        self._message_counts.inc(outcome)

    def subscription(self, kind: str) -> None:
        self._subscriptions.labels(kind).inc()

    def carbon(self, direction: str) -> None:
        self._carbons.labels(direction).inc()

    def stream_management(self, event: str) -> None:
        self._management.labels(event).inc()


class _OpenCollector(Collector):
    def __init__(self, service) -> None:
        self._service = service

    def collect(self):
        yield GaugeMetricFamily("communigate_xmpp_streams", "Open XMPP client connections.", value=len(self._service.streams))
        yield GaugeMetricFamily("communigate_xmpp_sessions", "Bound XMPP resources.", value=len(self._service.sessions))
        offline = getattr(self._service, "offline", None)
        if offline is not None:
            yield GaugeMetricFamily(
                "communigate_xmpp_offline_messages", "XMPP messages kept offline.", value=offline.total()
            )

    def describe(self):
        yield GaugeMetricFamily("communigate_xmpp_streams", "Open XMPP client connections.")
        yield GaugeMetricFamily("communigate_xmpp_sessions", "Bound XMPP resources.")
        yield GaugeMetricFamily("communigate_xmpp_offline_messages", "XMPP messages kept offline.")
