"""
How long `twistd -n communigate` takes from exec to accepting CLI
connections: on a fresh data directory (first start: schema, main domain,
postmaster) and on an existing one with N accounts.

    python benchmarks/start_time.py [RUNS]
"""

import statistics
import sys
import tempfile

from communigate.testing import start_server, stop_server


def measure(data_dir) -> float:
    server = start_server(data_dir)
    stop_server(server)
    return server.start_seconds


def main(runs: int = 5) -> None:
    first, again = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as work:
            first.append(measure(f"{work}/data"))
            again.append(measure(f"{work}/data"))
    print(f"first start (new data directory): median {statistics.median(first):.2f} s over {runs} runs")
    print(f"restart (existing data directory): median {statistics.median(again):.2f} s over {runs} runs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
