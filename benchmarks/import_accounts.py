"""
How long `communigate-admin --data DIR --file F` takes to import N accounts
with passwords, in one transaction, into a fresh data directory.

    python benchmarks/import_accounts.py [N]

Prints the wall time of the whole command (process start included), the
rate, and the size of the store afterwards.
"""

import os
import subprocess
import sys
import tempfile
import time

from twisted.internet.task import Clock

from communigate.config import Config
from communigate.server import build_server


def main(count: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as work:
        data = os.path.join(work, "data")
        server = build_server(Config(data_dir=data, domain="example.com"), Clock(), modules=[])
        server.context.store.close()
        script = os.path.join(work, "accounts.txt")
        with open(script, "w") as f:
            for i in range(count):
                f.write(
                    f'CREATEACCOUNT user{i}@example.com {{Password = "pw-{i}-secret"; '
                    f'RealName = "User {i}"; MaxSignalContacts = 5;}}\n'
                )
        admin = os.path.join(os.path.dirname(sys.executable), "communigate-admin")
        started = time.perf_counter()
        subprocess.run([admin, "--data", data, "--file", script], check=True)
        elapsed = time.perf_counter() - started
        listed = subprocess.run(
            [admin, "--data", data, "LISTACCOUNTS"], check=True, capture_output=True, text=True
        ).stdout
        size = sum(
            os.path.getsize(os.path.join(data, name)) for name in os.listdir(data)
        )
        print(f"imported {count} accounts in {elapsed:.1f} s ({count / elapsed:.0f}/s)")
        print(f"accounts listed afterwards: {listed.count('MultiMailbox')}")
        print(f"data directory size: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
