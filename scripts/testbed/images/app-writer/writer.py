# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test bed's app container: fills its data directory (APP_DATA_DIR, a named volume) once, then sleeps.

What it writes covers what a files backup must keep: small text files, a larger binary one (4 MiB), a relative
symlink, a hard link, a sparse file, an extended attribute, other owners (uid 1000, 33) and modes (0600, 0750).
Contents are deterministic. A directory that already holds files (a restored volume) is left as it is. With
APP_APPEND_EVERY=SECONDS it appends a line to live.log at that interval (a file that changes while it is read).
Prints "app-writer: ready" once the files are there; exits 0 on SIGTERM (so `docker stop` is quick).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import types


def fill(root: str) -> None:
    content = random.Random(20261130)
    os.makedirs(os.path.join(root, "uploads"), exist_ok=True)
    os.makedirs(os.path.join(root, "private"), exist_ok=True)
    files = {
        "README.txt": b"Files of the lifeboat test bed's app container.\n",
        "config.json": b'{"name": "app-writer", "uploads": "uploads/"}\n',
        "uploads/note-1.txt": "Grüße, 1\n".encode(),
        "uploads/note-2.txt": b"second note\n",
        "uploads/photo.bin": content.randbytes(4 * 1024 * 1024),
        "private/secret.env": b"APP_TOKEN=not-a-real-token\n",
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as handle:
            handle.write(data)
    os.symlink("uploads/photo.bin", os.path.join(root, "latest-photo"))
    os.link(os.path.join(root, "uploads/note-1.txt"), os.path.join(root, "uploads/note-1-hardlink.txt"))
    with open(os.path.join(root, "sparse.img"), "wb") as handle:  # 16 MiB with two 4 KiB islands of data
        handle.write(content.randbytes(4096))
        handle.seek(8 * 1024 * 1024)
        handle.write(content.randbytes(4096))
        handle.truncate(16 * 1024 * 1024)
    try:
        os.setxattr(os.path.join(root, "README.txt"), "user.lifeboat.origin", b"app-writer")
    except OSError as error:  # a file system without user xattrs: said, not hidden
        print(f"app-writer: no xattr on README.txt ({error.strerror})", flush=True)
    os.chmod(os.path.join(root, "private"), 0o750)
    os.chmod(os.path.join(root, "private/secret.env"), 0o600)
    os.chown(os.path.join(root, "private"), 1000, 1000)
    os.chown(os.path.join(root, "private/secret.env"), 1000, 1000)
    os.chown(os.path.join(root, "uploads"), 33, 33)
    os.chown(os.path.join(root, "latest-photo"), 33, 33, follow_symlinks=False)


def stop(_signum: int, _frame: types.FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    root = os.environ.get("APP_DATA_DIR", "/data")
    os.makedirs(root, exist_ok=True)
    if not os.listdir(root):
        fill(root)
    print("app-writer: ready", flush=True)
    interval = float(os.environ.get("APP_APPEND_EVERY", "0"))
    count = 0
    while True:
        if interval <= 0:
            signal.pause()
            continue
        count += 1
        with open(os.path.join(root, "live.log"), "a", encoding="utf-8") as handle:
            handle.write(f"line {count} {time.time():.3f}\n")
        time.sleep(interval)


if __name__ == "__main__":
    main()
