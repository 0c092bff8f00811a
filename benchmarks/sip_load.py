"""
Drives a running `twistd communigate` with sipp and prints:

  - authenticated REGISTER rates (401 + REGISTER with digest + 200) at
    rising offered rates, with failures, retransmissions and the median
    time from the first REGISTER to the 200; and the same runs, the same
    scenario, users.csv and rates, against Kamailio side by side (the
    reference registrar: benchmarks/kamailio/kamailio.cfg, one UDP
    worker, bindings in memory), then the best failure-free rate of each
    and their ratio;
  - the servers' memory with 10,000 registered bindings, and
    communigate's again once the REGISTER transactions have ended;
  - proxied call rates (communigate only): an authenticated caller (sipp
    UAC: INVITE, 407, INVITE, 180, 200, ACK, BYE) through the proxy to a
    callee (sipp UAS) registered as an account.

    python benchmarks/sip_load.py [USERS] [--only communigate|kamailio]
                                  [--rates 500,1000,...] [--seconds 3] [--no-calls] [--no-settle]
                                  [--profile FILE]
                                  [--kamailio-stateful]

Each run offers SECONDS' worth of registrations at its rate; one whose
401 or 200 has not come WAIT seconds after its REGISTER (retransmitted
meanwhile) counts as failed, so a run lasts at most SECONDS + 2 WAIT.  A
server's rates stop rising after its first run with failures.  The two
servers take turns at each rate, so a busy moment of the machine is
shared.  Both sipp and the servers share this machine's cores.  Kamailio
is installed (apt-get, as root or through `sudo -n`) when missing; when
it cannot be, communigate is measured alone.
"""

import argparse
import glob
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import attrs

import kamailio_peer
from communigate.admin.client import CLIClient
from communigate.testing import start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "sipp")
SCENARIO = os.path.join(SCENARIOS, "register.xml")
RATES = (500, 1000, 2000, 4000, 8000, 16000, 24000)
SECONDS = 3
# Seconds a registration waits for each response before it has failed.
WAIT = 10
PRELOAD_RATE = 500
# Timer J over UDP (64 * T1), and a second more.
TIMER_J = 33.0
# kamailio.cfg knows users u0 .. u9999.
KAMAILIO_USERS = 10_000


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids) -> float:
    """
    User and system CPU the processes C{pids} have used so far.
    """
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """
    CPU used so far by the finished children of this process (sipp).
    """
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@attrs.frozen
class Run:
    """
    One sipp run: COUNT registrations offered at OFFERED per second.
    """

    offered: int
    count: int
    ok: int
    retransmissions: int
    elapsed: float
    # sipp's per-registration times are whole milliseconds (its clock
    # ticks in ms): a median of 0 means under 1 ms.
    median: float
    # CPU seconds the server and sipp used during the run: on a machine
    # shared with other work the rates vary, the CPU per registration less.
    server_cpu: float = float("nan")
    sipp_cpu: float = float("nan")

    @property
    def failed(self) -> int:
        # Failed calls, and calls still unfinished when sipp timed out.
        return self.count - self.ok

    @property
    def achieved(self) -> float:
        return self.ok / self.elapsed


def run_sipp(work, port: int, rate: int, count: int, wait: float = WAIT, pids=()) -> Run:
    """
    COUNT registrations offered at RATE per second, each failed when a
    response has not come WAIT seconds after its request (sipp's
    -recv_timeout; its -timeout alone lets calls in progress run on).
    PIDS: the server's processes, whose CPU is measured.
    """
    timeout = count / rate + 2 * wait
    server_cpu = cpu_seconds(pids)
    sipp_cpu = children_cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(
        ["sipp", "-sf", SCENARIO, "-inf", "users.csv", "-m", str(count), "-r", str(rate),
         "-l", str(max(rate * 2, 100)), "-i", "127.0.0.1", "-p", "0", "-nostdin",
         "-default_behaviors", "all,-bye", "-timeout", f"{timeout:.0f}s", "-recv_timeout", f"{wait:.0f}s",
         "-trace_rtt", "-rtt_freq", "1",
         f"127.0.0.1:{port}"],
        capture_output=True, text=True, cwd=work, timeout=timeout + 60,
    )
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(pids) - server_cpu
    sipp_cpu = children_cpu_seconds() - sipp_cpu
    out = done.stdout
    successful = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
    if not successful:
        raise RuntimeError(f"sipp exited with {done.returncode} and no statistics: {done.stderr[-2000:]}")
    # "REGISTER ---------->  B-RTD1 24000     34988     0": messages, retransmissions
    retransmissions = sum(
        int(r) for r in re.findall(r"^\s*REGISTER -+>\s+(?:[A-Z]-RTD\d+\s+)?\d+\s+(\d+)", out, re.M)
    )
    # Per-registration times (first REGISTER sent to 200 received), in ms.
    times = []
    for path in glob.glob(os.path.join(work, "register_*_rtt.csv")):
        with open(path) as f:
            times += [float(line.split(";")[1]) for line in f if line[:1].isdigit()]
        os.remove(path)
    median = statistics.median(times) if times else float("nan")
    return Run(
        rate, count, int(successful[-1]), retransmissions, elapsed, median,
        server_cpu if pids else float("nan"), sipp_cpu,
    )


