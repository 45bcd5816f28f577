# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet of managed hosts reached over real SSH: systemd containers with sshd (scripts/testbed/fleet-image.sh),
for tests/integration/test_fleet.py and bench/bench_fleet.py.

The containers share the machine's network (the test bed's servers listen on loopback only), each sshd on a port
of its own; root logs in with a key made for the fleet. Names start with ``lbt-awx-fleet-``; ``stop`` removes them.
"""

from __future__ import annotations

import os
import subprocess
import time
import typing as t
from dataclasses import dataclass, field

from local_ports import free_ports  # pylint: disable=import-error

PREFIX = "lbt-awx-fleet-"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def image() -> str:
    """The fleet image (built when the engine lacks it)."""
    done = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "testbed", "fleet-image.sh")],
                          capture_output=True, text=True, check=False, timeout=900)
    if done.returncode:
        raise RuntimeError(f"fleet-image.sh failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Fleet:
    directory: str
    names: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    key: str = ""

    def start(self, hosts: list[str], tmpfs: dict[str, str] | None = None) -> None:
        """Start one container per host name; ``tmpfs`` maps a host to a small tmpfs over its backup root
        (``size=...``: a full destination)."""
        self.key = os.path.join(self.directory, "fleet_key")
        if not os.path.exists(self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        authorized = os.path.join(self.directory, "authorized_keys")
        with open(f"{self.key}.pub", encoding="utf-8") as source, open(authorized, "w", encoding="utf-8") as target:
            target.write(source.read())
        os.chmod(authorized, 0o600)
        fleet_image = image()
        for host, port in zip(hosts, free_ports(len(hosts)), strict=True):
            port_file = os.path.join(self.directory, f"{host}.port.conf")
            with open(port_file, "w", encoding="utf-8") as handle:
                handle.write(f"Port {port}\nListenAddress 127.0.0.1\n")
            name = PREFIX + host
            extra = ["--tmpfs", f"/var/backups/lifeboat:{tmpfs[host]}"] if tmpfs and host in tmpfs else []
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            subprocess.run(["docker", "run", "-d", "--name", name, "--network", "host", "--cap-add", "SYS_ADMIN",
                            "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                            "--cgroupns=host", "-v", f"{authorized}:/root/.ssh/authorized_keys:ro",
                            "-v", f"{port_file}:/etc/ssh/sshd_config.d/port.conf:ro", *extra,
                            fleet_image, "/lib/systemd/systemd"], capture_output=True, text=True, check=True)
            self.names.append(name)
            self.ports[host] = port
        self.wait()

    def wait(self, timeout: float = 120) -> None:
        """Until every host's sshd takes a login."""
        deadline = time.monotonic() + timeout
        waiting = dict(self.ports)
        while waiting:
            for host, port in list(waiting.items()):
                done = subprocess.run(["ssh", *self.ssh_options(), "-p", str(port), "root@127.0.0.1", "true"],
                                      capture_output=True, check=False, timeout=30)
                if done.returncode == 0:
                    del waiting[host]
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"no ssh login within {timeout} s on {sorted(waiting)}")
            if waiting:
                time.sleep(0.5)

    def ssh_options(self) -> list[str]:
        return ["-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]

    def host_vars(self, host: str) -> dict[str, t.Any]:
        return {"ansible_host": "127.0.0.1", "ansible_port": self.ports[host], "ansible_user": "root",
                "ansible_ssh_private_key_file": self.key, "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}

    def host_vars_for_port(self, port: int) -> dict[str, t.Any]:
        return {"ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
                "ansible_ssh_private_key_file": self.key, "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                           "-o ConnectTimeout=5"}

    def stop(self) -> None:
        if self.names:
            subprocess.run(["docker", "rm", "-f", *self.names], capture_output=True, check=False, timeout=300)
        self.names.clear()
