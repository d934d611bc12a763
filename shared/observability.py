"""Structured JSON logs (structlog) and the Prometheus metrics every service exposes.

Logs carry `correlationid` (the emergency or the request) through structlog's
contextvars; never log a name, phone number or position: log ids.

Two masks stand behind that rule, on every line whatever its origin (structlog, the
standard library and uvicorn's access log go through the same chain): an answer link's
token (`/r/<token>` is a bearer credential: whoever reads it answers for the member)
becomes `/r/***`, and an E.164 number (a provider's error text names the number it
refused) keeps only its last two digits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

EVENTS_PUBLISHED = Counter(
    "muster_events_published_total", "Events published to Kafka", ["topic", "type"]
)
EVENTS_CONSUMED = Counter(
    "muster_events_consumed_total",
    "Records a consumer handled, by outcome (applied, duplicate, dead_lettered, tombstone)",
    ["consumer", "topic", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "muster_events_dead_lettered_total",
    "Records sent to a dead-letter topic, by reason",
    ["consumer", "topic", "reason"],
)
HANDLER_RETRIES = Counter(
    "muster_handler_retries_total", "Handler attempts that failed and were retried", ["consumer"]
)
OUTBOX_PENDING = Gauge("muster_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISH_SECONDS = Histogram(
    "muster_outbox_publish_seconds",
    "Time from an outbox row's commit to its publication",
    ["service"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

_configured = False

#: the answer page's path: its last segment is the member's token
_ANSWER_PATH = re.compile(r"/r/[^/?#\s\"']+")
#: an E.164 number as providers write it (`+` and 8 to 15 digits, maybe spaced or dashed)
_PHONE = re.compile(r"\+\d(?:[\s\-.()]?\d){6,14}")


def mask_answer_tokens(text: str) -> str:
    """`/r/<token>` with the token hidden."""
    return _ANSWER_PATH.sub("/r/***", text)


def mask_phone_numbers(text: str) -> str:
    """Each E.164-looking number with all but its last two digits hidden."""

    def masked(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "+" + "*" * (len(digits) - 2) + digits[-2:]

    return _PHONE.sub(masked, text)


def redact(text: str) -> str:
    return mask_phone_numbers(mask_answer_tokens(text))


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def redact_event(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask tokens and numbers in every string value of a line."""
    for key, value in event.items():
        event[key] = _redact_value(value)
    return event


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Route stdlib and structlog logs through one JSON (or console) renderer."""
    global _configured
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        # last, so it also sees the rendered exception and the request's bound `path`
        redact_event,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "asyncio", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def bind_correlation(correlationid: str | None, **extra: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(correlationid=correlationid, **extra)


def task_stacks() -> str:
    """Every asyncio task of the running loop with the chain of coroutines it is waiting
    in, innermost last: what a hung service is waiting for (`kill -USR1 <pid>` logs it).
    `Task.get_stack` shows only the outermost frame of a suspended task."""
    lines: list[str] = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        awaited: Any = task.get_coro()
        depth = 0
        while awaited is not None and depth < 64:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                lines.append(f"  {code.co_filename}:{frame.f_lineno} {code.co_name}")
            following = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
            if following is None and frame is None:
                lines.append(f"  waiting on {type(awaited).__name__}")
            awaited = following
            depth += 1
    return "\n".join(lines)


def log_task_stacks_on_sigusr1() -> None:
    """Install the SIGUSR1 handler that logs `task_stacks()` (stacks name code, never
    data). Call from inside the running loop."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(
            signal.SIGUSR1,
            lambda: get_logger(__name__).warning("asyncio tasks", stacks=task_stacks()),
        )
