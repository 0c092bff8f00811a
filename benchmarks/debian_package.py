"""
The reference servers the benchmarks compare with (Kamailio, Prosody,
rtpengine) are Debian packages: find a program, and install its package
when it is missing -- as root, or through `sudo -n`, which never waits for
a password.  Used by the *_peer.py modules; `make bench-peers` installs
the same packages ahead of time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def find(program: str, usual_path: str | None = None) -> str | None:
    """The program on PATH, or at C{usual_path} (/usr/sbin is not on every user's PATH), or None."""
    found = shutil.which(program)
    if found:
        return found
    if usual_path and os.access(usual_path, os.X_OK):
        return usual_path
    return None


def ensure(program: str, package: str, usual_path: str | None = None) -> str | None:
    """
    The path of C{program}, installing Debian C{package} first when it is
    missing; None (said on stderr) when it cannot be installed.
    """
    found = find(program, usual_path)
    if found:
        return found
    if not shutil.which("apt-get"):
        print(f"{program}: not installed and no apt-get here; install {package} to compare", file=sys.stderr)
        return None
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        print(f"{program}: not installed, not root and no sudo; run `make bench-peers` as root", file=sys.stderr)
        return None
    print(f"{program}: not installed; apt-get install -y {package}", file=sys.stderr)
    env = ["env", "DEBIAN_FRONTEND=noninteractive"]
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        try:
            done = subprocess.run(prefix + env + command, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as error:
            print(f"{program}: `{' '.join(prefix + command)}` failed: {error}", file=sys.stderr)
            return None
        if done.returncode != 0:
            print(f"{program}: `{' '.join(prefix + command)}` failed ({done.returncode}): "
                  f"{(done.stderr or done.stdout).strip()[-500:]}", file=sys.stderr)
            return None
    return find(program, usual_path)
