"""
C{communigate-admin}: CLI commands from a shell or a script.

It works either on a data directory, running or not (the server reads the
store on every request, so it sees a change at once), or against a running
server over the CLI protocol.  A command given on the command line is the
words after the options joined by single spaces, exactly as it would be
typed on the CLI; a script is one command per line.  On a data directory a
script runs in one transaction: every line takes effect, or none does.
"""

import argparse
import os
import sys
import time

from communigate.admin.client import CLIClient, CLIClientError
from communigate.cli.context import CommandContext
from communigate.cli.result import CommandResult
from communigate.config import Config
from communigate.formats.cgdata import dumps
from communigate.first_start import POSTMASTER
from communigate.server import build_core
from communigate.storage import SQLiteStore, StoreError
from communigate.storage.sqlite import DATABASE_NAME

EXIT_OK = 0
EXIT_COMMAND_FAILED = 1
EXIT_USAGE = 2


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="communigate-admin",
        description="Run communigate CLI commands on a data directory or a running server.",
        epilog="examples: communigate-admin --data DIR LISTDOMAINS; "
        "communigate-admin --data DIR CREATEACCOUNT alice@example.com '{Password=secret;}'; "
        "communigate-admin --data DIR --file accounts.txt",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--data", metavar="DIR", help="the server's data directory")
    target.add_argument("--server", metavar="tcp:HOST:PORT", help="a running server's CLI listener")
    parser.add_argument("--user", default=POSTMASTER, help="CLI login name (with --server)")
    parser.add_argument(
        "--password",
        default=os.environ.get("COMMUNIGATE_PASSWORD"),
        help="CLI password (with --server); default: $COMMUNIGATE_PASSWORD",
    )
    parser.add_argument("--file", metavar="F", help="run the commands in F, one per line ('-' for stdin)")
    parser.add_argument(
        "--router-table", metavar="F", help="replace the Router table with the records in F"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="one CLI command")
    return parser, parser.parse_args(argv)


def _script_lines(path: str | None, stdin) -> list[tuple[int, str]]:
    if path in (None, "-"):
        text = stdin.read()
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


class _ScriptFailed(Exception):
    """
    A script line was refused; the transaction must roll back.
    """


class Progress:
    """
    A progress line on a terminal's standard error, for long scripts.
    """

    def __init__(self, total: int, stream, clock=time.monotonic) -> None:
        self._total = total
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._shown = 0.0
        self.enabled = total > 1 and stream.isatty()

    def step(self, done: int) -> None:
        now = self._clock()
        if not self.enabled or (now - self._shown < 0.2 and done < self._total):
            return
        self._shown = now
        width = 30
        filled = width * done // self._total
        rate = done / max(now - self._started, 1e-9)
        self._stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total} {rate:.0f}/s"
        )
        if done == self._total:
            self._stream.write("\n")
        self._stream.flush()


def _print_result(result: CommandResult, out) -> None:
    if result.has_data:
        out.write(result.render() + "\n")


def _on_data_directory(data_dir: str, lines, out, err) -> int:
    if not os.path.isfile(os.path.join(data_dir, DATABASE_NAME)):
        err.write(
            f"communigate-admin: {data_dir!r} holds no communigate store; "
            f"start the server once with --data {data_dir}\n"
        )
        return EXIT_USAGE
    store = SQLiteStore.in_directory(data_dir)
    try:
        core = build_core(Config(data_dir=data_dir), store, reactor=None)
        main = core.directory.main_domain() or ""
        context = CommandContext(account=f"{POSTMASTER}@{main}", domain=main, trusted=True)
        progress = Progress(len(lines), err)

        try:
            with store.transaction():
                for done, (number, line) in enumerate(lines, 1):
                    result = core.interpreter.run(context, line)
                    if not result.ok:
                        where = f"line {number}: " if len(lines) > 1 else ""
                        err.write(f"communigate-admin: {where}{result.error}\n")
                        raise _ScriptFailed()
                    _print_result(result, out)
                    progress.step(done)
        except _ScriptFailed:
            if len(lines) > 1:
                err.write("communigate-admin: nothing was changed\n")
            return EXIT_COMMAND_FAILED
    finally:
        store.close()
    return EXIT_OK


def _on_server(endpoint: str, user: str, password: str | None, lines, out, err) -> int:
    if password is None:
        err.write("communigate-admin: --server needs --password or $COMMUNIGATE_PASSWORD\n")
        return EXIT_USAGE
    try:
        client = CLIClient.connect(endpoint)
    except (CLIClientError, OSError) as e:
        err.write(f"communigate-admin: cannot reach {endpoint}: {e}\n")
        return EXIT_USAGE
    progress = Progress(len(lines), err)
    with client:
        try:
            client.login(user, password)
            for done, (number, line) in enumerate(lines, 1):
                code, text = client.command(line)
                if code >= 500:
                    where = f"line {number}: " if len(lines) > 1 else ""
                    err.write(f"communigate-admin: {where}{text}\n")
                    return EXIT_COMMAND_FAILED
                if text is not None:
                    out.write(text + "\n")
                progress.step(done)
        except CLIClientError as e:
            err.write(f"communigate-admin: {e}\n")
            return EXIT_COMMAND_FAILED
    return EXIT_OK


def main(argv=None, stdin=None, out=None, err=None) -> int:
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    parser, args = _arguments(sys.argv[1:] if argv is None else argv)
    if sum(map(bool, (args.command, args.file, args.router_table))) > 1:
        parser.error("give one of: a command, --file, --router-table")
    if args.command:
        lines = [(1, " ".join(args.command))]
    elif args.router_table:
        with open(args.router_table, encoding="utf-8") as f:
            lines = [(1, f"SETROUTERTABLE {dumps(f.read())}")]
    else:
        lines = _script_lines(args.file, stdin)
    if not lines:
        parser.error("no command given")
    try:
        if args.data is not None:
            return _on_data_directory(args.data, lines, out, err)
        return _on_server(args.server, args.user, args.password, lines, out, err)
    except StoreError as e:
        err.write(f"communigate-admin: {e}\n")
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
