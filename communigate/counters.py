"""
Prometheus counters on hot paths.

C{Counter.labels(...)} looks its child up under a lock with the label
values checked and joined every time, which costs more than the
increment; a message path that counts three things per message paid
that three times.  L{Labelled} keeps the children it has handed out, so
an increment is a dictionary lookup.
"""

from __future__ import annotations


class Labelled:
    """
    The children of one labelled metric, looked up once per label set.

    @param limit: label sets kept; past it lookups go to the metric each
        time (the metric's own label sets are the caller's to bound).
    """

    __slots__ = ("_metric", "_children", "_limit")

    def __init__(self, metric, limit: int = 1024) -> None:
        self._metric = metric
        self._children: dict[tuple, object] = {}
        self._limit = limit

    def child(self, *labels):
        found = self._children.get(labels)
        if found is None:
            found = self._metric.labels(*labels)
            if len(self._children) < self._limit:
                self._children[labels] = found
        return found

    def inc(self, *labels, amount: float = 1) -> None:
        self.child(*labels).inc(amount)
