"""
RFC 4733 telephone-events: payload, sender packet sequence, and a receiver
that reports each key once despite redundancy, loss and reordering.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media.events import (
    ReceivedEvent,
    TelephoneEvent,
    TelephoneEventError,
    TelephoneEventReceiver,
    TelephoneEventSender,
    event_code,
    event_key,
    parse_telephone_event,
)


def test_payload_layout():
    event = TelephoneEvent(11, end=True, volume=10, duration=800)
    assert event.serialize() == bytes.fromhex("0b8a0320")
    assert parse_telephone_event(bytes.fromhex("0b8a0320")) == event
    assert event.key == "#"
    assert parse_telephone_event(bytes.fromhex("05 4a 00a0")) == TelephoneEvent(5, False, 10, 160, True)


def test_short_payload_and_bad_fields():
    with pytest.raises(TelephoneEventError):
        parse_telephone_event(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        TelephoneEvent(1, volume=64).serialize()
    with pytest.raises(ValueError):
        TelephoneEvent(1, duration=70000).serialize()


def test_keys_and_codes():
    assert [event_code(k) for k in "09*#AbcD"] == [0, 9, 10, 11, 12, 13, 14, 15]
    assert event_code(16) == 16
    assert event_key(16) is None and event_key(15) == "D"
    for bad in ("E", "12", ""):
        with pytest.raises(ValueError):
            event_code(bad)
    with pytest.raises(ValueError):
        event_code(300)


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF), st.booleans())
def test_payload_round_trip(event, end, volume, duration, reserved):
    value = TelephoneEvent(event, end, volume, duration, reserved)
    assert parse_telephone_event(value.serialize()) == value


def run(sender, ticks, start=1000):
    """Tick the sender as an RTP session would, 160 samples per tick."""
    out = []
    for i in range(ticks):
        out.append(sender.tick(start + 160 * i))
    return out


def decoded(packets):
    return [
        None if p is None else (p.marker, p.timestamp, parse_telephone_event(p.payload))
        for p in packets
    ]


def test_a_100_ms_key_is_four_updates_and_three_end_packets_on_one_timestamp():
    sender = TelephoneEventSender()
    sender.send("5")
    assert sender.active
    packets = decoded(run(sender, 9))
    assert packets == [
        (True, 1000, TelephoneEvent(5, False, 10, 160)),
        (False, 1000, TelephoneEvent(5, False, 10, 320)),
        (False, 1000, TelephoneEvent(5, False, 10, 480)),
        (False, 1000, TelephoneEvent(5, False, 10, 640)),
        (False, 1000, TelephoneEvent(5, True, 10, 800)),
        (False, 1000, TelephoneEvent(5, True, 10, 800)),
        (False, 1000, TelephoneEvent(5, True, 10, 800)),
        None,
        None,
    ]
    assert not sender.active


def test_queued_keys_are_separated_by_a_gap_and_get_their_own_timestamps():
    sender = TelephoneEventSender(duration=320, gap=320)
    sender.send("12")
    packets = run(sender, 12)
    shapes = [None if p is None else (p.marker, p.timestamp) for p in packets]
    assert shapes == [
        (True, 1000), (False, 1000), (False, 1000), (False, 1000),  # start, then 3 ends
        None, None,
        (True, 1000 + 6 * 160), (False, 1960), (False, 1960), (False, 1960),
        None, None,
    ]
    assert [parse_telephone_event(p.payload).event for p in packets if p] == [1] * 4 + [2] * 4


def test_a_key_shorter_than_a_packet_starts_with_an_end_packet_and_a_marker():
    sender = TelephoneEventSender()
    sender.send("#", duration=100)
    first = sender.tick(0)
    assert first.marker and parse_telephone_event(first.payload) == TelephoneEvent(11, True, 10, 100)
    assert [p.marker for p in run(sender, 2)] == [False, False]
    assert sender.tick(480) is None


def test_sender_refuses_bad_durations_and_keys_and_can_cancel():
    sender = TelephoneEventSender()
    with pytest.raises(ValueError):
        sender.send("1", duration=0)
    with pytest.raises(ValueError):
        sender.send("1", duration=70000)
    with pytest.raises(ValueError):
        sender.send("x")
    sender.send("123")
    sender.tick(0)
    sender.cancel()
    rest = [p for p in run(sender, 10) if p]
    assert {parse_telephone_event(p.payload).event for p in rest} == {1}
    assert parse_telephone_event(rest[-1].payload).end
    sender.send(16)  # flash by code
    assert parse_telephone_event(sender.tick(0).payload).event == 16


def test_the_receiver_reports_each_key_once_through_redundant_end_packets():
    sender = TelephoneEventSender()
    sender.send("1#1")
    receiver = TelephoneEventReceiver()
    reported = [receiver.packet(p.timestamp, p.payload) for p in run(sender, 40) if p]
    keys = [r.key for r in reported if r]
    assert keys == ["1", "#", "1"]


def test_a_lost_start_packet_does_not_lose_the_key():
    receiver = TelephoneEventReceiver()
    update = TelephoneEvent(7, False, 10, 320).serialize()
    assert receiver.packet(5000, update) == ReceivedEvent(7, 5000)
    late_start = TelephoneEvent(7, False, 10, 160).serialize()
    assert receiver.packet(5000, late_start) is None
    assert receiver.packet(5000, TelephoneEvent(7, True, 10, 800).serialize()) is None


def test_only_end_packets_arriving_still_report_the_key():
    receiver = TelephoneEventReceiver()
    end = TelephoneEvent(3, True, 10, 800).serialize()
    assert [receiver.packet(9000, end) for _ in range(3)] == [ReceivedEvent(3, 9000), None, None]


def test_receiver_forgets_old_events_beyond_its_memory():
    receiver = TelephoneEventReceiver(memory=2)
    payload = TelephoneEvent(1).serialize()
    for ts in (1, 2, 3):
        receiver.packet(ts, payload)
    assert receiver.packet(1, payload) is not None  # forgotten, so reported again
    assert receiver.packet(3, payload) is None


@given(st.text(alphabet="0123456789*#ABCD", min_size=1, max_size=6), st.randoms(use_true_random=False),
       st.floats(0.0, 0.5))
def test_any_loss_and_reordering_short_of_losing_a_whole_event_reports_each_key_once(keys, rng, loss):
    sender = TelephoneEventSender()
    sender.send(keys)
    packets = [p for p in run(sender, 12 * len(keys)) if p]
    by_event = {}
    for p in packets:
        by_event.setdefault(p.timestamp, []).append(p)
    survivors = []
    for group in by_event.values():
        kept = [p for p in group if rng.random() >= loss] or [rng.choice(group)]
        survivors.extend(kept)
    # Reorder within a window of 5 packets.
    survivors = [p for _, p in sorted(enumerate(survivors), key=lambda item: item[0] + rng.uniform(0, 5))]
    receiver = TelephoneEventReceiver()
    reported = [r for p in survivors if (r := receiver.packet(p.timestamp, p.payload))]
    assert sorted((r.timestamp, r.key) for r in reported) == [
        (ts, keys[i]) for i, ts in enumerate(sorted(by_event))
    ]
