"""What every Muster service process is made of, started and stopped in one order.

`ServiceRuntime` owns the database engine, Redis, the idempotent Kafka producer, the
FastStream broker (consumers) and the outbox relay. `create_app` builds the FastAPI app
with `/healthz`, `/readyz` and `/metrics` and starts the runtime in its lifespan
(FastStream's FastAPI router is deprecated; the broker starts and stops here instead),
and bounds every request body (`RequestBodyLimit`: what is accepted ends up in events,
and Kafka refuses a record over 1 MiB). `NulCharacterRefusal` refuses NUL characters in
the path, the query, form fields and JSON strings with a 422 naming the field:
PostgreSQL's text cannot hold them, so they would otherwise fail as a 500 deep inside.
A request that fails because PostgreSQL, Redis or Kafka is unreachable (a restart, a
failover) is answered 503 with `Retry-After`, not 500 (`infrastructure_unavailable`).

Shutdown order matters for the guarantees: stop consuming first (in-flight handlers
finish and their offsets commit), then let the relay finish its batch, then flush and
close the producer, then the database and Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import httpx
import redis.asyncio as redis
import sqlalchemy.exc
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import exceptions as redis_errors
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.consumer import (
    EventConsumer,
    GroupHandler,
    Handler,
    TombstoneHandler,
    is_transient,
    subscribe,
)
from shared.db import make_engine, make_sessionmaker, ping
from shared.kafka import new_producer
from shared.observability import (
    bind_correlation,
    configure_logging,
    get_logger,
    log_task_stacks_on_sigusr1,
)
from shared.outbox import OutboxRelay
from shared.settings import MusterSettings

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


class ServiceRuntime:
    def __init__(
        self,
        settings: MusterSettings,
        *,
        use_database: bool = True,
        use_redis: bool = True,
        run_relay: bool = True,
    ) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.sessionmaker: async_sessionmaker[AsyncSession] | None = None
        if use_database:
            self.engine = make_engine(
                settings.database_url,
                settings.schema_name,
                statement_timeout_s=settings.db_statement_timeout_s,
                connect_timeout_s=settings.db_connect_timeout_s,
            )
            self.sessionmaker = make_sessionmaker(self.engine)
        self.redis: redis.Redis | None = (
            redis.Redis.from_url(settings.redis_url, decode_responses=False) if use_redis else None
        )
        # aiokafka clients must be created inside the running loop: see `start`
        self._producer: AIOKafkaProducer | None = None
        self.broker = KafkaBroker(
            settings.kafka_bootstrap_servers,
            client_id=f"muster-{settings.service_name}",
            graceful_timeout=30.0,
        )
        self._run_relay = run_relay and self.engine is not None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self.consumers: list[EventConsumer] = []
        self.started = False

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the runtime is not started: no Kafka producer yet")
        return self._producer

    @property
    def db(self) -> async_sessionmaker[AsyncSession]:
        if self.sessionmaker is None:
            raise RuntimeError("this service runs without a database")
        return self.sessionmaker

    def topic(self, name: str) -> str:
        return self.settings.topic(name)

    def consume(
        self,
        topics: Sequence[str],
        handlers: Mapping[str, Handler],
        *,
        name: str | None = None,
        on_tombstone: TombstoneHandler | None = None,
        transactional: bool = True,
        max_poll_records: int = 100,
        batch_transactions: bool = False,
        group_handlers: Mapping[str, GroupHandler] | None = None,
    ) -> EventConsumer:
        """Subscribe a consumer group to (unprefixed) `topics`; call before `start`.

        `batch_transactions`: each key's records of one poll share one transaction (only
        for handlers whose every effect is in the database; see shared.consumer), where
        `group_handlers` get a key's consecutive records of their types in one call."""
        consumer = EventConsumer(
            name=name or self.settings.consumer_group,
            handlers=handlers,
            producer=self._producer,
            sessionmaker=self.sessionmaker if transactional else None,
            on_tombstone=on_tombstone,
            max_attempts=self.settings.consumer_max_attempts,
            retry_base_s=self.settings.consumer_retry_base_s,
            transient_retry_max_s=self.settings.consumer_transient_retry_max_s,
            batch_transactions=batch_transactions,
            group_handlers=group_handlers,
        )
        subscribe(
            self.broker,
            consumer,
            [self.topic(t) for t in topics],
            max_poll_records=max_poll_records,
        )
        self.consumers.append(consumer)
        return consumer

    async def start(self, *, consume: bool = True) -> None:
        settings = self.settings
        self._producer = new_producer(
            settings.kafka_bootstrap_servers, f"muster-{settings.service_name}"
        )
        await self._producer.start()
        for consumer in self.consumers:
            consumer.producer = self._producer
        if self._run_relay and self.engine is not None:
            self.relay = OutboxRelay(
                self.engine,
                self._producer,
                schema=settings.schema_name,
                service=settings.service_name,
                topic_prefix=settings.topic_prefix,
                batch_size=settings.outbox_batch_size,
                poll_interval_s=settings.outbox_poll_interval_s,
                fault_pause_after_publish_s=settings.outbox_fault_pause_after_publish_s,
            )
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        if consume and self.consumers:
            await self.broker.start()
        self.started = True

    async def stop(self) -> None:
        self.started = False
        with contextlib.suppress(Exception):
            await self.broker.stop()
        if self.relay is not None and self._relay_task is not None:
            self.relay.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._relay_task, timeout=15)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()  # flushes what is still buffered
        if self.engine is not None:
            await self.engine.dispose()
        if self.redis is not None:
            await self.redis.aclose()

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {"kafka": self._kafka_ready}
        if self.engine is not None:
            engine = self.engine
            checks["database"] = lambda: ping(engine)
        if self.redis is not None:
            client = self.redis

            async def redis_ready() -> None:
                await client.ping()

            checks["redis"] = redis_ready
        return checks

    async def _kafka_ready(self) -> None:
        if not self.started:
            raise RuntimeError("starting")
        await self.producer.client.fetch_all_metadata()


