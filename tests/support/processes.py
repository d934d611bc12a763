"""Services under test as real processes (`python -m services.<name>`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.infra import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait: the graceful shutdown path."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_service(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    *,
    port: int | None = None,
    ready_timeout_s: float = 60.0,
    args: tuple[str, ...] = (),
) -> ServiceProcess:
    """Start `python -m services.<name>` with `env` on a free port; wait for /readyz."""
    port = port or free_port()
    full_env = {**os.environ, **env, f"{name.upper()}_PORT": str(port), "MUSTER_LOG_JSON": "true"}
    log_path = log_dir / f"{name}-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}", *args],
        cwd=REPO,
        env=full_env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    service = ServiceProcess(name, port, process, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{service.log()[-4000:]}")
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2.0).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    service.kill()
    raise RuntimeError(f"{name} not ready after {ready_timeout_s}s:\n{service.log()[-4000:]}")


def run_migrations(name: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", f"services.{name}", "migrate"],
        cwd=REPO,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
