"""Throwaway Kafka, PostgreSQL and Redis servers of a test's own, to break on purpose.

The fault tests stop, kill and flush infrastructure. The shared servers that `make infra`
starts serve every other test (and other people on the machine), so the fault tests start
their own from the same software, on free ports, with data under a temporary directory:

- Kafka: the jars `make infra` fetched (`.local/kafka/lib`), one KRaft node rendered from
  `deploy/local/kafka/server.properties`, formatted with `kafka.tools.StorageTool format
  --standalone` as `deploy/local/stack.sh` does, then `kafka.Kafka`;
- PostgreSQL: `initdb` of the system's newest `/usr/lib/postgresql/*/bin` (run as the
  `postgres` user when we are root, as stack.sh does), trust on 127.0.0.1 only, then
  `pg_ctl start`;
- Redis: `redis-server` with its options on the command line, saving on shutdown so a
  stop/start keeps the data as a persistent production Redis would.

Each can be stopped (or killed) and started again on the same ports and data, which is
what a fault test needs; `close()` removes everything.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from tests.support.infra import REPO, Infra
from tests.support.processes import free_port

KAFKA_LIB = REPO / ".local" / "kafka" / "lib"
KAFKA_TEMPLATE = REPO / "deploy" / "local" / "kafka" / "server.properties"
KAFKA_LOG4J = REPO / "deploy" / "local" / "kafka" / "log4j2.yaml"
#: a small heap: this broker holds one test's topics, and shares 2 cores with everything
KAFKA_HEAP = ("-Xmx512m", "-Xms128m")


class PrivateInfraError(RuntimeError):
    """A private server could not be started (the message says what to look at)."""


def port_open(port: int, timeout_s: float = 0.5) -> bool:
    with socket.socket() as s:
        s.settimeout(timeout_s)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its server tools as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def _postgres_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise PrivateInfraError(
            "no /usr/lib/postgresql/*/bin/initdb: run `make infra` (it installs PostgreSQL)"
        )
    return found[-1].parent


def kafka_cluster_id() -> str:
    """A cluster id as `StorageTool random-uuid` prints it (base64url, 22 characters,
    never starting with '-'), without starting a JVM for it."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


