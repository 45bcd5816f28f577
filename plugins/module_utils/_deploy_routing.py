# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""How a deploy moves traffic: the site's front door (its nginx, a probe through it, a tunnel in front checked), and
the two switch methods, the app's HAProxy switched through its runtime API or the site's upstream and an nginx reload.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import time
import typing as t

from . import _files, _http_probe, _ingress, _nginx, _reverse_proxy, _switch
from ._common import LifeboatError
from ._deploy_records import app_dir


def front_door(params: dict[str, t.Any]) -> tuple[_nginx.Layout, _nginx.Nginx, _nginx.Probe, str]:
    """The site's layout, its nginx, the probe through it, and the upstream file's path (the site must exist)."""
    layout, nginx = _reverse_proxy.layout_of(params), _reverse_proxy.nginx_of(params)
    if not _nginx.SITE_NAME.match(params["site"] or ""):
        raise LifeboatError(f"site '{params['site']}' is not a reverse_proxy site name")
    host, tls = _reverse_proxy.site_probe_target(layout, params["site"])
    probe = _nginx.Probe(host=host, port=layout.https_port if tls else layout.http_port,
                         address=params["probe_address"], tls=tls, path=params["health_path"],
                         expect_status=tuple(params["health_status"]), expect_body=params["health_body"] or "",
                         timeout=float(params["health_timeout"]))
    if params.get("tunnel_config"):
        tunnel_in_front(params["tunnel_config"], host, tls, layout, params["probe_address"])
    return layout, nginx, probe, layout.upstream_file(params["site"])


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def tunnel_in_front(config_path: str, host: str, tls: bool, layout: _nginx.Layout, probe_address: str) -> str:
    """The service a Cloudflare tunnel's ingress sends the site's hostname to, which must be the site's nginx.

    The switch happens behind the tunnel (the site's nginx and the app's switch), never in cloudflared's config:
    cloudflared reads a locally managed config only when it starts, and a restart drops the requests it is carrying.
    So a tunnel in front is checked, not changed: its ingress (validated as cloudflared validates it) must route the
    site's hostname to the site's own listener; a rule that points at a color's port would bypass every switch and
    rollback."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = _ingress.load_yaml(handle.read())
    except OSError as exc:
        raise LifeboatError(f"tunnel_config {config_path}: {exc.strerror}") from None
    try:
        ingress = _ingress.check(config)
    except LifeboatError as exc:
        raise LifeboatError(f"tunnel_config {config_path}: {exc}") from None
    rule = ingress.rules[ingress.match(f"https://{host}/")]
    scheme, port = ("https", layout.https_port) if tls else ("http", layout.http_port)
    wanted = {f"{scheme}://{name}:{port}" for name in (*LOOPBACK_NAMES, probe_address)}
    if port == (443 if tls else 80):
        wanted |= {f"{scheme}://{name}" for name in (*LOOPBACK_NAMES, probe_address)}
    if rule.service.rstrip("/") not in wanted:
        raise LifeboatError(f"tunnel_config {config_path}: {rule.label()} sends {host} past the site's nginx; point "
                            f"its service at {scheme}://127.0.0.1:{port} so that the switch (in nginx) moves its "
                            "traffic too")
    return rule.service


def upstream_address(params: dict[str, t.Any], port: int) -> str:
    address = params["bind_address"]
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def ensure_upstream(params: dict[str, t.Any], door: tuple[t.Any, ...], servers: list[str],
                    probe: bool = True) -> dict[str, t.Any]:
    """The site's upstream names these servers and the running nginx has loaded it.

    The file on disk proves nothing: a run killed between writing it and the reload leaves it written and never
    loaded. So nginx is reloaded unless this very content was recorded after a reload that succeeded."""
    layout, nginx, site_probe, path = door
    content = _nginx.render_upstream(params["site"], servers, params["keepalive"]).encode()
    digest = hashlib.sha256(content).hexdigest()
    record = os.path.join(app_dir(params), "nginx-loaded")
    loaded = _nginx.read(record)
    if _nginx.read(path) == content and loaded is not None and loaded.decode().strip() == digest:
        return {"upstream": servers, "reloaded": False}
    applied = _nginx.switch_upstream(params["site"], servers, params["keepalive"], layout, nginx,
                                     site_probe if probe else None, force=True)
    os.makedirs(app_dir(params), mode=0o700, exist_ok=True)
    _files.write_file_atomic(record, f"{digest}\n".encode(), 0o600)
    return {"upstream": servers, "reloaded": True, "probe": applied.probe}


def answered_by(probe: _nginx.Probe) -> tuple[str | None, str]:
    """Which color answers a request through the front door (the switch tells a probe that asks), and the status."""
    context = None
    if probe.tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # nginx's chain, not trust
    try:
        answer = _http_probe.get(probe.address, probe.port, probe.path, timeout=min(5.0, probe.timeout),
                                 context=context, server_name=probe.host,
                                 headers={"Host": probe.host, "User-Agent": "lifeboat-deploy-probe",
                                          _switch.PROBE_HEADER: "1"})
    except _http_probe.ProbeFailed as exc:
        return None, f"no answer ({exc})"
    return answer.headers.get(_switch.COLOR_HEADER), f"HTTP {answer.status}"


class NginxReload:
    """switch_method nginx_reload: the site's upstream names the color's port; each switch reloads nginx (idle
    keep-alive client connections are closed by the reload)."""

    method = "nginx_reload"

    def __init__(self, params: dict[str, t.Any], door: tuple[t.Any, ...]) -> None:
        self.params, self.door = params, door

    def describe(self, port: int) -> str:
        return f"switch site {self.params['site']} ({self.door[3]}) to {upstream_address(self.params, port)}"

    def reconcile(self, live: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """Traffic on the live color as the state says (a killed run may have left another upstream written)."""
        if live is None:
            return {}
        return ensure_upstream(self.params, self.door, [upstream_address(self.params, live["port"])], probe=False)

    def route(self, color: str, port: int) -> dict[str, t.Any]:
        done = ensure_upstream(self.params, self.door, [upstream_address(self.params, port)])
        return {"method": self.method, "color": color, "upstream": done["upstream"][0], "changed": done["reloaded"],
                "probe": done.get("probe", "")}

    def put_back(self, live: dict[str, t.Any] | None, before: bytes | None) -> None:
        if live is not None:
            self.route(live["color"], live["port"])
            return
        _layout, nginx, _probe, path = self.door
        _nginx.apply([_nginx.Planned(path, before)], nginx, None, force=True)

    def retire(self, color: str) -> dict[str, t.Any]:
        return {"color": color}  # the reload moved every new connection; the old workers finish theirs


class HaproxySwitch(NginxReload):
    """switch_method haproxy: nginx's upstream is the app's switch (loaded once); a switch is a runtime API call,
    proven through the front door, and the old color is drained before it stops."""

    method = "haproxy"

    def __init__(self, params: dict[str, t.Any], door: tuple[t.Any, ...], niceness: int | None = None) -> None:
        super().__init__(params, door)
        self.switch = _switch.switch_of(params["app"], params["state_dir"], params["switch_socket_dir"],
                                        params["bind_address"], {"blue": params["blue_port"],
                                                                 "green": params["green_port"]},
                                        params["haproxy_binary"], niceness=niceness)

    def describe(self, port: int) -> str:
        color = "blue" if port == self.params["blue_port"] else "green"
        return (f"switch site {self.params['site']} to {color} ({upstream_address(self.params, port)}) through "
                f"its HAProxy switch ({self.switch.socket_path}), without a reload")

    def reconcile(self, live: dict[str, t.Any] | None) -> dict[str, t.Any]:
        """The switch runs, and routes to the live color (whatever a killed run left it routing to)."""
        done: dict[str, t.Any] = {"switch": self.switch.ensure(live["color"] if live else None)}
        if live is not None:
            done["route"] = self.switch.route(live["color"])
            done["nginx"] = ensure_upstream(self.params, self.door, [self.switch.upstream], probe=False)
        return done

    def route(self, color: str, port: int) -> dict[str, t.Any]:
        routed = self.switch.route(color)
        nginx = ensure_upstream(self.params, self.door, [self.switch.upstream], probe=False)
        return {"method": self.method, "color": color, "upstream": self.switch.upstream,
                "changed": routed["changed"], "nginx_reloaded": nginx["reloaded"], "proof": self.prove(color)}

    def prove(self, color: str, answers: int = 3) -> str:
        """``answers`` requests in a row through the site's nginx answered by ``color``, or a LifeboatError."""
        probe = self.door[2]
        deadline = time.monotonic() + float(self.params["reload_timeout"])
        seen, detail, streak = None, "", 0
        while streak < answers:
            seen, detail = answered_by(probe)
            streak = streak + 1 if seen == color else 0
            if streak < answers:
                if time.monotonic() >= deadline:
                    raise LifeboatError(f"site {self.params['site']} is not answered by {color} through its nginx "
                                        f"(last answer: {detail}, from {seen or 'no color'})")
                time.sleep(0.05)
        return f"{answers} answers from {color} through the front door ({detail})"

    def retire(self, color: str) -> dict[str, t.Any]:
        """Drain, then take out, a color that no longer takes new requests (route() moved them and proved it through
        the front door); one that still takes them is refused, never stopped."""
        if self.switch.states().get(color) == "ready":
            raise LifeboatError(f"{color} still takes requests through the switch; it is not stopped")
        return self.switch.drain(color, self.params["drain_timeout"])


def router_of(params: dict[str, t.Any], door: tuple[t.Any, ...], niceness: int | None = None) -> NginxReload:
    """The switch of params['switch_method']; a switch process it starts runs at ``niceness`` (the niceness the run
    had before it lowered its own), not at the deploy's."""
    if params["switch_method"] == "haproxy":
        return HaproxySwitch(params, door, niceness)
    return NginxReload(params, door)  # signals the running nginx: its new workers keep the master's niceness
