"""Structured JSON logs (structlog) and the Prometheus metrics every service exposes.

Logs carry `correlationid` (the emergency or the request) through structlog's
contextvars; never log a name, phone number or position: log ids.
"""

from __future__ import annotations

import logging
import sys
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
