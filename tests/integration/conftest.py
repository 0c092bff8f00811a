"""
A real communigate server for integration tests, stopped after each test.
"""

import pytest

from communigate.testing import start_server, stop_server


@pytest.fixture
def live_server(tmp_path):
    server = start_server(tmp_path / "data")
    yield server
    stop_server(server)