#: media types of bulk uploads (the members CSV import), which get the larger limit
UPLOAD_MEDIA_TYPES = ("text/csv", "multipart/form-data")


def body_too_large_detail(limit: int, variable: str) -> str:
    return (
        f"the request body is larger than {limit} bytes, the most this endpoint takes "
        f"({variable}); send a smaller one (a polygon of fewer positions, a CSV split in parts)"
    )


class RequestBodyLimit:
    """Refuse a request body over the limit with 413 and a JSON `detail`.

    A declared `Content-Length` over the limit is refused before the app runs; a body sent
    without one (chunked) is counted as it is read, and once it passes the limit the app
    is told the client went away (`http.disconnect`: nothing is raised through other
    middlewares, which would turn it into a 500) and its own answer is replaced by the
    413. Bodies of `UPLOAD_MEDIA_TYPES` get `upload_max_bytes`.

    Before answering, the rest of the body is read and thrown away (up to
    `DRAIN_FACTOR` × the limit): a client still sending when the connection closes sees a
    reset instead of the 413 that says what to do.
    """

    DRAIN_FACTOR = 4

    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_max_bytes = upload_max_bytes

    def limit_for(self, content_type: str) -> tuple[int, str]:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type in UPLOAD_MEDIA_TYPES:
            return self.upload_max_bytes, "MUSTER_MAX_UPLOAD_BYTES"
        return self.max_bytes, "MUSTER_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        limit, variable = self.limit_for(headers.get(b"content-type", b"").decode("latin-1"))
        detail = body_too_large_detail(limit, variable)
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            drained = await self._drain(receive, limit, int(declared))
            await _json_response(send, 413, detail, close=not drained)
            return
        received = 0
        too_large = False
        finished = False  # the client sent its whole body
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large, finished
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if received > limit:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to a "disconnect" it was told about
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            drained = finished or await self._drain(receive, limit, received)
            await _json_response(send, 413, detail, close=not drained)

    async def _drain(self, receive: Receive, limit: int, already: int) -> bool:
        """Read and drop the rest of the body; True when all of it was read."""
        if already > self.DRAIN_FACTOR * limit:
            return False
        total = 0
        while total <= self.DRAIN_FACTOR * limit:
            message = await receive()
            if message["type"] != "http.request":
                return False
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False


