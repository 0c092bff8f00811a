"""
The stock C{attendant} application (an auto-attendant menu) and
C{bridgedcall}, the outgoing half it bridges callers with.

C{attendant} answers, plays a greeting and reads keys:

  - a key of its menu connects the caller to that entry's address;
  - digits ended by C{#} (or by 3 s without another key) dial an
    extension: the account of that name in the attendant's domain
    (C{task.account}'s), else the account holding that telephone number;
  - nothing for 5 s replays the greeting; after three rounds the caller is
    connected to the C{timeout} entry, or hung up without one.

An unknown extension or a failed call plays the C{congestion} tone for a
second and the menu starts again.

Parameters (C{name=value}, the Router passes them as written between the
braces): a key (C{0}–C{9}, C{*}) names the address that key reaches;
C{timeout} the address for a caller who chooses nothing; C{greeting} a
prompt name (default: a 440 Hz tone, 400 ms).  For example::

  S:<main> = attendant{1=sales,2=support,0=operator,timeout=operator,greeting=en/main}#postmaster

An address is anything the Router reads: an account name (in the
attendant's domain), C{name@domain}, a number, a SIP URI.

The caller is connected by a bridge: C{attendant} starts a
C{bridgedcall} task with the address as its parameter and calls
C{start_bridge} to it; C{bridgedcall} places the call with
C{start_bridged_call}, so ringing reaches the caller, and either side's
hang-up ends the other (C{BreakBridge}).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from communigate.interfaces import ICallApplication
from communigate.pbx.events import CallError, Event

__all__ = ["Attendant", "BridgedCall", "attendant_menu"]

MENU_KEYS = frozenset("0123456789*")
ROUNDS = 3
MENU_WAIT = 5
DIGIT_WAIT = 3
MAX_DIGITS = 15


def attendant_menu(parameters) -> tuple[dict[str, str], str | None, str | None]:
    """
    C{(menu, timeout, greeting)} from C{attendant}'s parameters.

    @raise ValueError: a parameter that is not C{key=address} with a key
        from C{0-9 *}, C{timeout=address} or C{greeting=prompt}.
    """
    menu: dict[str, str] = {}
    timeout = greeting = None
    for parameter in parameters:
        if not parameter:
            continue
        name, equals, value = parameter.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not value:
            raise ValueError(f"attendant parameter {parameter!r} is not name=value")
        if name == "timeout":
            timeout = value
        elif name == "greeting":
            greeting = value
        elif name in MENU_KEYS:
            menu[name] = value
        else:
            raise ValueError(f"attendant parameter {name!r}: the names are 0-9, *, timeout and greeting")
    return menu, timeout, greeting


def _target(task, address: str) -> str:
    if "@" in address or ":" in address:
        return address
    return f"{address}@{task.account.partition('@')[2] or task.service.main_domain()}"


def extension_account(task, digits: str) -> str | None:
    """
    The account extension C{digits} reaches in C{task}'s domain: the
    account of that name, else the owner of that telephone number.
    """
    directory = task.service.context.directory
    return directory.resolve_account(_target(task, digits)) or directory.telnum_owner(digits)


@implementer(IPlugin, ICallApplication)
class Attendant:
    name = "attendant"
    description = "An auto-attendant: a greeting, a menu of keys and extensions dialled by number."
    log = Logger()

    async def run(self, task) -> None:
        try:
            menu, timeout, greeting = attendant_menu(task.parameters)
        except ValueError as error:
            self.log.warn("attendant for {account}: {error}; 500", account=task.account, error=str(error))
            await task.reject_call(500, "Attendant misconfigured")
            return
        await task.accept_call()
        rounds = 0
        while rounds < ROUNDS:
            task.set_status("menu")
            if greeting:
                try:
                    await task.play_file(greeting)
                except CallError:
                    await task.play_tone(440, 400)
            else:
                await task.play_tone(440, 400)
            item = await task.read_input(MENU_WAIT)
            if isinstance(item, Event):
                if item.is_disconnect:
                    return
                continue
            if item is None:
                rounds += 1
                continue
            destination = None
            if item in menu:
                destination = _target(task, menu[item])
            elif item.isdigit():
                digits = await self._digits(task, item)
                if digits is None:
                    return
                destination = extension_account(task, digits)
                if destination is None:
                    task.set_status(f"no extension {digits}")
            if destination is None:
                await task.play_file("congestion", 1000)
                continue
            if await self._connect(task, destination):
                return
        if timeout:
            await self._connect(task, _target(task, timeout))
            return
        await task.disconnect()

    async def _digits(self, task, first: str) -> str | None:
        digits = first
        while len(digits) < MAX_DIGITS:
            item = await task.read_input(DIGIT_WAIT)
            if item is None or item == "#":
                break
            if isinstance(item, Event):
                if item.is_disconnect:
                    return None
                continue
            if item.isdigit():
                digits += item
        return digits

    async def _connect(self, task, destination: str) -> bool:
        """
        Bridge the caller to C{destination} until one side hangs up;
        C{False} when the call failed (the menu goes on).
        """
        task.set_status(f"calling {destination}")
        helper = task.start_task("bridgedcall", (destination,))
        try:
            await task.start_bridge(helper)
        except CallError as error:
            task.set_status(f"{destination}: {error}")
            if not task.is_connected():
                return True
            await task.play_file("congestion", 1000)
            return False
        task.set_status(f"connected to {destination}")
        while True:
            item = await task.read_input(None)
            if isinstance(item, Event) and (item.is_disconnect or item.is_break_bridge):
                if item.is_break_bridge and task.is_connected():
                    await task.disconnect()
                return True


@implementer(IPlugin, ICallApplication)
class BridgedCall:
    name = "bridgedcall"
    description = ("The outgoing half of a bridge: calls its parameter for the task that "
                   "starts a bridge to it, and hangs up when either side does.")

    async def run(self, task) -> None:
        if not task.parameters:
            return
        item = await task.read_input(60)
        if not (isinstance(item, Event) and item.is_start_bridge):
            return
        try:
            await task.start_bridged_call(task.parameters[0], item)
        except CallError:
            return
        while True:
            item = await task.read_input(None)
            if not isinstance(item, Event):
                continue
            if item.is_call_completed and item.parameter is not None:
                return
            if item.is_disconnect or item.is_break_bridge:
                if task.is_connected():
                    await task.disconnect()
                return
