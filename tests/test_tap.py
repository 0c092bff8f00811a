"""
twistd's option parsing: listen options grow from the protocol modules.
"""

import pytest
from twisted.python import usage
from zope.interface import implementer

from communigate.interfaces import IProtocolModule
from communigate.tap import options_for
from communigate.server import protocol_modules


@implementer(IProtocolModule)
class FakeModule:
    def __init__(self, name, default=("tcp:9999",)):
        self.name = name
        self.description = f"The {name} listener."
        self.default_listen = default

    def check_listen(self, description):
        if not description.startswith("tcp:"):
            raise ValueError("use tcp:PORT")

    def build_service(self, context, descriptions):
        raise AssertionError("not built in option tests")


def parse(argv, modules=(FakeModule("sip"), FakeModule("cli"))):
    options = options_for(modules)()
    options.parseOptions(argv)
    return options


def test_each_module_gets_a_repeatable_listen_option():
    options = parse(["--sip", "tcp:5060", "--sip", "tcp:5061:interface=127.0.0.1"])
    assert options.config().listen == {"sip": ("tcp:5060", "tcp:5061:interface=127.0.0.1")}


def test_an_unlisted_module_listens_on_its_defaults():
    options = parse([])
    config = options.config()
    assert config.listen_for(FakeModule("cli")) == ("tcp:9999",)


def test_none_disables_a_module():
    config = parse(["--cli", "none"]).config()
    assert config.listen_for(FakeModule("cli")) == ()


def test_none_cannot_be_mixed_with_addresses():
    with pytest.raises(usage.UsageError, match="--cli none cannot be combined"):
        parse(["--cli", "none", "--cli", "tcp:106"])


def test_a_bad_listen_description_names_the_option_and_the_allowed_forms():
    with pytest.raises(usage.UsageError, match=r"--sip 'udp:5060': use tcp:PORT"):
        parse(["--sip", "udp:5060"])


def test_an_option_for_a_module_that_is_not_installed_is_refused():
    with pytest.raises(usage.UsageError, match="ximss"):
        parse(["--ximss", "tcp:11024"])


def test_an_unknown_log_format_is_refused_with_the_allowed_ones():
    with pytest.raises(usage.UsageError, match="text, json"):
        parse(["--log-format", "xml"])


def test_data_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(usage.UsageError, match="not a directory"):
        parse(["--data", str(path)])


def test_options_become_a_config():
    config = parse(
        ["--data", "/srv/cg", "--domain", "example.com", "--demo", "--hostname", "cg1"]
    ).config()
    assert config.data_dir == "/srv/cg"
    assert config.main_domain == "example.com"
    assert config.demo_accounts == ("alice", "bob")
    assert config.hostname == "cg1"


def test_the_installed_modules_include_the_cli_and_http_listeners():
    names = {module.name: module for module in protocol_modules()}
    assert names["cli"].default_listen == ("tcp:106",)
    assert names["http"].default_listen == ("tcp:8010",)
    help_text = str(options_for(names.values())())
    assert "--cli=" in help_text and "--http=" in help_text


def test_the_server_process_collects_young_garbage_less_often():
    """
    twistd communigate raises the young-generation threshold when it
    starts (a measured third of a REGISTER's CPU went to the collector);
    build_server alone leaves an embedding application's settings alone.
    """
    import gc

    from communigate.tap import YOUNG_COLLECTION_THRESHOLD, tune_garbage_collector

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_garbage_collector()
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, 10, 10)
    finally:
        gc.set_threshold(*before)
