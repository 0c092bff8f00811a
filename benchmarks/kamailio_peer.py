"""
Kamailio as the reference registrar in benchmarks/sip_load.py.

    install()                  kamailio on PATH, apt-get installing it if need be
    start(work) -> Kamailio    one UDP worker on a free port of 127.0.0.1,
                               in the foreground, as a child of this process
    kamailio.stop()            SIGTERM (SIGKILL to its process group after 15 s)
    check_authentication(port) REGISTER without credentials, with a wrong
                               password and with the right one: the statuses

The configuration is benchmarks/kamailio/kamailio.cfg: users u0..u9999 of
example.com with password pN for uN, digest MD5 with qop=auth, bindings in
memory only.
"""

import hashlib
import os
import re
import signal
import socket
import subprocess
import time
import uuid

import attrs

import debian_package

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kamailio", "kamailio.cfg")
START_TIMEOUT = 15.0


def install() -> str | None:
    """The kamailio binary, its Debian package installed first if need be; None when that cannot be done."""
    return debian_package.ensure("kamailio", "kamailio", "/usr/sbin/kamailio")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@attrs.define
class Kamailio:
    process: subprocess.Popen
    port: int
    run_dir: str
    log_path: str

    def pids(self) -> list[int]:
        """
        The main process and the processes it forked (UDP worker, timers).
        """
        pids = [self.process.pid]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    pids += [int(child) for child in f.read().split()]
            except OSError:
                pass
        return pids

    def memory_mb(self) -> float:
        """
        Proportional set size of all its processes (they share their
        memory, so their RSS would count it once per process), in MB.
        """
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                # Its own session (start_new_session): the group is the one it leads.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(work: str, binary: str = "kamailio", *defines: str, shm_mb: int = 64) -> Kamailio:
    """
    Run kamailio in the foreground (-DD: no daemon), logging to stderr
    (-E) into WORK/kamailio.log, its runtime directory and pid file in
    WORK/kamailio-run, with the -A DEFINES given and SHM_MB of shared
    memory (10,000 bindings need about 10 MB; transactions, in the
    STATEFUL variant, about 3 KB each for the 5 s tm keeps them);
    return once it answers a REGISTER with 401.
    """
    port = free_udp_port()
    run_dir = os.path.join(work, "kamailio-run")
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(work, "kamailio.log")
    command = [
        binary, "-f", CONFIG, "-DD", "-E", "-n", "1", "-m", str(shm_mb), "-M", "8",
        "-l", f"udp:127.0.0.1:{port}", "-Y", run_dir, "-P", os.path.join(run_dir, "kamailio.pid"),
        "-w", run_dir,
    ]
    for define in defines:
        command += ["-A", define]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    kamailio = Kamailio(process, port, run_dir, log_path)
    started = time.monotonic()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"kamailio exited with {process.returncode}: {kamailio.output()[-2000:]}")
        try:
            if register(port, "u0", None, timeout=0.2).startswith("401"):
                return kamailio
        except OSError:
            pass
        if time.monotonic() - started > START_TIMEOUT:
            kamailio.stop()
            raise RuntimeError(
                f"kamailio did not answer on udp {port} within {START_TIMEOUT} s: {kamailio.output()[-2000:]}"
            )


# A REGISTER client just big enough to check what a registrar answers.

def _request(port: int, user: str, local_port: int, cseq: int, call_id: str, authorization: str = "") -> bytes:
    lines = [
        f"REGISTER sip:127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex};rport",
        f"From: <sip:{user}@example.com>;tag={call_id[:8]}",
        f"To: <sip:{user}@example.com>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{local_port}>",
        "Max-Forwards: 70",
        "Expires: 60",
    ]
    if authorization:
        lines.append(authorization)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _authorization(challenge: str, user: str, password: str, uri: str) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = _md5(f"{user}:{realm}:{password}")
    ha2 = _md5(f"REGISTER:{uri}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"', "algorithm=MD5"]
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    else:
        fields.append(f'response="{_md5(f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Authorization: Digest " + ", ".join(fields)


def register(port: int, user: str, password: str | None, timeout: float = 2.0) -> str:
    """
    REGISTER USER at 127.0.0.1:PORT; answer a 401's MD5 challenge with
    PASSWORD unless it is None; the final status line, without "SIP/2.0 ".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout)
        local_port = s.getsockname()[1]
        call_id = uuid.uuid4().hex
        s.sendto(_request(port, user, local_port, 1, call_id), ("127.0.0.1", port))
        reply = s.recv(65535).decode(errors="replace")
        status = reply.split("\r\n", 1)[0].split(" ", 1)[1]
        if password is None or not status.startswith("401"):
            return status
        challenges = re.findall(r"^WWW-Authenticate:\s*Digest\s+(.*)$", reply, re.M | re.I)
        md5 = [c for c in challenges if not re.search(r"algorithm=\"?(?!MD5\b)", c, re.I)]
        uri = f"sip:127.0.0.1:{port}"
        s.sendto(_request(port, user, local_port, 2, call_id, _authorization(md5[0], user, password, uri)),
                 ("127.0.0.1", port))
        reply = s.recv(65535).decode(errors="replace")
        return reply.split("\r\n", 1)[0].split(" ", 1)[1]


def check_authentication(port: int) -> dict[str, str]:
    """
    What the registrar at 127.0.0.1:PORT answers to u1 registering with no
    credentials, with a wrong password, and with the right one (p1).
    """
    return {
        "no credentials": register(port, "u1", None),
        "wrong password": register(port, "u1", "wrong"),
        "right password": register(port, "u1", "p1"),
    }
