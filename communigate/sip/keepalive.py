"""
NAT keep-alives: pinging the flows of contacts behind NAT so their
mappings stay open, and noticing when a flow stops answering so the
registrar can remove its contacts (CommuniGate's "NAT pinger"; digest §6).

A I{flow} is what RFC 5626 §3 calls one: a transport and the local and
remote addresses, so a ping goes out exactly where the contact's requests
came from.  Each watched flow gets a L{KeepAlive} machine on the one
scheduler (L{communigate.core.scheduler}), so 10,000 pingers cost a
small object and a timer-heap entry each (about 840 bytes with the flow,
measured by benchmarks/scheduler.py) and no threads, and their pings,
answers and failures are events handled one at a time.

What a ping is, per transport
=============================
  - B{UDP, C{"options"}} (the default): the SIP layer sends an OPTIONS
    request.  I{Any} response, 200 or 404 or 405, proves the contact is
    there and the mapping open, so the SIP layer calls
    L{KeepAliveService.pong} for any response and L{KeepAliveService.failed}
    on a timeout (Timer F) or transport error.  While
    one OPTIONS is outstanding no second one is sent: its retransmissions
    already keep the mapping open, and one outcome per probe keeps the
    failure count exact.  If the SIP layer reports nothing within
    C{options_timeout}, the probe counts as failed anyway.
  - B{UDP, C{"crlf"}}: a CRLFCRLF datagram.  Nothing answers it, so only
    send failures count (C{send} raising, or C{failed}); such a flow is
    never found dead by silence.  Choose it for UAs that reject OPTIONS or
    when traffic matters more than detection.
  - B{TCP/TLS/WS, C{"crlf"}}: a CRLFCRLF on the connection (RFC 5626
    §4.4.1).  A peer that answers such pings (RFC 5626 requires it of the
    server side; some UAs do it too) sends a single CRLF, which the SIP
    layer reports with C{pong}; a missing pong by the next ping is then a
    failure.  Most UAs ignore CRLFs between messages and never answer, and
    a closed connection already tells the transport the flow is gone, so
    by default a stream flow is held to answering only after it has
    answered once (C{stream_pong_required=False}).

Besides answers (L{KeepAliveService.pong}) the SIP layer may report any
other traffic on a flow (L{KeepAliveService.heard}): a request, a
response, the peer's own CRLFCRLF ping.  It proves the path alive and
clears the failure count, but it does not make a stream flow one that is
expected to answer.  A flow is dead after C{max_failures} failures in a
row; then its machine stops, it is forgotten, and C{on_dead(flow)} is
called.

When pings go out
=================
Each gap between two pings of a flow is uniform in
C{[(1 - jitter) * interval, interval]}, the RFC 5626 §4.4.1 "80% to 100%"
rule with the default jitter of 0.2.  C{interval} is therefore the longest
a mapping goes without outbound traffic, which is what a NAT's idle
timeout is compared with.  The first ping comes within one interval, drawn
so that 10,000 flows watched at the same moment (a restart rebuilding the
bindings) ping at the steady rate, C{flows / mean gap} per second, from the
first second on, instead of in one burst or in waves (L{first_gap}).  The
random source is injected, so tests are deterministic.
"""

from __future__ import annotations

import enum
import random as _random
from typing import Any, Callable, Hashable

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from communigate.core.scheduler import Machine, Scheduler, Started

__all__ = [
    "DATAGRAM_TRANSPORTS",
    "Flow",
    "KeepAlive",
    "KeepAliveService",
    "KeepAliveSettings",
    "STREAM_TRANSPORTS",
]

DATAGRAM_TRANSPORTS = frozenset({"udp"})
STREAM_TRANSPORTS = frozenset({"tcp", "tls", "ws", "wss", "sctp"})

#: The ping kinds C{send(flow, kind)} is asked for.
CRLF = "crlf"
OPTIONS = "options"


@attrs.frozen
class Flow:
    """
    One flow (RFC 5626 §3): where a contact's requests came from.  The
    service accepts any hashable object with a C{transport} attribute, so
    the transport layer may use its own; this one is for everyone else.

    @ivar transport: C{"udp"}, C{"tcp"}, C{"tls"}, C{"ws"}, C{"wss"} or
        C{"sctp"} (stored lower-case).
    @ivar local: the server's C{(host, port)}.
    @ivar remote: the peer's C{(host, port)} as observed (after NAT).
    """

    transport: str = attrs.field(converter=str.lower)
    local: tuple = attrs.field(converter=tuple)
    remote: tuple = attrs.field(converter=tuple)

    @classmethod
    def between(cls, source, local) -> Flow:
        """
        The flow of a binding, from its C{source} and C{local}
        C{(transport, host, port)} triples (L{communigate.sip.bindings});
        C{on_dead} gets it back as C{flow.source} and C{flow.listener}.
        """
        transport, host, port = source
        return cls(transport, (local[1], local[2]), (host, port))

    @property
    def source(self) -> tuple:
        """
        C{(transport, host, port)} of the peer, as bindings store it.
        """
        return (self.transport, *self.remote)

    @property
    def listener(self) -> tuple:
        """
        C{(transport, host, port)} of the server's end, as bindings store it.
        """
        return (self.transport, *self.local)

    @transport.validator
    def _check_transport(self, attribute, value):
        if value not in DATAGRAM_TRANSPORTS | STREAM_TRANSPORTS:
            raise ValueError(f"unknown SIP transport {value!r} in a flow")


