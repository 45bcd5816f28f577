# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reverse proxy's test bed: a private nginx (own prefix, loopback ports), Pebble, and small upstreams.

Everything listens on free loopback ports, lives under the pytest basetemp and is stopped by PID.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import typing as t
import urllib.request
from dataclasses import dataclass

from local_ports import free_port  # pylint: disable=import-error

from testbed import REPO_ROOT  # pylint: disable=import-error

PEBBLE_BUILD = os.path.join(REPO_ROOT, "scripts", "testbed", "build-pebble.sh")


def wait_until(condition: t.Callable[[], t.Any], seconds: float, what: str) -> t.Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {seconds} s")


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Nginx:
    prefix: str
    conf: str
    sites_dir: str
    process: subprocess.Popen
    http_port: int
    https_port: int

    @property
    def pid_file(self) -> str:
        return os.path.join(self.prefix, "nginx.pid")

    def control(self) -> dict[str, t.Any]:
        """The options the library and modules take to test and reload this nginx."""
        return {"binary": "/usr/sbin/nginx", "config": self.conf, "prefix": self.prefix + "/",
                "pid_file": self.pid_file}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_nginx(root: str) -> Nginx:
    """A private nginx: master in the foreground (our child), its own prefix, sites from root/sites."""
    prefix, sites = os.path.join(root, "nginx"), os.path.join(root, "sites")
    for path in (prefix, sites, os.path.join(prefix, "tmp"), os.path.join(prefix, "logs")):
        os.makedirs(path, exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    temp_paths = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(f"""daemon off;
user root root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
events {{ worker_connections 512; }}
http {{
    access_log off;
{temp_paths}
    include {sites}/*.conf;
}}
""")
    process = subprocess.Popen(["/usr/sbin/nginx", "-p", prefix + "/", "-c", conf], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    nginx = Nginx(prefix, conf, sites, process, 0, 0)
    wait_until(lambda: os.path.exists(nginx.pid_file) or process.poll() is not None, 10, "nginx's pid file")
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    return nginx


def make_ca(directory: str) -> tuple[str, str, str]:
    """A CA of the test's own and a 127.0.0.1/localhost server certificate for Pebble's API: (ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifeboat test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    paths = tuple(os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem"))
    for path, data in zip(paths, (ca.public_bytes(serialization.Encoding.PEM),
                                  cert.public_bytes(serialization.Encoding.PEM),
                                  key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())), strict=True):
        with open(path, "wb") as handle:
            handle.write(data)
    return t.cast(tuple[str, str, str], paths)


@dataclass
class Pebble:
    process: subprocess.Popen
    directory_url: str
    management_url: str
    ca_bundle: str  # trust for Pebble's own API

    def root_pem(self) -> str:
        """The root that Pebble's issued chains end in (a new one each start)."""
        context = ssl.create_default_context(cafile=self.ca_bundle)
        with urllib.request.urlopen(f"{self.management_url}/roots/0", context=context, timeout=10) as response:
            return response.read().decode()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_pebble(root: str, http_port: int) -> Pebble:
    binary = subprocess.run(["bash", PEBBLE_BUILD], capture_output=True, text=True, check=True).stdout.strip()
    os.makedirs(root, exist_ok=True)
    ca, cert, key = make_ca(root)
    port, management = free_port(), free_port()
    config = os.path.join(root, "pebble.json")
    with open(config, "w", encoding="utf-8") as handle:
        json.dump({"pebble": {"listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{management}",
                              "certificate": cert, "privateKey": key, "httpPort": http_port, "tlsPort": free_port(),
                              "ocspResponderURL": "", "externalAccountBindingRequired": False,
                              "retryAfter": {"authz": 1, "order": 1}, "keyAlgorithm": "ecdsa"}}, handle)
    # No random nonce rejections or validation sleeps: the tests are about our code, not Pebble's chaos.
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    log = open(os.path.join(root, "pebble.log"), "wb")  # pylint: disable=consider-using-with
    process = subprocess.Popen([binary, "-config", config], stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_until(lambda: (listening(port) and listening(management)) or process.poll() is not None, 20, "Pebble")
    assert process.poll() is None, open(os.path.join(root, "pebble.log"), encoding="utf-8").read()
    return Pebble(process, f"https://127.0.0.1:{port}/dir", f"https://127.0.0.1:{management}", ca)


class Upstream:
    """A small HTTP app on a loopback port: answers its name, echoes request sizes; many threads."""

    def __init__(self, name: str) -> None:
        label = name

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = json.dumps({"upstream": label, "headers": dict(self.headers)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.do_GET()

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebSocketEcho:
    """A WebSocket echo server (the websockets library) on a loopback port, in a thread of its own."""

    def __init__(self) -> None:
        from websockets.asyncio.server import serve

        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def echo(connection: t.Any) -> None:
            async for message in connection:
                await connection.send(f"echo: {message}")

        async def main() -> None:
            self.stop_event = asyncio.Event()
            async with serve(echo, "127.0.0.1", self.port):
                ready.set()
                await self.stop_event.wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)
