"""
Concurrent bridged calls with real RTP through a running `twistd
communigate`: loss, delay and jitter of the audio, and the server's CPU.

Every call is caller -> server -> callee with a 20 ms PCMU stream each way
(50 packets a second, 160-octet payloads, real UDP on 127.0.0.1).  Two
ways through the server:

  relay  the SIP proxy, the callee's account asking for the media relay
         (`MediaRelay = YES`, reason `requested`): the relay forwards the
         packets untouched, one session a call;
  pbx    a simple bridge, `gatewayincoming{bob,media}`: the call reaches a
         task, whose `gatewayleg` task calls bob; each packet goes into one
         task's media channel (jitter buffer, 20 ms ticks) and out of the
         other's (PCMU both sides, so the payload is not transcoded).

Both phones offer and answer telephone-event (RFC 4733), as SIP phones
do; with --inband-callee the callee answers PCMU alone, as many PSTN
gateways do, so that PBX channel also runs every frame it hears through
the in-band DTMF detector (decoded, Goertzel), the costly case.
--no-inband-detection sets the media server setting `InBandDTMF = No`
first, so no channel runs the detector: with --inband-callee, the
figures of the same calls without it.

For each mode and each level N (default 50, 100, 200, 400; a mode stops
after a level that fails): a fresh server; bob registered at one sipp UAS
(benchmarks/sipp/bridged_callee.xml) that answers every call with SDP
naming one of this process's RTP sockets; one sipp UAC placing N calls
(benchmarks/sipp/bridged_caller.xml, 50 a second) whose SDP names the
other sockets; this process sending a numbered frame every 20 ms on all
2N sockets (to the relay legs LISTMEDIARELAYS shows, or, for the PBX,
back where the channel's packets come from) and timing every arrival.
Once every call carries audio, a measuring window of WINDOW seconds:

  - loss: frames sent in the window that never arrived (per stream,
    numbered, so a repeated or concealed frame does not count as arrived);
  - delay: arrival minus sending time, median and 99th percentile over
    all frames (the PBX's includes the channels' jitter buffers), and
    "late": frames more than 20 ms later than their stream's fastest;
  - jitter: RFC 3550's interarrival jitter per stream, mean and max;
  - server CPU: its process CPU time (user + system, from /proc) over the
    window, in per cent of one core and in microseconds per packet
    carried (two packets a call every 20 ms);
  - the PBX's 20 ms channel ticks (the server's /metrics, read a second
    before and after the window): mean lateness and ticks missed;
  - how late this generator itself ran (it shares the cores).

A level passes when every call was set up and carried audio, under 0.5%
of the frames were lost and the generator kept its pacing within 20 ms.

    python benchmarks/bridged_calls.py [--modes relay,pbx] [--levels 50,100,200,400] [--window 10]
                                       [--inband-callee] [--no-inband-detection]

Bounded: at most the levels given, each a few seconds of setup plus the
window.  Nothing is asserted; figures are printed.
"""

from __future__ import annotations

import argparse
import array
import os
import random
import re
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import time

from communigate.admin.client import CLIClient
from communigate.formats.cgdata import loads
from communigate.testing import free_port, start_server, stop_server
from pbx_echo import metrics

HERE = os.path.dirname(os.path.abspath(__file__))
CALLER = os.path.join(HERE, "sipp", "bridged_caller.xml")
CALLEE = os.path.join(HERE, "sipp", "bridged_callee.xml")
REGISTER = os.path.join(HERE, os.pardir, "tests", "integration", "sipp", "register_contact.xml")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]

