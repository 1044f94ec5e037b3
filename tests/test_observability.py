"""Metrics, alert rules, the alert path into the read model, and the dashboards, against the real
Prometheus and Alertmanager that `scripts/services.sh up --observability` starts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from observatory.settings import Settings
from tests.cluster import ROOT
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

OBS = ROOT / "observability"
REAL = pytest.mark.parametrize("mode", ["real"], indirect=True)
EMBEDDED = pytest.mark.parametrize("mode", ["embedded"], indirect=True)
METRIC = re.compile(r"\bray_observatory_[a-z_]+")


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((OBS / "rules.yml").read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def panel_exprs() -> list[str]:
    dashboard = json.loads((OBS / "grafana" / "dashboards" / "observatory.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


@pytest.fixture(scope="module")
def prometheus() -> httpx.Client:
    url = Settings().prometheus_url
    try:
        httpx.get(f"{url}/-/ready", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        pytest.fail(f"Prometheus is not reachable at {url} ({e}): run `scripts/services.sh up --observability`")
    return httpx.Client(base_url=url, timeout=10)


def query(prometheus: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = prometheus.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def fail_jobs(api: httpx.Client, waves: int, per_wave: int = 4, every_s: float = 3.0) -> None:
    """Failing and succeeding jobs in waves: a counter's first sample is not an increase to rate(), so a
    single burst would be invisible to the rules; waves a few scrapes apart are not."""
    bad = {"type": "sleep", "payload": {"seconds": 0, "fail_probability": 1}, "max_attempts": 1}
    ok = {"type": "hash", "payload": {"data": "fine"}}
    for _ in range(waves):
        assert api.post("/api/jobs/batch", json={"jobs": [bad] * per_wave + [ok]}).status_code == 202
        time.sleep(every_s)


def test_promtool_unit_tests_of_every_alert_rule_pass():
    names = {r["alert"] for g in yaml.safe_load((OBS / "rules.yml").read_text())["groups"] for r in g["rules"]}
    tested = set(re.findall(r"alertname: (\w+)", (OBS / "rules_test.yml").read_text()))

    run = subprocess.run(["promtool", "test", "rules", str(OBS / "rules_test.yml")], capture_output=True, text=True)

    assert run.returncode == 0, run.stdout + run.stderr
    assert (
        names
        == tested
        == {
            "ServiceDown",
            "JobFailureRateHigh",
            "QueueBacklogGrowing",
            "DeadLetterQueueNotEmpty",
            "StoreUnavailable",
            "GatewayHighLatency",
        }
    )


@REAL
def test_failure_alert_travels_prometheus_alertmanager_read_model(api, mode, prometheus):
    fail_jobs(api, 10)

    def firing() -> list[dict[str, Any]]:
        alerts = api.get("/read/alerts").json()["alerts"]
        return [a for a in alerts if a["name"] == "JobFailureRateHigh" and a["source"] == "alertmanager"]

    [alert] = wait_for(firing, "JobFailureRateHigh from Alertmanager in GET /read/alerts", 180)
    assert alert["severity"] == "warning" and "failing" in alert["summary"] and alert["runbook"]
    in_prometheus = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "JobFailureRateHigh" and a["state"] == "firing" for a in in_prometheus)


@REAL
def test_every_metric_used_by_a_rule_or_panel_is_exported(api, mode):
    fail_jobs(api, 4)
    targets = json.loads(Path("/tmp/ray/prom_metrics_service_discovery.json").read_text())[0]["targets"]
    used = {m for e in rule_exprs() + panel_exprs() for m in METRIC.findall(e)}

    def exported() -> set[str] | None:
        names: set[str] = set()
        for target in targets:
            try:
                text = httpx.get(f"http://{target}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            names |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("ray_obs")}
        return names if used <= names else None

    assert wait_for(exported, f"all of {sorted(used)} exported", 90)


@REAL
def test_every_dashboard_panel_query_returns_data(api, mode, prometheus):
    fail_jobs(api, 4)
    exprs = panel_exprs()

    def empty() -> list[str] | None:
        missing = [e for e in exprs if not query(prometheus, e)]
        return None if missing else ["all answered"]

    wait_for(empty, "every panel's PromQL to return data", 120)
    assert len(exprs) >= 6


@EMBEDDED
def test_without_prometheus_the_read_model_raises_the_core_alerts(api, mode):
    fail_jobs(api, 3)

    def names() -> set[str] | None:
        found = {a["name"] for a in api.get("/read/alerts").json()["alerts"] if a["source"] == "read-model"}
        return found if {"DeadLetterQueueNotEmpty", "JobFailureRateHigh"} <= found else None

    assert wait_for(names, "the read model's own alerts", 120)


def test_alertmanager_webhook_adds_and_resolves_alerts(api):
    alert = {
        "labels": {"alertname": "TestAlert", "severity": "critical"},
        "annotations": {"summary": "drill"},
        "startsAt": "2026-11-29T10:00:00Z",
        "fingerprint": "abc123",
    }

    hook = {"Authorization": f"Bearer {os.environ['OBSERVATORY_WEBHOOK_SECRET']}"}  # what Alertmanager sends
    firing = {"status": "firing", "alerts": [{**alert, "status": "firing"}]}

    fired = api.post("/read/alerts/webhook", json=firing, headers=hook)
    listed = api.get("/read/alerts").json()["alerts"]
    resolved = api.post(
        "/read/alerts/webhook", json={"status": "resolved", "alerts": [{**alert, "status": "resolved"}]}, headers=hook
    )
    after = api.get("/read/alerts").json()["alerts"]
    bad = api.post("/read/alerts/webhook", json={"status": "maybe", "alerts": []}, headers=hook)
    planted = [
        api.post("/read/alerts/webhook", json=firing, headers=headers)
        for headers in ({}, {"Authorization": "Bearer not-the-secret"}, {"Authorization": hook["Authorization"][:-1]})
    ]
    after_planting = api.get("/read/alerts").json()["alerts"]

    assert fired.status_code == resolved.status_code == 200
    assert {"name": "TestAlert", "severity": "critical", "summary": "drill", "source": "alertmanager"}.items() <= [
        a for a in listed if a["name"] == "TestAlert"
    ][0].items()
    assert not [a for a in after if a["name"] == "TestAlert"]
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["loc"] == ["body", "status"]
    for refused in planted:  # without the shared secret nobody plants an alert on the operators' screens
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert not [a for a in after_planting if a["name"] == "TestAlert"]