def ms(value: float) -> str:
    return "<1" if value == 0 else f"{value:.1f}"


def describe(run: Run) -> str:
    return (
        f"offered {run.offered}/s: {run.ok} ok, {run.failed} failed, {run.achieved:.0f} registrations/s "
        f"achieved, {run.retransmissions} retransmissions, median {ms(run.median)} ms; CPU per registration: "
        f"server {run.server_cpu / max(run.ok, 1) * 1e6:.0f} µs, sipp {run.sipp_cpu / max(run.ok, 1) * 1e6:.0f} µs"
    )


def start_communigate(work, users: int, profile: str | None = None):
    twistd_options = (f"--profile={profile}", "--profiler=cprofile", "--savestats") if profile else ()
    server = start_server(os.path.join(work, "data"), twistd_options=twistd_options)
    try:
        script = os.path.join(work, "accounts.txt")
        with open(script, "w") as f:
            f.write("UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}\n")
            f.write("UPDATESIPSETTINGS {RequestRate = 1000000; RequestBurst = 1000000;}\n")
        with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
            client.login("postmaster", server.postmaster_password)
            for line in open(script):
                client.command(line.strip())
        admin = os.path.join(os.path.dirname(sys.executable), "communigate-admin")
        with open(script, "w") as f:
            for i in range(users):
                f.write(f"CREATEACCOUNT u{i} {{Password = p{i};}}\n")
        subprocess.run([admin, "--data", server.data_dir, "--file", script], check=True)
    except BaseException:
        stop_server(server)
        raise
    return server


def start_kamailio(work, stateful: bool = False):
    """
    A running Kamailio, or None (with the reason printed) when it is not
    installed and cannot be.  STATEFUL: kamailio.cfg's transaction-stateful
    variant, which also refuses replayed nonce counts.
    """
    binary = kamailio_peer.install()
    if binary is None:
        print("Kamailio: not available, measuring communigate alone (`make bench-peers` installs it)")
        return None
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    if stateful:
        # tm keeps each transaction 5 s after its final reply.
        kamailio = kamailio_peer.start(work, binary, "STATEFUL", shm_mb=2048)
    else:
        kamailio = kamailio_peer.start(work, binary)
    print(
        f"Kamailio: {version.removeprefix('version: ').strip()}, {kamailio_peer.CONFIG}"
        f"{' -A STATEFUL' if stateful else ''}, 1 UDP worker"
    )
    return kamailio


def check_authentication(name: str, port: int) -> None:
    """
    Print what the registrar answers without credentials and with a wrong
    password, and stop unless it refuses both and accepts the right one.
    """
    answers = kamailio_peer.check_authentication(port)
    print(f"{name} answers: " + "; ".join(f"{what}: {status}" for what, status in answers.items()))
    if not (
        answers["no credentials"].startswith("401")
        and answers["wrong password"][:3] in ("401", "403")
        and answers["right password"].startswith("200")
    ):
        raise SystemExit(f"{name} does not authenticate REGISTER as the benchmark expects")


