"""
The jitter buffer with explicit times: reordering, late and duplicate
packets, concealment (repeat once, then silence), adaptation between its
bounds, timestamp wrap, resync; and hypothesis: any arrival order within
the depth plays in order without duplicates or losses.
"""

import random

import pytest
from hypothesis import example, given, settings, strategies as st

from communigate.media.jitter import FrameKind, JitterBuffer, JitterFrame

FRAME = 0.02


def payload(i):
    return i.to_bytes(4, "big")


def packets(count, delays, start_ts=1000, start_seq=0):
    """(arrival, seq, ts, payload) for packets sent every 20 ms from t=0."""
    return [
        (i * FRAME + delays[i], (start_seq + i) % 65536, (start_ts + 160 * i) % 2**32, payload(i))
        for i in range(count)
    ]


def simulate(buffer, arrivals, ticks, phase=0.001, start=0.0):
    """Push each packet when it arrives, tick every 20 ms; the frames out."""
    pending = sorted(arrivals, key=lambda p: p[0])
    out = []
    for k in range(ticks):
        now = start + phase + k * FRAME
        while pending and pending[0][0] <= now:
            arrival, seq, ts, data = pending.pop(0)
            buffer.push(seq, ts, data, arrival)
        out.append(buffer.tick(now))
    return out


def audio(frames):
    return [int.from_bytes(f.payload, "big") for f in frames if f.kind is FrameKind.AUDIO]


def test_before_any_packet_the_buffer_plays_the_given_silence():
    buffer = JitterBuffer(silence=b"\xff" * 160)
    assert buffer.tick(0.0) == JitterFrame(FrameKind.SILENCE, b"\xff" * 160)
    assert buffer.silent == 0  # not counted: nothing was missing


def test_a_steady_stream_plays_in_order_after_the_initial_delay():
    buffer = JitterBuffer(initial_delay=0.06)
    frames = simulate(buffer, packets(50, [0.01] * 50), 60)
    assert audio(frames) == list(range(50))
    first = next(i for i, f in enumerate(frames) if f.kind is FrameKind.AUDIO)
    assert 2 <= first <= 4  # about 60 ms after the first packet
    assert frames[first].timestamp == 1000 and frames[first].sequence == 0
    assert (buffer.late, buffer.duplicates, buffer.dropped) == (0, 0, 0)


def test_reordered_packets_come_out_in_order():
    delays = [0.0] * 20
    delays[5], delays[6] = 0.035, 0.0  # 5 arrives after 6 and 7
    delays[10] = 0.05
    buffer = JitterBuffer(min_delay=0.08, max_delay=0.08)
    assert audio(simulate(buffer, packets(20, delays), 30)) == list(range(20))


def test_duplicates_and_late_packets_are_refused_and_counted():
    buffer = JitterBuffer()
    arrivals = packets(10, [0.0] * 10)
    arrivals.append(arrivals[3])  # a duplicate arriving with the original
    late = packets(10, [0.0] * 10)[7]
    arrivals = [p for p in arrivals if p[1] != 7] + [(late[0] + 0.5, *late[1:])]
    frames = simulate(buffer, arrivals, 40)
    assert audio(frames) == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert buffer.duplicates == 1 and buffer.late == 1


def test_a_missing_frame_is_the_last_one_repeated_then_silence():
    buffer = JitterBuffer(silence=b"s")
    arrivals = [p for p in packets(12, [0.0] * 12) if p[1] not in (4, 7, 8)]
    frames = [f for f in simulate(buffer, arrivals, 20) if f.timestamp is not None]
    kinds = [(f.kind, f.payload) for f in frames if 1000 <= f.timestamp < 1000 + 160 * 12]
    assert kinds[3:10] == [
        (FrameKind.AUDIO, payload(3)),
        (FrameKind.REPEAT, payload(3)),
        (FrameKind.AUDIO, payload(5)),
        (FrameKind.AUDIO, payload(6)),
        (FrameKind.REPEAT, payload(6)),
        (FrameKind.SILENCE, b"s"),
        (FrameKind.AUDIO, payload(9)),
    ]
    assert buffer.repeated == 3 and buffer.silent >= 1  # the two gaps and the end of the stream


