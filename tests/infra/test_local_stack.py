"""deploy/local/stack.sh: its scripts parse, `status` sees the infrastructure the test
session started (the `infra` fixture runs `stack.sh up --infra` when it is the source) and
lists every service, and the local secrets file is written once, private, and loses to the
environment."""

from __future__ import annotations

import os
import stat
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
    for service in ("members", "alerts", "dispatch", "console"):
        assert any(line.startswith(f"{service}: ") for line in lines), result.stdout


def _in_stack(script: str, local: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in bash after sourcing stack.sh (which then only defines functions)."""
    full_env = {**os.environ, "MUSTER_LOCAL_DIR": str(local), **env}
    for name in ("MUSTER_BOOTSTRAP_ADMIN_PASSWORD", "TWILIO_AUTH_TOKEN", "CONSOLE_SESSION_SECRET"):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        ["bash", "-c", f'source "{STACK}"; {script}'],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _secrets(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_secrets_are_written_once_private_and_random(tmp_path):
    first = _in_stack("secrets_write", tmp_path / "a")
    assert first.returncode == 0, first.stderr
    path = tmp_path / "a" / "secrets.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = _secrets(path)
    assert written["MUSTER_BOOTSTRAP_ADMIN_EMAIL"] == "admin@muster.local"
    for name in ("MUSTER_BOOTSTRAP_ADMIN_PASSWORD", "TWILIO_AUTH_TOKEN", "CONSOLE_SESSION_SECRET"):
        assert len(written[name]) >= 24, name
    assert _in_stack("secrets_write", tmp_path / "a").returncode == 0
    assert _secrets(path) == written, "a second run must keep the passwords accounts were made with"
    other = _in_stack("secrets_write", tmp_path / "b")
    assert other.returncode == 0, other.stderr
    again = _secrets(tmp_path / "b" / "secrets.env")
    assert again["MUSTER_BOOTSTRAP_ADMIN_PASSWORD"] != written["MUSTER_BOOTSTRAP_ADMIN_PASSWORD"]


def test_an_environment_variable_wins_over_the_secrets_file(tmp_path):
    shown = 'printf "%s|%s\\n" "$TWILIO_AUTH_TOKEN" "$MUSTER_BOOTSTRAP_ADMIN_EMAIL"'
    result = _in_stack(
        f"secrets_write >/dev/null; secrets_export; {shown}",
        tmp_path,
        TWILIO_AUTH_TOKEN="set-by-hand",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "set-by-hand|admin@muster.local"
