"""
The stock applications that need nothing but the task API.

  - C{echo}: answers and sends the caller's own audio back, frame for
    frame after the jitter buffer (about 60 ms later): the first thing
    people call to test a line.  Keys pressed are ignored; the call ends
    when the caller hangs up.
  - C{dtmftest}: answers, plays a prompt (its first parameter, default
    C{beep}), then answers every key with a tone that says which key it
    heard (0 → 400 Hz, 1 → 500 Hz ... 9 → 1300 Hz, * → 1400 Hz, A-D →
    1500-1800 Hz) and shows the keys so far as its status
    (C{READNODESTATUS}); C{#} hangs up, 30 s without a key too.

They are registered as plugins in C{communigate/plugins/pbx_apps.py}.
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event

__all__ = ["DTMFTest", "Echo", "tone_for_key"]

_KEY_TONES = {**{str(n): 400 + 100 * n for n in range(10)}, "*": 1400, "A": 1500, "B": 1600, "C": 1700, "D": 1800}


def tone_for_key(key: str) -> int:
    """
    The frequency C{dtmftest} answers C{key} with.
    """
    return _KEY_TONES[key.upper()]


async def _until_hang_up(task) -> None:
    while True:
        item = await task.read_input(None)
        if isinstance(item, Event) and item.is_disconnect:
            return


@implementer(IPlugin, ICallApplication)
class Echo:
    name = "echo"
    description = "Answers and sends the caller's own audio back."

    async def run(self, task) -> None:
        await task.accept_call()
        task.start_echo()
        task.set_status("echoing")
        await _until_hang_up(task)


@implementer(IPlugin, ICallApplication)
class DTMFTest:
    name = "dtmftest"
    description = "Answers, plays a prompt, then answers each key pressed with a tone naming it."

    async def run(self, task) -> None:
        await task.accept_call()
        prompt = task.parameters[0] if task.parameters and task.parameters[0] else "beep"
        try:
            await task.play_file(prompt)
        except CallError:
            await task.play_file("beep")
        heard = ""
        while True:
            item = await task.read_input(30)
            if item is None:
                await task.disconnect()
                return
            if isinstance(item, Event):
                if item.is_disconnect:
                    return
                continue
            heard += item
            task.set_status(f"keys {heard}")
            if item == "#":
                await task.disconnect()
                return
            await task.play_tone(tone_for_key(item), 600)
