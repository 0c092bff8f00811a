"""
Drives a running `twistd communigate` with sipp and prints:

  - authenticated REGISTER rates (401 + REGISTER with digest + 200) at
    rising offered rates, with failures and sipp's median response time;
  - the server's memory (RSS) with 10,000 registered bindings;
  - proxied call rates: an authenticated caller (sipp UAC: INVITE, 407,
    INVITE, 180, 200, ACK, BYE) through the proxy to a callee (sipp UAS)
    registered as an account.

    python benchmarks/sip_load.py [USERS]

Both sipp and the server share this machine's cores.
"""

import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from communigate.admin.client import CLIClient
from communigate.testing import start_server, stop_server

SCENARIOS = os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "sipp")
SCENARIO = os.path.join(SCENARIOS, "register.xml")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_sipp(work, server, rate: int, count: int, first: int) -> tuple[int, int, float, float]:
    started = time.perf_counter()
    done = subprocess.run(
        ["sipp", "-sf", SCENARIO, "-inf", "users.csv", "-m", str(count), "-r", str(rate),
         "-l", str(max(rate * 2, 100)), "-i", "127.0.0.1", "-p", "0", "-nostdin",
         "-default_behaviors", "all,-bye", "-timeout", "120s", "-trace_rtt", "-rtt_freq", "1",
         f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=work, timeout=180,
    )
    elapsed = time.perf_counter() - started
    out = done.stdout
    ok = int(re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)[-1])
    failed = int(re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)[-1])
    # Per-registration times (first REGISTER sent to 200 received), in ms.
    times = []
    for path in glob.glob(os.path.join(work, "register_*_rtt.csv")):
        with open(path) as f:
            times += [float(line.split(";")[1]) for line in f if line[:1].isdigit()]
        os.remove(path)
    median = statistics.median(times) if times else float("nan")
    return ok, failed, elapsed, median


def main(users: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as work:
        server = start_server(os.path.join(work, "data"))
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
            with open(os.path.join(work, "users.csv"), "w") as f:
                f.write("SEQUENTIAL\n")
                for i in range(users):
                    f.write(f"u{i};example.com;[authentication username=u{i} password=p{i}]\n")
            print(f"server RSS with {users} accounts, no bindings: {rss_mb(server.process.pid):.0f} MB")
            ok, failed, elapsed, median = run_sipp(work, server, 500, users, 0)
            print(
                f"registered {ok} of {users} bindings ({failed} failed) in {elapsed:.1f} s; "
                f"server RSS now {rss_mb(server.process.pid):.0f} MB"
            )
            for rate in (250, 500, 1000, 2000):
                count = min(users, rate * 5)
                ok, failed, elapsed, median = run_sipp(work, server, rate, count, 0)
                print(
                    f"offered {rate}/s: {ok} ok, {failed} failed, {ok / elapsed:.0f} registrations/s "
                    f"achieved, median response {median:.1f} ms"
                )
            calls(work, server)
        finally:
            stop_server(server)


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
    for rate in (20, 50, 100, 200):
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


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
