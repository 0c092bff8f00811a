"""
Prosody as the reference XMPP server for benchmarks/xmpp_load.py: installed
from Debian when missing, configured in a temporary directory (one
virtual host, c2s only, TLS required, SCRAM-SHA-1 keys stored as ours are,
no rate limits), its accounts written straight into its data directory
so thousands of users need no registration round trips, and run in the
foreground as a child process.
"""

import hashlib
import hmac
import os
import signal
import subprocess
import time

import debian_package

CONFIG = """\
-- Written by communigate's benchmarks/prosody_peer.py for one run.
pidfile = "{dir}/prosody.pid"
data_path = "{dir}/data"
admins = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "message"; "iq" }}
modules_disabled = {{ "s2s"; "offline"; "posix" }}
authentication = "internal_hashed"
default_iteration_count = {iterations}
c2s_require_encryption = true
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
log = {{ warn = "{dir}/prosody.log" }}
VirtualHost "{domain}"
    ssl = {{ key = "{dir}/key.pem"; certificate = "{dir}/cert.pem" }}
"""

ACCOUNT = """\
return {{
\t["iteration_count"] = {iterations};
\t["salt"] = "{salt}";
\t["stored_key"] = "{stored}";
\t["server_key"] = "{server}";
}};
"""


def ensure_installed() -> str | None:
    """The prosody binary, its Debian package installed first if need be; None when that cannot be done."""
    return debian_package.ensure("prosody", "prosody")


def version(binary: str) -> str:
    done = subprocess.run(["prosodyctl", "about"], capture_output=True, text=True, timeout=30)
    for line in done.stdout.splitlines():
        if line.strip().lower().startswith("prosody"):
            return line.strip()
    return binary


def _host_directory(domain: str) -> str:
    # Prosody's datamanager escapes every non-alphanumeric character.
    return "".join(c if c.isalnum() else f"%{ord(c):02x}" for c in domain)


def write_accounts(directory: str, domain: str, users, iterations: int) -> None:
    """
    Account files for C{(name, password)} pairs, with the SCRAM-SHA-1 keys
    Prosody's internal_hashed provider checks logins against.
    """
    accounts = os.path.join(directory, "data", _host_directory(domain), "accounts")
    os.makedirs(accounts, exist_ok=True)
    for name, password in users:
        salt = hashlib.sha1(f"salt-{name}".encode()).hexdigest()
        salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha1")
        stored = hashlib.sha1(client_key).hexdigest()
        server = hmac.digest(salted, b"Server Key", "sha1").hex()
        with open(os.path.join(accounts, f"{name}.dat"), "w") as f:
            f.write(ACCOUNT.format(iterations=iterations, salt=salt, stored=stored, server=server))


def _self_signed(directory: str, domain: str) -> None:
    """
    cert.pem and key.pem for C{domain}: make_certificates writes the
    certificate and its key in one file; Prosody wants them apart.
    """
    import re

    from communigate.testing import make_certificates

    files = make_certificates(directory, server_names=(domain,))
    with open(files.server) as f:
        pem = f.read()
    blocks = re.findall(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----\n?", pem, re.S)
    texts = re.findall(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----\n?", pem, re.S)
    for kind, text in zip(blocks, texts):
        name = "key.pem" if "PRIVATE KEY" in kind else "cert.pem"
        with open(os.path.join(directory, name), "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")


class Prosody:
    """
    One Prosody process serving C{domain} on C{port} of 127.0.0.1.
    """

    def __init__(self, binary: str, directory: str, domain: str, port: int, iterations: int) -> None:
        self.binary = binary
        self.directory = directory
        self.domain = domain
        self.port = port
        self.iterations = iterations
        self.process = None

    def start(self, users) -> None:
        os.makedirs(os.path.join(self.directory, "data"), exist_ok=True)
        _self_signed(self.directory, self.domain)
        write_accounts(self.directory, self.domain, users, self.iterations)
        config = os.path.join(self.directory, "prosody.cfg.lua")
        with open(config, "w") as f:
            f.write(CONFIG.format(dir=self.directory, port=self.port, domain=self.domain, iterations=self.iterations))
        self.process = subprocess.Popen(
            [self.binary, "-F", "--config", config],
            stdout=open(os.path.join(self.directory, "stdout.log"), "w"), stderr=subprocess.STDOUT,
        )
        from communigate.testing import wait_for_port

        wait_for_port(self.port, self.process, 30, os.path.join(self.directory, "stdout.log"))

    def rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        time.sleep(0.1)