# -- settings ------------------------------------------------------------


def _number(name: str, low: float, high: float, *, integer: bool = False):
    kind = "a whole number" if integer else "a number"

    def check(instance, attribute, value):
        good_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not good_type or not low <= value <= high:
            raise ValueError(f"{name} must be {kind} from {low} to {high}, not {value!r}")

    return check


def _choice(name: str, allowed: tuple[str, ...]):
    def check(instance, attribute, value):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    return check


@attrs.frozen
class KeepAliveSettings:
    """
    How NAT keep-alives behave.  Invalid values are refused at
    construction, naming the setting and what it allows.

    @ivar interval: the longest gap between two pings of a flow, seconds
        (default 25: inside the 20-30 s NATs commonly need [D]).
    @ivar jitter: each gap is uniform in C{[(1 - jitter) * interval,
        interval]}; 0 to 0.5.
    @ivar udp_method: C{"options"} (detects dead contacts) or C{"crlf"}
        (lighter, detects only send failures).
    @ivar stream_method: C{"crlf"}; the RFC 5626 keep-alive on TCP, TLS
        and WebSocket flows.
    @ivar max_failures: failures in a row after which a flow is dead.
    @ivar stream_pong_required: hold a stream flow to answering CRLF pings
        from the start, instead of only once it has answered one.
    @ivar options_timeout: seconds after which an OPTIONS ping the SIP
        layer never reported on counts as failed (default: twice Timer F).
    """

    interval: float = attrs.field(default=25.0, validator=_number("interval", 5, 3600))
    jitter: float = attrs.field(default=0.2, validator=_number("jitter", 0, 0.5))
    udp_method: str = attrs.field(default=OPTIONS, validator=_choice("udp_method", (OPTIONS, CRLF)))
    stream_method: str = attrs.field(default=CRLF, validator=_choice("stream_method", (CRLF,)))
    max_failures: int = attrs.field(
        default=3, validator=_number("max_failures", 1, 100, integer=True)
    )
    stream_pong_required: bool = attrs.field(default=False)
    options_timeout: float = attrs.field(
        default=64.0, validator=_number("options_timeout", 1, 3600)
    )

    @stream_pong_required.validator
    def _check_bool(self, attribute, value):
        if not isinstance(value, bool):
            raise ValueError(f"stream_pong_required must be true or false, not {value!r}")


# -- the machine -----------------------------------------------------------


class State(enum.Enum):
    """
    Where a flow's pinger is.  C{WAITING}: a ping that expects an answer is
    out.  C{IDLE}: none is (answered, failed, or one that is never
    answered).  C{DEAD}: too many failures; terminal.
    """

    IDLE = "Idle"
    WAITING = "Waiting"
    DEAD = "Dead"


class _Ping:
    def __repr__(self) -> str:
        return "Ping"


class _Pong:
    def __repr__(self) -> str:
        return "Pong"


class _Heard:
    def __repr__(self) -> str:
        return "Heard"


class _Failed:
    def __repr__(self) -> str:
        return "Failed"


PING, PONG, HEARD, FAILED = _Ping(), _Pong(), _Heard(), _Failed()


