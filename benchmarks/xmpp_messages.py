"""
What a message between two local XMPP resources costs inside the server:
the whole path from the bytes of a <message/> on the sender's stream to
the bytes written on the recipient's, through the assembled core (SQLite
directory, Router, Signal Rules, Signal service) on a Clock, with streams
over StringTransports.  Three paths are measured:

  - a chat with a body to the bare JID: a MESSAGE Signal (what every
    message to an account takes, so SIP phones ring too);
  - the same to the recipient's full JID: straight to the resource;
  - a chat state without a body to the bare JID: straight to the
    resources, without a Signal.

    python benchmarks/xmpp_messages.py [COUNT]
"""

import os
import sys
import tempfile
import time

from twisted.internet.task import Clock

from communigate.config import Config
from communigate.plugins.xmpp import xmpp_module
from communigate.server import build_core
from communigate.storage import SQLiteStore

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "xmpp"))
from conftest import ScriptedClient  # noqa: E402  (the tests' scripted client)


def run(sender, receiver, stanza: str, count: int) -> float:
    data = stanza.encode()
    receiver.transport.clear()
    started = time.perf_counter()
    for _ in range(count):
        sender.stream.dataReceived(data)
    elapsed = time.perf_counter() - started
    written = receiver.transport.value()
    assert written.count(b"<message") == count, written[:300]
    receiver.transport.clear()
    return elapsed


def main(count: int = 5_000) -> None:
    with tempfile.TemporaryDirectory() as work:
        clock = Clock()
        store = SQLiteStore(os.path.join(work, "bench.sqlite"))
        core = build_core(Config(data_dir=work, domain="example.com"), store, clock)
        directory = core.directory
        directory.create_domain("example.com")
        directory.create_account("alice@example.com", {"Password": "wonderland"})
        directory.create_account("bob@example.com", {"Password": "builder"})
        service = xmpp_module.build_service(core, [])
        service.startService()
        alice = ScriptedClient(service).bound("phone")
        bob = ScriptedClient(service, port=40001).bound("desk", "bob", "builder")
        for client in (alice, bob):
            client.available()
        body = "<message type='chat' to='{to}'><body>Hello, how are you today?</body></message>"
        composing = (
            "<message type='chat' to='bob@example.com'>"
            "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )
        cases = [
            ("bare JID, through the Signal service", body.format(to="bob@example.com")),
            ("full JID, straight to the resource", body.format(to="bob@example.com/desk")),
            ("chat state, no body, no Signal", composing),
        ]
        run(alice, bob, cases[0][1], 200)  # warm caches
        for name, stanza in cases:
            elapsed = run(alice, bob, stanza, count)
            print(f"{name}: {count / elapsed:,.0f} messages/s ({elapsed / count * 1e6:.0f} us each)")
        service.stopService()
        store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000)
