"""
The call queue in a real C{twistd communigate}: a sipp caller (its media a
Python RTP peer sending 440 Hz) calls C{support}, routed to
C{callqueue{support}}, and hears the hold music (the built-in phrase's
523/659 Hz chord); an agent's phone (a sipp caller whose peer sends
700 Hz) calls C{agents}, routed to C{queueagent{support}}, and is bridged
with the waiting caller: each hears the other and not itself.  When the agent
hangs up, the caller's call is ended by the server (its sipp scenario
passes only when the BYE comes).
"""

from __future__ import annotations

import pytest

from pbx_live_helpers import RTPPeer, call, configure, errors, finished, hears, never_hears, pbx_server, task_status

CALLER_TONE, AGENT_TONE = 440, 700  # the agent's ready beep is 1 kHz
HOLD_CHORD = (523.25, 659.25)


@pytest.fixture
def queue_server(tmp_path):
    with pbx_server(tmp_path) as (server, _):
        configure(
            server,
            'SETROUTERTABLE "S:<support> = callqueue{support}#postmaster\\e'
            'S:<agents> = queueagent{support}#postmaster"',
        )
        yield server


def test_a_waiting_caller_hears_hold_music_and_then_talks_to_the_agent_who_calls_in(queue_server, tmp_path):
    caller_dir, agent_dir = tmp_path / "caller", tmp_path / "agent"
    caller_dir.mkdir()
    agent_dir.mkdir()
    with RTPPeer(CALLER_TONE) as caller, RTPPeer(AGENT_TONE) as agent:
        calling = call(queue_server, caller_dir, "support", caller.port, "uac_app_hung_up.xml", timeout="30s")
        on_hold = caller.wait_for(lambda: hears(caller.audio(), HOLD_CHORD, share=0.3))
        waiting = task_status(queue_server, "callqueue")
        hold_heard = len(caller.audio())
        agent_call = call(queue_server, agent_dir, "agents", agent.port, "uac_app.xml")
        talking = caller.wait_for(lambda: hears(caller.audio()[hold_heard:], AGENT_TONE, CALLER_TONE)
                                  and hears(agent.audio(), CALLER_TONE, AGENT_TONE))
        agent_code, agent_output = finished(agent_call)
        caller_code, caller_output = finished(calling)
        caller_heard, agent_heard = caller.audio(), agent.audio()
    assert on_hold, "the waiting caller heard no hold music"
    assert waiting is not None and waiting.get("Status", "").startswith("waiting in support: 1 of 1"), waiting
    assert talking, "the caller and the agent did not hear each other"
    assert agent_code == 0, agent_output + errors(agent_dir)
    assert caller_code == 0, caller_output + errors(caller_dir) + queue_server.output()[-3000:]
    assert never_hears(caller_heard, CALLER_TONE), "the caller heard its own 440 Hz"
    assert never_hears(agent_heard, AGENT_TONE), "the agent heard its own 700 Hz"
