"""
The stock call-queue applications: callers wait in line, hearing music,
and operators ("agents") who have called in take them in turn -- a small
ACD built on the task queues (L{communigate.pbx.queues}) and simple
bridges.

  - C{callqueue{QUEUE[,MAXWAIT]}#account}: the caller is answered, hears
    a welcome (the prompt C{queue/welcome} when installed, else a short
    chime), is put in the account's task queue C{QUEUE} (C{main} when the
    parameter is empty) and hears hold music (the prompt C{queue/hold},
    else the built-in C{hold}) until an agent takes the call.  Every
    L{ANNOUNCE_EVERY} seconds the caller hears its place in line when the
    prompts C{queue/position} and C{digits/N} are installed (nothing is
    said otherwise [D]: no speech is generated).  After C{MAXWAIT}
    seconds (default: no limit) the caller leaves the line, hears the
    congestion tone and is hung up [D].  C{READNODESTATUS} shows its
    place.
  - C{queueagent{QUEUE[,WRAPUP]}#account}: an agent's phone calls in and
    stays connected; the agent hears a beep when ready and silence while
    waiting, then is bridged (simply: both calls stay with the server, so
    the agent's keys still reach the task) with the caller at the head of
    the line, longest waiting first among callers of the same priority.
    When the caller hangs up the agent hears a beep and, after C{WRAPUP}
    seconds (default 0), gets the next caller.  The agent presses C{#}
    to end a call with a caller, and hangs up to log out.  Several
    agents on one queue share it: each caller goes to the agent that has
    waited longest.

Routing them (Router): C{S:<support> = callqueue{support}#postmaster} and
C{S:<agents> = queueagent{support}#postmaster}; a queue belongs to the
account the tasks run for, so both routes name the same one.

Registered as plugins in C{communigate/plugins/pbx_apps.py}.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event

__all__ = ["CallQueue", "QueueAgent", "queue_parameters"]

DEFAULT_QUEUE = "main"
#: Seconds of hold music between looks at the caller's place in line.
HOLD_SLICE = 5.0
#: Seconds between announcements of the caller's place in line.
ANNOUNCE_EVERY = 30.0
#: The largest place announced with digit prompts (beyond: not announced).
MAX_ANNOUNCED = 99

log = Logger()


def queue_parameters(parameters) -> tuple[str, float | None]:
    """
    The queue name and the seconds limit (L{None}: none) from a task's
    parameters (C{QUEUE}, C{QUEUE,SECONDS}); a bad number raises
    C{ValueError}.
    """
    name = str(parameters[0]).strip() if parameters and str(parameters[0]).strip() else DEFAULT_QUEUE
    limit = None
    if len(parameters) > 1 and str(parameters[1]).strip():
        limit = float(str(parameters[1]).strip())
        if not 0 <= limit <= 86400:
            raise ValueError(f"{parameters[1]!r} is not a number of seconds (0-86400)")
    return name, limit


async def _configured(task, what: str) -> tuple[str, float | None] | None:
    """The task's queue parameters; bad ones answer the call 500 (logged) and give L{None}."""
    try:
        return queue_parameters(task.parameters)
    except ValueError as error:
        log.warn("{what} for {account}: {error}; 500", what=what, account=task.account, error=str(error))
        await task.reject_call(500, f"{what} misconfigured")
        return None


async def _play_first(task, *names: str, ms: int | None = None) -> bool | None:
    """Play the first of C{names} that exists; L{None} when none does."""
    for name in names:
        try:
            return await task.play_file(name, ms)
        except CallError:
            continue
    return None


async def _say_place(task, place: int) -> None:
    """'You are number N' from prompts, when they are installed."""
    if place > MAX_ANNOUNCED:
        return
    try:
        task.service.prompts.load("queue/position")
        digits = [f"digits/{digit}" for digit in str(place)]
        for name in digits:
            task.service.prompts.load(name)
    except LookupError:
        return
    for name in ("queue/position", *digits):
        if not await task.play_file(name):
            return


