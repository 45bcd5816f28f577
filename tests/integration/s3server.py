# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real S3-compatible server for the off-site tests: versitygw with its POSIX backend (multipart, SHA-256
checksums, versioning, object lock), built by scripts/testbed/build-versitygw.sh, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import typing as t
import uuid

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from local_ports import free_port  # pylint: disable=import-error

from testbed import REPO_ROOT  # pylint: disable=import-error

# Hostile on purpose: URL and YAML special characters, so any place that would leak or mangle it shows.
ACCESS_KEY = "lifeboat-test-key"
SECRET_KEY = "s3cr@t:w/rd?#&%'\"{{x}}-" + uuid.uuid4().hex[:8]


def binary() -> str:
    subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "testbed", "build-versitygw.sh")], check=True,
                   capture_output=True)
    return os.path.join(os.environ.get("LIFEBOAT_CACHE", os.path.expanduser("~/.cache/lifeboat")), "bin", "versitygw")


class S3Server:
    """One versitygw process; ``stop``/``start`` take it down and up again on the same port and data."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.data_dir = os.path.join(state_dir, "data")
        self.versions_dir = os.path.join(state_dir, "versions")
        os.makedirs(self.data_dir, exist_ok=True)
        os.makedirs(self.versions_dir, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.binary = binary()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY}  # env, not argv
        log = open(os.path.join(self.state_dir, "versitygw.log"), "ab")  # pylint: disable=consider-using-with
        self.process = subprocess.Popen(
            [self.binary, "--port", f"127.0.0.1:{self.port}", "posix", "--versioning-dir", self.versions_dir,
             self.data_dir], env=env, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"versitygw exited with {self.process.returncode}; see {self.state_dir}/versitygw.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("versitygw did not listen within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def client(self) -> t.Any:
        return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY).client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def bucket(self, locked: bool = False, versioned: bool = False) -> str:
        name = "lb-" + uuid.uuid4().hex[:12]
        s3 = self.client()
        if locked:
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            s3.create_bucket(Bucket=name)
        if versioned and not locked:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def credentials_file(self, directory: str) -> str:
        path = os.path.join(directory, "s3-credentials")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
        return path
