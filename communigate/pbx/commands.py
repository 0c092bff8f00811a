"""
CLI commands of the PBX: start, signal, inspect and stop tasks.

  - C{STARTPBXTASK account [PROGRAM] name [ENTRY entry] [PARAM value]}:
    run application C{name} for C{account}, without a call; returns the
    task ID.  C{STARTPBXTASK account name value} is the short form.  An
    array parameter becomes the task's parameter list.
  - C{SENDTASKEVENT taskID [EVENT] name [PARAM value]}: queue an event
    for the task (its sender is empty).
  - C{KILLNODE taskID}: end the task (its call is released).
  - C{READNODESTATUS taskID}: the task's mode, program, account, status
    (what it set with C{set_status}), call and bridge.
  - C{LISTPBXTASKS} [D]: every running task's status, by task ID.
  - C{LISTPBXAPPLICATIONS} [D]: the installed applications and what they
    do.
  - C{LISTPBXQUEUES [account]} [D]: the task queues (of the account), each
    with its waiting tasks in order (ID, parameter, priority) and how many
    readers wait on it.
  - C{LISTPBXMEETINGS account} [D]: the account's meetings: their
    parameter and the active task's ID.

[D] C{ENTRY} is accepted and ignored: a Python application has one entry
point, its C{run}.
"""

from __future__ import annotations

from communigate.cli.arguments import CommandError
from communigate.cli.directory_commands import qualified
from communigate.pbx.events import Event, check_event_name

__all__ = ["PBXCommands"]


def _task_id(arguments) -> str:
    value = arguments.value("task ID")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CommandError("the task ID must be a number or a string")
    return str(value)


