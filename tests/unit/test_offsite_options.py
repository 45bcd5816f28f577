# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure parts of the off-site library: options, credentials files, checksums (the S3 parts are tested against
a real server in tests/integration/test_offsite.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _offsite, _offsite_bucket, _offsite_upload
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

SECRET = "p@ss:w/rd?#&%'\"{{x}}"


@pytest.mark.parametrize(("options", "message"), [
    ({"bucket": "s3://b"}, "give the name alone"),
    ({"bucket": ""}, "is not a bucket name"),
    ({"bucket": "b", "lock_mode": "COMPLIANCE"}, "set lock_mode and lock_days together"),
    ({"bucket": "b", "lock_mode": "STRICT", "lock_days": 3}, "lock_mode must be one of GOVERNANCE, COMPLIANCE"),
    ({"bucket": "b", "part_size_mib": 4}, "S3 takes parts of 5 to 5120 MiB"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(LifeboatError, match=message):
        _offsite.Remote.from_options(options)


@pytest.mark.parametrize(("endpoint_url", "message"), [
    ("minio.local:9000", "endpoint_url 'minio.local:9000' has no scheme; add http:// or https:// "
                         "(e.g. https://minio.local:9000)"),
    ("s3.eu-central-1.amazonaws.com", "endpoint_url 's3.eu-central-1.amazonaws.com' has no scheme; add http:// or "
                                      "https:// (e.g. https://s3.eu-central-1.amazonaws.com)"),
    ("s3://minio.local:9000", "endpoint_url 's3://minio.local:9000' must start with http:// or https://, not s3://"),
    ("https://", "endpoint_url 'https://' has no host; give e.g. https://minio.example.com:9000"),
    ("http://[::1", "endpoint_url 'http://[::1' has no host; give e.g. https://minio.example.com:9000"),
])
def test_an_endpoint_url_without_http_or_https_is_named(endpoint_url, message):
    with pytest.raises(LifeboatError) as raised:
        _offsite.Remote.from_options({"bucket": "b", "endpoint_url": endpoint_url})
    assert str(raised.value) == message


@pytest.mark.parametrize("module", ["offsite_copy", "offsite_verify", "offsite_prune", "offsite_fetch"])
def test_the_offsite_modules_name_endpoint_url(module, tmp_path):
    """Before anything reaches boto3, whose own word for it is "Invalid endpoint" (an "unexpected error" here)."""
    where = {"offsite_fetch": {"directory": str(tmp_path), "job": "db1"}, "offsite_verify": {"job": "db1"},
             "offsite_prune": {"destination": str(tmp_path), "keep_daily": 7}}
    args = {"bucket": "b", "endpoint_url": "minio.local:9000", "_ansible_check_mode": True,
            **where.get(module, {"destination": str(tmp_path)})}
    (tmp_path / "args.json").write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-m", f"ansible_collections.lifeboat.ops.plugins.modules.{module}",
                           str(tmp_path / "args.json")], capture_output=True, text=True, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.environ["ANSIBLE_COLLECTIONS_PATH"]}, timeout=120)
    result = json.loads(done.stdout)
    assert (done.returncode, result["msg"]) == (1, "endpoint_url 'minio.local:9000' has no scheme; add http:// or "
                                                   "https:// (e.g. https://minio.local:9000)"), result


def test_prefix_and_fetch_command():
    remote = _offsite.Remote.from_options({"bucket": "b", "prefix": "/db1/journal/", "endpoint_url": "http://h:9000"})
    assert remote.key("a.zst") == "db1/journal/a.zst"
    assert remote.fetch_command("a.zst") == "aws s3 cp --endpoint-url http://h:9000 s3://b/db1/journal/a.zst ."


def test_credentials_file_must_be_private_and_its_secret_is_masked(tmp_path):
    path = tmp_path / "creds"
    path.write_text(f"[default]\naws_access_key_id = AK\naws_secret_access_key = {SECRET}\n")
    path.chmod(0o644)
    with pytest.raises(LifeboatError, match="chmod 600"):
        _offsite_bucket.read_credentials_file(str(path))
    path.chmod(0o600)
    assert _offsite_bucket.read_credentials_file(str(path)) == ("AK", SECRET, None)
    assert SECRET not in str(LifeboatError(f"boom {SECRET}"))
    path.write_text("aws_access_key_id = AK\n")
    with pytest.raises(LifeboatError, match="lacks aws_access_key_id or aws_secret_access_key"):
        _offsite_bucket.read_credentials_file(str(path))


