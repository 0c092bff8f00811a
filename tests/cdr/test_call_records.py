"""
Call records: kept in batches, bounded, listed newest first, handed to
sinks; and the SIP proxy's calls turned into records.
"""

from twisted.internet.task import Clock

from communigate.cdr.records import KIND, CallRecord, CallRecords
from communigate.sip.call_records import SIPCallRecorder
from communigate.sip.message import Headers, Response, parse_message
from communigate.storage import MemoryStore


def record(n, caller="alice@example.com", callee="bob@example.com", ended=100.0):
    return CallRecord(
        protocol="sip", call_id=f"c{n}", caller=caller, callee=callee, target=f"sip:{callee}",
        caller_account=caller, started=ended - 10, answered=ended - 8, ended=ended + n, status=200,
        cause="BYE from caller",
    )


class Sink:
    def __init__(self):
        self.seen = []

    def call_finished(self, finished):
        self.seen.append(finished.call_id)


class BrokenSink:
    def call_finished(self, finished):
        raise RuntimeError("billing is down")


def test_records_are_written_in_a_batch_and_listed_newest_first():
    store, clock = MemoryStore(), Clock()
    sink = Sink()
    records = CallRecords(store, clock, sinks=[BrokenSink(), sink], write_delay=1.0)
    for n in range(3):
        records.add(record(n))
    assert store.scan(KIND) == [] and sink.seen == ["c0", "c1", "c2"]
    clock.advance(1.0)
    assert len(store.scan(KIND)) == 3
    assert [r.call_id for r in records.recent(limit=2)] == ["c2", "c1"]
    assert records.recent()[0].duration == 10.0


def test_the_oldest_records_go_beyond_the_capacity_and_a_restart_keeps_the_rest():
    store, clock = MemoryStore(), Clock()
    records = CallRecords(store, clock, capacity=5, write_delay=0)
    for n in range(8):
        records.add(record(n))
    assert len(store.scan(KIND)) == 5 and len(records) == 5
    again = CallRecords(store, clock, capacity=5, write_delay=0)
    assert [r.call_id for r in again.recent()] == ["c7", "c6", "c5", "c4", "c3"]


def test_records_of_one_account():
    records = CallRecords(MemoryStore(), Clock(), write_delay=0)
    records.add(record(1))
    records.add(record(2, caller="carol@example.com", callee="dave@example.com"))
    records.add(record(3, caller="eve@example.com", callee="alice@example.com"))
    assert [r.call_id for r in records.recent(account="alice@example.com")] == ["c3", "c1"]


INVITE = (
    "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {id}\r\n"
    "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
BYE = (
    "BYE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.{n};branch=z9hG4bK2\r\n"
    "From: <sip:{frm}@example.com>;tag={tag}\r\nTo: <sip:{to}@example.com>;tag={other}\r\nCall-ID: {id}\r\n"
    "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
)


def invite(call_id):
    return parse_message(INVITE.format(id=call_id).encode())


def answer(status, reason=""):
    return Response(status, reason, Headers([]))


def recorder():
    clock = Clock()
    records = CallRecords(MemoryStore(), clock, write_delay=0)
    return clock, records, SIPCallRecorder(records, clock, max_calls=3, max_duration=3600)


def test_an_answered_call_ended_by_the_callee():
    clock, records, calls = recorder()
    request = invite("x1")
    calls.call_started(request, "alice@example.com")
    clock.advance(2)
    calls.call_progress(request, answer(180))
    calls.call_progress(request, answer(200))
    clock.advance(30)
    bye = parse_message(BYE.format(n=2, frm="bob", to="alice", tag="b1", other="a1", id="x1").encode())
    calls.in_dialog(bye)
    (found,) = records.recent()
    assert (found.caller, found.callee, found.caller_account) == ("alice@example.com", "bob@example.com", "alice@example.com")
    assert (found.status, found.cause, found.duration) == (200, "BYE from callee", 30)
    assert len(calls) == 0


def test_failed_and_cancelled_calls():
    clock, records, calls = recorder()
    for call_id, status, reason in (("y1", 486, "Busy Here"), ("y2", 487, "Request Terminated")):
        request = invite(call_id)
        calls.call_started(request, None)
        calls.call_progress(request, answer(status, reason))
    assert [(r.status, r.cause, r.answered) for r in records.recent()] == [
        (487, "cancelled", None), (486, "486 Busy Here", None),
    ]


def test_calls_followed_are_bounded_and_lost_byes_expire():
    clock, records, calls = recorder()
    for n in range(5):
        calls.call_started(invite(f"z{n}"), None)
    assert len(calls) == 3
    assert [r.cause for r in records.recent()] == ["dropped", "dropped"]
    clock.advance(3601)
    calls.call_started(invite("late"), None)
    assert len(calls) == 1
    assert sum(r.cause == "expired" for r in records.recent()) == 3
