"""The environment every Ray cluster of the observatory starts with (observatory/serve_ingress.py)."""

from __future__ import annotations

import pytest

from observatory import serve_ingress
from observatory.serve_ingress import ray_env


@pytest.mark.parametrize("haproxy", [None, "/tmp/haproxy-wrapper.sh"])
def test_the_control_loop_interval_is_set_with_or_without_haproxy(monkeypatch, haproxy):
    monkeypatch.setattr(serve_ingress, "loopback_haproxy", lambda: haproxy)

    env = ray_env({})

    assert env["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"
    assert ("RAY_SERVE_ENABLE_HA_PROXY" in env) is (haproxy is not None)


def test_a_value_already_set_wins(monkeypatch):
    monkeypatch.setattr(serve_ingress, "loopback_haproxy", lambda: None)

    assert ray_env({"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.1"})["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.1"
