# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this doc fragment may change in any release.
# Only this collection's own modules extend it.

from __future__ import annotations


class ModuleDocFragment:
    # Where the off-site copies are: an S3-compatible bucket and prefix, and how to reach it.
    DOCUMENTATION = r"""
options:
  bucket:
    description:
      - Name of the S3 bucket that holds the off-site copies (the name alone, no V(s3://)).
    type: str
    required: true
  prefix:
    description:
      - Folder in the bucket for this host's or job's archives, for example V(lifeboat/db1/journal).
      - It must hold nothing but lifeboat archives and manifests; a prefix with other files is refused, so
        that pruning can never touch them.
    type: str
    default: ''
  endpoint_url:
    description:
      - URL of an S3-compatible store (MinIO, Garage, versitygw, Backblaze, Wasabi...). AWS S3 when not set.
      - Starts with C(http://) or C(https://), e.g. V(https://minio.example.com:9000).
    type: str
  region:
    description:
      - Region of the bucket. V(us-east-1) when not set.
    type: str
  path_style:
    description:
      - Address the bucket as C(ENDPOINT/BUCKET) instead of C(BUCKET.ENDPOINT) (most self-hosted stores need it).
    type: bool
    default: false
  credentials_file:
    description:
      - A file of mode C(0600) in the AWS credentials format (C([default]), C(aws_access_key_id = ...),
        C(aws_secret_access_key = ...)) on the managed host.
      - When not set, boto3's own chain is used - C(AWS_ACCESS_KEY_ID)/C(AWS_SECRET_ACCESS_KEY) in the
        environment, C(~/.aws/credentials), the instance's role. Keys never appear on a command line or in results.
    type: path
  lock_mode:
    description:
      - Object lock mode for new uploads when the bucket has object lock, with O(lock_days).
      - V(COMPLIANCE) cannot be lifted by anyone until the period ends; V(GOVERNANCE) by users with the right to.
    type: str
    choices: [GOVERNANCE, COMPLIANCE]
  lock_days:
    description:
      - Days each uploaded object stays locked (with O(lock_mode)).
    type: int
  part_size_mib:
    description:
      - Part size of multipart uploads in MiB (5 to 5120); files up to one part are uploaded in one request.
    type: int
    default: 16
  checksum:
    description:
      - What the store checks each upload request against on receipt. V(sha256) sends SHA-256 checksums (S3's
        flexible checksums), which the store also records, so remote verification compares them without reading the
        objects back.
      - V(md5) is for stores without flexible checksums (they ignore or refuse SHA-256 headers) - each request
        carries Content-MD5, the object's ETag is compared after upload, and remote verification reads the objects
        back to compare them with the manifest's sha256. Not for buckets with SSE-KMS or SSE-C, whose ETags are not
        MD5s.
      - Either way, each file's SHA-256 is compared with its manifest as it is read for the upload, so a file that
        changed since its backup is never copied.
    type: str
    choices: [sha256, md5]
    default: sha256
requirements:
  - boto3 on the managed host
"""
