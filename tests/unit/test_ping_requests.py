# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The requests a monitoring ping makes per kind and state, and the one-line refusals that never quote a URL."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.ops.plugins.module_utils import _pings
from ansible_collections.lifeboat.ops.plugins.module_utils._common import LifeboatError

HC = "https://hc.example.org/ping/0f1e-T0ken?rid=1"
KUMA = "https://kuma.example.org/api/push/KumaT0ken?status=up&msg=OK&ping="
NTFY = "https://user:pa%40ss@ntfy.example.org/T0picName"


def plan(state: str, log: str = "") -> list[tuple[str, str, str]]:
    targets = _pings.Targets.from_options({"healthchecks": HC, "uptime_kuma": [KUMA], "ntfy": [NTFY]})
    return [(ping.kind, ping.method, ping.request_url) for ping in _pings.requests_for(targets, state, "m s", log)]


def test_each_kind_gets_its_request_per_state():
    assert plan("start") == [("healthchecks", "POST", "https://hc.example.org/ping/0f1e-T0ken/start?rid=1")]
    assert plan("success") == [
        ("healthchecks", "POST", "https://hc.example.org/ping/0f1e-T0ken?rid=1"),
        ("uptime_kuma", "GET", "https://kuma.example.org/api/push/KumaT0ken?ping=&status=up&msg=m+s"),
        ("ntfy", "POST", NTFY)]
    assert [url for _kind, _method, url in plan("fail")][:2] == [
        "https://hc.example.org/ping/0f1e-T0ken/fail?rid=1",
        "https://kuma.example.org/api/push/KumaT0ken?ping=&status=down&msg=m+s"]


def test_a_fail_ping_carries_the_log_tail_and_only_its_end_when_long():
    targets = _pings.Targets.from_options({"healthchecks": [HC]})
    (ping,) = _pings.requests_for(targets, "fail", "failed", "x" * 20_000 + "the end")
    assert len(ping.body) == _pings.BODY_LIMIT and ping.body.endswith(b"the end")


@pytest.mark.parametrize("options, message", [
    ({"healthcheck": [HC]}, "pings: unknown kind healthcheck; the kinds are healthchecks, uptime_kuma, ntfy"),
    ({"ntfy": ["ntfy.sh/T0picName"]}, "pings: ntfy URL #1 is no http:// or https:// URL"),
    ({"uptime_kuma": [KUMA, "ftp://kuma/KumaT0ken"]}, "pings: uptime_kuma URL #2 is no http:// or https:// URL"),
])
def test_bad_targets_are_refused_in_one_line(options, message):
    with pytest.raises(LifeboatError) as caught:
        _pings.Targets.from_options(options)
    assert str(caught.value) == message


def test_an_undeliverable_ping_says_why_without_the_url():
    targets = _pings.Targets.from_options({"healthchecks": ["http://127.0.0.1:9/T0kenInPath?k=T0kenInQuery"]})
    (problem,) = _pings.send(targets, "start", "m")
    assert problem.startswith("healthchecks #1: ") and "T0ken" not in problem and "127.0.0.1:9" not in problem
