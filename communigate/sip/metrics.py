"""
What the SIP service holds right now, for the metrics endpoint: live
transactions and registrations, read when Prometheus scrapes so that the
message path pays nothing for them.  (Messages by method and response
class are counted by the transport as they pass.)
"""

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class SIPStateCollector(Collector):
    """
    C{communigate_sip_transactions{side}} and
    C{communigate_sip_registrations}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def collect(self):
        transactions = GaugeMetricFamily(
            "communigate_sip_transactions", "Live SIP transactions, by side.", labels=["side"]
        )
        server, client = self._service.transactions.counts()
        transactions.add_metric(["server"], server)
        transactions.add_metric(["client"], client)
        yield transactions
        yield GaugeMetricFamily(
            "communigate_sip_registrations",
            "Current SIP registrations (bindings).",
            value=self._service.bindings.all_count(),
        )

    def describe(self):
        yield GaugeMetricFamily("communigate_sip_transactions", "Live SIP transactions, by side.", labels=["side"])
        yield GaugeMetricFamily("communigate_sip_registrations", "Current SIP registrations (bindings).")