def _parameters(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(value)
    return (value,)


class PBXCommands:
    """
    The PBX's CLI commands over one L{communigate.pbx.service.PBXService}.
    """

    def __init__(self, service) -> None:
        self._service = service

    def _task(self, arguments):
        task_id = _task_id(arguments)
        arguments.end()
        task = self._service.find(task_id)
        if task is None:
            raise CommandError(f"unknown task {task_id}")
        return task

    def command_STARTPBXTASK(self, context, arguments):
        """STARTPBXTASK accountName [PROGRAM] programName [ENTRY entryName] [PARAM parameter]"""
        name = qualified(context, arguments.string("account name"))
        arguments.keyword("PROGRAM")
        program = arguments.string("program name")
        parameter = None
        while not arguments.at_end():
            word = arguments.keyword("ENTRY", "PARAM")
            if word == "ENTRY":
                arguments.string("entry name")
            elif word == "PARAM" or parameter is None:
                parameter = arguments.value("parameter")
            else:
                raise CommandError("one parameter only; use an array for several")
        account = self._service.context.directory.resolve_account(name)
        if account is None:
            raise CommandError(f"unknown account {name!r}")
        if program not in self._service.applications:
            raise CommandError(f"unknown application {program!r}; LISTPBXAPPLICATIONS lists them")
        if self._service.full:
            raise CommandError(f"{len(self._service.tasks)} PBX tasks run already; none more now")
        task = self._service.start_task(program, account, _parameters(parameter))
        return task.id

    def command_SENDTASKEVENT(self, context, arguments):
        """SENDTASKEVENT taskID [EVENT] eventName [PARAM parameter]"""
        task_id = _task_id(arguments)
        arguments.keyword("EVENT")
        name = arguments.string("event name")
        try:
            check_event_name(name)
        except ValueError as error:
            raise CommandError(str(error)) from None
        parameter = None
        if not arguments.at_end():
            arguments.keyword("PARAM")
            parameter = arguments.value("parameter")
        arguments.end()
        task = self._service.find(task_id)
        if task is None or not task.deliver_event(Event(name, None, parameter)):
            raise CommandError(f"unknown task {task_id}")

    def command_KILLNODE(self, context, arguments):
        """KILLNODE taskID"""
        self._task(arguments).kill()

    def command_READNODESTATUS(self, context, arguments):
        """READNODESTATUS taskID"""
        return _status(self._task(arguments), self._service.clock.seconds())

    def command_LISTPBXTASKS(self, context, arguments):
        """LISTPBXTASKS"""
        arguments.end()
        now = self._service.clock.seconds()
        return {task_id: _status(task, now) for task_id, task in sorted(
            self._service.tasks.items(), key=lambda item: int(item[0]) if item[0].isdigit() else 0
        )}

    def command_LISTPBXAPPLICATIONS(self, context, arguments):
        """LISTPBXAPPLICATIONS"""
        arguments.end()
        return {
            name: str(getattr(application, "description", "") or "")
            for name, application in sorted(self._service.applications.items())
        }


    def command_LISTPBXQUEUES(self, context, arguments):
        """LISTPBXQUEUES [accountName]"""
        account = None
        if not arguments.at_end():
            account = self._account(context, arguments)
        arguments.end()
        listed: dict = {}
        for owner, name, entries, readers in self._service.queues.queues(account):
            listed.setdefault(owner, {})[name] = {
                "Waiting": [
                    {"ID": entry.task_id, "Parameter": _text(entry.parameter), "Priority": f"{entry.priority:g}"}
                    for entry in entries
                ],
                "Readers": str(readers),
            }
        return listed

    def command_LISTPBXMEETINGS(self, context, arguments):
        """LISTPBXMEETINGS accountName"""
        account = self._account(context, arguments)
        arguments.end()
        listed: dict = {}
        for meeting_set, key, found in self._service.meetings.listed(account):
            shown = {"Parameter": _text(found["parameter"])}
            if "id" in found:
                shown["ID"] = found["id"]
            listed.setdefault(meeting_set, {})[key] = shown
        return listed

    def _account(self, context, arguments) -> str:
        name = qualified(context, arguments.string("account name"))
        account = self._service.context.directory.resolve_account(name)
        if account is None:
            raise CommandError(f"unknown account {name!r}")
        return account


def _text(value) -> object:
    """
    C{value} (what a program set as its status or got as a parameter) as
    something the data format can write: text, numbers, arrays and
    dictionaries stay, anything else becomes its text.
    """
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_text(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _text(item) for key, item in value.items()}
    return "" if value is None else str(value)


def _status(task, now: float) -> dict:
    status = {
        "ID": task.id,
        "Program": task.program,
        "Account": task.account,
        "Mode": task.mode.value,
        "Running": str(int(now - task.started_at)),
    }
    if task.parameters:
        status["Parameters"] = [_text(p) for p in task.parameters]
    if task.status is not None:
        status["Status"] = _text(task.status)
    call = task.call
    if call is not None:
        leg = call.leg
        status["Call"] = {
            "Call-ID": leg.call_id,
            "Direction": "incoming" if leg.incoming else "outgoing",
            "State": call.state,
            "Local": leg.local,
            "Remote": leg.remote,
        }
        if call.transparent:
            status["Call"]["Media"] = "transparent"  # the bridged peer's; no channel
        channel = call.channel
        if channel is not None and channel.port is not None:
            status["Call"]["Media"] = {
                "Port": str(channel.port),
                "Codec": channel.codec or "",
                "Remote": "" if channel.remote is None else f"{channel.remote[0]}:{channel.remote[1]}",
                "Sent": str(channel.frames_sent),
                "Received": str(channel.frames_received),
                "RTCP": channel.rtcp.status(),
            }
            if channel.detecting_inband:
                # The costly part of such a channel, shown so an operator
                # can tell which calls pay for it (InBandDTMF, inbandDTMF).
                status["Call"]["Media"]["InBandDTMF"] = "YES"
    if task.bridge is not None:
        status["Bridged"] = task.bridge.id
    if task.mixer_attached() is not None:
        status["Mixer"] = task.mixer_room() or "attached"
    return status