@implementer(IPlugin, ICallApplication)
class CallQueue:
    name = "callqueue"
    description = "A caller waits in line with music until an agent (queueagent) takes the call."

    async def run(self, task) -> None:
        configured = await _configured(task, "Call queue")
        if configured is None:
            return
        queue, limit = configured
        await task.accept_call()
        clock = task.service.clock
        since = clock.seconds()
        caller = {"caller": (task.remote_uri() or "").split(";tag=", 1)[0], "since": since}
        if await _play_first(task, "queue/welcome") is None:
            await task.play_tone(660, 300)
        task.enqueue(queue, caller)
        announced, taken_at = since, None
        while True:
            now = clock.seconds()
            if limit is not None and now - since >= limit:
                task.dequeue(queue)
                task.set_status(f"gave up waiting in {queue}")
                await task.play_file("congestion", 2000)
                await task.disconnect()
                return
            checked = task.check_queue(queue)
            if checked["position"] is None:
                # Read by an agent whose bridge has not come (yet): an agent
                # that fails to bridge must not cost the caller its call, so
                # after a moment the caller takes its place again, ahead of
                # those who came later.
                taken_at = now if taken_at is None else taken_at
                if now - taken_at >= HOLD_SLICE:
                    task.enqueue(queue, caller, 1.0)
                    taken_at = None
            else:
                taken_at = None
                task.set_status(f"waiting in {queue}: {checked['position'] + 1} of {checked['length']}")
                if now - announced >= ANNOUNCE_EVERY:
                    announced = now
                    await _say_place(task, checked["position"] + 1)
            slice_seconds = HOLD_SLICE if limit is None else min(HOLD_SLICE, max(0.02, limit - (now - since)))
            await _play_first(task, "queue/hold", "hold", ms=round(slice_seconds * 1000))
            while (item := await task.read_input(0)) is not None:
                if isinstance(item, Event) and item.is_disconnect:
                    return
                if isinstance(item, Event) and item.is_start_bridge:
                    await self._talk(task, item, queue)
                    return

    async def _talk(self, task, event: Event, queue: str) -> None:
        task.dequeue(queue)
        try:
            await task.accept_bridge(event)
        except CallError as error:
            log.info("callqueue: the agent's bridge failed: {error}", error=error)
            return
        task.set_status("talking to an agent")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                if item.is_break_bridge and task.is_connected():
                    await task.disconnect()
                return


@implementer(IPlugin, ICallApplication)
class QueueAgent:
    name = "queueagent"
    description = "An agent's line: takes the callers waiting in a callqueue, one after another."

    async def run(self, task) -> None:
        configured = await _configured(task, "Queue agent")
        if configured is None:
            return
        queue, wrapup = configured
        await task.accept_call()
        served = 0
        while task.is_connected():
            task.set_status(f"ready for {queue} ({served} served)")
            await task.play_file("beep")
            entry = await task.read_queue(queue, None)
            if entry is None:
                item = await task.read_input(0)
                if isinstance(item, Event) and item.is_disconnect:
                    return
                continue
            try:
                await task.start_bridge(entry["id"])
            except CallError as error:
                log.info("queueagent: caller {id} is gone ({error})", id=entry["id"], error=error)
                continue
            served += 1
            task.set_status(f"talking to {_caller_of(entry)}")
            if not await self._talking(task):
                return
            if wrapup:
                task.set_status(f"wrap-up ({wrapup:g} s)")
                item = await task.read_input(wrapup)
                if isinstance(item, Event) and item.is_disconnect:
                    return

    @staticmethod
    async def _talking(task) -> bool:
        """Until the caller or the agent ends the call; whether the agent is still there."""
        while True:
            item = await task.read_input(None)
            if item == "#":
                await task.break_bridge()
                return task.is_connected()
            if isinstance(item, Event):
                if item.is_disconnect:
                    return False
                if item.is_break_bridge:
                    return task.is_connected()


def _caller_of(entry) -> str:
    parameter = entry.get("parameter")
    if isinstance(parameter, dict) and parameter.get("caller"):
        return str(parameter["caller"])
    return f"task {entry['id']}"
