"""deploy/local/stack.sh: its scripts parse, and `status` sees the infrastructure the test
session started (the `infra` fixture runs `stack.sh up --infra` when it is the source)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"
STACK = LOCAL / "stack.sh"


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_every_script_parses():
    scripts = sorted(LOCAL.rglob("*.sh"))
    assert STACK in scripts
    for script in scripts:
        result = _run("-n", str(script))
        assert result.returncode == 0, f"{script.relative_to(REPO)}: {result.stderr}"


def test_unknown_command_prints_usage_and_fails():
    result = _run(str(STACK), "sideways")
    assert result.returncode == 2
    assert "usage: deploy/local/stack.sh up [--infra] | down | status" in result.stderr


def test_status_reports_the_infrastructure_running(infra):
    if infra.source != "local stack":
        pytest.skip(f"Kafka, PostgreSQL and Redis come from {infra.source}, not stack.sh")
    result = _run(str(STACK), "status")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for part in ("kafka", "postgres", "redis"):
        assert any(line.startswith(f"{part}: running") for line in lines), result.stdout
    for service in ("members", "alerts", "dispatch"):
        assert any(line.startswith(f"{service}: ") for line in lines), result.stdout
