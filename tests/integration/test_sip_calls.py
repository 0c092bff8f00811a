"""
Calls through the proxy between sipp instances: a caller (sipp UAC) who
must authenticate, and callees (sipp UAS) registered as bob.
"""

import os
import subprocess
import time

import pytest

from communigate.admin.client import CLIClient
from communigate.testing import free_port

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")
SIPP = ["-i", "127.0.0.1", "-nostdin", "-default_behaviors", "all,-bye", "-trace_err"]


def sipp_client(workdir, scenario, server, fields, timeout=30):
    (workdir / f"{scenario}.csv").write_text("SEQUENTIAL\n" + ";".join(fields) + "\n")
    return subprocess.run(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-inf", f"{scenario}.csv", "-m", "1",
         "-p", "0", *SIPP, "-timeout", "20s", "-timeout_error", f"127.0.0.1:{server.sip_port}"],
        capture_output=True, text=True, cwd=workdir, timeout=timeout,
    )


def sipp_callee(workdir, scenario, port):
    return subprocess.Popen(
        ["sipp", "-sf", os.path.join(SCENARIOS, scenario), "-m", "1", "-p", str(port), *SIPP,
         "-timeout", "25s", "-timeout_error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
    )


def errors(workdir):
    return "".join(p.read_text() for p in workdir.glob("*_errors.log"))


@pytest.fixture
def phones(live_server, tmp_path):
    with CLIClient.connect(f"tcp:127.0.0.1:{live_server.cli_port}") as client:
        client.login("postmaster", live_server.postmaster_password)
        for line in (
            "UPDATEDOMAINSETTINGS example.com {SIPDigestAlgorithms = (MD5);}",
            "CREATEACCOUNT alice {Password = apw;}",
            "CREATEACCOUNT bob {Password = bpw;}",
        ):
            assert client.command(line)[0] == 200

    class Phones:
        def register_bob(self, port):
            done = sipp_client(
                tmp_path, "register_contact.xml", live_server,
                ["bob", "example.com", "[authentication username=bob password=bpw]", f"127.0.0.1:{port}"],
            )
            assert done.returncode == 0, errors(tmp_path)

        def callee(self, scenario):
            port = free_port()
            self.register_bob(port)
            process = sipp_callee(tmp_path, scenario, port)
            time.sleep(0.3)
            return process

        def call(self, scenario, authenticated=True):
            fields = ["alice", "example.com", "bob"]
            if authenticated:
                fields.append("[authentication username=alice password=apw]")
            return sipp_client(tmp_path, scenario, live_server, fields)

    return Phones()


def call_records(server):
    """
    What LISTCALLRECORDS says, newest first (the records are written in
    batches, so it may take a moment).
    """
    from communigate.formats.cgdata import loads

    with CLIClient.connect(f"tcp:127.0.0.1:{server.cli_port}") as client:
        client.login("postmaster", server.postmaster_password)
        code, text = client.command("LISTCALLRECORDS {Account = alice;}")
        assert code in (200, 201), text
    return loads(text) if text else []


def finished(process):
    try:
        return process.wait(timeout=25)
    except subprocess.TimeoutExpired:
        process.kill()
        return None


def test_a_call_goes_through_the_proxy_from_invite_to_bye(phones, tmp_path, live_server):
    callee = phones.callee("uas.xml")
    done = phones.call("uac_auth.xml")
    assert done.returncode == 0, errors(tmp_path)
    assert finished(callee) == 0, errors(tmp_path)
    (record,) = call_records(live_server)
    assert (record["From"], record["To"], record["Account"]) == ("alice@example.com", "bob@example.com", "alice@example.com")
    assert record["Status"] == "200" and record["Cause"].startswith("BYE from") and "Answered" in record


def test_both_registered_devices_ring_and_the_loser_is_cancelled(phones, tmp_path):
    ringing = phones.callee("uas_ringing.xml")
    answering = phones.callee("uas.xml")
    done = phones.call("uac_auth.xml")
    assert done.returncode == 0, errors(tmp_path)
    assert finished(answering) == 0, errors(tmp_path)
    assert finished(ringing) == 0, errors(tmp_path)


def test_the_callers_cancel_reaches_the_ringing_callee(phones, tmp_path):
    callee = phones.callee("uas_ringing.xml")
    done = phones.call("uac_cancel.xml")
    assert done.returncode == 0, errors(tmp_path)
    assert finished(callee) == 0, errors(tmp_path)


def test_a_busy_callee_answers_486(phones, tmp_path, live_server):
    callee = phones.callee("uas_busy.xml")
    done = phones.call("uac_busy.xml")
    assert done.returncode == 0, errors(tmp_path)
    assert finished(callee) == 0, errors(tmp_path)
    (record,) = call_records(live_server)
    assert (record["Status"], record["Cause"], record["Duration"]) == ("486", "486 Busy Here", "0")


def test_a_message_is_delivered(phones, tmp_path):
    callee = phones.callee("uas_message.xml")
    done = phones.call("uac_message.xml")
    assert done.returncode == 0, errors(tmp_path)
    assert finished(callee) == 0, errors(tmp_path)


def test_an_unauthenticated_call_from_a_local_user_gets_407(phones, tmp_path):
    done = phones.call("uac_noauth.xml", authenticated=False)
    assert done.returncode == 0, errors(tmp_path)
