"""
The stock C{conference} application: callers meet in a room on the
conference mixer (L{communigate.pbx.mixing}).

  - C{conference{room}#account} joins room C{room} of the account the
    task runs for (C{main} when the parameter is empty); every caller in
    the room hears the others and never itself.
  - C{conference{room,listen}#account}: listen-only, the caller hears
    the room and is never heard.
  - A room asks for a PIN only when one is configured, in the account
    setting C{ConferencePINs}, a dictionary of room names to PINs
    (C{UPDATEACCOUNTSETTINGS pbx {ConferencePINs={sales="4711";};}}).
    The caller hears a 660 Hz prompt tone and types the digits and C{#}
    (10 s per key); after three wrong PINs a low tone and a hang-up.
  - Joining plays a rising tone (880 Hz then 1320 Hz) to the caller.
  - In the room, C{*} mutes and unmutes a talking caller, C{#} leaves.

Registered as a plugin in C{communigate/plugins/pbx_conference.py}.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import Event

__all__ = ["Conference", "PIN_SETTING", "conference_parameters", "room_pin"]

#: The account setting holding the PINs of the account's rooms.
PIN_SETTING = "ConferencePINs"
DEFAULT_ROOM = "main"
PIN_TRIES = 3
PIN_KEY_SECONDS = 10
PIN_PROMPT_HZ = 660
WRONG_PIN_HZ = 300
JOIN_TONES_HZ = (880, 1320)

log = Logger()


def conference_parameters(parameters) -> tuple[str, bool]:
    """
    The room name and whether the caller only listens, from the task's
    parameters (C{room}, C{room,listen}).
    """
    room = parameters[0].strip() if parameters and parameters[0].strip() else DEFAULT_ROOM
    listen = any(str(p).strip().lower() == "listen" for p in parameters[1:])
    return room, listen


def room_pin(directory, account: str, room: str) -> str | None:
    """
    The PIN of C{room} of C{account} from its C{ConferencePINs} setting, or
    L{None} when the room has none (or the account cannot be read).
    """
    try:
        pins = directory.account_effective_settings(account).get(PIN_SETTING)
    except Exception as error:  # an unknown account, a storage error: no PIN to ask
        log.info("Conference: no settings of {account}: {error}", account=account, error=error)
        return None
    if not isinstance(pins, dict):
        return None
    pin = pins.get(room)
    return str(pin) if pin not in (None, "") else None


async def _read_pin(task) -> str | None:
    """
    Digits up to C{#} (or a key timeout); L{None} when the caller hung up.
    """
    typed = ""
    while True:
        item = await task.read_input(PIN_KEY_SECONDS)
        if item is None:
            return typed
        if isinstance(item, Event):
            if item.is_disconnect:
                return None
            continue
        if item == "#":
            return typed
        typed += item


async def _admitted(task, pin: str) -> bool:
    for _ in range(PIN_TRIES):
        await task.play_tone(PIN_PROMPT_HZ, 300)
        typed = await _read_pin(task)
        if typed is None:
            return False
        if typed == pin:
            return True
        task.set_status("wrong PIN")
        await task.play_tone(WRONG_PIN_HZ, 400)
    task.set_interrupt_on_dtmf(False)
    await task.play_tone(WRONG_PIN_HZ, 800)
    await task.disconnect()
    return False


@implementer(IPlugin, ICallApplication)
class Conference:
    name = "conference"
    description = "Joins the caller to a conference room (parameters: room[,listen]); a room PIN when configured."

    async def run(self, task) -> None:
        room, listen = conference_parameters(task.parameters)
        pin = room_pin(task.service.context.directory, task.account, room)
        await task.accept_call()
        if pin is not None and not await _admitted(task, pin):
            return
        for frequency in JOIN_TONES_HZ:
            await task.play_tone(frequency, 150)
        await task.attach_mixer(room, listen=listen)
        muted = False
        task.set_status(f"room {room}" + (" (listening)" if listen else ""))
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event):
                if item.is_disconnect:
                    return
                continue
            if item == "#":
                await task.disconnect()
                return
            if item == "*" and not listen:
                muted = not muted
                await task.mute_mixer(muted)
                task.set_status(f"room {room}" + (" (muted)" if muted else ""))