@dataclass
class PrivateKafka:
    """One KRaft broker+controller node on free ports, data in `home`."""

    home: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / "kafka.log"

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            *KAFKA_HEAP,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{KAFKA_LIB}/*",
            *args,
        ]

    def _configure(self) -> Path:
        if not any(KAFKA_LIB.glob("kafka_2.13-*.jar")):
            raise PrivateInfraError(
                f"no Kafka jars in {KAFKA_LIB}: run `make infra` once (it fetches them)"
            )
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        rendered = (
            KAFKA_TEMPLATE.read_text()
            .replace("@KAFKA_PORT@", str(self.port))
            .replace("@KAFKA_CONTROLLER_PORT@", str(self.controller_port))
            .replace("@KAFKA_DATA_DIR@", str(self.home / "data"))
        )
        # one test's topics: a few threads are plenty, and a restart should be quick
        rendered += "\nnum.network.threads=2\nnum.io.threads=2\nlog.cleaner.threads=1\n"
        config.write_text(rendered)
        if not (self.home / "data" / "meta.properties").exists():
            formatted = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    kafka_cluster_id(),
                    "-c",
                    str(config),
                ),
                capture_output=True,
                timeout=120,
                check=False,
            )
            if formatted.returncode != 0:
                raise PrivateInfraError(
                    "kafka storage format failed:\n" + formatted.stderr.decode(errors="replace")
                )
        return config

    def start(self, timeout_s: float = 120.0) -> None:
        """Start (or start again, on the same ports and data) and wait until it answers."""
        if self.running():
            return
        config = self._configure()
        out = (self.home / "logs" / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of pytest must not hit the broker first
        )
        self.wait_ready(timeout_s)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise PrivateInfraError(
                    f"private kafka exited with {self.process.returncode}:\n{_tail(self.log_path)}"
                )
            if port_open(self.port) and _kafka_answers(self.bootstrap):
                return
            time.sleep(0.5)
        raise PrivateInfraError(
            f"private kafka not answering after {timeout_s:.0f} s:\n{_tail(self.log_path)}"
        )

    def kill(self) -> None:
        """SIGKILL: the broker is gone at once, as in a crash or a cut network."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (controlled shutdown), SIGKILL if it takes longer than `timeout_s`."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


def _kafka_answers(bootstrap: str) -> bool:
    async def ask() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        await asyncio.wait_for(admin.start(), 10)
        try:
            await asyncio.wait_for(admin.list_topics(), 10)
        finally:
            await admin.close()

    try:
        asyncio.run(ask())
    except Exception:
        return False
    return True


@dataclass
class PrivatePostgres:
    """A throwaway cluster (fsync off, trust on 127.0.0.1) with the `muster` role and
    database the services expect."""

    home: Path
    port: int = field(default_factory=free_port)
    bin: Path = field(default_factory=_postgres_bin)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log_path(self) -> Path:
        return self.home / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://muster@127.0.0.1:{self.port}/muster"

    def _initdb(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        done = subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            ),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise PrivateInfraError("initdb failed:\n" + done.stderr.decode(errors="replace"))
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                "unix_socket_directories = ''\nmax_connections = 200\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "timezone = 'UTC'\n"
            )

    def start(self, timeout_s: float = 60.0) -> None:
        first = not (self.data / "PG_VERSION").exists()
        if first:
            self._initdb()
        done = subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data),
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "-l",
                    str(self.log_path),
                ]
            ),
            capture_output=True,
            timeout=timeout_s + 10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise PrivateInfraError(f"pg_ctl start failed:\n{_tail(self.log_path)}")
        if first:
            self.psql("CREATE ROLE muster LOGIN SUPERUSER")
            self.psql("CREATE DATABASE muster OWNER muster")

    def psql(self, sql: str) -> str:
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-w", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-tAc", sql],
            capture_output=True,
            timeout=30,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PrivateInfraError(f"psql {sql!r}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def stop(self, mode: str = "fast", timeout_s: float = 60.0) -> None:
        """`fast`: open sessions are terminated (clients see their connection closed),
        as in a failover; `immediate`: no shutdown checkpoint, as in a crash."""
        if not (self.data / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data),
                    "-m",
                    mode,
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                ]
            ),
            capture_output=True,
            timeout=timeout_s + 10,
            check=False,
        )


@dataclass
class PrivateRedis:
    """`redis-server` on a free port; it saves its data on SIGTERM and loads it again on
    start (a stop is an outage, not a flush; `flushall` is the flush)."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.home / "redis.log"

    def start(self, timeout_s: float = 30.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise PrivateInfraError("no redis-server: run `make infra` (it installs it)")
        self.process = subprocess.Popen(
            [redis_server, "--port", str(self.port), "--bind", "127.0.0.1",
             "--protected-mode", "yes", "--daemonize", "no", "--dir", str(self.home),
             "--dbfilename", "dump.rdb", "--save", "3600 1", "--appendonly", "no",
             "--logfile", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrivateInfraError(f"redis-server exited:\n{_tail(self.log_path)}")
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.1)
        raise PrivateInfraError(f"redis-server not answering:\n{_tail(self.log_path)}")

    def command(self, *words: str) -> str | None:
        """One inline command; the first line of the reply (None when nobody answers)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall((" ".join(words) + "\r\n").encode())
                return s.makefile("rb").readline().decode().strip()
        except OSError:
            return None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM: Redis saves its data set and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def flushall(self) -> None:
        if self.command("FLUSHALL") != "+OK":
            raise PrivateInfraError("FLUSHALL refused")


@dataclass
class PrivateInfra:
    kafka: PrivateKafka
    postgres: PrivatePostgres
    redis: PrivateRedis
    home: Path

    def infra(self) -> Infra:
        """The same shape the shared fixtures use, pointing at these servers."""
        return Infra(self.kafka.bootstrap, self.postgres.url, self.redis.url, "private")

    def ensure_running(self) -> None:
        """Start whatever an earlier test left stopped (a failed test must not fail the
        next one)."""
        self.redis.start()
        if not (self.postgres.data / "postmaster.pid").exists():
            self.postgres.start()
        if not self.kafka.running():
            self.kafka.start()


@contextlib.contextmanager
def private_infra() -> Iterator[PrivateInfra]:
    """Kafka, PostgreSQL and Redis of the caller's own, started together (Kafka's JVM
    starts while PostgreSQL runs initdb); all stopped and removed afterwards."""
    # not pytest's tmp_path: it is private to root, and PostgreSQL runs as `postgres`
    home = Path(tempfile.mkdtemp(prefix="muster-private-"))
    home.chmod(0o755)
    kafka = PrivateKafka(home / "kafka")
    postgres = PrivatePostgres(home / "postgres")
    redis = PrivateRedis(home / "redis")
    try:
        redis.start()
        # the broker's JVM start and initdb overlap
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = [pool.submit(kafka.start), pool.submit(postgres.start)]
            for future in started:
                future.result()
        yield PrivateInfra(kafka, postgres, redis, home)
    finally:
        kafka.stop(timeout_s=30)
        postgres.stop(mode="immediate")
        redis.stop()
        shutil.rmtree(home, ignore_errors=True)
