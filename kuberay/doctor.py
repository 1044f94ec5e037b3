"""`observatory cluster doctor`: are the tools that `cluster up` runs present and recent enough?"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable

from pydantic import BaseModel


class Finding(BaseModel):
    tool: str
    ok: bool
    version: str = ""
    problem: str = ""
    fix: str = ""


class Tool(BaseModel):
    name: str
    minimum: tuple[int, int]
    version_command: list[str]
    install: str


TOOLS = [
    Tool(
        name="docker",
        minimum=(20, 10),
        # The server's version: a docker CLI without a running engine cannot build or run kind.
        version_command=["docker", "version", "--format", "{{.Server.Version}}"],
        install="curl -fsSL https://get.docker.com | sh   (then start it: sudo systemctl start docker)",
    ),
    Tool(
        name="kind",
        minimum=(0, 20),
        version_command=["kind", "version"],
        install="go install sigs.k8s.io/kind@v0.29.0   (or see https://kind.sigs.k8s.io/docs/user/quick-start/)",
    ),
    Tool(
        name="kubectl",
        minimum=(1, 28),
        version_command=["kubectl", "version", "--client", "-o", "json"],
        install="curl -LO https://dl.k8s.io/release/v1.34.0/bin/linux/amd64/kubectl && "
        "sudo install kubectl /usr/local/bin/",
    ),
    Tool(
        name="helm",
        minimum=(3, 12),
        version_command=["helm", "version", "--short"],
        install="curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash",
    ),
]

Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def parse_version(output: str) -> tuple[int, int] | None:
    """The first `major.minor` in a tool's version output (kubectl's JSON included)."""
    try:
        output = json.loads(output)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        pass
    found = re.search(r"(\d+)\.(\d+)", output)
    return (int(found.group(1)), int(found.group(2))) if found else None


def check(tool: Tool, run: Runner = _run, which: Callable[[str], str | None] = shutil.which) -> Finding:
    if which(tool.name) is None:
        return Finding(tool=tool.name, ok=False, problem="not on PATH", fix=tool.install)
    try:
        proc = run(tool.version_command)
    except (OSError, subprocess.TimeoutExpired) as e:
        return Finding(
            tool=tool.name, ok=False, problem=f"`{' '.join(tool.version_command)}` failed: {e}", fix=tool.install
        )
    version = parse_version(proc.stdout) if proc.returncode == 0 else None
    if version is None:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        problem = f"no version from `{' '.join(tool.version_command)}`: {detail[-1] if detail else 'no output'}"
        return Finding(tool=tool.name, ok=False, problem=problem, fix=tool.install)
    shown = f"{version[0]}.{version[1]}"
    if version < tool.minimum:
        minimum = f"{tool.minimum[0]}.{tool.minimum[1]}"
        return Finding(
            tool=tool.name, ok=False, version=shown, problem=f"{shown} is older than {minimum}", fix=tool.install
        )
    return Finding(tool=tool.name, ok=True, version=shown)


def diagnose(run: Runner = _run, which: Callable[[str], str | None] = shutil.which) -> list[Finding]:
    return [check(tool, run, which) for tool in TOOLS]


def passes() -> bool:
    return all(f.ok for f in diagnose())


def report(findings: list[Finding]) -> list[str]:
    lines = []
    for f in findings:
        if f.ok:
            lines.append(f"ok       {f.tool} {f.version}")
        else:
            lines.append(f"missing  {f.tool}: {f.problem}\n         install: {f.fix}")
    return lines
