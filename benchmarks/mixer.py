"""
The largest conference the mixer keeps in real time: one room of N
parties (each fed a 20 ms PCMU-decoded frame per tick, each sent its own
PCMU mix-minus) on the core scheduler with the real reactor, for a few
seconds per size; prints how late the ticks ran (p50, p99, max) and the
CPU the process used, and the largest N whose ticks were never more than
5 ms late.

    python benchmarks/mixer.py [SECONDS]
"""

import statistics
import sys
import time

from twisted.internet import reactor

from communigate.core.scheduler import Scheduler
from communigate.media.mixer import FRAME_SECONDS, Mixer
from communigate.media.tones import sine

SIZES = (10, 20, 50, 100, 150, 200, 300, 400)
LIMIT_MS = 5.0


class TimedMixer(Mixer):
    """A room that feeds its parties and notes when each tick ran."""

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        self.frames = frames
        self.started = None
        self.lateness = []

    def tick(self):
        now = reactor.seconds()
        if self.started is None:
            self.started = now - FRAME_SECONDS
        expected = self.started + self.ticks * FRAME_SECONDS + FRAME_SECONDS
        self.lateness.append(max(0.0, now - expected) * 1000)
        frame = self.frames[self.ticks % len(self.frames)]
        for party in list(self.parties):
            self.feed(party, frame)
        super().tick()


def run(size: int, seconds: float) -> dict:
    frames = [sine([440 + 10 * i], 0.02, level=-20.0) for i in range(8)]
    scheduler = Scheduler(reactor)
    mixer = TimedMixer(frames, max_parties=size)
    scheduler.start(mixer)
    sent = [0]

    def send(payload):
        sent[0] += 1

    for party in range(size):
        mixer.add(f"p{party}", "PCMU", send)
    cpu = time.process_time()
    wall = time.perf_counter()
    done = []
    reactor.callLater(seconds, lambda: (done.append(True), reactor.stop()))
    reactor.run(installSignalHandlers=False)
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    for party in range(size):
        mixer.remove(f"p{party}")
    scheduler.stop(mixer)
    late = mixer.lateness[5:] or [0.0]  # the first ticks include start-up
    late_sorted = sorted(late)
    return {
        "size": size,
        "ticks": len(mixer.lateness),
        "p50": statistics.median(late),
        "p99": late_sorted[int(len(late_sorted) * 0.99) - 1],
        "max": max(late),
        "cpu": cpu / wall,
        "frames": sent[0],
    }


def main(seconds: float = 5.0) -> None:
    print(f"one conference room, PCMU parties, {seconds:g} s per size, 20 ms ticks")
    best = None
    for size in SIZES:
        # The reactor cannot be restarted, so each size runs in its own
        # process.
        import subprocess

        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), str(seconds)], capture_output=True, text=True, timeout=120
        )
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
        print(line)
        try:
            worst = float(line.split("max ")[1].split(" ms")[0])
        except (IndexError, ValueError):
            break
        if worst <= LIMIT_MS:
            best = size
        else:
            break
    print(f"largest room with every tick within {LIMIT_MS:g} ms: {best} parties")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        figures = run(int(sys.argv[2]), float(sys.argv[3]))
        print(
            f"{figures['size']:4d} parties: {figures['ticks']} ticks, late p50 {figures['p50']:.2f} ms, "
            f"p99 {figures['p99']:.2f} ms, max {figures['max']:.2f} ms, CPU {figures['cpu']:.0%} "
            f"({figures['cpu'] * 20:.1f} ms of each 20 ms tick), {figures['frames']} frames sent"
        )
    else:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
