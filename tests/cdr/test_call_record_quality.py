"""
The media quality figures a call record may carry (RTCP loss both ways,
jitter, round-trip time): kept through the store, shown by as_data, and
absent from records that have none (older records read as before).
"""

import json

import attrs
from twisted.internet.task import Clock

from communigate.cdr.records import KIND, CallRecord, CallRecords
from communigate.storage import MemoryStore

BASE = dict(
    protocol="pbx", call_id="q1", caller="alice@example.com", callee="echo@example.com",
    target="sip:echo@example.com", caller_account="alice@example.com", started=1.0, answered=2.0,
    ended=12.0, status=200, cause="BYE from caller",
)


def test_quality_figures_survive_the_store_and_are_shown():
    store = MemoryStore()
    records = CallRecords(store, Clock(), write_delay=0)
    records.add(CallRecord(**BASE, rtcp_loss=1.25, rtcp_peer_loss=0.0, jitter_ms=3.5, rtt_ms=41.0))
    (kept,) = CallRecords(store, Clock()).recent()
    assert (kept.rtcp_loss, kept.rtcp_peer_loss, kept.jitter_ms, kept.rtt_ms) == (1.25, 0.0, 3.5, 41.0)
    data = kept.as_data()
    assert (data["Loss"], data["PeerLoss"], data["Jitter"], data["RTT"]) == ("1.25%", "0.00%", "3.5ms", "41.0ms")


def test_a_record_without_figures_shows_none_and_old_records_still_read():
    record = CallRecord(**BASE)
    assert not {"Loss", "PeerLoss", "Jitter", "RTT"} & set(record.as_data())
    store = MemoryStore()
    with store.transaction():
        store.put(KIND, "000000000012000-000000", json.dumps(BASE))  # written before the fields existed
    (old,) = CallRecords(store, Clock()).recent()
    assert old == record and attrs.asdict(old)["rtt_ms"] is None
