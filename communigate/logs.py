"""
Log observers for the server, as text for people or JSON for collectors.

Code logs with a class-level L{twisted.logger.Logger} and C{{field}}
formats, so every event already carries its values as fields.  The JSON
observer keeps those fields, one JSON object per line, so a log collector
can filter on C{account} or C{call_id} without parsing sentences.

Twisted's own L{twisted.logger.jsonFileLogObserver} is not used: it
prefixes each record with an ASCII record separator, serialises the level as
an object with a class UUID and keeps the unformatted C{log_format}, which
collectors then have to format themselves.

twistd takes a log observer factory (a callable with no arguments) through
its C{--logger} option, kept as C{options["logger"]}; L{observer_factory}
builds one.  When a factory is given, twistd's C{AppLogger} calls it instead
of opening its own log, so C{--logfile} and C{--syslog} no longer apply:
the factory must be told the file itself (see L{observer_factory}).
"""

import json
import sys

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "json_observer", "observer_factory", "text_observer"]


def _level_name(level):
    return getattr(level, "name", level)


def _as_text(value):
    """
    The fallback for values C{json} cannot encode: their C{repr}, so the
    line is still written and still says what the value was.
    """
    return repr(value)


def _encodable(value):
    try:
        json.dumps(value, default=_as_text, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def event_as_json(event) -> str:
    """
    One log event as a single line of JSON, without the newline.

    The line holds C{log_time} (seconds since the epoch), C{log_level} (the
    level's name), C{log_namespace}, C{message} (the formatted text), then
    C{log_system} and C{traceback} when the event has them, then the
    event's own fields (those not starting with C{log_}).  Standard keys
    win over own fields of the same name.  Values JSON cannot represent are
    written as their C{repr}.
    """
    record = {
        "log_time": event.get("log_time"),
        "log_level": _level_name(event.get("log_level")),
        "log_namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    if "log_system" in event:
        record["log_system"] = event["log_system"]
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        record["traceback"] = failure.getTraceback()
    for key, value in event.items():
        if key.startswith("log_") or key in record or isinstance(value, Failure):
            continue
        record[key] = value
    try:
        return json.dumps(record, default=_as_text, allow_nan=False)
    except (TypeError, ValueError):
        # Non-string keys in a nested dict, a reference cycle, a NaN: encode
        # each field on its own so one bad value costs only itself.
        safe = {key: _encodable(value) for key, value in record.items()}
        return json.dumps(safe, default=_as_text, allow_nan=False)


def json_observer(stream) -> FileLogObserver:
    """
    An observer writing each event to C{stream} as one line of JSON (see
    L{event_as_json}), flushed after every line.
    """
    return FileLogObserver(stream, lambda event: event_as_json(event) + "\n")


def text_observer(stream) -> FileLogObserver:
    """
    An observer writing Twisted's classic human-readable lines to C{stream}.
    """
    return textFileLogObserver(stream)


LOG_FORMATS = {"text": text_observer, "json": json_observer}


LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


def observer_factory(log_format: str, logfile=None, level: str = "debug"):
    """
    A zero-argument callable returning a log observer, for twistd's
    C{options["logger"]}.

    Because twistd ignores C{--logfile} once a logger factory is set, the
    file is given here.  C{logfile} of L{None} or C{"-"} means standard
    output, looked up when the factory is called; a path is opened then as
    a L{twisted.python.logfile.LogFile}, as twistd would (rotated at 1 MB).
    Nothing is opened by this function itself, so option parsing stays free
    of I/O.

    The caller mirrors twistd's choice for daemons: a daemon's standard
    output is discarded once it forks, so when not running with C{-n}
    (C{--nodaemon}) give a path (twistd's default is C{"twistd.log"}).

    @raise ValueError: if C{log_format} is not one of L{LOG_FORMATS}.
    """
    try:
        make_observer = LOG_FORMATS[log_format]
    except (KeyError, TypeError):
        allowed = ", ".join(repr(name) for name in LOG_FORMATS)
        raise ValueError(
            f"log format {log_format!r} is not supported; allowed formats: {allowed}"
        ) from None

    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of: " + ", ".join(LOG_LEVELS))

    def factory():
        if logfile is None or logfile == "-":
            stream = sys.stdout
        else:
            stream = LogFile.fromFullPath(logfile)
        observer = make_observer(stream)
        if level == "debug":
            return observer
        # Per-request debug events stay cheap: they are dropped here, before
        # anything formats them.
        predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
        return FilteringLogObserver(observer, [predicate])

    return factory
