"""
How big the directory is, for the metrics endpoint.

The numbers are read from the store when Prometheus scrapes, not kept in
counters, so they stay right when the admin tool changes the data
directory from another process.  Each is one indexed count query.
"""

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from communigate.directory import records
from communigate.interfaces import IStore

_COUNTED = (
    (records.DOMAIN, "domain"),
    (records.DOMAIN_ALIAS, "domain_alias"),
    (records.ACCOUNT, "account"),
    (records.FORWARDER, "forwarder"),
    (records.GROUP, "group"),
    (records.TELNUM, "telnum"),
)


class DirectoryCollector(Collector):
    """
    C{communigate_directory_objects{kind}}: the objects the directory holds.
    """

    def __init__(self, store: IStore) -> None:
        self._store = store

    def collect(self):
        family = GaugeMetricFamily(
            "communigate_directory_objects",
            "Objects in the directory, by kind.",
            labels=["kind"],
        )
        for kind, label in _COUNTED:
            family.add_metric([label], self._store.count(kind))
        yield family

    def describe(self):
        # Describing without collecting keeps registration free of store I/O.
        yield GaugeMetricFamily(
            "communigate_directory_objects", "Objects in the directory, by kind.", labels=["kind"]
        )
