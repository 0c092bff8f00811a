"""
The PBX: running tasks, the applications they run, their media channels,
and the route handler that starts a task for every Signal routed to an
application.

A Signal whose route ends in the C{PBX} module (the Router's answer for
C{program{params}#account}, C{#program} ...) reaches
L{ApplicationRoutes.endpoint}: an INVITE starts a new task running
C{program} on behalf of the account, with the parameters, and the INVITE
as its incoming call; a program nobody installed answers 404 (logged);
other methods answer 405.  C{STARTPBXTASK} starts a task without a call.

Applications are L{ICallApplication} plugins found with
C{getPlugins(ICallApplication, communigate.plugins)} when the service is
built (or given explicitly); the stock ones (C{echo}, C{dtmftest}) live
in C{communigate/plugins/pbx_apps.py}.
"""

from __future__ import annotations

import ipaddress
import itertools
import os

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.plugin import getPlugins
from zope.interface import implementer

from communigate.interfaces import ICallApplication, IDelivery, IEndpoint, IKeepsAccountData, IRouteHandler
from communigate.pbx.channel import MediaChannel, MediaCounters, PortRange
from communigate.pbx.leg import LegError
from communigate.pbx.meetings import Meetings
from communigate.pbx.mixing import ConferenceRooms
from communigate.pbx.prompts import Prompts
from communigate.pbx.queues import TaskQueues
from communigate.pbx.reliable import unsupported_options
from communigate.pbx.task import Task
from communigate.routing.addresses import AddressError, parse_address
from communigate.routing.route import Module
from communigate.signal.model import response

__all__ = [
    "ApplicationRoutes",
    "MEDIA_FORM",
    "MediaSettings",
    "PBXService",
    "installed_applications",
    "parse_media_description",
]

MEDIA_FORM = "rtp:LOW-HIGH[:interface=ADDRESS][:address=ADDRESS]"
#: Tasks one server runs at most; a call to an application past it gets 480.
DEFAULT_MAX_TASKS = 10_000


@attrs.frozen
class MediaSettings:
    """
    Where media channels bind: even RTP ports C{low}-C{high} on
    C{interface} ("" for all), named in SDP as C{address} (default: the
    interface, or the local address towards each peer).
    """

    low: int = 20000
    high: int = 29999
    interface: str = ""
    address: str | None = None


