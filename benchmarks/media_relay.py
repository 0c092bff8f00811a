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

    python benchmarks/media_relay.py [MAX_CALLS] [SECONDS]

Bounded: at most MAX_CALLS calls (default 800), SECONDS (default 4) per
step.  Nothing is asserted; figures are printed.
"""

import json
import os
import select
import socket
import subprocess
import sys
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


class Relay:
    def __init__(self, calls: int, low: int) -> None:
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
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        order = {"low": low, "high": low + 4 * calls + 99,
                 "calls": [[a.getsockname()[1], b.getsockname()[1]] for a, b in self.sockets]}
        self.process.stdin.write(json.dumps(order) + "\n")
        self.process.stdin.flush()
        legs = json.loads(self.process.stdout.readline())
        # The caller's socket sends to the caller leg, the callee's to the callee leg.
        self.targets = [[("127.0.0.1", a), ("127.0.0.1", b)] for a, b in legs]
        self.poller = select.epoll()
        self.by_fd = {}
        for pair in self.sockets:
            for s in pair:
                self.poller.register(s.fileno(), select.EPOLLIN)
                self.by_fd[s.fileno()] = s

    def stats(self) -> dict:
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

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
        try:
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
        for pair in self.sockets:
            for s in pair:
                s.close()
        self.poller.close()


def free_low(size: int) -> int:
    """The start of a run of ports that is probably free (ephemeral ports are elsewhere)."""
    return 20000 if size < 9000 else 12000


def real_time(calls: int, seconds: float) -> dict:
    relay = Relay(calls, free_low(4 * calls))
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
    return {"calls": calls, "sent": sent, "received": received, "wall": wall, "sending": sending, "cpu": cpu,
            "forwarded": stats["forwarded"], "drops": stats["drops"], "late": late}


def flat_out(calls: int, count: int) -> dict:
    relay = Relay(calls, free_low(4 * calls) + 5000)
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
    return {"sent": sent, "received": received, "wall": wall, "cpu": cpu, "forwarded": stats["forwarded"],
            "drops": stats["drops"]}


def main(max_calls: int, seconds: float) -> None:
    print(f"media relay, one reactor in a child process; 172-octet RTP packets; {seconds:g} s a step")
    print(f"  {'calls':>6} {'offered/s':>10} {'relayed/s':>10} {'loss':>7} {'relay CPU':>10} {'us/pkt':>7} "
          f"{'generator late':>15}")
    best = None
    calls = 25
    while calls <= max_calls:
        result = real_time(calls, seconds)
        lost = result["sent"] - result["received"]
        loss = lost / result["sent"] if result["sent"] else 0.0
        rate = result["received"] / result["sending"]
        per_packet = result["cpu"] / result["forwarded"] * 1e6 if result["forwarded"] else 0.0
        print(f"  {calls:>6} {2 * RATE * calls:>10,} {rate:>10,.0f} {loss:>7.2%} "
              f"{result['cpu'] / result['wall']:>9.0%} {per_packet:>7.1f} {result['late'] * 1000:>12.0f} ms")
        if lost:
            break
        if result["late"] > GENERATOR_SLACK:
            print(f"  the generator fell {result['late'] * 1000:.0f} ms behind its pacing: this process, "
                  "not the relay, is the limit from here")
            break
        best = (calls, rate, per_packet, result["cpu"] / result["wall"], result["late"])
        calls *= 2
    if best:
        calls, rate, per_packet, share, _ = best
        print(f"largest step without loss: {calls} calls, {2 * RATE * calls:,} packets/s offered, "
              f"{rate:,.0f}/s relayed with the relay at {share:.0%} of a core "
              f"({per_packet:.1f} us of relay CPU a packet)")
    result = flat_out(50, 200_000)
    print(
        f"flat out through 50 calls: {result['forwarded']:,} of {result['sent']:,} forwarded, "
        f"{result['forwarded'] / result['cpu']:,.0f} packets per second of relay CPU "
        f"({result['cpu'] / result['forwarded'] * 1e6:.1f} us a packet), "
        f"{result['forwarded'] / result['wall']:,.0f}/s of wall time; drops {result['drops']}"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        arguments = sys.argv[1:]
        main(int(arguments[0]) if arguments else 800, float(arguments[1]) if len(arguments) > 1 else 4.0)
