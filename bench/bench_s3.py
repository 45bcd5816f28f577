# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the off-site copy against a plain boto3 ``upload_file``, and a restore from the bucket
against download-then-restore by hand, on a real S3-compatible server (versitygw, POSIX backend) on loopback.

Run with the test bed's venv:  "$(bash scripts/testbed/venv.sh)/bin/python" bench/bench_s3.py [--size-mib 1024]
It builds versitygw (scripts/testbed/build-versitygw.sh, cached), starts it on a free loopback port with its state
under /tmp/lifeboat-bench-s3 (removed at the end), makes a files archive of --size-mib MiB of incompressible
bytes with files_backup (compression none, so the archive is that size), verifies it, then times, interleaved per
repetition: _offsite.copy_archive (parts hashed with SHA-256 as they are sent and checked by the store, the whole
file hashed beside them against the manifest, the recorded checksum compared) vs boto3 ``upload_file`` of the same
file (its defaults: 8 MiB parts, 10 threads, CRC32; over http botocore also hashes every body with SHA-256 for
the request signature, which the copy turns off as its checksum headers prove the bodies), ``upload_file`` with
that payload signature off too (what it does over https), and ``upload_file`` with ``ChecksumAlgorithm=SHA256``;
then offsite_fetch + files_restore vs boto3 ``download_file`` + files_restore. Goal: copy ratio at most 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE = "/tmp/lifeboat-bench-s3"


def log(text: str) -> None:
    print(f"[bench_s3] {text}", flush=True)