def parse_media_description(text: str) -> MediaSettings:
    """
    C{rtp:20000-29999[:interface=ADDRESS][:address=ADDRESS]} as
    L{MediaSettings}.

    @raise ValueError: naming what is wrong and the allowed form.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not text; use {MEDIA_FORM}")
    kind, _, rest = text.partition(":")
    if kind.lower() != "rtp" or not rest:
        raise ValueError(f"{text!r} is not {MEDIA_FORM}")
    span, *options = rest.split(":")
    low_text, dash, high_text = span.partition("-")
    if not dash or not low_text.isdigit() or not high_text.isdigit():
        raise ValueError(f"{span!r} is not a port range LOW-HIGH; use {MEDIA_FORM}")
    low, high = int(low_text), int(high_text)
    PortRange(low, high)  # checks the numbers
    values = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("interface", "address") or not value:
            raise ValueError(f"unknown option {option!r}; use {MEDIA_FORM}")
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{key}={value!r} is not an IP address") from None
        values[key] = value
    return MediaSettings(low, high, values.get("interface", ""), values.get("address"))


def installed_applications() -> dict:
    """
    The installed L{ICallApplication} plugins by name (the first of two
    with one name wins, and the second is logged).
    """
    import communigate.plugins

    found = {}
    for application in getPlugins(ICallApplication, communigate.plugins):
        name = getattr(application, "name", None)
        if not isinstance(name, str) or not name:
            PBXService.log.warn("PBX application {app!r} has no name; ignored", app=application)
            continue
        if name in found:
            PBXService.log.warn("Two PBX applications are called {name}; {app!r} ignored", name=name, app=application)
            continue
        found[name] = application
    return found


def split_program(call: str) -> tuple[str, tuple[str, ...]]:
    """
    C{program{a,b}} (the Router's third element) as C{("program", ("a",
    "b"))}.
    """
    name, brace, rest = call.partition("{")
    if not brace:
        return call, ()
    return name, tuple(part.strip() for part in rest.rstrip("}").split(","))


@implementer(IDelivery)
class _Finished:
    def cancel(self) -> None:
        pass


@implementer(IEndpoint)
class _Refusal:
    """
    An application route that cannot be delivered: answered at once.
    """

    def __init__(self, answer, description: str) -> None:
        self.answer = answer
        self.description = description

    def deliver(self, signal, responder):
        responder.final(self.answer)
        return _Finished()


@implementer(IDelivery)
class _IncomingDelivery:
    """
    An INVITE handed to a task; a cancel (the caller gave up, another
    branch won, the Signal's lifetime ran out) reaches the task.
    """

    def __init__(self, task: Task) -> None:
        self._task = task
        self._call = task.call

    def cancel(self) -> None:
        call = self._call
        if call is not None:
            self._task.later(call.cancelled)


@implementer(IEndpoint)
class _ApplicationEndpoint:
    def __init__(self, service: PBXService, application, account: str, parameters) -> None:
        self._service = service
        self._application = application
        self._account = account
        self._parameters = parameters
        self.description = f"{application.name} for {account}"

    def deliver(self, signal, responder):
        if signal.method.upper() != "INVITE":
            responder.final(response(405, f"{signal.method} cannot start an application"))
            return _Finished()
        unsupported = unsupported_options(signal.headers)
        if unsupported:
            # RFC 3261 8.2.2.3: an extension the caller requires and we lack.
            responder.final(response(420, "Bad Extension", headers=(("Unsupported", ", ".join(unsupported)),)))
            return _Finished()
        try:
            task = self._service.start_task(
                self._application, self._account, self._parameters, incoming=(signal, responder)
            )
        except LegError as error:
            responder.final(response(400, str(error)[:80]))
            return _Finished()
        return _IncomingDelivery(task)


@implementer(IRouteHandler)
class ApplicationRoutes:
    """
    Routes ending in the C{PBX} module: a new task per INVITE.
    """

    module = Module.PBX
    log = Logger()

    def __init__(self, service: PBXService) -> None:
        self._service = service

    def endpoint(self, route, signal):
        program, parameters = split_program(route.address)
        if self._service.full:
            self.log.warn(
                "Signal {call_id} for {program}: {count} tasks run already; 480",
                call_id=signal.call_id, program=program, count=len(self._service.tasks),
            )
            return _Refusal(response(480, "Too many PBX tasks"), "PBX full")
        application = self._service.applications.get(program)
        if application is None:
            self.log.warn(
                "Signal {call_id} routed to application {program} for {account}, which is not installed; 404",
                call_id=signal.call_id, program=program, account=route.host,
            )
            return _Refusal(response(404, f"No application {program}"), f"missing application {program}")
        return _ApplicationEndpoint(self._service, application, route.host, parameters)


class PBXService(Service):
    """
    The tasks of one server.

    @param context: the L{communigate.context.ServerContext} (reactor,
        scheduler, signals, dialogs, directory, metrics, config).
    @param media: the L{MediaSettings}.
    @param applications: name → L{ICallApplication}; default: the
        installed plugins.
    @param prompt_directory: where prompt files are; default:
        C{pbx/prompts} in the data directory (none without one).
    @param max_tasks: tasks running at most (see L{full}).

    @ivar tasks: running tasks by ID.
    """

    log = Logger()

    def __init__(self, context, media: MediaSettings = MediaSettings(), *, applications=None,
                 prompt_directory: str | None = None, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if context.scheduler is None or context.signals is None or context.dialogs is None:
            raise ValueError("the PBX needs a core built with a reactor (scheduler, signals, dialogs)")
        self.context = context
        self.clock = context.reactor
        self.scheduler = context.scheduler
        self.signals = context.signals
        self.dialogs = context.dialogs
        self.media = media
        self.ports = PortRange(media.low, media.high)
        self.applications = dict(installed_applications() if applications is None else applications)
        if prompt_directory is None and getattr(context.config, "data_dir", ""):
            prompt_directory = os.path.join(context.config.data_dir, "pbx", "prompts")
        self.prompts = Prompts(prompt_directory)
        self.counters = MediaCounters()
        self.tasks: dict[str, Task] = {}
        self.rooms = ConferenceRooms(self.scheduler)
        self.queues = TaskQueues()
        self.meetings = Meetings(context.store, lambda task_id: task_id in self.tasks)
        context.directory.watch_accounts(self.meetings)
        self.started: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.bridges: dict[str, int] = {}  # bridges formed: simple, transparent, fallback
        self.host = getattr(context, "hostname", None) or "communigate"
        self.max_tasks = max_tasks
        self._ids = itertools.count(1)
        if context.metrics is not None:
            context.metrics.register(PBXCollector(self))
        for application in self.applications.values():
            if IKeepsAccountData.providedBy(application):
                keeper = application.account_data(self)
                if keeper is not None:
                    context.directory.watch_accounts(keeper)

    # -- lifecycle ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.signals.add_route_handler(ApplicationRoutes(self))
        self.log.info(
            "PBX: {count} applications ({names}); media ports {low}-{high}",
            count=len(self.applications), names=", ".join(sorted(self.applications)) or "none",
            low=self.ports.low, high=self.ports.high,
        )

    def stopService(self):
        for task in list(self.tasks.values()):
            task.kill()
        return super().stopService()

    # -- tasks ----------------------------------------------------------------------

    def main_domain(self) -> str:
        return self.context.directory.main_domain()

    @property
    def full(self) -> bool:
        """
        Whether C{max_tasks} tasks run: a call to an application then gets
        480 (a 503 would reach the caller as 500, RFC 3261 16.7),
        C{STARTPBXTASK} an error.
        """
        return len(self.tasks) >= self.max_tasks

    def find(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    def start_task(self, application, account: str, parameters=(), *, incoming=None) -> Task:
        """
        Run C{application} (an L{ICallApplication} or its name) for
        C{account}; with C{incoming=(signal, responder)}, the INVITE is the
        task's call to answer.

        @raise KeyError: no application of that name.
        @raise LegError: the INVITE cannot make a dialog.
        """
        if isinstance(application, str):
            found = self.applications.get(application)
            if found is None:
                raise KeyError(application)
            application = found
        task = Task(self, str(next(self._ids)), application, account, parameters)
        if incoming is not None:
            task.take_incoming(*incoming)
        self.tasks[task.id] = task
        self.started[task.program] = self.started.get(task.program, 0) + 1
        self.scheduler.start(task)
        self.log.info(
            "Task {id} runs {program} for {account}{call}", id=task.id, program=task.program, account=account,
            call="" if incoming is None else f" (call {incoming[0].call_id})",
        )
        return task

    def task_ended(self, task: Task) -> None:
        self.tasks.pop(task.id, None)
        task._leave_rendezvous()

    def program_failed(self, task: Task, failure) -> None:
        self.failures[task.program] = self.failures.get(task.program, 0) + 1
        self.log.failure(
            "Task {id}: application {program} raised; its call is released",
            failure, id=task.id, program=task.program, account=task.account,
        )

    def kill(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        task.kill()
        return True

    # -- media ------------------------------------------------------------------------

    @property
    def inband_dtmf(self) -> bool:
        """
        Whether a new channel listens for DTMF tones when telephone-event
        was not negotiated: the media server setting C{InBandDTMF}
        (C{Auto}, the default: yes; C{No}), a task's C{inbandDTMF} media
        option overriding it for its call.
        """
        settings = getattr(self.context, "media_settings", None)
        return True if settings is None else settings.current.inband_dtmf

    def make_channel(self, *, name: str, on_dtmf, on_played, on_recorded, inband_dtmf: bool = True) -> MediaChannel:
        return MediaChannel(
            reactor=self.clock,
            scheduler=self.scheduler,
            ports=self.ports,
            interface=self.media.interface,
            advertised=self.media.address or self._wan_address(),
            on_dtmf=on_dtmf,
            on_played=on_played,
            on_recorded=on_recorded,
            counters=self.counters,
            name=name,
            inband_dtmf=inband_dtmf,
        )

    def _wan_address(self) -> str | None:
        network = getattr(self.context, "network", None)
        if network is None or self.media.interface not in ("", "0.0.0.0", "::"):
            return None
        return network.current.wan_address or None


def account_address(context, text: str) -> str:
    """
    The account C{text} names (C{name} in the main domain, or
    C{name@domain}), as C{name@domain}.

    @raise ValueError: no such account.
    """
    try:
        parse_address(text)
    except AddressError as error:
        raise ValueError(str(error)) from None
    account = context.directory.resolve_account(text)
    if account is None:
        raise ValueError(f"unknown account {text!r}")
    return account


class PBXCollector(Collector):
    """
    C{communigate_pbx_*}, read at scrape time.
    """

    def __init__(self, service: PBXService) -> None:
        self._service = service

    def collect(self):
        service = self._service
        counters = service.counters
        running = GaugeMetricFamily("communigate_pbx_tasks", "Tasks running, by program.", labels=["program"])
        by_program: dict[str, int] = {}
        for task in service.tasks.values():
            by_program[task.program] = by_program.get(task.program, 0) + 1
        for program, count in sorted(by_program.items()):
            running.add_metric([program], count)
        yield running
        started = CounterMetricFamily("communigate_pbx_tasks_started", "Tasks started, by program.",
                                      labels=["program"])
        for program, count in sorted(service.started.items()):
            started.add_metric([program], count)
        yield started
        failed = CounterMetricFamily("communigate_pbx_task_failures",
                                     "Tasks whose program raised, by program.", labels=["program"])
        for program, count in sorted(service.failures.items()):
            failed.add_metric([program], count)
        yield failed
        yield GaugeMetricFamily("communigate_pbx_channels", "Media channels open.", value=counters.open)
        frames = CounterMetricFamily("communigate_pbx_frames", "RTP media frames, by direction.",
                                     labels=["direction"])
        frames.add_metric(["sent"], counters.frames_sent)
        frames.add_metric(["received"], counters.frames_received)
        yield frames
        dtmf = CounterMetricFamily("communigate_pbx_dtmf", "DTMF keys detected, by method.", labels=["method"])
        for method in ("rfc4733", "inband", "info"):
            dtmf.add_metric([method], counters.dtmf.get(method, 0))
        yield dtmf
        bridges = CounterMetricFamily("communigate_pbx_bridges",
                                      "Bridges formed, by mode (fallback: simple after a refused transparent one).",
                                      labels=["mode"])
        for mode in ("simple", "transparent", "fallback"):
            bridges.add_metric([mode], service.bridges.get(mode, 0))
        yield bridges
        dropped = CounterMetricFamily("communigate_pbx_rtp_dropped", "RTP packets dropped, by reason.",
                                      labels=["reason"])
        dropped.add_metric(["malformed"], counters.malformed)
        dropped.add_metric(["foreign"], counters.foreign)
        dropped.add_metric(["payload"], counters.unexpected_payload)
        dropped.add_metric(["late"], counters.late_or_duplicate)
        yield dropped
        rtcp = CounterMetricFamily("communigate_pbx_rtcp", "RTCP datagrams, by direction.",
                                   labels=["direction"])
        rtcp.add_metric(["sent"], counters.rtcp_sent)
        rtcp.add_metric(["received"], counters.rtcp_received)
        yield rtcp
        yield CounterMetricFamily("communigate_pbx_rtcp_malformed", "RTCP datagrams received malformed and dropped.",
                                  value=counters.rtcp_malformed)
