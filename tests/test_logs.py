"""
Tests for the log observers and the twistd logger factory.
"""

import io
import json
import math

import pytest
from twisted.logger import Logger, LogPublisher

from communigate.logs import (
    event_as_json,
    json_observer,
    observer_factory,
    text_observer,
)


def emit_to(observer, emit):
    publisher = LogPublisher(observer)
    log = Logger(namespace="communigate.sip.Registrar", observer=publisher)
    emit(log)


def json_lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_observer_writes_one_parseable_object_per_line():
    stream = io.StringIO()
    observer = json_observer(stream)

    emit_to(observer, lambda log: log.info("Registered {account}", account="a@b.c"))
    emit_to(observer, lambda log: log.warn("Rejected {count} bindings", count=3))

    assert stream.getvalue().count("\n") == 2
    first, second = json_lines(stream)
    assert first["message"] == "Registered a@b.c"
    assert first["account"] == "a@b.c"
    assert first["log_level"] == "info"
    assert first["log_namespace"] == "communigate.sip.Registrar"
    assert isinstance(first["log_time"], float)
    assert second["count"] == 3
    assert second["log_level"] == "warn"


def test_json_observer_leaves_out_internal_log_fields():
    stream = io.StringIO()

    emit_to(json_observer(stream), lambda log: log.info("x {y}", y=1))

    (record,) = json_lines(stream)
    assert "log_format" not in record
    assert "log_logger" not in record
    assert "log_source" not in record


def test_json_observer_writes_the_traceback_of_a_failure():
    stream = io.StringIO()

    def emit(log):
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("Dialog {call_id} crashed", call_id="abc")

    emit_to(json_observer(stream), emit)

    (record,) = json_lines(stream)
    assert record["message"] == "Dialog abc crashed"
    assert record["call_id"] == "abc"
    assert "ZeroDivisionError" in record["traceback"]
    assert record["log_level"] == "critical"


def test_json_observer_writes_unencodable_values_as_repr():
    stream = io.StringIO()
    marker = object()

    emit_to(
        json_observer(stream),
        lambda log: log.info(
            "odd", thing=marker, raw=b"\x00", ratio=math.nan, table={(1, 2): "x"}
        ),
    )

    (record,) = json_lines(stream)
    assert record["thing"] == repr(marker)
    assert record["raw"] == repr(b"\x00")
    assert record["ratio"] == "nan"
    assert record["table"] == repr({(1, 2): "x"})


def test_standard_keys_win_over_own_fields_of_the_same_name():
    line = event_as_json(
        {"log_format": "hello", "message": ("legacy",), "log_time": 1.0}
    )

    assert json.loads(line)["message"] == "hello"


def test_text_observer_writes_the_formatted_message():
    stream = io.StringIO()

    emit_to(text_observer(stream), lambda log: log.info("Hello {who}", who="world"))

    assert "Hello world" in stream.getvalue()
    assert "communigate.sip.Registrar" in stream.getvalue()


@pytest.mark.parametrize("log_format", ["xml", "JSON", "", None])
def test_observer_factory_refuses_unknown_formats_naming_the_allowed(log_format):
    with pytest.raises(ValueError) as raised:
        observer_factory(log_format)

    assert "'text'" in str(raised.value)
    assert "'json'" in str(raised.value)


def test_observer_factory_opens_nothing_until_called(tmp_path):
    path = tmp_path / "server.log"

    factory = observer_factory("json", str(path))

    assert not path.exists()
    emit_to(factory(), lambda log: log.info("started {port}", port=8010))
    assert json.loads(path.read_text())["port"] == 8010


@pytest.mark.parametrize("logfile", [None, "-"])
def test_observer_factory_writes_to_stdout_without_a_file(logfile, capsys):
    factory = observer_factory("text", logfile)

    emit_to(factory(), lambda log: log.info("to {where}", where="stdout"))

    assert "to stdout" in capsys.readouterr().out