def test_digest_gives_the_whole_sha256_and_the_composite_s3_records(tmp_path):
    data = os.urandom(12 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    part = 5 << 20
    digest = _offsite_bucket.digest_file(str(path), part)
    assert digest.sha256 == hashlib.sha256(data).hexdigest() and digest.size == len(data)
    parts = [hashlib.sha256(data[i:i + part]).digest() for i in range(0, len(data), part)]
    assert digest.parts == parts
    assert digest.composite() == base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode() + "-3"


class _Refusing:
    """A store whose answers are given: the error path of a real one that this test bed's server cannot show (keys
    not allowed to read the bucket's object lock setting)."""

    def __init__(self, put_code: str, put_message: str) -> None:
        self.put_error = {"Error": {"Code": put_code, "Message": put_message}}

    def get_object_lock_configuration(self, **_kwargs):
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]  # pylint: disable=import-outside-toplevel

        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObjectLockConfiguration")

    def put_object(self, **_kwargs):
        from botocore.exceptions import ClientError  # pylint: disable=import-outside-toplevel

        raise ClientError(self.put_error, "PutObject")


@pytest.mark.parametrize(("code", "message", "said"), [
    ("InvalidRequest", "Bucket is missing Object Lock Configuration", "bucket 'b' has no object lock"),
    ("InvalidRequest", "Bucket is missing ObjectLockConfiguration", "bucket 'b' has no object lock"),
    ("BadDigest", "The SHA256 you specified did not match", "does not match its manifest's sha256"),
    ("InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid.", "does not match its manifest's sha256"),
    ("InvalidRequest", "Something else", "the store answered InvalidRequest (Something else)"),
])
def test_a_refused_upload_names_its_cause(tmp_path, code, message, said):
    remote = _offsite.Remote.from_options({"bucket": "b", "lock_mode": "GOVERNANCE", "lock_days": 1})
    store = _Refusing(code, message)
    _offsite_upload.require_object_lock(store, remote)  # the setting cannot be read: the upload's answer decides
    path = tmp_path / "a.pgdump"
    path.write_bytes(b"rows")
    with pytest.raises(LifeboatError) as caught:
        _offsite_upload.upload_file(store, remote, str(path), hashlib.sha256(b"rows").hexdigest(),
                                    _offsite_upload.CopyResult())
    assert said in str(caught.value) and "\n" not in str(caught.value)
    if "object lock" in said:
        assert "manifest" not in str(caught.value) and "remove lock_mode" in str(caught.value)


def test_the_whole_file_digest_takes_parts_in_file_order_whatever_order_they_arrive_in():
    """The multipart upload's manifest check: parts added from several threads in any order hash as the file."""
    import random  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    parts = [os.urandom(size) for size in (4096, 1, 70000, 0, 5, 9999)]
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    order = list(enumerate(parts, start=1))
    random.Random(7).shuffle(order)
    digest = _offsite_upload._InOrderDigest()  # pylint: disable=protected-access
    threads = [threading.Thread(target=digest.add, args=item) for item in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert digest.hexdigest(len(parts)) == expected
    short = _offsite_upload._InOrderDigest()  # pylint: disable=protected-access
    short.add(2, parts[1])
    with pytest.raises(LifeboatError, match="0 of 2 parts"):
        short.hexdigest(2)


def test_bytes_that_change_during_a_multipart_upload_never_complete_it(tmp_path, monkeypatch):
    """The whole file's SHA-256 is taken over the bytes the parts sent: an archive rewritten while it is being sent
    (after an earlier read of the whole file would have passed it) is aborted, never completed. A store that keeps
    what it is sent stands in (a real one cannot pause between two parts)."""
    import time  # pylint: disable=import-outside-toplevel

    data = os.urandom(20 << 20)
    path = tmp_path / "archive"
    path.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()

    class Store:
        def __init__(self) -> None:
            self.sent: dict[int, bytes] = {}
            self.completed = self.aborted = False

        def list_multipart_uploads(self, **_kwargs):
            return {}

        def create_multipart_upload(self, **_kwargs):
            return {"UploadId": "u1"}

        def upload_part(self, **kwargs):
            number = kwargs["PartNumber"]
            self.sent[number] = kwargs["Body"]
            if number == 1:
                time.sleep(0.5)  # anything reading the file beside the parts has read all of it by now
                with open(path, "r+b") as handle:  # then the last part's bytes change
                    handle.seek(len(data) - 10)
                    handle.write(b"X" * 10)
            return {"ETag": f"e{number}"}

        def complete_multipart_upload(self, **_kwargs):
            self.completed = True

        def abort_multipart_upload(self, **_kwargs):
            self.aborted = True

    # parts one after the other: the last is read after the change
    monkeypatch.setattr(_offsite_upload, "UPLOAD_THREADS", 1)
    store = Store()
    remote = _offsite.Remote.from_options({"bucket": "b", "part_size_mib": 5})
    with pytest.raises(LifeboatError, match="does not match its manifest's sha256"):
        _offsite_upload._put_multipart(  # pylint: disable=protected-access
            store, remote, str(path), "k", len(data), sha256, _offsite_upload.CopyResult())
    assert store.aborted and not store.completed
    assert hashlib.sha256(b"".join(store.sent[n] for n in sorted(store.sent))).hexdigest() != sha256
