"""`observatory cluster doctor`: version parsing and verdicts, with the tools' real output shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kuberay import doctor

OUTPUTS = {
    "docker": "27.5.1\n",
    "kind": "kind v0.29.0 go1.24.2 linux/amd64\n",
    "kubectl": json.dumps({"clientVersion": {"gitVersion": "v1.34.1", "major": "1", "minor": "34"}}),
    "helm": "v3.17.3+ge4da497\n",
}


def fake_run(outputs: dict[str, str], rc: int = 0):
    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, rc, stdout=outputs.get(args[0], ""), stderr="daemon not running")

    return run


def test_every_tool_present_and_recent_passes():
    findings = doctor.diagnose(fake_run(OUTPUTS), which=lambda name: f"/usr/bin/{name}")
    assert [(f.tool, f.ok, f.version) for f in findings] == [
        ("docker", True, "27.5"),
        ("kind", True, "0.29"),
        ("kubectl", True, "1.34"),
        ("helm", True, "3.17"),
    ]


def test_missing_old_and_broken_tools_are_named_with_the_command_that_installs_them():
    outputs = {**OUTPUTS, "kind": "kind v0.17.0 go1.19 linux/amd64", "docker": ""}
    findings = doctor.diagnose(fake_run(outputs), which=lambda name: None if name == "helm" else name)
    by = {f.tool: f for f in findings}
    assert by["helm"].problem == "not on PATH" and "get-helm-3" in by["helm"].fix
    assert by["kind"].problem == "0.17 is older than 0.20" and "sigs.k8s.io/kind" in by["kind"].fix
    assert not by["docker"].ok and "no version" in by["docker"].problem
    assert by["kubectl"].ok
    text = "\n".join(doctor.report(findings))
    assert "missing  helm: not on PATH" in text and "ok       kubectl 1.34" in text


def test_a_docker_cli_without_an_engine_is_not_enough():
    finding = doctor.check(doctor.TOOLS[0], fake_run({}, rc=1), which=lambda name: name)
    assert not finding.ok and "daemon not running" in finding.problem


@pytest.mark.parametrize(
    ("output", "version"),
    [("v1.2.3", (1, 2)), ("Client: 24.0.7", (24, 0)), ("nothing", None), ('{"clientVersion": {}}', None)],
)
def test_parse_version(output, version):
    assert doctor.parse_version(output) == version


def test_cluster_up_without_docker_or_kind_prints_the_findings_and_fails(tmp_path: Path):
    """The real command, with a PATH that has no docker, kind or helm on it."""
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "observatory.cli", "cluster", "up"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 1
    for tool in ("docker", "kind", "kubectl", "helm"):
        assert f"missing  {tool}: not on PATH" in proc.stderr
    assert "get.docker.com" in proc.stderr and "needs the tools above" in proc.stderr
    assert "Traceback" not in proc.stderr
