"""
How many concurrent echo calls a running `twistd communigate` keeps with
every frame on time.

For each level N (default 25, 50, 100, 200, 300, 400, 500, stopping after the
first level that fails): a fresh server, sipp placing N calls to the
`echo` application (benchmarks/sipp/pbx_echo_call.xml, twelve seconds
each, set up at up to 50 calls a second), and one Python RTP load
generator here sending a 20 ms G.711 frame every 20 ms on each call
(after the task's first packet shows where to send: symmetric RTP) and
counting what comes back.  Printed per level:

  - calls set up (sipp's successful calls);
  - frames sent and echoed back, and the loss;
  - the largest gap between two echoed frames of one call, seen here;
  - the server's own figures (its /metrics): periodic ticks delivered,
    ticks missed (a tick the scheduler had to skip because the reactor
    was a whole period late), mean and maximum tick lateness (how late a
    channel's 20 ms tick ran), the server's CPU seconds;
  - how late this load generator itself was at its worst (a figure above
    a few milliseconds means the generator, not the server, is the
    limit: both share the machine's cores).

A level passes when no tick was missed, the worst tick was under 20 ms
late and under 0.5 % of the frames were lost.  The last line is the
largest passing level.  Nothing here is asserted by the tests.

    python benchmarks/pbx_echo.py [--levels 10,25,50] [--seconds 12]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import selectors
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

from communigate.admin.client import CLIClient
from communigate.testing import start_server, stop_server

SCENARIO = os.path.join(os.path.dirname(__file__), "sipp", "pbx_echo_call.xml")
LEVELS = (25, 50, 100, 200, 300, 400, 500)
SETUP_RATE = 50
HOLD_SECONDS = 12  # the scenario's pause
# What we send: 156 µ-law octets no silence frame of the server's looks
# like, then the frame's number, so that each echoed frame is known.
PREFIX = bytes([0x55]) * 156
NUMBER = struct.Struct("!I")


class EchoLoad:
    """
    N RTP endpoints in one thread: a frame every 20 ms on each, once the
    task's first packet has come; arrivals counted per call.
    """

    def __init__(self, count: int) -> None:
        self.socks = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.socks.append(sock)
        self.ports = [sock.getsockname()[1] for sock in self.socks]
        self.remote = [None] * count
        self.sent = [0] * count
        self.echoed = [0] * count
        self.numbers = [set() for _ in range(count)]
        self.ended = [False] * count
        self.last_arrival = [0.0] * count
        self.max_gap = [0.0] * count
        self.worst_lateness = 0.0
        self.skipped_ticks = 0
        self._sequence = [random.getrandbits(16) for _ in range(count)]
        self._timestamp = [random.getrandbits(32) for _ in range(count)]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def run(self, finished) -> None:
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(self.socks):
            selector.register(sock, selectors.EVENT_READ, index)
        header = struct.Struct("!BBHII")
        next_tick = time.monotonic()
        while not finished():
            timeout = max(0.0, next_tick - time.monotonic())
            for key, _ in selector.select(timeout):
                index = key.data
                sock = key.fileobj
                while True:
                    try:
                        data, source = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    if self.remote[index] is None:
                        self.remote[index] = source
                    elif self.echoed[index] > 50:  # after the jitter buffer filled
                        gap = now - self.last_arrival[index]
                        if gap > self.max_gap[index]:
                            self.max_gap[index] = gap
                    if data[12:168] == PREFIX and len(data) == 172:
                        self.echoed[index] += 1
                        self.numbers[index].add(NUMBER.unpack_from(data, 168)[0])
                    self.last_arrival[index] = now
            now = time.monotonic()
            if now < next_tick:
                continue
            lateness = now - next_tick
            self.worst_lateness = max(self.worst_lateness, lateness)
            if lateness > 0.02:
                skipped = int(lateness / 0.02)
                self.skipped_ticks += skipped
                next_tick += 0.02 * skipped
            next_tick += 0.02
            for index, remote in enumerate(self.remote):
                if remote is None or self.ended[index]:
                    continue
                if now - self.last_arrival[index] > 0.5:
                    self.ended[index] = True  # the call was hung up: its task sends nothing more
                    continue
                sequence = self._sequence[index]
                timestamp = self._timestamp[index]
                number = NUMBER.pack(self.sent[index])
                packet = header.pack(0x80, 0, sequence, timestamp, 0xC0DE0000 + index) + PREFIX + number
                try:
                    self.socks[index].sendto(packet, remote)
                except OSError:
                    continue
                self.sent[index] += 1
                self._sequence[index] = (sequence + 1) & 0xFFFF
                self._timestamp[index] = (timestamp + 160) & 0xFFFFFFFF


def metrics(server) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = {}
    for name in (
        "communigate_scheduler_ticks_missed_total",
        "communigate_scheduler_tick_lateness_seconds_count",
        "communigate_scheduler_tick_lateness_seconds_sum",
        "communigate_scheduler_tick_lateness_max_seconds",
        "process_cpu_seconds_total",
    ):
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        found[name] = float(match.group(1)) if match else float("nan")
    return found


def run_level(count: int, workdir: str) -> dict:
    low = random.randrange(20000, 50000, 2)
    data = os.path.join(workdir, f"data-{count}")
    server = start_server(data, "--pbx", f"rtp:{low}-{low + 2 * count + 100}:interface=127.0.0.1")
    load = EchoLoad(count)
    try:
        with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
            client.login("postmaster", server.postmaster_password)
            client.command('SETROUTERTABLE "S:<echo> = echo#postmaster"')
            # sipp sends everything from one address: lift the per-source
            # request rate limit, which is not what is measured here.
            client.command("UPDATESIPSETTINGS {RequestRate = 100000; RequestBurst = 100000;}")
        csv = os.path.join(workdir, f"calls-{count}.csv")
        with open(csv, "w") as f:
            f.write("SEQUENTIAL\n" + "".join(f"echo;example.com;{port}\n" for port in load.ports))
        before = metrics(server)
        sipp = subprocess.Popen(
            ["sipp", "-sf", SCENARIO, "-inf", csv, "-m", str(count), "-l", str(count),
             "-r", str(min(count, SETUP_RATE)), "-p", "0", "-i", "127.0.0.1", "-nostdin",
             "-default_behaviors", "all,-bye", "-timeout", f"{HOLD_SECONDS + 60}s",
             f"127.0.0.1:{server.sip_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
        )
        load.run(lambda: sipp.poll() is not None)
        output = sipp.communicate()[0]
        after = metrics(server)
    finally:
        load.close()
        stop_server(server)
    match = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", output)
    ticks = after["communigate_scheduler_tick_lateness_seconds_count"] - before[
        "communigate_scheduler_tick_lateness_seconds_count"]
    lateness = after["communigate_scheduler_tick_lateness_seconds_sum"] - before[
        "communigate_scheduler_tick_lateness_seconds_sum"]
    sent, echoed = sum(load.sent), sum(load.echoed)
    # Frames lost on the way there or back: numbers missing between the
    # first and the last echoed frame of each call.  (The first frames
    # fill the jitter buffer and the last ones are still in it at the BYE.)
    spans = [max(numbers) - min(numbers) + 1 for numbers in load.numbers if numbers]
    lost = sum(span - len(numbers) for span, numbers in zip(spans, [n for n in load.numbers if n]))
    within = sum(spans)
    return {
        "calls": count,
        "established": int(match.group(1)) if match else -1,
        "sent": sent,
        "echoed": echoed,
        "loss": lost / within if within else 1.0,
        "max_gap_ms": 1000 * max(load.max_gap or [0.0]),
        "ticks": ticks,
        "missed": after["communigate_scheduler_ticks_missed_total"]
        - before["communigate_scheduler_ticks_missed_total"],
        "mean_lateness_ms": 1000 * lateness / ticks if ticks else float("nan"),
        "max_lateness_ms": 1000 * after["communigate_scheduler_tick_lateness_max_seconds"],
        "cpu_s": after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"],
        # call-seconds of media: what the generator sent, 50 frames a second
        "call_seconds": sent / 50,
        "generator_late_ms": 1000 * load.worst_lateness,
    }


def passed(result: dict) -> bool:
    return (
        result["established"] == result["calls"]
        and result["missed"] == 0
        and result["max_lateness_ms"] < 20
        and result["loss"] < 0.005
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    options = parser.parse_args()
    levels = [int(level) for level in options.levels.split(",")]
    print(f"{'calls':>6} {'up':>4} {'frames sent':>11} {'echoed':>8} {'loss %':>7} {'max gap ms':>10} "
          f"{'ticks':>7} {'missed':>6} {'late ms mean/max':>17} {'cpu s':>6} {'cpu ms/call/s':>13} "
          f"{'gen late ms':>11}")
    best = 0
    with tempfile.TemporaryDirectory() as workdir:
        for count in levels:
            result = run_level(count, workdir)
            print(
                f"{result['calls']:>6} {result['established']:>4} {result['sent']:>11} {result['echoed']:>8} "
                f"{100 * result['loss']:>7.2f} {result['max_gap_ms']:>10.1f} {result['ticks']:>7.0f} "
                f"{result['missed']:>6.0f} {result['mean_lateness_ms']:>8.2f}/{result['max_lateness_ms']:<8.2f} "
                f"{result['cpu_s']:>6.1f} {1000 * result['cpu_s'] / max(result['call_seconds'], 1):>13.2f} "
                f"{result['generator_late_ms']:>11.1f}"
                + ("  (the generator was late too: the machine stalled)"
                   if result["generator_late_ms"] > 20 and not passed(result) else ""),
                flush=True,
            )
            if not passed(result):
                break
            best = count
    print(f"largest level with every call up, no tick missed, no tick 20 ms late, loss under 0.5%: {best} calls")


if __name__ == "__main__":
    main()