def test_the_delay_grows_with_jitter_and_shrinks_when_it_goes():
    rng = random.Random(7)
    buffer = JitterBuffer(min_delay=0.02, max_delay=0.3)
    calm = [0.005] * 150
    rough = [rng.uniform(0, 0.12) for _ in range(300)]
    arrivals = packets(150, calm) + [
        (a + 150 * FRAME, s, t, d) for a, s, t, d in packets(300, rough, start_ts=1000 + 160 * 150, start_seq=150)
    ]
    arrivals += [
        (a + 450 * FRAME, s, t, d)
        for a, s, t, d in packets(300, [0.005] * 300, start_ts=1000 + 160 * 450, start_seq=450)
    ]
    delays = []
    late_before = []
    pending = sorted(arrivals)
    for k in range(760):
        now = 0.001 + k * FRAME
        while pending and pending[0][0] <= now:
            arrival, seq, ts, data = pending.pop(0)
            buffer.push(seq, ts, data, arrival)
        buffer.tick(now)
        delays.append(buffer.delay)
        late_before.append(buffer.late)
    assert delays[140] == pytest.approx(0.02)  # calm: one frame
    assert 0.12 <= delays[440] <= 0.15  # rough: the spread plus a frame
    # After a couple of seconds of rough network, packets are rarely late.
    assert late_before[440] - late_before[300] <= 3
    assert delays[750] == pytest.approx(0.02)  # calm again, the window forgot
    assert buffer.dropped > 0  # delay removed by dropping frames


def test_the_delay_stays_within_its_bounds():
    rng = random.Random(3)
    wild = JitterBuffer(min_delay=0.04, max_delay=0.1)
    simulate(wild, packets(100, [rng.uniform(0, 0.5) for _ in range(100)]), 120)
    assert wild.delay == pytest.approx(0.1)
    calm = JitterBuffer(min_delay=0.04, max_delay=0.1)
    simulate(calm, packets(100, [0.0] * 100), 120)
    assert calm.delay == pytest.approx(0.04)
    with pytest.raises(ValueError):
        JitterBuffer(min_delay=0.2, max_delay=0.1)


def test_timestamps_and_sequences_wrap_without_a_hiccup():
    buffer = JitterBuffer()
    frames = simulate(buffer, packets(60, [0.0] * 60, start_ts=2**32 - 160 * 30, start_seq=65530), 70)
    assert audio(frames) == list(range(60))
    assert buffer.resyncs == 0 and buffer.late == 0


def test_a_timestamp_jump_resyncs_the_buffer():
    buffer = JitterBuffer()
    first = packets(20, [0.0] * 20)
    second = [(a + 20 * FRAME, s, t, payload(100 + i))
              for i, (a, s, t, d) in enumerate(packets(20, [0.0] * 20, start_ts=5_000_000, start_seq=20))]
    frames = simulate(buffer, first + second, 50)
    played = audio(frames)
    assert buffer.resyncs == 1
    assert played[:15] == list(range(15)) and played[-15:] == list(range(105, 120))


def test_misaligned_packets_are_refused():
    buffer = JitterBuffer()
    assert buffer.push(0, 1000, b"a", 0.0)
    assert not buffer.push(1, 1080, b"b", 0.01)
    assert buffer.misaligned == 1 and buffer.depth == 1


def test_reset_forgets_the_stream_but_not_the_counters():
    buffer = JitterBuffer()
    simulate(buffer, packets(10, [0.0] * 10), 15)
    played = buffer.played
    buffer.reset()
    assert buffer.depth == 0 and buffer.played == played
    assert buffer.tick(1.0).kind is FrameKind.SILENCE


