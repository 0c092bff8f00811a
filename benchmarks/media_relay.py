"""
Packets per second through the media relay.

The relay runs alone in a child process (one reactor, so one core) with
N relay sessions open, each with a caller and a callee leg; this process
plays both parties of every call from plain UDP sockets on 127.0.0.1.
Every datagram is an RTP packet with a 160-octet G.711 payload (172
octets), as a 20 ms PCMU stream sends.

1. **Real time**: N calls, each party sending 50 packets a second (so
   100 packets/s relayed per call), for a few seconds, N doubling until a
   packet is lost; prints the packets/s offered and relayed, the loss,
   the relay's own CPU (from /proc) per packet and in per cent of one
   core, and how far the generator fell behind its pacing (when it does,
   the generator is the limit).  The last step without loss is the
   figure to quote.
2. **Flat out**: packets sent as fast as this process can through 50
   calls for a bounded count; prints what the relay forwarded per second
   of its own CPU time (the load generator shares the machine, so wall
   time understates the relay).

With C{--rtpengine}, rtpengine (Debian's C{rtpengine-daemon}, in user
space: no kernel module) relays the same load side by side: each step
runs our relay, then rtpengine, with the same calls, packets and pacing
(benchmarks/rtpengine_peer.py starts it and opens its calls over the NG
protocol); the summary quotes both and the ratio of CPU a packet.
rtpengine's forwarded count is what arrived here.

    python benchmarks/media_relay.py [MAX_CALLS] [SECONDS] [--rtpengine [--rtpengine-threads N]]

Bounded: at most MAX_CALLS calls (default 800), SECONDS (default 4) per
step.  Nothing is asserted; figures are printed.
"""

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time

PAYLOAD = bytes(160)
RATE = 50  # packets a second from each party
# How far behind its 20 ms pacing the generator may fall before its own
# speed, not the relay's, decides the figures.
GENERATOR_SLACK = 0.1


def packet(sequence: int) -> bytes:
    return bytes((0x80, 0)) + (sequence & 0xFFFF).to_bytes(2, "big") + (160 * sequence & 0xFFFFFFFF).to_bytes(
        4, "big") + b"\x00\x00\x12\x34" + PAYLOAD


# -- the relay process ---------------------------------------------------------


def serve() -> None:
    """The child: open the sessions it is told about, say their leg ports, relay."""
    from prometheus_client import CollectorRegistry
    from twisted.internet import reactor

    from communigate.media.relay import LegAddress, MediaRelay, Side
    from communigate.media.relay_settings import RelaySettings

    order = json.loads(sys.stdin.readline())

    class Configuration:
        current = RelaySettings(port_low=order["low"], port_high=order["high"],
                                max_relays=len(order["calls"]) + 1, idle_timeout=3600)

    relay = MediaRelay(reactor, Configuration(), registry=CollectorRegistry())
    here = LegAddress("127.0.0.1", "127.0.0.1")
    legs = []
    for number, (caller, callee) in enumerate(order["calls"]):
        session = relay.open(f"bench-{number}", here, here, "requested")
        legs.append((session.ports(Side.CALLER, 0), session.ports(Side.CALLEE, 0)))
        session.expect(Side.CALLER, 0, ("127.0.0.1", caller), None, False)
        session.expect(Side.CALLEE, 0, ("127.0.0.1", callee), None, False)
        session.established()
    print(json.dumps(legs), flush=True)

    def command(line: bytes) -> None:
        if line.strip() == b"stats":
            forwarded = sum(relay.forwarded(side)[0] for side in Side)
            drops = {reason.value: count for reason, count in relay.drops.items()}
            print(json.dumps({"forwarded": forwarded, "drops": drops}), flush=True)
        elif line.strip() == b"stop":
            reactor.stop()

    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    class Commands(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):
            command(line)

    stdio.StandardIO(Commands())
    reactor.run()


# -- the load generator ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Parties:
    """Both parties of N calls: two non-blocking UDP sockets a call, polled together."""

    name = ""

    def __init__(self, calls: int) -> None:
        self.sockets = []
        for _ in range(calls):
            pair = []
            for _ in range(2):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                pair.append(s)
            self.sockets.append(pair)
        # Set by the relay: where the caller's socket and the callee's send.
        self.targets = []
        self.poller = select.epoll()
        self.by_fd = {}
        for pair in self.sockets:
            for s in pair:
                self.poller.register(s.fileno(), select.EPOLLIN)
                self.by_fd[s.fileno()] = s

    def ports(self) -> list[list[int]]:
        return [[a.getsockname()[1], b.getsockname()[1]] for a, b in self.sockets]

    def drain(self, timeout: float) -> int:
        received = 0
        for fd, _ in self.poller.poll(timeout):
            s = self.by_fd[fd]
            while True:
                try:
                    s.recv(2048)
                except BlockingIOError:
                    break
                received += 1
        return received

    def close(self) -> None:
        for pair in self.sockets:
            for s in pair:
                s.close()
        self.poller.close()


