"""
The resource tree of the server's HTTP listener: metrics, health, index.

Operators need to see what the server is doing before any protocol is
finished, so this listener exists from the first release: Prometheus scrapes
C{/metrics}, load balancers and supervisors probe C{/health}, and a person
pointing a browser at the port gets a short index.  The web admin and the
JSON API are added later as further children of the root (see
L{IndexResource}), which is why the root is a plain
L{twisted.web.resource.Resource} with C{putChild}.

Metrics go to a registry handed in by the caller, never to
C{prometheus_client}'s process-wide default registry, so two servers (or
two tests) in one process do not see each other's numbers.

Access logs: the site writes none.  Prometheus and health probes would fill
the log with a line every few seconds, and Twisted's default access log goes
to the global log as unstructured combined-log-format text.  Every request
is counted instead, in C{communigate_http_requests_total{path,code}}.
"""

import json
from urllib.parse import unquote_to_bytes

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = [
    "HealthChecks",
    "HealthResource",
    "IndexResource",
    "MetricsResource",
    "build_site",
    "new_registry",
]

#: The label a request gets when its path is not below a child of the root,
#: so that scanners probing random URLs cannot grow the label set.
OTHER_PATH = "other"


def new_registry() -> CollectorRegistry:
    """
    A fresh registry holding the process, platform and garbage-collector
    collectors.

    C{prometheus_client} registers these only on its global default
    registry; a server that keeps its own registry (so that it can share a
    process with another server or with tests) has to add them explicitly,
    once, which this does.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class HealthChecks:
    """
    Named liveness checks, run each time C{/health} is requested.

    A check is a callable taking no arguments.  It passes by returning
    L{None}; it fails by returning a message (a L{str}) or by raising.
    Checks run synchronously in the reactor thread, so each must be quick:
    one cheap read of the resource it watches.

    A failing check is logged when it starts failing and when it recovers,
    not on every probe, so a probe every few seconds does not flood the log
    while the cause persists.
    """

    log = Logger()

    def __init__(self) -> None:
        self._checks: dict = {}
        self._failing: dict = {}

    def add(self, name: str, check) -> None:
        """
        Register C{check} under C{name}.

        @raise ValueError: if a check of that name exists: two components
            reporting under one name would hide each other's failures.
        """
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} is already registered")
        self._checks[name] = check

    def names(self) -> list:
        """
        The names of the registered checks, in registration order.
        """
        return list(self._checks)

    def run(self) -> dict:
        """
        Run every check.

        @return: a L{dict} from check name to L{None} (passing) or the
            failure message.  A check that raises is reported as
            C{"ExceptionType: message"}; the exception does not propagate,
            so one broken check cannot take the whole report down.
        """
        results = {}
        for name, check in self._checks.items():
            results[name] = self._run_one(name, check)
        return results

    def _run_one(self, name, check):
        try:
            outcome = check()
        except Exception as error:
            kind, text = type(error).__name__, str(error)
            message = f"{kind}: {text}" if text else kind
        else:
            if outcome is None:
                message = None
            elif isinstance(outcome, str):
                message = outcome or "failed without a message"
            else:
                # A Deferred, a bool ...: not the documented contract, and
                # treating it as a pass could hide an outage.
                message = f"check returned {outcome!r}; expected None or a message"
        self._note_transition(name, message)
        return message

    def _note_transition(self, name, message):
        was_failing = self._failing.get(name, False)
        if message is not None and not was_failing:
            self.log.warn(
                "Health check {check} is failing: {check_message}",
                check=name,
                check_message=message,
            )
        elif message is None and was_failing:
            self.log.info("Health check {check} passes again", check=name)
        self._failing[name] = message is not None


class _LeafResource(Resource):
    """
    A resource with no children: anything below it is a 404, so
    C{/metrics/x} is not silently served as C{/metrics}.
    """

    def getChild(self, path, request):
        return notFound()


class MetricsResource(_LeafResource):
    """
    C{/metrics}: the Prometheus text exposition of one registry.
    """

    summary = "Prometheus metrics (text exposition format)"

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request):
        body = generate_latest(self._registry)
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return body


class HealthResource(_LeafResource):
    """
    C{/health}: the result of every L{HealthChecks} check as JSON.

    HTTP 200 with C{{"status": "ok", ...}} when all pass; HTTP 503 with
    C{{"status": "failing", ...}} when any fails, so a load balancer or
    supervisor can act on the status code alone.  C{checks} maps each
    check's name to C{{"status": "ok"}} or
    C{{"status": "failing", "message": ...}}.
    """

    summary = "JSON health report; HTTP 503 while a check fails"

    def __init__(self, checks: HealthChecks) -> None:
        super().__init__()
        self._checks = checks

    def render_GET(self, request):
        results = self._checks.run()
        report = {}
        for name, message in results.items():
            if message is None:
                report[name] = {"status": "ok"}
            else:
                report[name] = {"status": "failing", "message": message}
        healthy = all(message is None for message in results.values())
        request.setResponseCode(200 if healthy else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        body = {"status": "ok" if healthy else "failing", "checks": report}
        return json.dumps(body, sort_keys=True).encode("utf-8") + b"\n"


class IndexResource(Resource):
    """
    The root: a plain-text page naming the server and listing its
    endpoints.

    Later components attach themselves with C{putChild(b"admin", ...)}; the
    index lists every child, described by the child's C{summary} attribute
    when it has one, so it stays accurate without being edited.
    """

    def __init__(self, server_name: str) -> None:
        super().__init__()
        self._server_name = server_name

    def getChild(self, path, request):
        # "/" arrives as the empty child of the root.
        if path == b"":
            return self
        return notFound()

    def render_GET(self, request):
        lines = [f"{self._server_name}: CommuniGate real-time server", "", "Endpoints:"]
        entries = [
            (key.decode("ascii", "replace"), getattr(child, "summary", ""))
            for key, child in sorted(self.children.items())
        ]
        width = max((len(name) for name, _ in entries), default=0) + 1
        for name, summary in entries:
            lines.append(f"  /{name:<{width}} {summary}".rstrip())
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return ("\n".join(lines) + "\n").encode("utf-8")


class _CountingSite(Site):
    """
    A L{Site} that counts each finished request instead of writing an
    access log line.

    Counting here, where L{twisted.web.http.Request.finish} reports every
    request, sees the final status code of all of them, including the 404s
    and 405s that no resource of ours renders.
    """

    def __init__(self, root: IndexResource, requests: Counter, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self._root = root
        self._requests = requests

    def log(self, request):
        self._requests.labels(
            path=self._path_label(request.path), code=str(request.code)
        ).inc()

    def _path_label(self, path: bytes) -> str:
        """
        The root child that C{path} falls under (C{"/metrics"}), C{"/"} for
        the index, or L{OTHER_PATH}: bounded by the children the code
        registers, whatever clients send.
        """
        if path == b"/":
            return "/"
        if not path.startswith(b"/"):
            return OTHER_PATH
        first = unquote_to_bytes(path[1:].split(b"/", 1)[0])
        if first and first in self._root.children:
            return "/" + first.decode("ascii", "replace")
        return OTHER_PATH


def build_site(
    registry: CollectorRegistry,
    health_checks: HealthChecks,
    clock=None,
    server_name: str = "communigate",
) -> Site:
    """
    The HTTP site: C{/} (index), C{/metrics} and C{/health}; 404 elsewhere.

    @param registry: where C{/metrics} reads from, and where the
        C{communigate_http_requests_total} counter is registered.  Calling
        this twice with one registry raises L{ValueError} (a duplicated
        time series), since both sites would count into one counter.
    @param health_checks: the checks C{/health} runs.
    @param clock: the L{twisted.internet.interfaces.IReactorTime} that the
        site uses for connection time-outs; L{None} leaves the choice to
        L{twisted.web.http.HTTPFactory}, which then uses the global reactor.
    @param server_name: shown on the index page, e.g. the host name.

    @return: the site; C{site.resource} is the L{IndexResource} on which
        later components C{putChild} their own trees.
    """
    requests = Counter(
        "communigate_http_requests",
        "HTTP requests served by the admin listener, by root path and status.",
        labelnames=("path", "code"),
        registry=registry,
    )
    root = IndexResource(server_name)
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"health", HealthResource(health_checks))
    kwargs = {} if clock is None else {"reactor": clock}
    return _CountingSite(root, requests, **kwargs)
