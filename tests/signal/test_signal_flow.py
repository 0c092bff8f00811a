"""
Signals end to end through the assembled core: the real Router, the Signal
Rules stored through the CLI, and in-memory endpoints standing in for the
devices the protocol issues will register.
"""

import pytest
from twisted.internet.task import Clock

from communigate.cli.context import CommandContext
from communigate.config import Config
from communigate.first_start import create_initial_objects
from communigate.server import build_core
from communigate.signal.memory import MemoryEndpointSource, ScriptedEndpoint
from communigate.signal.model import Signal, Submitter, response
from communigate.storage import MemoryStore

POSTMASTER = CommandContext.for_account("postmaster@example.com")


class Flow:
    def __init__(self):
        self.clock = Clock()
        self.core = build_core(Config(data_dir="", domain="example.com"), MemoryStore(), self.clock)
        create_initial_objects(self.core.directory, "example.com", ("alice", "bob", "carol", "voicemail"))
        self.devices = MemoryEndpointSource()
        self.core.signals.add_endpoint_source(self.devices)

    def cli(self, line):
        result = self.core.interpreter.run(POSTMASTER, line)
        assert result.ok, f"{line}: {result.error}"

    def device(self, account, *script, name=None):
        endpoint = ScriptedEndpoint(self.clock, list(script), description=name or account)
        self.devices.register(account, endpoint)
        return endpoint

    def invite(self, target, method="INVITE"):
        signal = Signal(
            method=method,
            targets=(target,),
            from_address="alice@example.com",
            to_address=target,
            call_id="call-1",
            submitter=Submitter("sip", "alice@example.com", ("127.0.0.1", 5060)),
        )
        task = self.core.signals.submit(signal)
        finals = []
        task.final.addCallback(finals.append)
        return task, finals


@pytest.fixture
def flow():
    return Flow()


def test_a_call_rings_every_device_and_the_first_answer_wins(flow):
    desk = flow.device("bob@example.com", (3, response(200)), name="desk")
    phone = flow.device("bob@example.com", (5, response(200)), name="phone")
    _, finals = flow.invite("bob@example.com")
    flow.clock.advance(3)
    assert [f.code for f in finals] == [200]
    assert finals[0].origin == "desk"
    assert phone.cancelled == 1 and len(desk.delivered) == 1


def test_a_call_to_a_telephone_number_reaches_its_owner(flow):
    flow.cli('SETACCOUNTTELNUMS bob ("+15553837461")')
    flow.cli('SETROUTERTABLE "<+(6-15d)*> = +*@telnum"')
    flow.device("bob@example.com", (0, response(200)))
    _, finals = flow.invite("+15553837461@example.com")
    assert [f.code for f in finals] == [200]


def test_an_account_rule_rejects_with_486(flow):
    flow.device("bob@example.com", (5, response(200)))
    flow.cli('SETACCOUNTSIGNALRULES bob ((5, busy, ((Method, is, INVITE)), (("Reject with", "486 Busy Here"))))')
    _, finals = flow.invite("bob@example.com")
    assert [(f.code, f.reason) for f in finals] == [(486, "Busy Here")]


def test_a_rule_redirect_reaches_another_account(flow):
    flow.device("carol@example.com", (0, response(200)), name="carol")
    flow.cli('SETACCOUNTSIGNALRULES bob ((5, away, (), (("Redirect to", carol))))')
    _, finals = flow.invite("bob@example.com")
    assert [f.origin for f in finals] == ["carol"]


def test_a_stage_15_fork_adds_a_branch_while_the_devices_keep_ringing(flow):
    desk = flow.device("bob@example.com", (60, response(200)), name="desk")
    cell = flow.device("carol@example.com", (2, response(200)), name="cell")
    flow.cli('SETACCOUNTSIGNALRULES bob ((5, later, ((Stage, is, 15)), (("Fork to", carol))))')
    _, finals = flow.invite("bob@example.com")
    flow.clock.advance(14)
    assert cell.delivered == [] and finals == []
    flow.clock.advance(1)
    assert len(cell.delivered) == 1 and desk.cancelled == 0
    flow.clock.advance(2)
    assert [f.origin for f in finals] == ["cell"]
    assert desk.cancelled == 1


def test_a_busy_rule_fires_on_486_and_not_on_a_timeout(flow):
    flow.device("voicemail@example.com", (0, response(200)), name="voicemail")
    flow.cli('SETACCOUNTSIGNALRULES bob ((5, onbusy, ((Stage, is, busy)), (("Redirect to", voicemail))))')
    busy = flow.device("bob@example.com", (1, response(486)))
    _, finals = flow.invite("bob@example.com")
    flow.clock.advance(1)
    assert [f.origin for f in finals] == ["voicemail"]
    flow.devices.unregister("bob@example.com", busy)
    flow.device("bob@example.com", (1, response(408)))
    _, finals = flow.invite("bob@example.com")
    flow.clock.advance(1)
    assert [f.code for f in finals] == [408]


def test_rules_are_not_applied_to_in_dialog_requests(flow):
    flow.device("bob@example.com", (0, response(200)))
    flow.cli('SETACCOUNTSIGNALRULES bob ((5, busy, (), (("Reject with", "486 Busy Here"))))')
    signal = Signal(
        method="BYE", targets=("bob@example.com",), from_address="alice@example.com",
        to_address="bob@example.com", call_id="c", submitter=Submitter("sip"), in_dialog=True,
    )
    finals = []
    flow.core.signals.submit(signal).final.addCallback(finals.append)
    assert [f.code for f in finals] == [200]


def test_a_group_forks_to_its_members(flow):
    flow.cli("CREATEGROUP sales {Members = (bob, carol);}")
    bob = flow.device("bob@example.com", (4, response(200)))
    carol = flow.device("carol@example.com", (2, response(200)), name="carol")
    _, finals = flow.invite("sales@example.com")
    flow.clock.advance(2)
    assert [f.origin for f in finals] == ["carol"]
    assert bob.cancelled == 1 and len(carol.delivered) == 1


def test_an_account_without_devices_answers_480(flow):
    _, finals = flow.invite("bob@example.com")
    assert [f.code for f in finals] == [480]


def test_an_unknown_name_gets_404_and_a_rerouted_domain_reaches_its_target(flow):
    _, finals = flow.invite("nobody@example.com")
    assert [f.code for f in finals] == [404]
    flow.cli("UPDATEDOMAINSETTINGS example.com {SignalToUnknown = Rerouted; SignalRerouteAddress = carol;}")
    flow.device("carol@example.com", (0, response(200)), name="carol")
    _, finals = flow.invite("nobody@example.com")
    assert [f.origin for f in finals] == ["carol"]


def test_a_signal_that_outlives_its_lifetime_ends_with_408(flow):
    flow.device("bob@example.com", (100, response(200)))
    _, finals = flow.invite("bob@example.com")
    flow.clock.advance(32)
    assert [f.code for f in finals] == [408]
    assert flow.clock.getDelayedCalls() == []
