"""
Helpers for live tests of calls through PBX tasks: the phones' media and
signalling sides, shared by test modules rather than copied into each.

  - the threaded Python RTP peer (it sends a tone and keeps what it
    hears) and the sipp caller helpers of C{test_pbx_live.py}, loaded from
    there by path (the test directories are not packages, and pytest runs
    with C{--import-mode=importlib});
  - L{answering_phone}: a sipp UAS registered as an account whose SDP
    names a Python RTP peer;
  - L{hears} / L{never_hears}: what a peer heard, by 200 ms windows.

Load this module by path too (see L{load}).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time

from communigate.media.analysis import energy_fraction
from communigate.testing import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name: str):
    """The module C{name}.py of this directory, loaded by path."""
    spec = importlib.util.spec_from_file_location(f"integration_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_live = load("test_pbx_live")
RTPPeer, call, finished, errors, windows, cli = (
    _live.RTPPeer, _live.call, _live.finished, _live.errors, _live.windows, _live.cli,
)
SCENARIOS, SIPP = _live.SCENARIOS, _live.SIPP


def register(server, workdir, user: str, password: str, contact: str) -> None:
    """REGISTER C{contact} (host:port) for C{user}@example.com with digest."""
    (workdir / "register_contact.xml.csv").write_text(
        f"SEQUENTIAL\n{user};example.com;[authentication username={user} password={password}];{contact}\n"
    )
    done = subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, "register_contact.xml"), "-inf", "register_contact.xml.csv",
         "-m", "1", "-p", "0", *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=30,
    )
    assert done.returncode == 0, done.stdout + errors(workdir)


def answering_phone(server, workdir, user: str, password: str, scenario: str, rtp_port: int):
    """
    A sipp UAS registered as C{user} that answers one call with SDP naming
    127.0.0.1:C{rtp_port} (the scenario's C{[rtp_port]}); returns the
    process, listening.
    """
    port = free_port()
    register(server, workdir, user, password, f"127.0.0.1:{port}")
    process = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *SIPP,
         "-key", "rtp_port", str(rtp_port), "-timeout", "25s", "-timeout_error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )
    time.sleep(0.3)
    return process


def hears(pcm: bytes, frequency: float, without: float) -> bool:
    """Some 200 ms window of C{pcm} is mostly C{frequency}, with next to nothing of C{without}."""
    return any(
        energy_fraction(window, frequency) > 0.6 and energy_fraction(window, without) < 0.02
        for window in windows(pcm)
    )


def never_hears(pcm: bytes, frequency: float) -> bool:
    """No 200 ms window of C{pcm} holds a noticeable share of C{frequency}."""
    return all(energy_fraction(window, frequency) < 0.1 for window in windows(pcm))
