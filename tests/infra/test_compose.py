"""docker-compose.yml stays consistent with the repository (no Docker engine needed).

Checks what `docker compose config` would not: that every module a command runs exists
here, and the wiring the services rely on. `docker compose config -q` itself runs only
where a Docker engine answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
APP_SERVICES = {"members": 8001, "alerts": 8002, "dispatch": 8003}


def _load() -> dict[str, Any]:
    with COMPOSE.open() as f:
        return yaml.safe_load(f)


COMPOSE_DATA = _load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE_DATA["services"]


def _command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _published_port(entry: Any) -> tuple[str, int] | None:
    """(host ip, host port) of one `ports` entry; None when nothing is published."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return (entry.get("host_ip", ""), int(published)) if published else None
    parts = str(entry).split("/")[0].split(":")
    if len(parts) == 1:
        return None  # container port only: Docker picks a random host port
    host_ip = parts[0] if len(parts) == 3 else ""
    return host_ip, int(parts[-2])


def test_every_service_has_an_image_or_a_buildable_dockerfile():
    for name, service in SERVICES.items():
        build = service.get("build")
        assert "image" in service or build, f"{name}: neither image nor build"
        if build:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (REPO / context / dockerfile).is_file(), f"{name}: no {context}/{dockerfile}"


def test_every_depends_on_target_exists():
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES, f"{name} depends on unknown service {target!r}"
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_every_named_volume_is_declared():
    declared = set((COMPOSE_DATA.get("volumes") or {}).keys())
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                source = volume.get("source") if volume.get("type", "volume") == "volume" else None
            else:
                source = str(volume).split(":")[0] if ":" in str(volume) else None
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_published_ports_are_unique():
    seen: dict[int, str] = {}
    for name, service in SERVICES.items():
        for entry in service.get("ports", []):
            published = _published_port(entry)
            if published is None:
                continue
            port = published[1]
            assert port not in seen, f"port {port} published by both {seen[port]} and {name}"
            seen[port] = name


def test_every_module_a_command_runs_exists():
    found = []
    for name, service in SERVICES.items():
        for module in re.findall(r"python3?\s+-m\s+([A-Za-z_][\w.]*)", _command_text(service)):
            if not module.startswith(("services.", "shared.")):
                continue
            base = REPO / Path(*module.split("."))
            assert base.with_suffix(".py").is_file() or (base / "__main__.py").is_file(), (
                f"{name}: `python -m {module}` but neither {base}.py nor {base}/__main__.py exists"
            )
            found.append(module)
    # The init job, the three services and the console: a regex that matched nothing would
    # pass vacuously.
    assert "shared.events.provision" in found
    assert {f"services.{s}" for s in APP_SERVICES} | {"services.console"} <= set(found)


def test_init_provisions_then_migrates_every_service():
    init = SERVICES["init"]
    command = _command_text(init)
    assert command.index("shared.events.provision") < command.index("services.members migrate")
    for service in APP_SERVICES:
        assert f"python -m services.{service} migrate" in command
    assert _depends_on(init) == {"kafka": "service_healthy", "postgres": "service_healthy"}


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_wiring(name):
    service = SERVICES[name]
    port = APP_SERVICES[name]
    env = service["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["DATABASE_URL"] == "postgresql+asyncpg://muster:muster@postgres:5432/muster"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env[f"{name.upper()}_HOST"] == "0.0.0.0"
    assert _depends_on(service)["init"] == "service_completed_successfully"
    assert port in {p[1] for p in map(_published_port, service["ports"]) if p}
    assert f"{port}/readyz" in " ".join(map(str, service["healthcheck"]["test"]))


def test_console_calls_the_three_apis_once_they_are_healthy():
    console = SERVICES["console"]
    env = console["environment"]
    assert env["CONSOLE_HOST"] == "0.0.0.0"
    for name, port in APP_SERVICES.items():
        assert env[f"CONSOLE_{name.upper()}_URL"] == f"http://{name}:{port}"
        assert _depends_on(console)[name] == "service_healthy"
    # it owns no data: nothing to connect to but the APIs
    assert not {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL"} & set(env)
    assert 8000 in {p[1] for p in map(_published_port, console["ports"]) if p}
    assert "8000/readyz" in " ".join(map(str, console["healthcheck"]["test"]))
    assert SERVICES["dispatch"]["environment"]["DISPATCH_CONSOLE_URL"].endswith(":8000}")


def test_dockerfile_compiles_the_console_catalogues_before_dropping_root():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.index("compile_catalogues()") < dockerfile.index("USER 10001")


def test_dockerfile_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile never switches away from root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0 and plugin.returncode == 0


def test_docker_compose_config_is_valid():
    if not _docker_engine_answers():
        pytest.skip(
            "no Docker engine with the compose plugin here "
            "(`docker info` or `docker compose version` failed)"
        )
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
