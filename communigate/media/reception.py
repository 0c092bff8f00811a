"""
What a receiver knows about one RTP source (RFC 3550 Appendix A), as a
pure object fed with packets and explicit times:

- sequence-number bookkeeping of A.1: a new source is *on probation*
  until ``min_sequential`` packets in sequence have arrived; the extended
  highest sequence number counts wrap-arounds (cycles); a jump of more
  than ``max_dropout`` ahead or ``max_misorder`` behind is taken as bad,
  unless the next packet follows it, in which case the source is taken to
  have restarted and the counters start again (resync);
- expected and lost packets, and the fraction lost since the last report
  (A.3);
- interarrival jitter in timestamp units (A.8), from arrival times in
  seconds converted at the payload's clock rate;
- LSR/DLSR from the last sender report heard.

`ReceiverStats.received(sequence, timestamp, arrival)` returns whether
the packet counts (False while on probation, and for a bad jump); the
caller drops or keeps packets by that.  ``report_block(now)`` returns the
`ReportBlock` for this source and starts a new reporting interval.
"""

from __future__ import annotations

from communigate.media.rtcp import ReportBlock, ntp_middle

__all__ = ["ReceiverStats"]

RTP_SEQ_MOD = 1 << 16


class ReceiverStats:
    """Reception statistics of one source (SSRC)."""

    def __init__(
        self,
        ssrc: int,
        clock_rate: int = 8000,
        *,
        min_sequential: int = 2,
        max_dropout: int = 3000,
        max_misorder: int = 100,
    ):
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.min_sequential = min_sequential
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = min_sequential
        self.received_count = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self._started = False
        self._transit: float | None = None
        self._last_sr: int | None = None
        self._last_sr_arrival = 0.0

    # -------------------------------------------------------- sequence
    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received_count = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        if not self._started:
            self._started = True
            if self.probation == 0:
                self._init_seq(seq)
                self.received_count = 1
                return True
            self._init_seq(seq)
            self.max_seq = (seq - 1) % RTP_SEQ_MOD
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % RTP_SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received_count += 1
                    return True
            else:
                self.probation = self.min_sequential - 1
                self.max_seq = seq
            return False
        if udelta < self.max_dropout:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - self.max_misorder:
            if seq == self.bad_seq:
                # Two packets in sequence after a big jump: the source
                # restarted; start counting again from here.
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: a duplicate or a reordered packet, counted as received
        self.received_count += 1
        return True

    def received(self, sequence: int, timestamp: int, arrival: float, *, timing: bool = True) -> bool:
        """Account for one packet arriving at ``arrival`` seconds; whether
        it counts (False on probation or after a bad sequence jump).

        ``timing=False`` counts the packet's sequence number only, leaving
        the jitter alone: for packets whose timestamp is not their sampling
        instant (RFC 4733 events all carry their event's start)."""
        if not self._update_seq(sequence):
            return False
        if not timing:
            return True
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            # Difference of transit times, taken modulo 2**32 so that a
            # timestamp wrap is not a jump.
            d = (transit - self._transit + 2**31) % 2**32 - 2**31
            self.jitter += (abs(d) - self.jitter) / 16
        self._transit = transit
        return True

    # --------------------------------------------------------- figures
    @property
    def valid(self) -> bool:
        """Whether the source has passed probation."""
        return self._started and self.probation == 0

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.valid else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates outnumber losses)."""
        return self.expected - self.received_count

    def sender_report(self, ntp_timestamp: int, arrival: float) -> None:
        """Note a sender report from this source, for LSR and DLSR."""
        self._last_sr = ntp_middle(ntp_timestamp)
        self._last_sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """This source's report block, starting a new reporting interval."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        received_interval = self.received_count - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received_count
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        if self._last_sr is None:
            lsr = dlsr = 0
        else:
            lsr = self._last_sr
            dlsr = max(0, min(0xFFFFFFFF, round((now - self._last_sr_arrival) * 65536)))
        return ReportBlock(
            self.ssrc, fraction, self.lost, self.extended_max & 0xFFFFFFFF,
            min(int(self.jitter), 0xFFFFFFFF), lsr, dlsr,
        )
