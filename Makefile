# Quick start: `make run` serves a demo domain on 127.0.0.1; `make test` runs
# the whole suite.  Both create .venv on first use and reinstall when the
# package metadata changes.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= run-data
# The package is installed in "compat" editable mode: it puts the checkout
# on sys.path, which is how Twisted finds twisted/plugins/communigate_plugin.py.
INSTALL := $(BIN)/pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat

.PHONY: run test test-peers bench-peers bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.cfg
	$(INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(INSTALL) -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(INSTALL) -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/twistd --nodaemon --pidfile= communigate --data $(DATA) --domain example.com --demo \
	    --cli tcp:10106:interface=127.0.0.1 --http tcp:8010:interface=127.0.0.1 \
	    --sip udp:5060:interface=127.0.0.1 --sip tcp:5060:interface=127.0.0.1 \
	    --xmpp tcp:5222:interface=127.0.0.1 --xmpp-s2s tcp:5269:interface=127.0.0.1

# The real peers the integration tests drive; installed once, as root (CI)
# or through sudo.
test-peers:
	@command -v sipp >/dev/null || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester; }

# The peers the benchmarks compare with: sipp, Kamailio (the reference
# registrar in benchmarks/sip_load.py) and rtpengine (the reference media
# relay in benchmarks/media_relay.py --rtpengine), installed the same way.
# Not part of `make test`.
bench-peers: test-peers
	@command -v kamailio >/dev/null || [ -x /usr/sbin/kamailio ] || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio; }
	@command -v prosody >/dev/null || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody; }
	@command -v rtpengine >/dev/null || [ -x /usr/bin/rtpengine ] || { \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rtpengine-daemon; }

test: $(VENV)/.installed-test test-peers
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-bench bench-peers
	$(BIN)/python benchmarks/start_time.py
	$(BIN)/python benchmarks/import_accounts.py
	$(BIN)/python benchmarks/sip_load.py
	$(BIN)/python benchmarks/xmpp_load.py
	$(BIN)/python benchmarks/bridged_calls.py

clean:
	rm -rf $(VENV) build dist *.egg-info
