"""
A real communigate server for integration tests, stopped after each test;
and this directory on C{sys.path}, so that test modules import the helpers
they share (C{pbx_live_helpers}) by name: pytest runs with
C{--import-mode=importlib}, which puts no test directory there.
"""

import os
import sys

import pytest

from communigate.testing import start_server, stop_server

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def live_server(tmp_path):
    server = start_server(tmp_path / "data")
    yield server
    stop_server(server)
