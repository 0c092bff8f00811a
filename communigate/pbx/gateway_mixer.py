"""
C{gatewayincoming{DESTINATION,mixer}}: the gateway's caller and the
called party joined through a conference mixer (L{communigate.pbx.mixing})
instead of a simple bridge.

The call is set up as the B2BUA's is -- a second task (L{MixerLeg}) calls
the destination with C{start_bridged_call}, so its ringing and early media
reach the caller and its answer answers the caller -- and once both calls
are up they move into a room of their own:

  ingress task                                   MixerLeg task
  start_bridge(leg) ───StartBridge───────────▶  start_bridged_call(DEST)
       (180/183 relayed, 200 answers the caller) ◀── CallCompleted
  break_bridge()     ───BreakBridge──────────▶  (kept: a move, not an end)
  attach_mixer(room) ───JoinMixer(room)──────▶  attach_mixer(room)

The room is C{gatewayincoming-ID} (ID: the ingress task's) of the account
the two tasks run for, in the PBX's rooms (C{service.rooms}): a two-party
room that the ingress task owns, so more parties can be attached later
(a task of that account calling C{attach_mixer} with the name, a
recorder listening in).  Either side's hang-up ends both calls: each task
tells the other with a C{GatewayHangUp} event; the room closes when the
last party leaves.

[D] Mixing costs a decode and an encode per frame for each party (the
simple bridge passes frames through when both calls negotiated the same
codec); it is what a call that may grow into a conference needs.
"""

from __future__ import annotations

from twisted.logger import Logger
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event

__all__ = ["JOIN_MIXER", "MixerLeg", "mix_out", "room_name"]

JOIN_MIXER = "JoinMixer"
HANG_UP = "GatewayHangUp"
#: How long the leg waits for its starter's StartBridge.
_BRIDGE_WAIT = 10

log = Logger()


def room_name(task) -> str:
    """
    The room of the ingress C{task}'s call.
    """
    return f"gatewayincoming-{task.id}"


async def mix_out(task, destination: str, caller: str) -> None:
    """
    Connect C{task}'s incoming call with C{destination} (From: C{caller})
    through a mixer room of its own; returns when either side hung up.
    Raises L{CallError} with the failure when the destination was not
    reached (the caller is still to be answered then).
    """
    leg = task.start_task(MIXER_LEG, (destination, caller))
    try:
        await task.start_bridge(leg)
    except CallError:
        if task.call is None:
            task.send_event(leg, HANG_UP)
        raise
    room = room_name(task)
    await task.break_bridge()
    try:
        await task.attach_mixer(room)
    except CallError as error:
        log.info("gatewayincoming: task {id} cannot attach to its mixer: {error}", id=task.id, error=error)
        task.send_event(leg, HANG_UP)
        await task.disconnect()
        return
    task.send_event(leg, JOIN_MIXER, room)
    task.set_status(f"connected to {destination} (mixer {room})")
    while True:
        item = await task.read_input(None)
        if isinstance(item, Event) and (item.is_disconnect or item.what == HANG_UP):
            if item.is_disconnect:
                task.send_event(leg, HANG_UP)
            if task.call is not None:
                await task.disconnect()
            return


@implementer(ICallApplication)
class MixerLeg:
    """
    The outgoing half of C{gatewayincoming{DEST,mixer}} (started by it,
    never routed to).  Parameters: the destination and the From URI.
    """

    name = "gatewaymixerleg"
    description = "The outgoing half of gatewayincoming with mixer (started by it)."

    async def run(self, task) -> None:
        destination, caller = (tuple(task.parameters) + ("", ""))[:2]
        event = await task.read_input(_BRIDGE_WAIT)
        if not isinstance(event, Event) or not event.is_start_bridge:
            return
        starter = event.sender
        task.set_status(f"calling {destination}")
        try:
            await task.start_bridged_call(destination, event, **({"caller": caller} if caller else {}))
        except CallError:
            return  # the starter's start_bridge raises with it
        connected = False
        while True:
            item = await task.read_input(None)
            if not isinstance(item, Event):
                continue
            if item.is_call_completed:
                if item.parameter is not None:
                    return
                connected = True
                task.set_status(f"connected to {destination}")
            elif item.is_break_bridge and not connected:
                return  # the starter gave up while it rang: our call was cancelled
            elif item.what == JOIN_MIXER and item.sender == starter:
                try:
                    await task.attach_mixer(str(item.parameter))
                except CallError as error:
                    log.info("gatewaymixerleg: task {id} cannot attach: {error}", id=task.id, error=error)
                    task.send_event(starter, HANG_UP)
                    await task.disconnect()
                    return
            elif item.is_disconnect or item.what == HANG_UP:
                if item.is_disconnect:
                    task.send_event(starter, HANG_UP)
                if task.call is not None:
                    await task.disconnect()
                return


MIXER_LEG = MixerLeg()