MODES = ("relay", "pbx")
LEVELS = (50, 100, 200, 400)
SETUP_RATE = 50
WINDOW = 10.0
FRAME = 0.02
# The payload: 152 µ-law octets that no silence frame looks like, the
# sending stream's number and the frame's number.
PREFIX = bytes([0x55]) * 152
TAIL = struct.Struct("!II")
HEADER = struct.Struct("!BBHII")
PACKET_SIZE = HEADER.size + 160
LATE = 0.02


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Endpoints:
    """
    The 2N RTP sockets (N callers' then N callees'), each a stream of
    numbered frames every 20 ms once it knows where to send, every
    arrival's time kept by sending stream and frame number.
    """

    def __init__(self, count: int, frames: int) -> None:
        self.socks = []
        for _ in range(2 * count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.socks.append(sock)
        self.count = count
        self.ports = [sock.getsockname()[1] for sock in self.socks]
        self.index = {port: n for n, port in enumerate(self.ports)}
        self.remote: list[tuple[str, int] | None] = [None] * len(self.socks)
        self.frames = frames
        # sent[i][k]: when stream i sent frame k; heard[i][k]: when it arrived
        self.sent = [array.array("d", bytes(8 * frames)) for _ in self.socks]
        self.heard = [array.array("d", bytes(8 * frames)) for _ in self.socks]
        self.next_frame = [0] * len(self.socks)
        self.got_any = [False] * len(self.socks)
        self.worst_lateness = 0.0
        self.relay_states: dict[str, int] = {}
        self._sequence = [random.getrandbits(16) for _ in self.socks]
        self._timestamp = [random.getrandbits(32) for _ in self.socks]

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def carrying(self) -> int:
        """Streams whose frames have started to arrive at the other end."""
        return sum(self.got_any)

    def run(self, until, between=None) -> None:
        """Send and receive until C{until()}; C{between()} after each tick's sending."""
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(self.socks):
            selector.register(sock, selectors.EVENT_READ, index)
        next_tick = time.monotonic()
        monotonic, unpack = time.monotonic, TAIL.unpack_from
        try:
            while not until():
                for key, _ in selector.select(max(0.0, next_tick - monotonic())):
                    index = key.data
                    sock = key.fileobj
                    while True:
                        try:
                            data, source = sock.recvfrom(2048)
                        except BlockingIOError:
                            break
                        now = monotonic()
                        if self.remote[index] is None:
                            self.remote[index] = source  # symmetric RTP (the PBX channels)
                        if len(data) == PACKET_SIZE and data[12] == 0x55:
                            stream, number = unpack(data, 164)
                            if stream < len(self.heard) and number < self.frames:
                                heard = self.heard[stream]
                                if not heard[number]:
                                    heard[number] = now
                                    self.got_any[stream] = True
                now = monotonic()
                if now < next_tick:
                    continue
                lateness = now - next_tick
                self.worst_lateness = max(self.worst_lateness, lateness)
                if lateness > FRAME:
                    next_tick += FRAME * int(lateness / FRAME)
                next_tick += FRAME
                self._send_all(now)
                if between is not None:
                    between()
        finally:
            selector.close()

    def _send_all(self, now: float) -> None:
        pack = HEADER.pack
        for index, remote in enumerate(self.remote):
            if remote is None:
                continue
            number = self.next_frame[index]
            if number >= self.frames:
                continue
            sequence, timestamp = self._sequence[index], self._timestamp[index]
            packet = pack(0x80, 0, sequence, timestamp, 0xB0000000 + index) + PREFIX + TAIL.pack(index, number)
            try:
                self.socks[index].sendto(packet, remote)
            except OSError:
                continue
            self.sent[index][number] = now
            self.next_frame[index] = number + 1
            self._sequence[index] = (sequence + 1) & 0xFFFF
            self._timestamp[index] = (timestamp + 160) & 0xFFFFFFFF

    def figures(self, start: float, end: float) -> dict:
        """Loss, delay and jitter of the frames sent between C{start} and C{end}."""
        sent = lost = late = 0
        delays = []
        jitters = []
        for sent_at, heard_at in zip(self.sent, self.heard):
            transits = []
            jitter, previous = 0.0, None
            for number, when in enumerate(sent_at):
                if not start <= when < end:
                    continue
                sent += 1
                arrival = heard_at[number]
                if not arrival:
                    lost += 1
                    previous = None
                    continue
                transit = arrival - when
                transits.append(transit)
                if previous is not None:
                    jitter += (abs(transit - previous) - jitter) / 16
                previous = transit
            if transits:
                fastest = min(transits)
                late += sum(1 for transit in transits if transit - fastest > LATE)
                delays += transits
                jitters.append(jitter)
        delays.sort()
        return {
            "sent": sent,
            "lost": lost,
            "late": late,
            "delay_p50": delays[len(delays) // 2] if delays else float("nan"),
            "delay_p99": delays[int(len(delays) * 0.99)] if delays else float("nan"),
            "jitter_mean": sum(jitters) / len(jitters) if jitters else float("nan"),
            "jitter_max": max(jitters, default=float("nan")),
        }


def command(client: CLIClient, line: str):
    code, text = client.command(line)
    if code not in (200, 201):
        raise RuntimeError(f"{line}: {code} {text}")
    return loads(text) if code == 201 and text else None


def sipp(scenario: str, workdir: str, *arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["sipp", "-sf", scenario, *SIPP, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )


def map_relays(client: CLIClient, endpoints: Endpoints) -> int:
    """
    Point each socket at its relay leg, from LISTMEDIARELAYS (the relay
    sends a party nothing before the other party sends): the number of
    sockets that know where to send.
    """
    states = {}
    for relay in command(client, "LISTMEDIARELAYS") or []:
        # Any state: a leg's Expected address is known from its party's SDP.
        states[relay.get("State")] = states.get(relay.get("State"), 0) + 1
        for side in ("Caller", "Callee"):
            leg = relay[side]
            expected = leg.get("Expected") or []
            if not expected or not leg.get("Ports"):
                continue
            index = endpoints.index.get(int(expected[0].rsplit(":", 1)[1]))
            if index is not None and endpoints.remote[index] is None:
                endpoints.remote[index] = ("127.0.0.1", int(leg["Ports"][0].split("/")[0]))
    endpoints.relay_states = states
    return sum(remote is not None for remote in endpoints.remote)


def errors_logged(workdir: str) -> str:
    """What the sipps logged as errors (-trace_err) in C{workdir}, then emptied for the next level."""
    text = ""
    for name in sorted(os.listdir(workdir)):
        if name.endswith("_errors.log"):
            path = os.path.join(workdir, name)
            with open(path, errors="replace") as f:
                text += f"{name}:\n{f.read()}"
            os.remove(path)
    return text


def callee_scenario(workdir: str, inband: bool) -> str:
    """The callee's scenario; with C{inband}, written without telephone-event into C{workdir}."""
    if not inband:
        return CALLEE
    with open(CALLEE) as f:
        text = f.read()
    text = text.replace(" RTP/AVP 0 101", " RTP/AVP 0")
    text = "".join(line for line in text.splitlines(True) if ":101 " not in line)
    path = os.path.join(workdir, "bridged_callee_inband.xml")
    with open(path, "w") as f:
        f.write(text)
    return path


def run_level(mode: str, count: int, workdir: str, window: float, inband: bool = False,
              detect: bool = True) -> dict:
    setup = count / min(count, SETUP_RATE)
    hold = setup + window + 8  # every call is up and the window is over before the first BYE
    frames = int((hold + setup + 10) / FRAME)
    low = random.randrange(20000, 27000, 2)
    data = os.path.join(workdir, f"data-{mode}-{count}")
    server = start_server(data, "--pbx", f"rtp:{low}-{low + 4 * count + 199}:interface=127.0.0.1")
    endpoints = Endpoints(count, frames)
    processes = []
    client = CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}")
    try:
        client.login("postmaster", server.postmaster_password)
        for line in (
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT bob {Password = bpw;}",
            # sipp sends everything from one address: lift the per-source
            # request rate limit, which is not what is measured here.
            "UPDATESIPSETTINGS {RequestRate = 100000; RequestBurst = 100000;}",
            'SETROUTERTABLE "S:<bridged> = gatewayincoming{bob,media}#postmaster"',
        ):
            command(client, line)
        if not detect:
            command(client, "UPDATEMEDIASERVERSETTINGS {InBandDTMF = No;}")
        if mode == "relay":
            relay_low = low + 2 * count + 100
            command(client, "UPDATEACCOUNTSETTINGS bob {MediaRelay = YES;}")
            command(client, f'UPDATEMEDIASERVERSETTINGS {{PortRange = "{relay_low}-{relay_low + 4 * count + 99}"; '
                            f"MaxRelays = {count + 10}; IdleTimeout = 600;}}")
        callee_port = free_port()
        with open(os.path.join(workdir, "register.csv"), "w") as f:
            f.write(f"SEQUENTIAL\nbob;example.com;[authentication username=bob password=bpw];127.0.0.1:{callee_port}\n")
        registered = subprocess.run(
            ["sipp", "-sf", REGISTER, "-inf", "register.csv", "-m", "1", "-p", "0", *SIPP, "-timeout", "20s",
             "-timeout_error", f"127.0.0.1:{server.sip_port}"],
            capture_output=True, text=True, cwd=workdir, timeout=30,
        )
        if registered.returncode != 0:
            raise RuntimeError(f"bob did not register: {registered.stdout[-2000:]}")
        with open(os.path.join(workdir, "callee.csv"), "w") as f:
            f.write("SEQUENTIAL\n" + "".join(f"{port}\n" for port in endpoints.ports[count:]))
        with open(os.path.join(workdir, "caller.csv"), "w") as f:
            destination = "bob" if mode == "relay" else "bridged"
            f.write("SEQUENTIAL\n" + "".join(f"{destination};example.com;{port}\n"
                                             for port in endpoints.ports[:count]))
        limits = ["-m", str(count), "-l", str(count), "-timeout", f"{int(hold + setup + 60)}s"]
        callee = sipp(callee_scenario(workdir, inband), workdir, "-inf", "callee.csv", "-p", str(callee_port),
                      *limits)
        processes.append(callee)
        time.sleep(0.3)
        caller = sipp(CALLER, workdir, "-inf", "caller.csv", "-p", "0", "-r", str(min(count, SETUP_RATE)),
                      "-d", str(int(hold * 1000)), *limits, f"127.0.0.1:{server.sip_port}")
        processes.append(caller)

        state = {"window": None, "mapped": 0, "next_map": 0.0, "up_by": None}
        started = time.monotonic()

        def between():
            now = time.monotonic()
            if state["window"] is not None:
                return
            if mode == "relay" and state["mapped"] < 2 * count and now >= state["next_map"]:
                state["mapped"] = map_relays(client, endpoints)
                state["next_map"] = time.monotonic() + 0.5
            if endpoints.carrying() == 2 * count:
                # Every stream is heard at the far end: settle a second, then measure.
                if state["up_by"] is None:
                    state["up_by"] = now - started
                state["window"] = (now + 1.0, now + 1.0 + window, cpu_seconds(server.process.pid))
                state["metrics"] = metrics(server)
                endpoints.worst_lateness = 0.0
            elif now - started > setup + hold:
                state["window"] = (now, now, 0.0)  # never came up: give up

        cpu = {}

        def until():
            if caller.poll() is not None:
                return True
            window_ = state["window"]
            if window_ is None:
                return False
            now = time.monotonic()
            if "start" not in cpu and now >= window_[0]:
                cpu["start"] = (now, cpu_seconds(server.process.pid))
            if "end" not in cpu and now >= window_[1]:
                cpu["end"] = (now, cpu_seconds(server.process.pid))
            return now >= window_[1] + 1.0  # late arrivals of the window's last frames

        endpoints.run(until, between)
        generator_late = endpoints.worst_lateness
        after = metrics(server) if "metrics" in state else None
        # The calls end on their own (BYE after the hold); keep both ends
        # answering meanwhile so that no retransmission is left behind.
        endpoints.run(lambda: caller.poll() is not None)
        outputs = [process.communicate(timeout=60)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        client.close()
        endpoints.close()
        stop_server(server)
    match = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", outputs[1] if len(outputs) > 1 else "")
    result = {
        "relay_states": endpoints.relay_states,
        "mapped": state["mapped"],
        "mode": mode,
        "calls": count,
        "established": int(match.group(1)) if match else -1,
        "carrying": endpoints.carrying() // 2,
        "up_by": state["up_by"],
        "generator_late": generator_late,
        "sipp": errors_logged(workdir)[-3000:] or (outputs[1][-1500:] if len(outputs) > 1 else ""),
    }
    if "start" in cpu and "end" in cpu and state["window"][1] > state["window"][0]:
        (start, cpu_start), (end, cpu_end) = cpu["start"], cpu["end"]
        result.update(endpoints.figures(*state["window"][:2]))
        result["cpu_share"] = (cpu_end - cpu_start) / (end - start)
        # packets the server carried in the window: 2 a call every 20 ms
        result["cpu_per_packet"] = (cpu_end - cpu_start) / max(1, result["sent"]) * 1e6
        before = state["metrics"]
        ticks = (after["communigate_scheduler_tick_lateness_seconds_count"]
                 - before["communigate_scheduler_tick_lateness_seconds_count"])
        lateness = (after["communigate_scheduler_tick_lateness_seconds_sum"]
                    - before["communigate_scheduler_tick_lateness_seconds_sum"])
        result["tick_late"] = lateness / ticks if ticks else 0.0
        result["ticks_missed"] = (after["communigate_scheduler_ticks_missed_total"]
                                  - before["communigate_scheduler_ticks_missed_total"])
    return result


def passed(result: dict) -> bool:
    return (
        result["established"] == result["calls"]
        and result["carrying"] == result["calls"]
        and "sent" in result
        and result["lost"] < 0.005 * result["sent"]
        and result["generator_late"] < 0.02
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--window", type=float, default=WINDOW, help="seconds measured once every call is up")
    parser.add_argument("--inband-callee", action="store_true",
                        help="the callee answers without telephone-event (its PBX channel detects DTMF in-band)")
    parser.add_argument("--no-inband-detection", action="store_true",
                        help="InBandDTMF = No on the server: no channel runs the in-band DTMF detector")
    options = parser.parse_args()
    modes = options.modes.split(",")
    if set(modes) - set(MODES):
        parser.error(f"--modes: {', '.join(MODES)}")
    levels = [int(level) for level in options.levels.split(",")]
    print(f"bridged calls, 2 x 50 packets/s of 172-octet PCMU a call; {options.window:g} s measured a level; "
          f"callee {'without' if options.inband_callee else 'with'} telephone-event; "
          f"in-band detection {'off' if options.no_inband_detection else 'Auto'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'mode':>5} {'calls':>5} {'up':>4} {'audio':>5} {'frames':>8} {'lost %':>7} {'late %':>7} "
          f"{'delay p50/p99 ms':>17} {'jitter mean/max ms':>18} {'server CPU':>10} {'us/pkt':>7} {'tick late ms':>12} "
          f"{'missed':>6} {'gen late ms':>11}")
    best = {}
    with tempfile.TemporaryDirectory() as workdir:
        for mode in modes:
            for count in levels:
                result = run_level(mode, count, workdir, options.window, options.inband_callee,
                                   not options.no_inband_detection)
                if "sent" not in result:
                    print(f"{mode:>5} {count:>5} {result['established']:>4} {result['carrying']:>5}  "
                          "the calls did not all carry audio; no window measured", flush=True)
                    if mode == "relay":
                        print(f"  sockets pointed at a relay leg: {result['mapped']} of {2 * count}; "
                              f"relay sessions by state: {result['relay_states']}")
                    if result["established"] != count:
                        print(f"sipp said: {result['sipp']}")
                    break
                print(
                    f"{mode:>5} {count:>5} {result['established']:>4} {result['carrying']:>5} {result['sent']:>8} "
                    f"{100 * result['lost'] / max(1, result['sent']):>7.2f} "
                    f"{100 * result['late'] / max(1, result['sent']):>7.2f} "
                    f"{1000 * result['delay_p50']:>8.1f}/{1000 * result['delay_p99']:<8.1f} "
                    f"{1000 * result['jitter_mean']:>9.2f}/{1000 * result['jitter_max']:<8.2f} "
                    f"{result['cpu_share']:>10.0%} {result['cpu_per_packet']:>7.1f} "
                    f"{1000 * result['tick_late']:>12.2f} {result['ticks_missed']:>6.0f} "
                    f"{1000 * result['generator_late']:>11.1f}",
                    flush=True,
                )
                if not passed(result):
                    break
                best[mode] = count
    for mode in modes:
        print(f"{mode}: largest level with every call carrying audio, under 0.5% lost, generator on time: "
              f"{best.get(mode, 0)} calls")


if __name__ == "__main__":
    sys.exit(main())
