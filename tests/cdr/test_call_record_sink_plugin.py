"""
Call record sinks come from plugins: the example writes CSV, and a copy in
another distribution's plugin directory is discovered.
"""

import csv
import importlib.util
import os
import subprocess
import sys

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.cdr.records import CallRecord, CallRecords
from communigate.interfaces import ICallRecordSink
from communigate.storage import MemoryStore

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "call_record_sink.py")


def load_example():
    spec = importlib.util.spec_from_file_location("call_record_sink_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_sink_writes_a_csv_line_per_call(tmp_path):
    sink = load_example().CSVCallRecords(str(tmp_path / "calls.csv"))
    verifyObject(ICallRecordSink, sink)
    records = CallRecords(MemoryStore(), Clock(), sinks=[sink], write_delay=0)
    for n in range(2):
        quality = {"rtcp_loss": 1.5, "rtcp_peer_loss": 0.0, "jitter_ms": 2.25, "rtt_ms": 40.0} if n else {}
        records.add(CallRecord(
            protocol="sip", call_id=f"c{n}", caller="alice@example.com", callee="bob@example.com",
            target="sip:bob@example.com", caller_account="alice@example.com", started=10.0, answered=12.0,
            ended=72.0, status=200, cause="BYE from caller", **quality,
        ))
    rows = list(csv.reader(open(tmp_path / "calls.csv")))
    assert rows[0][0] == "Started" and rows[0][-4:] == ["Loss", "PeerLoss", "Jitter", "RTT"] and len(rows) == 3
    assert rows[1][3:6] == ["60", "alice@example.com", "bob@example.com"]
    assert rows[1][-4:] == ["", "", "", ""]  # a leg the server only signalled
    assert rows[2][-4:] == ["1.50%", "0.00%", "2.2ms", "40.0ms"]


def test_a_sink_in_another_distributions_plugin_directory_is_discovered(tmp_path):
    plugins = tmp_path / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "csv_records.py").write_text(open(EXAMPLE).read())
    found = subprocess.run(
        [sys.executable, "-c",
         "from communigate.server import call_record_sinks; "
         "print([type(s).__name__ for s in call_record_sinks()])"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert found.stdout.strip() == "['CSVCallRecords']"