class KeepAlive(Machine):
    """
    The pinger of one flow.  Its events: L{Started}, C{PING} (its own
    timer), C{PONG}, C{HEARD} and C{FAILED} (posted by the service for the
    SIP layer).
    """

    __slots__ = ("service", "flow", "stream", "state", "failures", "answered", "method", "sent_at")

    log = Logger()

    def __init__(self, service: KeepAliveService, flow: Hashable, stream: bool) -> None:
        self.service = service
        self.flow = flow
        self.stream = stream
        self.state = State.IDLE
        self.failures = 0
        self.answered = False  # has this flow ever answered?
        self.method = ""  # of the ping out in WAITING
        self.sent_at = 0.0

    def handle(self, event: Any) -> None:
        if self.state is State.DEAD:
            return
        if event is PING:
            self._ping()
        elif event is PONG:
            self.failures = 0
            self.answered = True
            self.state = State.IDLE
        elif event is HEARD:
            self.failures = 0
        elif event is FAILED:
            self.state = State.IDLE
            self._failure("reported failed")
        elif isinstance(event, Started):
            self.after(self.service.first_gap(), PING)

    def _ping(self) -> None:
        service = self.service
        settings = service.settings
        self.after(service.next_gap(), PING)
        if self.state is State.WAITING:
            if self.method == OPTIONS:
                if self.scheduler.clock.seconds() - self.sent_at < settings.options_timeout:
                    return  # its transaction is still retransmitting
                self.state = State.IDLE
                self._failure("OPTIONS never reported on")
            else:
                self.state = State.IDLE
                self._failure("no pong")
            if self.state is State.DEAD:
                return
        method = settings.stream_method if self.stream else settings.udp_method
        try:
            service._send(self.flow, method)
        except OSError as error:  # the network said no: expected, no traceback
            self.log.warn(
                "NAT keep-alive {method} to {flow!r} could not be sent: {error}",
                method=method,
                flow=self.flow,
                error=error,
            )
            self._failure("send failed")
            return
        except Exception:  # a bug in the SIP layer's send: show where
            self.log.failure(
                "NAT keep-alive {method} to {flow!r} could not be sent",
                Failure(),
                LogLevel.error,
                method=method,
                flow=self.flow,
            )
            self._failure("send failed")
            return
        if method == OPTIONS or (
            self.stream and (self.answered or settings.stream_pong_required)
        ):
            self.state = State.WAITING
            self.method = method
            self.sent_at = self.scheduler.clock.seconds()

    def _failure(self, reason: str) -> None:
        self.failures += 1
        self.service.failures += 1
        self.log.debug(
            "NAT keep-alive to {flow!r}: {reason} ({failures} in a row)",
            flow=self.flow,
            reason=reason,
            failures=self.failures,
        )
        if self.failures >= self.service.settings.max_failures:
            self.state = State.DEAD
            self.service._dead(self)

    def stopped(self) -> None:
        # However the machine stopped (forgotten, dead, or a handler that
        # raised), the service must not keep a flow nobody pings.
        self.service._stopped(self)

    def __repr__(self) -> str:
        return f"<KeepAlive {self.flow!r} {self.state.value} failures={self.failures}>"


# -- the service -----------------------------------------------------------


