"""
The example PBX application: discovered as a plugin from another
distribution's plugin directory, and working as a menu.
"""

import ast
import importlib.util
import os
import subprocess
import sys

from zope.interface.verify import verifyObject

from communigate.interfaces import ICallApplication
from communigate.sip.message import make_response

from .conftest import CALLER, TICK, PBXHarness

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "pbx_ivr.py")


def load_example():
    spec = importlib.util.spec_from_file_location("pbx_ivr_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_application_in_another_distributions_plugin_directory_is_discovered(tmp_path):
    plugins = tmp_path / "communigate" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "pbx_ivr.py").write_text(open(EXAMPLE).read())
    found = subprocess.run(
        [sys.executable, "-c",
         "from communigate.pbx.service import installed_applications; "
         "print(sorted(installed_applications()))"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    # The stock applications and the example beside them.
    assert {"attendant", "bridgedcall", "dtmftest", "echo", "ivrmenu", "voicemail"} <= set(
        ast.literal_eval(found.stdout.strip())
    )


def test_the_example_menu_transfers_the_caller_on_key_2():
    menu = load_example().ivr_menu
    verifyObject(ICallApplication, menu)
    harness = PBXHarness(applications={"ivrmenu": menu})
    try:
        harness.route("S:<menu> = ivrmenu{sales@example.com,support@example.com}#postmaster")
        harness.invite("sip:menu@example.com")
        answer = harness.final()
        harness.ack(answer)
        peer = harness.peer(answer)
        for _ in range(20):
            harness.reactor.advance(TICK)
        peer.send_key("2")
        (refer,) = harness.requests_to()
        assert refer.method == "REFER"
        assert refer.headers.get("Refer-To") == "<sip:support@example.com>"
        harness.port.receive(bytes(make_response(refer, 202)), CALLER)
        harness.turn()
        (task,) = harness.pbx.tasks.values()
        assert task.status == "pressed 2"
    finally:
        harness.pbx.stopService()
        harness.stop()