@settings(max_examples=150, deadline=None)
@given(
    depth=st.integers(1, 6),
    count=st.integers(5, 80),
    seed=st.integers(0, 2**32),
    phase=st.floats(0.0, 0.0199),
)
def test_any_arrival_order_within_the_depth_plays_everything_in_order_once(depth, count, seed, phase):
    rng = random.Random(seed)
    # Packet 0 arrives on time (so the fastest path is known from the
    # start); every other packet is up to `depth` frames late.
    delays = [0.0] + [rng.uniform(0, depth * FRAME) for _ in range(count - 1)]
    fixed = (depth + 1) * FRAME
    buffer = JitterBuffer(min_delay=fixed, max_delay=fixed, initial_delay=fixed)
    frames = simulate(buffer, packets(count, delays), count + depth + 10, phase=phase)
    assert audio(frames) == list(range(count))
    assert (buffer.late, buffer.duplicates, buffer.dropped) == (0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(5, 80),
    seed=st.integers(0, 2**32),
    spread=st.floats(0.0, 0.3),
    duplicates=st.integers(0, 5),
)
@example(count=15, seed=5, spread=0.25, duplicates=2)  # ten stragglers once restarted the buffer
def test_whatever_the_network_does_output_is_in_order_without_duplicates(count, seed, spread, duplicates):
    rng = random.Random(seed)
    arrivals = packets(count, [rng.uniform(0, spread) for _ in range(count)])
    arrivals += [rng.choice(arrivals) for _ in range(duplicates)]
    arrivals = [p for p in arrivals if rng.random() > 0.1]  # some loss
    buffer = JitterBuffer()
    frames = simulate(buffer, arrivals, count + 40)
    played = audio(frames)
    assert played == sorted(set(played))
    stamps = [f.timestamp for f in frames if f.kind is FrameKind.AUDIO]
    assert len(stamps) == len(set(stamps))
    # Every packet that went in is accounted for (a copy of a frame already
    # played counts as late: the buffer cannot tell it from a late original).
    distinct = len({p[1] for p in arrivals})
    accounted = buffer.played + buffer.dropped + buffer.depth
    assert accounted <= distinct <= accounted + buffer.late


def test_a_sender_falling_behind_is_followed_after_a_run_of_late_packets():
    """
    A sender whose timestamps fall a second behind (less than the jump
    that resyncs at once) would have every packet refused as late; after
    ten late packets in a row the buffer starts again from them.
    """
    buffer = JitterBuffer()
    first = packets(20, [0.0] * 20)
    behind = [(a + 20 * FRAME, s, t, payload(100 + i))
              for i, (a, s, t, d) in enumerate(packets(40, [0.0] * 40, start_ts=1000 - 8000 + 160 * 20, start_seq=20))]
    frames = simulate(buffer, first + behind, 70)
    played = audio(frames)
    assert buffer.resyncs == 1 and buffer.late == 10
    assert played[-20:] == list(range(120, 140))


def test_packets_the_network_held_back_never_restart_the_buffer_however_many():
    """
    Packets that arrive after their frame played are late whatever their
    number; being copies or stragglers (sequence numbers already passed),
    they must not be taken for a sender whose clock fell behind.
    """
    buffer = JitterBuffer()
    on_time = packets(30, [0.0] * 30)
    # Frames 0-29 played; then the network delivers 15 stragglers of them.
    stragglers = [(30 * FRAME + 0.001 * i, s, t, p) for i, (a, s, t, p) in enumerate(on_time[5:20])]
    frames = simulate(buffer, on_time + stragglers, 50)
    played = audio(frames)
    assert played == sorted(set(played)) and buffer.resyncs == 0 and buffer.late == 15


@given(st.lists(st.floats(-5, 5), min_size=1, max_size=200), st.integers(1, 20))
def test_the_transit_window_keeps_the_least_and_greatest_of_the_last_packets(transits, window):
    buffer = JitterBuffer(window=window)
    for index, transit in enumerate(transits):
        buffer._note_transit(transit)
        last = transits[max(0, index + 1 - window):index + 1]
        assert buffer._min_transit == min(last)
        assert buffer._spread == max(last) - min(last)