def ramp(work, ports: dict[str, int], rates, seconds: float, pids: dict) -> dict[str, list[Run]]:
    """
    Each rate in turn against every server still without failures.
    PIDS: C{name -> callable returning the server's process ids}.
    """
    results = {name: [] for name in ports}
    rising = set(ports)
    for rate in rates:
        for name, port in ports.items():
            if name not in rising:
                continue
            run = run_sipp(work, port, rate, int(rate * seconds), pids=pids[name]())
            results[name].append(run)
            print(f"{name:<11} {describe(run)}", flush=True)
            if run.failed:
                rising.discard(name)
        if not rising:
            break
    return results


def best(runs: list[Run]) -> Run | None:
    """
    The failure-free run with the highest achieved rate.
    """
    clean = [run for run in runs if not run.failed]
    return max(clean, key=lambda run: run.achieved) if clean else None


def print_table(results: dict[str, list[Run]], users: int) -> None:
    names = list(results)
    print()
    print(f"authenticated REGISTER, sipp {os.path.basename(SCENARIO)}, {users} users, MD5 digest, UDP")
    print("(CPU µs: the server's CPU per registration, all its processes)")
    header = f"{'offered/s':>9}"
    for name in names:
        header += f" | {name + ': achieved/s':>23} {'failed':>7} {'retrans':>8} {'median ms':>9} {'CPU µs':>7}"
    print(header)
    offered = sorted({run.offered for runs in results.values() for run in runs})
    for rate in offered:
        line = f"{rate:>9}"
        for name in names:
            run = next((run for run in results[name] if run.offered == rate), None)
            if run is None:
                line += f" | {'-':>23} {'':>7} {'':>8} {'':>9} {'':>7}"
            else:
                line += (
                    f" | {run.achieved:>23.0f} {run.failed:>7} {run.retransmissions:>8} {ms(run.median):>9}"
                    f" {run.server_cpu / max(run.ok, 1) * 1e6:>7.0f}"
                )
        print(line)
    tops = {name: best(runs) for name, runs in results.items()}
    for name, top in tops.items():
        if top is None:
            print(f"{name}: no failure-free rate")
        else:
            print(
                f"{name}: highest failure-free rate {top.achieved:.0f} registrations/s "
                f"(offered {top.offered}/s), median {ms(top.median)} ms"
            )
    ours, theirs = tops.get("communigate"), tops.get("Kamailio")
    if ours and theirs:
        print(
            f"communigate/Kamailio at the best failure-free rates: {ours.achieved / theirs.achieved:.2f} "
            f"(median {ms(ours.median)} ms against {ms(theirs.median)} ms)"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("users", nargs="?", type=int, default=10_000)
    parser.add_argument("--only", choices=("communigate", "kamailio"), help="measure one server alone")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="offered rates, comma-separated")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="seconds of load offered per rate")
    parser.add_argument("--no-calls", action="store_true", help="skip communigate's proxied call rates")
    parser.add_argument(
        "--profile", metavar="FILE",
        help="run communigate under cProfile (slower: its rates are not comparable), save the statistics "
        "to FILE and print where its time went",
    )
    parser.add_argument(
        "--no-settle", action="store_true",
        help="skip waiting out Timer J after the bindings are made (communigate's memory without transactions)",
    )
    parser.add_argument(
        "--kamailio-stateful", action="store_true",
        help="Kamailio with tm transactions and nonce_count replay checks (kamailio.cfg -A STATEFUL)",
    )
    options = parser.parse_args(argv)
    rates = [int(rate) for rate in options.rates.split(",")]
    if options.profile:
        options.profile = os.path.abspath(options.profile)
    users = options.users
    with_communigate = options.only != "kamailio"
    with_kamailio = options.only != "communigate"
    if with_kamailio and users > KAMAILIO_USERS:
        parser.error(f"kamailio.cfg knows {KAMAILIO_USERS} users (u0..u{KAMAILIO_USERS - 1}); ask for fewer")

    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "users.csv"), "w") as f:
            f.write("SEQUENTIAL\n")
            for i in range(users):
                f.write(f"u{i};example.com;[authentication username=u{i} password=p{i}]\n")
        server = kamailio = None
        try:
            ports = {}
            if with_communigate:
                server = start_communigate(work, users, options.profile)
                ports["communigate"] = server.sip_port
                print(f"communigate RSS with {users} accounts, no bindings: {rss_mb(server.process.pid):.0f} MB")
            if with_kamailio:
                kamailio = start_kamailio(work, options.kamailio_stateful)
                if kamailio is None and not with_communigate:
                    raise SystemExit("Kamailio is not available (`make bench-peers` installs it)")
                if kamailio is not None:
                    ports["Kamailio"] = kamailio.port
                    print(f"Kamailio memory (PSS of its {len(kamailio.pids())} processes), no bindings: "
                          f"{kamailio.memory_mb():.0f} MB")
            for name, port in ports.items():
                check_authentication(name, port)
            for name, port in ports.items():
                run = run_sipp(work, port, PRELOAD_RATE, users, wait=30)
                memory = (
                    f"RSS now {rss_mb(server.process.pid):.0f} MB" if name == "communigate"
                    else f"memory (PSS) now {kamailio.memory_mb():.0f} MB"
                )
                print(
                    f"{name}: registered {run.ok} of {users} bindings ({run.failed} failed) "
                    f"in {run.elapsed:.1f} s; {memory}", flush=True,
                )
            if server is not None and not options.no_settle:
                # The REGISTER transactions of the last 32 s (Timer J) are
                # still held; without them the memory is the bindings'.
                time.sleep(TIMER_J)
                print(
                    f"communigate RSS {TIMER_J:.0f} s later, the REGISTER transactions gone: "
                    f"{rss_mb(server.process.pid):.0f} MB (freed memory the allocator keeps still counts; "
                    "benchmarks/sip_memory.py tells the parts apart)", flush=True,
                )
            pids = {
                "communigate": lambda: [server.process.pid],
                "Kamailio": lambda: kamailio.pids(),
            }
            results = ramp(work, ports, rates, options.seconds, pids)
            print_table(results, users)
            if server is not None and not options.no_calls:
                print()
                calls(work, server)
        finally:
            if kamailio is not None:
                kamailio.stop()
            if server is not None:
                stop_server(server)
        if options.profile and os.path.exists(options.profile):
            # twistd saves the statistics when the server stops.
            stats = pstats.Stats(options.profile)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)


