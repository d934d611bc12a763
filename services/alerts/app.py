"""The alerts service's FastAPI app and its Kafka wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.alerts.settings import Settings
from shared.service import ServiceRuntime, create_app


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings)
    return create_app(
        runtime,
        title="Muster alerts",
        description="The registry of trained alerts, sections and staff accounts.",
    )
