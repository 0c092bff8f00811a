"""
Helpers the live PBX tests share: test_pbx_live's RTP peer and sipp
helpers (loaded by path: the test directories are not packages), sipp as
a client or a callee with its own scenario and keys, and the call a task
holds as READNODESTATUS shows it.

Load this module by path too (see L{load}).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time

from communigate.formats.cgdata import loads


def load(name: str):
    """A module of this directory, by file name without C{.py}."""
    path = os.path.join(os.path.dirname(__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"live_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_live = load("test_pbx_live")
RTPPeer, finished, errors, heard_tone, cli, call = (
    _live.RTPPeer, _live.finished, _live.errors, _live.heard_tone, _live.cli, _live.call,
)
SCENARIOS, SIPP = _live.SCENARIOS, _live.SIPP


def _keys(keys) -> list[str]:
    return [item for key, value in keys.items() for item in ("-key", key, str(value))]


def sipp_client(server, workdir, scenario: str, fields, **keys):
    """
    sipp running C{scenario} once toward C{server} with the CSV C{fields}
    (no C{;} in them: sipp's separator) and C{-key} values from C{keys}
    (any text); the process.
    """
    (workdir / f"{scenario}.csv").write_text("SEQUENTIAL\n" + ";".join(fields) + "\n")
    return subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-inf", f"{scenario}.csv", "-m", "1", "-p", "0",
         *SIPP, *_keys(keys), "-timeout", "25s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=workdir,
    )


def sipp_callee(workdir, scenario: str, port: int, **keys):
    """sipp answering on 127.0.0.1:C{port} with C{scenario} (C{-key} values from C{keys}); the process."""
    directory = workdir / f"callee-{port}"
    directory.mkdir()
    extra = _keys(keys)
    process = subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *SIPP, *extra,
         "-timeout", "30s", "-timeout_error"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=directory,
    )
    time.sleep(0.3)
    return process


def task_status(server, program: str) -> dict | None:
    """READNODESTATUS of the first running task of C{program}, or L{None}."""
    code, text = cli(server, "LISTPBXTASKS")
    if code != 201 or not text:
        return None
    for task_id in loads(text):
        code, status = cli(server, f"READNODESTATUS {task_id}")
        if code == 201 and status:
            status = loads(status)
            if status.get("Program") == program:
                return status
    return None


def wait_for(predicate, timeout: float = 10.0):
    """The first true value of C{predicate()} within C{timeout} seconds, else L{None}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def tag_of(value: str) -> str:
    """The tag of a From/To value."""
    return value.split(";tag=", 1)[1].split(";", 1)[0]