def calls(work, server) -> None:
    """
    Proxied calls at rising rates, with no failures wanted.
    """
    from communigate.testing import free_port

    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        client.command("CREATEACCOUNT caller {Password = cpw;}")
        client.command("CREATEACCOUNT callee {Password = dpw;}")
    uas_port = free_port()
    with open(os.path.join(work, "callee.csv"), "w") as f:
        f.write(f"SEQUENTIAL\ncallee;example.com;[authentication username=callee password=dpw];127.0.0.1:{uas_port}\n")
    subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "register_contact.xml"), "-inf", "callee.csv", "-m", "1",
         "-i", "127.0.0.1", "-p", "0", "-nostdin", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, cwd=work, timeout=30, check=True,
    )
    with open(os.path.join(work, "caller.csv"), "w") as f:
        f.write("SEQUENTIAL\ncaller;example.com;callee;[authentication username=caller password=cpw]\n")
    best = None
    for rate in (50, 100, 200, 300, 400, 600):
        count = rate * 5
        callee = subprocess.Popen(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uas.xml"), "-m", str(count), "-i", "127.0.0.1",
             "-p", str(uas_port), "-nostdin", "-timeout", "120s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
        )
        started = time.perf_counter()
        done = subprocess.run(
            ["sipp", "-sf", os.path.join(SCENARIOS, "uac_auth.xml"), "-inf", "caller.csv", "-m", str(count),
             "-r", str(rate), "-l", str(rate * 4), "-i", "127.0.0.1", "-p", "0", "-nostdin",
             "-default_behaviors", "all,-bye", "-timeout", "120s", f"127.0.0.1:{server.sip_port}"],
            capture_output=True, text=True, cwd=work, timeout=180,
        )
        elapsed = time.perf_counter() - started
        callee.wait(timeout=60)
        ok = int(re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", done.stdout)[-1])
        failed = int(re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", done.stdout)[-1])
        print(f"offered {rate} calls/s: {ok} completed, {failed} failed, {ok / elapsed:.0f} calls/s achieved")
        if failed:
            break
        best = ok / elapsed
    if best is not None:
        print(f"communigate: highest failure-free proxied call rate {best:.0f} calls/s")


if __name__ == "__main__":
    main()