class Relay(Parties):
    """Our relay in a child process (one reactor, one core)."""

    name = "communigate"

    def __init__(self, calls: int, low: int) -> None:
        super().__init__(calls)
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        order = {"low": low, "high": low + 4 * calls + 99, "calls": self.ports()}
        self.process.stdin.write(json.dumps(order) + "\n")
        self.process.stdin.flush()
        legs = json.loads(self.process.stdout.readline())
        # The caller's socket sends to the caller leg, the callee's to the callee leg.
        self.targets = [[("127.0.0.1", a), ("127.0.0.1", b)] for a, b in legs]

    def stats(self) -> dict:
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        super().close()


class RTPEngineRelay(Parties):
    """rtpengine in user space, its calls opened over NG (benchmarks/rtpengine_peer.py)."""

    name = "rtpengine"
    binary = "rtpengine"
    threads = None
    version = ""

    def __init__(self, calls: int, low: int) -> None:
        import rtpengine_peer

        super().__init__(calls)
        self._work = tempfile.TemporaryDirectory()
        self.engine = rtpengine_peer.start(self._work.name, RTPENGINE_LOW, RTPENGINE_HIGH, self.binary,
                                           self.threads)
        try:
            for number, (caller, callee) in enumerate(self.ports()):
                caller_leg, callee_leg = self.engine.open(f"bench-{number}", caller, callee)
                self.targets.append([("127.0.0.1", caller_leg), ("127.0.0.1", callee_leg)])
        except BaseException:
            self.close()
            raise

    def stats(self) -> dict:
        return {"forwarded": None, "drops": {}}

    def cpu(self) -> float:
        return self.engine.cpu()

    def close(self) -> None:
        self.engine.stop()
        self._work.cleanup()
        super().close()


# rtpengine's media ports (it spreads a call's ports over the range, so a
# wide one): below free_low's and the ephemeral range; the two relays never
# run at once.
RTPENGINE_LOW, RTPENGINE_HIGH = 10000, 19999


def free_low(size: int) -> int:
    """The start of a run of ports that is probably free (ephemeral ports are elsewhere)."""
    return 20000 if size < 9000 else 12000


def real_time(calls: int, seconds: float, kind=Relay) -> dict:
    relay = kind(calls, free_low(4 * calls))
    try:
        ticks = int(seconds * RATE)
        sent = received = 0
        cpu_before = relay.cpu()
        start = time.monotonic()
        late = 0.0
        for tick in range(ticks):
            data = packet(tick)
            for pair, targets in zip(relay.sockets, relay.targets):
                for s, target in zip(pair, targets):
                    try:
                        s.sendto(data, target)
                        sent += 1
                    except BlockingIOError:
                        pass
            due = start + (tick + 1) / RATE
            while True:
                remaining = due - time.monotonic()
                if remaining <= 0:
                    late = max(late, -remaining)
                    break
                received += relay.drain(remaining)
        sending = time.monotonic() - start
        received += relay.drain(0.3)
        while True:
            more = relay.drain(0.2)
            if not more:
                break
            received += more
        wall = time.monotonic() - start
        cpu = relay.cpu() - cpu_before
        stats = relay.stats()
    finally:
        relay.close()
    forwarded = received if stats["forwarded"] is None else stats["forwarded"]
    return {"calls": calls, "sent": sent, "received": received, "wall": wall, "sending": sending, "cpu": cpu,
            "forwarded": forwarded, "drops": stats["drops"], "late": late}


def flat_out(calls: int, count: int, kind=Relay) -> dict:
    relay = kind(calls, free_low(4 * calls) + 5000)
    try:
        data = packet(1)
        cpu_before = relay.cpu()
        start = time.monotonic()
        sent = received = 0
        while sent < count:
            for pair, targets in zip(relay.sockets, relay.targets):
                for s, target in zip(pair, targets):
                    try:
                        s.sendto(data, target)
                        sent += 1
                    except BlockingIOError:
                        pass
            received += relay.drain(0)
        while True:
            more = relay.drain(0.2)
            if not more:
                break
            received += more
        wall = time.monotonic() - start
        cpu = relay.cpu() - cpu_before
        stats = relay.stats()
    finally:
        relay.close()
    forwarded = received if stats["forwarded"] is None else stats["forwarded"]
    return {"sent": sent, "received": received, "wall": wall, "cpu": cpu, "forwarded": forwarded,
            "drops": stats["drops"]}