async def _json_response(send: Send, status_code: int, detail: str, *, close: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        # the rest of the body was not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


NUL = "\x00"
NUL_MESSAGE = "NUL characters (\\u0000) are not allowed in text; remove them and send it again"
#: bodies the guard reads: JSON and plain forms (multipart uploads and CSV are the
#: importer's to check, row by row, naming the column)
JSON_MEDIA_TYPES = ("application/json",)
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded",)

Loc = tuple[str | int, ...]


def nul_locations_in_json(value: Any, at: Loc = ("body",)) -> list[Loc]:
    """Where in a decoded JSON document a string (value or key) holds a NUL, as FastAPI's
    `loc`: ("body", "area", "polygon", 0, 1)."""
    found: list[Loc] = []
    if isinstance(value, str):
        if NUL in value:
            found.append(at)
    elif isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                found.append((*at, key))
                if isinstance(item, str):
                    continue  # already named
            found.extend(nul_locations_in_json(item, (*at, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(nul_locations_in_json(item, (*at, index)))
    return found


def nul_locations_in_pairs(pairs: Sequence[tuple[str, str]], where: str) -> list[Loc]:
    """Query parameters or form fields (name, value) holding a NUL in either."""
    return [(where, name) for name, value in pairs if NUL in name or NUL in value]


def nul_refusal(locations: Sequence[Loc]) -> dict[str, Any]:
    """The 422 body, in FastAPI's validation-error shape (a NUL in a name is shown escaped,
    so the answer itself stays valid text for any client)."""
    return {
        "detail": [
            {
                "loc": [p.replace(NUL, "\\u0000") if isinstance(p, str) else p for p in loc],
                "msg": NUL_MESSAGE,
                "type": "value_error",
            }
            for loc in locations
        ]
    }


class NulCharacterRefusal:
    """Refuse a request with a NUL character in a path parameter, a query parameter, a
    form field or any JSON string with 422 naming each field.

    PostgreSQL refuses NUL in `text` ("invalid byte sequence"), Redis keys and the
    answer page's tokens would carry it on; no person types one. Refusing it here, once,
    means no handler has to remember. Path parameters are named by matching the app's
    documented paths (its OpenAPI document); bodies are read (they are already bounded by
    `RequestBodyLimit`) and replayed to the app unchanged. A body that is not valid JSON
    is left to FastAPI's own 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._path_patterns: list[re.Pattern[str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        locations = self._in_path(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        locations += nul_locations_in_pairs(
            parse_qsl(query, keep_blank_values=True, errors="replace"), "query"
        )
        headers = dict(scope["headers"])
        media_type = (
            headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        )
        replay = receive
        if media_type in JSON_MEDIA_TYPES or media_type in FORM_MEDIA_TYPES:
            body, more = await _read_body(receive)
            if more is not None:  # the client went away while sending
                await self.app(scope, _replaying(body, more, receive), send)
                return
            locations += _nul_in_body(media_type, body)
            replay = _replaying(body, None, receive)
        if locations:
            await _send_json(send, 422, nul_refusal(locations))
            return
        await self.app(scope, replay, send)

    def _in_path(self, scope: Scope) -> list[Loc]:
        path = scope.get("path", "")
        if NUL not in path:
            return []
        for template in self._templates(scope.get("app")):
            match = template.match(path)
            if match:
                named: list[Loc] = [
                    ("path", name) for name, value in match.groupdict().items() if NUL in value
                ]
                if named:
                    return named
        return [("path",)]

    def _templates(self, app: Any) -> list[re.Pattern[str]]:
        """The app's documented paths as patterns naming their parameters (from its OpenAPI
        document: the public description of its routes), built on first use."""
        if self._path_patterns is None:
            paths = app.openapi().get("paths", {}) if hasattr(app, "openapi") else {}
            self._path_patterns = [path_pattern(template) for template in paths]
        return self._path_patterns


def path_pattern(template: str) -> re.Pattern[str]:
    """`/members/{member_id}` as a pattern with a group per parameter."""
    parts = re.split(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\}", template)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$", re.DOTALL)


def _nul_in_body(media_type: str, body: bytes) -> list[Loc]:
    if media_type in FORM_MEDIA_TYPES:
        form = body.decode("latin-1")
        return nul_locations_in_pairs(
            parse_qsl(form, keep_blank_values=True, errors="replace"), "body"
        )
    try:
        document = json.loads(body)
    except ValueError:
        return []  # FastAPI answers 422 `json_invalid` itself
    return nul_locations_in_json(document)


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body; and the message that ended reading early (a disconnect), if any."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replaying(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then whatever comes next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if ended is not None and not body:
                return ended
            return {"type": "http.request", "body": body, "more_body": ended is not None}
        if ended is not None:
            return ended
        return await receive()

    return replay


async def _send_json(send: Send, status_code: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: what a request may fail with while PostgreSQL, Redis or Kafka is unreachable; each is
#: answered 503 only if `is_transient` says it is an outage (an IntegrityError is a
#: DBAPIError too, and stays a 500: it is a bug)
OUTAGE_ERROR_TYPES: tuple[type[Exception], ...] = (
    OSError,
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    redis_errors.RedisError,
    kafka_errors.KafkaError,
    httpx.TransportError,
)
#: seconds a client is asked to wait before trying again during an outage
RETRY_AFTER_S = 5
OUTAGE_DETAIL = (
    "a database, Redis or Kafka server this service needs is unreachable right now "
    f"(a restart or a failover); try again in {RETRY_AFTER_S} seconds"
)


async def infrastructure_unavailable(request: Request, exc: Exception) -> Response:
    """503 with `Retry-After` for a request that failed because the infrastructure is
    unreachable: a client (or Twilio, which retries webhooks) should come back, and a
    500 would say the request itself is wrong. Anything else goes on to the 500."""
    if not is_transient(exc):
        raise exc
    log.warning(
        "infrastructure unreachable: answered 503",
        error_class=type(exc).__name__,
        method=request.method,
    )
    return JSONResponse(
        {"detail": OUTAGE_DETAIL},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def health_router(checks: Callable[[], Mapping[str, ReadinessCheck]]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Database, Redis and Kafka answer")
    async def readyz(response: Response) -> dict[str, Any]:
        results: dict[str, str] = {}
        for name, check in checks().items():
            try:
                await asyncio.wait_for(check(), timeout=3.0)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in results.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", "checks": results}

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    """The service's HTTP app; the runtime starts and stops with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log_task_stacks_on_sigusr1()
        for hook in on_startup:
            await hook()
        await runtime.start()
        log.info("service started", service=runtime.settings.service_name)
        try:
            yield
        finally:
            log.info("service stopping", service=runtime.settings.service_name)
            for hook in on_shutdown:
                await hook()
            await runtime.stop()

    app = FastAPI(title=title, description=description, lifespan=lifespan)
    app.state.runtime = runtime

    @app.middleware("http")
    async def correlate(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        # every log line of a request carries its correlation id (given or new)
        correlationid = request.headers.get("x-correlation-id") or uuid.uuid4().hex
        bind_correlation(correlationid[:64], path=request.url.path)
        response = await call_next(request)
        response.headers["x-correlation-id"] = correlationid[:64]
        return response

    # inside the body limit: the body it reads is already bounded
    app.add_middleware(NulCharacterRefusal)
    # outermost, so no other layer buffers an oversized body first
    app.add_middleware(
        RequestBodyLimit,
        max_bytes=runtime.settings.max_body_bytes,
        upload_max_bytes=runtime.settings.max_upload_bytes,
    )
    for error_type in OUTAGE_ERROR_TYPES:
        app.add_exception_handler(error_type, infrastructure_unavailable)
    app.include_router(health_router(runtime.readiness_checks))
    for router in routers:
        app.include_router(router)
    return app


def serve(app: FastAPI, settings: MusterSettings, host: str, port: int) -> None:
    """Run the app with uvicorn; SIGTERM triggers the graceful shutdown above."""
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        # the client address is the forwarded one only behind a configured proxy
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
