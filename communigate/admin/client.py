"""
A blocking CLI/PWD client for the admin tool.

The admin tool runs one script and exits, so a plain socket reads better
here than a reactor.  It speaks the protocol as CommuniGate's own clients
do: banner, C{USER}/C{PASS}, C{INLINE}, then one reply line per command.
"""

import socket


class CLIClientError(Exception):
    """
    The server refused the login or broke the protocol.
    """


def _address(endpoint: str) -> tuple[str, int]:
    kind, _, rest = endpoint.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit():
        raise CLIClientError(f"{endpoint!r} is not of the form tcp:HOST:PORT")
    return host, int(port)


class CLIClient:
    """
    One CLI session over TCP.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._reader = sock.makefile("rb")
        self.banner = self._reply()

    @classmethod
    def connect(cls, endpoint: str, timeout: float = 30.0) -> "CLIClient":
        return cls(socket.create_connection(_address(endpoint), timeout=timeout))

    def __enter__(self) -> "CLIClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _line(self) -> str:
        raw = self._reader.readline()
        if not raw.endswith(b"\n"):
            raise CLIClientError("the server closed the connection")
        return raw.rstrip(b"\r\n").decode("utf-8")

    def _reply(self) -> tuple[int, str]:
        line = self._line()
        code, _, text = line.partition(" ")
        if not code.isdigit():
            raise CLIClientError(f"not a CLI reply: {line[:80]!r}")
        return int(code), text

    def _send(self, line: str) -> None:
        self._socket.sendall(line.encode("utf-8") + b"\r\n")

    def login(self, user: str, password: str) -> None:
        self._send(f"USER {user}")
        code, text = self._reply()
        if code != 300:
            raise CLIClientError(f"login refused: {code} {text}")
        self._send(f"PASS {password}")
        code, text = self._reply()
        if code != 200:
            raise CLIClientError(f"login refused: {code} {text}")
        self._send("INLINE")
        self._reply()

    def command(self, line: str) -> tuple[int, str | None]:
        """
        Run one command: its reply code and its data text (L{None} when it
        returned no data), or the error text for a 5xx code.
        """
        self._send(line)
        code, text = self._reply()
        if code == 201:
            return code, text
        if code == 200 and text == "data follow":
            return code, self._line()
        return code, None if code < 300 else text

    def close(self) -> None:
        try:
            self._send("QUIT")
            self._reply()
        except (OSError, CLIClientError):
            pass
        self._reader.close()
        self._socket.close()
