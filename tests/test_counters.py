"""
Labelled counters: the same counts as labels().inc(), children looked up
once per label set, and no more kept than the limit.
"""

from prometheus_client import CollectorRegistry, Counter

from communigate.counters import Labelled


def test_counts_are_those_of_the_metric_and_children_are_kept_up_to_the_limit():
    registry = CollectorRegistry()
    metric = Counter("things", "Things.", ["kind"], registry=registry)
    counts = Labelled(metric, limit=2)
    for kind in ("a", "a", "b", "c", "c", "c"):
        counts.inc(kind)
    counts.inc("a", amount=5)
    assert [registry.get_sample_value("things_total", {"kind": k}) for k in "abc"] == [7, 1, 3]
    assert counts.child("a") is counts.child("a")
    assert len(counts._children) == 2