def collections_root() -> str:
    root = tempfile.mkdtemp(prefix="lifeboat-bench-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "lifeboat"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "lifeboat", "ops"))
    return root


def run_module(root: str, name: str, args: dict, workdir: str) -> dict:
    args_file = os.path.join(workdir, f"{name}-{uuid.uuid4().hex[:6]}.json")
    with open(args_file, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    done = subprocess.run([sys.executable, "-m", f"ansible_collections.lifeboat.ops.plugins.modules.{name}", args_file],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, check=False)
    result = json.loads(done.stdout)
    if result.get("failed"):
        raise SystemExit(f"{name} failed: {result.get('msg')}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    sys.path.insert(0, os.path.join(REPO, "tests", "shared"))  # local_ports, which s3server imports
    root = collections_root()
    sys.path.insert(0, root)
    import boto3.s3.transfer  # pylint: disable=import-outside-toplevel
    from s3server import ACCESS_KEY, SECRET_KEY, S3Server  # pylint: disable=import-outside-toplevel,import-error

    from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite  # pylint: disable=import-outside-toplevel

    shutil.rmtree(STATE, ignore_errors=True)
    os.makedirs(STATE)
    server = S3Server(os.path.join(STATE, "s3"))
    server.start()
    try:
        work = os.path.join(STATE, "work")
        source = os.path.join(work, "source")
        os.makedirs(source)
        log(f"writing {args.size_mib} MiB of incompressible bytes")
        with open(os.path.join(source, "blob.bin"), "wb") as handle:
            for _megabyte in range(args.size_mib):
                handle.write(os.urandom(1 << 20))
        destination = os.path.join(work, "archives")
        made = run_module(root, "files_backup", {"destination": destination, "job": "bench", "paths": [source],
                                                 "compression": "none"}, work)
        run_module(root, "backup_verify", {"destination": destination, "level": "checksum"}, work)
        archive = made["archive"]
        size = os.path.getsize(archive)
        options = {"bucket": server.bucket(), "endpoint_url": server.endpoint, "path_style": True,
                   "credentials_file": server.credentials_file(work)}
        s3 = server.client()
        from botocore.config import Config  # pylint: disable=import-outside-toplevel

        unsigned = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY).client(
            "s3", endpoint_url=server.endpoint, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False}))
        copy_times, plain_times, sha_times, unsigned_times = [], [], [], []
        copy_cpu, plain_cpu = [], []  # this process's CPU seconds: steadier than wall time on a busy machine

        def cpu() -> float:
            now = os.times()
            return now.user + now.system
        for repetition in range(args.repeat):
            prefix = f"run{repetition}"
            remote = _offsite.Remote.from_options({**options, "prefix": prefix})
            began, used = time.perf_counter(), cpu()
            _offsite.copy_archive(_offsite.client(remote), remote, archive)
            copy_times.append(time.perf_counter() - began)
            copy_cpu.append(cpu() - used)
            began, used = time.perf_counter(), cpu()
            s3.upload_file(archive, options["bucket"], f"plain{repetition}/{os.path.basename(archive)}",
                           Config=boto3.s3.transfer.TransferConfig())
            plain_times.append(time.perf_counter() - began)
            plain_cpu.append(cpu() - used)
            began = time.perf_counter()
            unsigned.upload_file(archive, options["bucket"], f"unsigned{repetition}/{os.path.basename(archive)}",
                                 Config=boto3.s3.transfer.TransferConfig())
            unsigned_times.append(time.perf_counter() - began)
            # The same guarantee on the wire as ours: SHA-256 per part, checked by the store.
            began = time.perf_counter()
            s3.upload_file(archive, options["bucket"], f"sha{repetition}/{os.path.basename(archive)}",
                           ExtraArgs={"ChecksumAlgorithm": "SHA256"}, Config=boto3.s3.transfer.TransferConfig())
            sha_times.append(time.perf_counter() - began)
            log(f"copy {copy_times[-1]:.2f} s, upload_file {plain_times[-1]:.2f} s, upload_file without payload "
                f"signature {unsigned_times[-1]:.2f} s, upload_file with SHA256 {sha_times[-1]:.2f} s")
        copy_s, plain_s = statistics.median(copy_times), statistics.median(plain_times)
        sha_s, unsigned_s = statistics.median(sha_times), statistics.median(unsigned_times)
        ratio = copy_s / plain_s
        log(f"COPY {size / 1e6:.0f} MB: lifeboat {copy_s:.2f} s ({size / 1e6 / copy_s:.0f} MB/s), boto3 upload_file "
            f"{plain_s:.2f} s; ratio {ratio:.2f} ({'PASS' if ratio <= 1.10 else 'MISS'} goal <= 1.10); against "
            f"upload_file with SHA256 part checksums {sha_s:.2f} s: ratio {copy_s / sha_s:.2f}; against upload_file "
            f"without payload signature {unsigned_s:.2f} s: ratio {copy_s / unsigned_s:.2f}; client CPU: copy "
            f"{statistics.median(copy_cpu):.2f} s, upload_file {statistics.median(plain_cpu):.2f} s; "
            f"load {os.getloadavg()[0]:.1f}")

        fetch_times, by_hand_times = [], []
        for repetition in range(args.repeat):
            fetched_dir = os.path.join(work, f"fetched{repetition}")
            target = os.path.join(work, f"restored{repetition}")
            began = time.perf_counter()
            fetched = run_module(root, "offsite_fetch", {**options, "prefix": "run0", "job": "bench",
                                                         "directory": fetched_dir}, work)
            run_module(root, "files_restore", {"archive": fetched["archive"], "path_map": {source: target}}, work)
            fetch_times.append(time.perf_counter() - began)
            shutil.rmtree(fetched_dir)
            shutil.rmtree(target)
            by_hand = os.path.join(work, f"by-hand{repetition}")
            os.makedirs(by_hand)
            began = time.perf_counter()
            name = os.path.basename(archive)
            for file in (name, name + ".manifest.json"):
                s3.download_file(options["bucket"], f"run0/{file}", os.path.join(by_hand, file))
            run_module(root, "files_restore", {"archive": os.path.join(by_hand, name), "path_map": {source: target}},
                       work)
            by_hand_times.append(time.perf_counter() - began)
            shutil.rmtree(by_hand)
            shutil.rmtree(target)
            log(f"restore from bucket {fetch_times[-1]:.2f} s, download then restore {by_hand_times[-1]:.2f} s")
        fetch_s, hand_s = statistics.median(fetch_times), statistics.median(by_hand_times)
        log(f"RESTORE {size / 1e6:.0f} MB: from the bucket {fetch_s:.2f} s, download_file then files_restore "
            f"{hand_s:.2f} s; ratio {fetch_s / hand_s:.2f}")
    finally:
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
