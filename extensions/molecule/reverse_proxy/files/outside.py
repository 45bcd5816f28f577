"""Checks of the reverse proxy from outside its container, through TLS (run on the molecule host).

    python outside.py ADDRESS ROOT_PEM checks     one JSON object: headers, redirect, 413, 429 count, WebSocket echo
    python outside.py ADDRESS ROOT_PEM serial     the serial of the certificate served for app.lifeboat.test
    python outside.py ADDRESS ROOT_PEM loop SECS  requests to switch.lifeboat.test for SECS seconds: counts per upstream

The basic-auth password comes from the environment (LIFEBOAT_PROXY_PASSWORD), never from the command line.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import sys
import time


class SNIConnection(http.client.HTTPSConnection):
    """HTTPS to the container's address with the site's name for SNI and the certificate check."""

    def __init__(self, address, server_name, context):
        super().__init__(address, 443, timeout=10, context=context)
        self.server_name = server_name

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)


def request(address, host, method="GET", path="/", body=None, headers=None, tls=True, cafile=None):
    if tls:
        context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
        connection = SNIConnection(address, host, context)
    else:
        connection = http.client.HTTPConnection(address, 80, timeout=10)
    connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def serial(address, cafile):
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((address, 443), timeout=10) as sock, context.wrap_socket(sock, server_hostname="app.lifeboat.test") as tls:
        return tls.getpeercert()["serialNumber"]


def checks(address, cafile):
    from websockets.sync.client import connect

    out = {}
    status, headers, _body = request(address, "app.lifeboat.test", cafile=cafile)  # the chain verifies against Pebble's root
    out["app_status"] = status
    names = ("strict-transport-security", "x-content-type-options", "x-frame-options", "referrer-policy", "server")
    out["headers"] = {name: headers.get(name) for name in names}
    status, headers, _body = request(address, "app.lifeboat.test", path="/a?b=1", tls=False)
    out["redirect"] = [status, headers.get("location")]
    out["upload_over_limit"] = request(address, "app.lifeboat.test", "POST", body=b"x" * 4096, cafile=cafile)[0]
    time.sleep(2)  # let the rate limit's bucket drain before the burst
    statuses = [request(address, "app.lifeboat.test", cafile=cafile)[0] for _attempt in range(20)]
    out["burst"] = {"200": statuses.count(200), "429": statuses.count(429), "other": len(statuses) - statuses.count(200)
                    - statuses.count(429)}
    out["feed_without_password"] = request(address, "feed.lifeboat.test")[0]
    token = base64.b64encode(f"ops:{os.environ['LIFEBOAT_PROXY_PASSWORD']}".encode()).decode()
    context = ssl._create_unverified_context()  # feed's certificate is self-signed
    with connect("wss://feed.lifeboat.test/ws", ssl=context, sock=socket.create_connection((address, 443)),
                 server_hostname="feed.lifeboat.test", additional_headers={"Authorization": f"Basic {token}"}) as ws:
        ws.send("hello through the proxy")
        out["websocket"] = ws.recv(timeout=10)
    return out


def loop(address, seconds):
    counts = {"blue": 0, "green": 0, "failed": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            status, _headers, body = request(address, "switch.lifeboat.test")
            key = body.decode().strip() if status == 200 else "failed"
            counts[key if key in counts else "failed"] += 1
        except (OSError, http.client.HTTPException):
            counts["failed"] += 1
    return counts


if __name__ == "__main__":
    address, cafile, mode = sys.argv[1:4]
    if mode == "checks":
        print(json.dumps(checks(address, cafile)))
    elif mode == "serial":
        print(json.dumps(serial(address, cafile)))
    else:
        print(json.dumps(loop(address, float(sys.argv[4]))))
