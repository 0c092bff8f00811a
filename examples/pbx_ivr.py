"""
A PBX application plugin: a small voice menu.

It answers, plays a short tone and reads one key: 1 or 2 transfers the
caller (a blind transfer, REFER) to the first or second address in its
parameters; anything else, or five seconds of silence, plays the menu
tone again; after three tries it plays a busy tone and hangs up.  The
keys pressed show in C{READNODESTATUS}.

Install it by copying this file into a C{communigate/plugins/} directory
on the Python path (your own package's, for example); C{twistd
communigate} finds it at start (C{LISTPBXAPPLICATIONS} lists it).  Route
calls to it with a Router record such as

    S:<menu> = ivrmenu{sales@example.com,support@example.com}#postmaster

See docs/pbx.md for the task API.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event

MENU_TONE = 440
TRIES = 3


@implementer(IPlugin, ICallApplication)
class VoiceMenu:
    name = "ivrmenu"
    description = "A voice menu: 1 and 2 transfer the caller to the addresses in its parameters."

    async def run(self, task):
        await task.accept_call()
        choices = [address for address in task.parameters if address]
        pressed = ""
        for _ in range(TRIES):
            await task.play_tone(MENU_TONE, 300)
            item = await task.read_input(5)
            if isinstance(item, Event):
                if item.is_disconnect:
                    return
                continue
            if item is None:
                continue
            pressed += item
            task.set_status(f"pressed {pressed}")
            if item in "12" and int(item) <= len(choices):
                try:
                    await task.transfer_call(choices[int(item) - 1])
                except CallError as error:
                    task.set_status(f"transfer failed: {error}")
                    continue
                # The caller's phone places the new call and hangs up on us.
                await task.read_input(30)
                return
        await task.play_file("busy", 2000)
        await task.disconnect()


ivr_menu = VoiceMenu()
