"""
Receiver statistics of one RTP source (RFC 3550 A.1, A.3, A.8): probation,
wrap-around, loss, duplicates, reordering, bad jumps and resync, jitter,
and the report block with LSR/DLSR.
"""

import pytest
from hypothesis import given, strategies as st

from communigate.media.rtcp import ReportBlock
from communigate.media.reception import ReceiverStats


def feed(stats, sequences, start_time=0.0, step=0.02, samples=160):
    results = []
    for i, seq in enumerate(sequences):
        results.append(stats.received(seq % 65536, (seq * samples) % 2**32, start_time + i * step))
    return results


def test_a_new_source_is_on_probation_until_two_packets_in_sequence():
    stats = ReceiverStats(1)
    assert stats.received(100, 0, 0.0) is False
    assert not stats.valid
    assert stats.received(101, 160, 0.02) is True
    assert stats.valid
    assert (stats.received_count, stats.expected, stats.lost) == (1, 1, 0)


def test_a_broken_sequence_restarts_probation():
    stats = ReceiverStats(1)
    assert feed(stats, [100, 200, 201, 202]) == [False, False, True, True]
    assert stats.base_seq == 201


def test_without_probation_the_first_packet_counts():
    stats = ReceiverStats(1, min_sequential=0)
    assert feed(stats, range(10)) == [True] * 10
    assert (stats.expected, stats.received_count, stats.lost) == (10, 10, 0)


def test_sequence_wrap_counts_a_cycle():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, range(65530, 65550))
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + 65549 - 65536
    assert stats.expected == 20 and stats.lost == 0


def test_losses_and_fraction_lost_per_interval():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, [s for s in range(100) if s not in (10, 11, 50, 51, 52)])
    assert stats.lost == 5
    block = stats.report_block(now=2.0)
    assert block.cumulative_lost == 5 and block.fraction_lost == 5 * 256 // 100
    assert block.highest_sequence == 99
    feed(stats, range(100, 200), start_time=2.0)
    again = stats.report_block(now=4.0)
    assert again.fraction_lost == 0 and again.cumulative_lost == 5


def test_duplicates_make_the_cumulative_loss_negative_and_the_fraction_zero():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, [0, 1, 2, 2, 2, 3])
    assert stats.lost == -2
    block = stats.report_block(now=1.0)
    assert block.cumulative_lost == -2 and block.fraction_lost == 0


def test_a_reordered_packet_counts_without_moving_the_highest_sequence():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, [0, 1, 2, 5, 3, 4])
    assert stats.max_seq == 5 and stats.lost == 0


def test_a_single_big_jump_is_refused_and_the_stream_goes_on():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, range(10))
    assert stats.received(9000, 0, 1.0) is False
    assert stats.received(10, 1600, 1.02) is True
    assert stats.max_seq == 10 and stats.received_count == 11


def test_two_packets_in_sequence_after_a_big_jump_resync_the_source():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, range(10))
    assert stats.received(30000, 0, 1.0) is False
    assert stats.received(30001, 160, 1.02) is True
    assert (stats.base_seq, stats.max_seq, stats.received_count, stats.cycles) == (30001, 30001, 1, 0)
    assert stats.expected == 1


def test_a_late_packet_far_behind_is_a_bad_jump_too():
    stats = ReceiverStats(1, min_sequential=0)
    feed(stats, range(1000))
    assert stats.received(500, 0, 30.0) is False  # 500 behind > max_misorder 100


def test_jitter_is_zero_for_a_steady_stream_and_follows_delay_variation():
    steady = ReceiverStats(1, min_sequential=0)
    feed(steady, range(100))
    assert steady.jitter == pytest.approx(0.0, abs=1e-6)
    wobbly = ReceiverStats(1, min_sequential=0)
    for i in range(400):
        # Every other packet 10 ms late: |D| = 80 timestamp units each time.
        wobbly.received(i, i * 160, i * 0.02 + (0.01 if i % 2 else 0.0))
    assert wobbly.jitter == pytest.approx(80, rel=1e-3)
    assert wobbly.report_block(10.0).jitter == 79


def test_jitter_ignores_a_timestamp_wrap():
    stats = ReceiverStats(1, min_sequential=0)
    for i in range(50):
        stats.received(i, (2**32 - 800 + i * 160) % 2**32, i * 0.02)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_lsr_and_dlsr_come_from_the_last_sender_report():
    stats = ReceiverStats(0xABCD, min_sequential=0)
    feed(stats, range(3))
    assert stats.report_block(1.0) == ReportBlock(0xABCD, 0, 0, 2, 0, 0, 0)
    stats.sender_report(0x1122334455667788, arrival=10.0)
    block = stats.report_block(now=10.5)
    assert (block.lsr, block.dlsr) == (0x33445566, 32768)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.integers(0, 65535))
def test_losses_only_count_what_is_missing(gaps, start):
    stats = ReceiverStats(1, min_sequential=0)
    seq = start
    sent = 0
    missing = 0
    for i, gap in enumerate(gaps):
        if i:
            seq += 1 + gap
            missing += gap
        stats.received(seq % 65536, 0, i * 0.02)
        sent += 1
    assert stats.received_count == sent
    assert stats.lost == missing
    assert stats.expected == sent + missing
