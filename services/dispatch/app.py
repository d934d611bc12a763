"""The dispatch service's FastAPI app and its Kafka wiring."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.settings import Settings
from shared.service import ServiceRuntime, create_app


def build(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = ServiceRuntime(settings)
    return create_app(
        runtime,
        title="Muster dispatch",
        description="The registry of trained dispatch, sections and staff accounts.",
    )