class KeepAliveService:
    """
    Keeps the flows of NATed contacts open and reports the ones that die.

    @param scheduler: the scheduler the pingers run on.
    @param send: C{send(flow, kind)}, provided by the SIP transport layer;
        C{kind} is C{"crlf"} (write CRLFCRLF on the flow) or C{"options"}
        (send an OPTIONS request over it and later call L{pong} for any
        response or L{failed} for a timeout or transport error).  If it
        raises, the ping counts as failed.
    @param on_dead: C{on_dead(flow)} when a flow has failed
        C{max_failures} times in a row; the flow is already forgotten.
    @param settings: L{KeepAliveSettings}; replace with L{update_settings}.
    @param random: the source of jitter (a seeded C{random.Random} makes
        the spread reproducible).
    @param registry: a Prometheus registry for C{communigate_sip_keepalive_*}.

    @ivar pings: pings sent, by kind.
    @ivar pongs: answers reported.
    @ivar failures: failures counted (missed answers, failed sends).
    @ivar dead: flows found dead.
    """

    log = Logger()

    def __init__(
        self,
        scheduler: Scheduler,
        send: Callable[[Hashable, str], Any],
        on_dead: Callable[[Hashable], Any],
        settings: KeepAliveSettings | None = None,
        *,
        random: _random.Random | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.send = send
        self.on_dead = on_dead
        self.settings = settings if settings is not None else KeepAliveSettings()
        self.random = random if random is not None else _random.Random()
        self.pings = {CRLF: 0, OPTIONS: 0}
        self.pongs = 0
        self.failures = 0
        self.dead = 0
        self._machines: dict[Hashable, KeepAlive] = {}
        if registry is not None:
            registry.register(KeepAliveCollector(self))

    @property
    def flows(self) -> int:
        """
        How many flows are watched.
        """
        return len(self._machines)

    def __contains__(self, flow: Hashable) -> bool:
        return flow in self._machines

    def watch(self, flow: Hashable) -> None:
        """
        Start pinging C{flow}.  Watching a watched flow changes nothing
        (a re-REGISTER over the same flow is news for L{heard}).
        """
        if flow in self._machines:
            return
        transport = str(getattr(flow, "transport", "")).lower()
        if transport in STREAM_TRANSPORTS:
            stream = True
        elif transport in DATAGRAM_TRANSPORTS:
            stream = False
        else:
            raise ValueError(f"cannot keep a {transport or 'transport-less'} flow alive: {flow!r}")
        machine = self._machines[flow] = KeepAlive(self, flow, stream)
        self.scheduler.start(machine)

    def forget(self, flow: Hashable) -> bool:
        """
        Stop pinging C{flow} (its contacts were removed or expired): its
        machine stops and its timer is cancelled.  Returns whether it was
        watched.
        """
        machine = self._machines.pop(flow, None)
        if machine is None:
            return False
        machine.stop()
        return True

    def forget_all(self) -> None:
        """
        Stop pinging everything (the SIP module is stopping).
        """
        for flow in list(self._machines):
            self.forget(flow)

    def pong(self, flow: Hashable) -> bool:
        """
        C{flow} answered a keep-alive: any response to the OPTIONS, or a
        single CRLF on a stream (not the first half of the peer's own
        CRLFCRLF ping: that is L{heard}).  Its failure count starts again,
        and a stream flow is from now on expected to answer its pings.
        Returns whether the flow is watched; an answer from a flow no
        longer watched is ignored.
        """
        machine = self._machines.get(flow)
        if machine is None:
            return False
        self.pongs += 1
        return machine.post(PONG)

    def heard(self, flow: Hashable) -> bool:
        """
        Something else arrived over C{flow}: a request, a response, the
        peer's own CRLFCRLF ping.  The path is alive, so its failure count
        starts again; but this says nothing about whether the peer answers
        pings, which is why it is not L{pong}.
        """
        machine = self._machines.get(flow)
        if machine is None:
            return False
        return machine.post(HEARD)

    def failed(self, flow: Hashable) -> bool:
        """
        A ping of C{flow} failed: the OPTIONS timed out or got a transport
        error, or a CRLF could not be written.  Call once per failed ping.
        """
        machine = self._machines.get(flow)
        if machine is None:
            return False
        return machine.post(FAILED)

    def update_settings(self, settings: KeepAliveSettings) -> None:
        """
        Use C{settings} from each flow's next ping on, without restarting.
        """
        self.settings = settings

    def first_gap(self) -> float:
        """
        Seconds to a new flow's first ping, drawn from the equilibrium
        distribution of the gaps (density M{(1 - F(t)) / mean gap}): flat up
        to the shortest gap, then falling linearly to zero at the longest.
        Flows watched together then ping at the steady rate from the start;
        a first ping uniform over the whole interval would pile the second
        round onto the end of the first (about 1.8 times the steady rate
        around the 25th second, measured with 10,000 flows).
        """
        settings = self.settings
        longest = settings.interval
        shortest = longest * (1 - settings.jitter)
        mean = (shortest + longest) / 2
        rng = self.random
        if rng.random() * mean < shortest:
            return rng.uniform(0, shortest)
        return longest - (longest - shortest) * rng.random() ** 0.5

    def next_gap(self) -> float:
        """
        Seconds to a flow's next ping: uniform in C{[(1 - jitter) *
        interval, interval]}.
        """
        settings = self.settings
        return settings.interval * (1 - self.random.uniform(0, settings.jitter))

    # -- called by the machines ----------------------------------------------

    def _send(self, flow: Hashable, kind: str) -> None:
        self.pings[kind] += 1
        self.send(flow, kind)

    def _stopped(self, machine: KeepAlive) -> None:
        if self._machines.get(machine.flow) is machine:
            del self._machines[machine.flow]

    def _dead(self, machine: KeepAlive) -> None:
        flow = machine.flow
        self._stopped(machine)  # now, not when stopped() runs after the handler
        machine.stop()
        self.dead += 1
        self.log.info(
            "NAT keep-alive: {flow!r} stopped answering after {failures} failures",
            flow=flow,
            failures=machine.failures,
        )
        try:
            self.on_dead(flow)
        except Exception:
            self.log.failure("on_dead raised for {flow!r}", Failure(), LogLevel.error, flow=flow)


class KeepAliveCollector(Collector):
    """
    The service's figures as C{communigate_sip_keepalive_*}, read at
    scrape time.
    """

    def __init__(self, service: KeepAliveService) -> None:
        self._service = service

    def collect(self):
        s = self._service
        yield GaugeMetricFamily(
            "communigate_sip_keepalive_flows", "NATed flows being kept alive.", value=s.flows
        )
        pings = CounterMetricFamily(
            "communigate_sip_keepalive_pings", "Keep-alive pings sent, by kind.", labels=["kind"]
        )
        for kind, count in sorted(s.pings.items()):
            pings.add_metric([kind], count)
        yield pings
        yield CounterMetricFamily(
            "communigate_sip_keepalive_pongs", "Keep-alive answers reported.", value=s.pongs
        )
        yield CounterMetricFamily(
            "communigate_sip_keepalive_failures",
            "Keep-alive pings that failed or went unanswered.",
            value=s.failures,
        )
        yield CounterMetricFamily(
            "communigate_sip_keepalive_dead_flows",
            "Flows found dead and reported to the registrar.",
            value=s.dead,
        )