def stepped(kinds, max_calls: int, seconds: float) -> dict:
    """
    The real-time steps for each relay in C{kinds} (each step runs them one
    after the other, so they see the same machine); a relay drops out after
    its first step with a loss or a late generator.  Its best step (calls,
    packets/s relayed, CPU a packet, share of a core) by name.
    """
    print(f"  {'relay':>11} {'calls':>6} {'offered/s':>10} {'relayed/s':>10} {'loss':>7} {'relay CPU':>10} "
          f"{'us/pkt':>7} {'generator late':>15}")
    best = {}
    clean = {}  # calls -> {name: CPU a packet} for the steps without loss
    running = list(kinds)
    calls = 25
    while calls <= max_calls and running:
        for kind in list(running):
            result = real_time(calls, seconds, kind)
            lost = result["sent"] - result["received"]
            loss = lost / result["sent"] if result["sent"] else 0.0
            rate = result["received"] / result["sending"]
            per_packet = result["cpu"] / result["forwarded"] * 1e6 if result["forwarded"] else 0.0
            print(f"  {kind.name:>11} {calls:>6} {2 * RATE * calls:>10,} {rate:>10,.0f} {loss:>7.2%} "
                  f"{result['cpu'] / result['wall']:>9.0%} {per_packet:>7.1f} {result['late'] * 1000:>12.0f} ms",
                  flush=True)
            if lost:
                running.remove(kind)
                continue
            if result["late"] > GENERATOR_SLACK:
                print(f"  the generator fell {result['late'] * 1000:.0f} ms behind its pacing: this process, "
                      f"not {kind.name}, is the limit from here")
                running.remove(kind)
                continue
            best[kind.name] = (calls, rate, per_packet, result["cpu"] / result["wall"])
            clean.setdefault(calls, {})[kind.name] = per_packet
        calls *= 2
    return best, clean


def main(max_calls: int, seconds: float, kinds=(Relay,)) -> None:
    print(f"media relay, one reactor in a child process; 172-octet RTP packets; {seconds:g} s a step")
    if RTPEngineRelay in kinds:
        print(f"rtpengine {RTPEngineRelay.version}, user space (--table=-1), "
              f"{RTPEngineRelay.threads or 'default (one per core)'} worker threads")
    best, clean = stepped(kinds, max_calls, seconds)
    for name, (calls, rate, per_packet, share) in best.items():
        print(f"{name}: largest step without loss: {calls} calls, {2 * RATE * calls:,} packets/s offered, "
              f"{rate:,.0f}/s relayed with the relay at {share:.0%} of a core "
              f"({per_packet:.1f} us of relay CPU a packet)")
    flat = {}
    for kind in kinds:
        result = flat_out(50, 200_000, kind)
        flat[kind.name] = result
        print(
            f"{kind.name}: flat out through 50 calls: {result['forwarded']:,} of {result['sent']:,} forwarded, "
            f"{result['forwarded'] / result['cpu']:,.0f} packets per second of relay CPU "
            f"({result['cpu'] / result['forwarded'] * 1e6:.1f} us a packet), "
            f"{result['forwarded'] / result['wall']:,.0f}/s of wall time; drops {result['drops']}",
            flush=True,
        )
    both = [calls for calls, names in clean.items() if len(names) == 2 and all(names.values())]
    if len(kinds) > 1 and both:
        calls = max(both)
        ours, theirs = clean[calls]["communigate"], clean[calls]["rtpengine"]
        print(f"ratio at {calls} calls ({2 * RATE * calls:,} packets/s, the largest step both carried without "
              f"loss): communigate uses {ours / theirs:.2f}x rtpengine's CPU a packet "
              f"({ours:.1f} / {theirs:.1f} us)")
    if len(kinds) > 1:
        ours = flat["communigate"]["forwarded"] / flat["communigate"]["cpu"]
        theirs = flat["rtpengine"]["forwarded"] / flat["rtpengine"]["cpu"]
        print(f"ratio flat out: rtpengine forwards {theirs / ours:.2f}x as many packets per CPU second "
              "as communigate")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        parser.add_argument("max_calls", nargs="?", type=int, default=800)
        parser.add_argument("seconds", nargs="?", type=float, default=4.0)
        parser.add_argument("--rtpengine", action="store_true", help="measure rtpengine side by side")
        parser.add_argument("--rtpengine-threads", type=int, default=None,
                            help="rtpengine's --num-threads (default: its own, one per core)")
        options = parser.parse_args()
        kinds = [Relay]
        if options.rtpengine:
            import rtpengine_peer

            binary = rtpengine_peer.install()
            if binary is None:
                parser.exit(1, "rtpengine is not installed and cannot be: see the messages above\n")
            RTPEngineRelay.binary = binary
            RTPEngineRelay.threads = options.rtpengine_threads
            RTPEngineRelay.version = rtpengine_peer.version(binary)
            kinds.append(RTPEngineRelay)
        main(options.max_calls, options.seconds, tuple(kinds))
