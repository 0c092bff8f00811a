"""
Drives a running `twistd communigate` with sipp and prints:

  - authenticated REGISTER rates (401 + REGISTER with digest + 200) at
    rising offered rates, with failures and sipp's median response time;
  - the server's memory (RSS) with 10,000 registered bindings.

    python benchmarks/sip_load.py [USERS]

Both sipp and the server share this machine's cores.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

from communigate.admin.client import CLIClient
from communigate.testing import start_server, stop_server

SCENARIO = os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "sipp", "register.xml")


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
         "-default_behaviors", "all,-bye", "-timeout", "120s", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=work, timeout=180,
    )
    elapsed = time.perf_counter() - started
    out = done.stdout
    ok = int(re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)[-1])
    failed = int(re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)[-1])
    times = re.findall(r"Response Time 1\s*\|[^|]*\|\s*(\d+):(\d+):(\d+):(\d+)", out)
    median = float("nan")
    if times:
        h, m, s, us = map(int, times[-1])
        median = (h * 3600 + m * 60 + s) * 1000 + us / 1000
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
        finally:
            stop_server(server)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
