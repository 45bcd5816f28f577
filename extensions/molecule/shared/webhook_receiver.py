# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The molecule scenarios' webhook receiver: every POST body is kept as DIR/NNN.json (it must be JSON).

    python3 webhook_receiver.py 127.0.0.1 8099 /var/tmp/webhook
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading

LOCK = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    directory = "."

    def do_POST(self) -> None:  # the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            json.loads(body)
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        with LOCK:
            count = len([name for name in os.listdir(self.directory) if name.endswith(".json")])
            path = os.path.join(self.directory, f"{count + 1:03d}.json")
            with open(path + ".tmp", "wb") as handle:
                handle.write(body)
            os.replace(path + ".tmp", path)
        self.send_response(204)
        self.end_headers()


def main() -> None:
    host, port, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    os.makedirs(directory, exist_ok=True)
    Receiver.directory = directory
    http.server.ThreadingHTTPServer((host, port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
