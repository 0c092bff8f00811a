"""
Signal hooks come from plugins: the example plugin, handed to the server,
refuses a denied caller and lets others through.
"""

import importlib.util
import os
import subprocess
import sys

from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from communigate.config import Config
from communigate.interfaces import ISignalHook
from communigate.server import build_server, signal_hooks
from communigate.signal.memory import MemoryEndpointSource, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response
from communigate.storage import MemoryStore

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "signal_hook.py")


def load_example():
    spec = importlib.util.spec_from_file_location("signal_hook_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(server, caller):
    signal = Signal(
        method="INVITE", targets=("postmaster@example.com",), from_address=caller,
        to_address="postmaster@example.com", call_id="c1", submitter=Submitter("sip"),
    )
    finals = []
    server.context.signals.submit(signal).final.addCallback(finals.append)
    return [f.code for f in finals]


def test_a_hook_plugin_imposes_policy_on_every_signal():
    hook = load_example().deny_callers
    verifyObject(ISignalHook, hook)
    server = build_server(
        Config(data_dir="", domain="example.com"), Clock(), store=MemoryStore(), modules=[], hooks=[hook]
    )
    devices = MemoryEndpointSource()
    devices.register("postmaster@example.com", ScriptedEndpoint(server.context.reactor, [(0, response(200))]))
    server.context.signals.add_endpoint_source(devices)
    assert call(server, "spam@example.net") == [403]
    assert call(server, "friend@example.org") == [200]


def test_a_hook_in_another_distributions_plugin_directory_is_discovered(tmp_path):
    plugins = tmp_path / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "deny_callers.py").write_text(open(EXAMPLE).read())
    found = subprocess.run(
        [sys.executable, "-c",
         "from communigate.server import signal_hooks; "
         "print([type(h).__name__ for h in signal_hooks()])"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    assert found.stdout.strip() == "['DenyCallers']"
