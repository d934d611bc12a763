"""Where the demo finds the stack, and how big it makes the data set."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO = Path(__file__).resolve().parents[1]


def _port_url(variable: str, default: int) -> str:
    return f"http://127.0.0.1:{os.environ.get(variable, default)}"


class Settings(BaseSettings):
    """Defaults follow `make up` (the same *_PORT variables and .local/ directory)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    members_url: str = Field(
        default_factory=lambda: _port_url("MEMBERS_PORT", 8001),
        validation_alias=AliasChoices("MUSTER_DEMO_MEMBERS_URL"),
    )
    alerts_url: str = Field(
        default_factory=lambda: _port_url("ALERTS_PORT", 8002),
        validation_alias=AliasChoices("MUSTER_DEMO_ALERTS_URL"),
    )
    dispatch_url: str = Field(
        default_factory=lambda: _port_url("DISPATCH_PORT", 8003),
        validation_alias=AliasChoices("MUSTER_DEMO_DISPATCH_URL"),
    )
    console_url: str = Field(
        default_factory=lambda: _port_url("CONSOLE_PORT", 8000),
        validation_alias=AliasChoices("MUSTER_DEMO_CONSOLE_URL"),
    )
    #: the alerts service's public base: Twilio signs webhooks against it
    public_base_url: str = Field("", validation_alias=AliasChoices("MUSTER_PUBLIC_BASE_URL"))
    #: `make up`'s state directory: secrets.env is read there, demo-accounts.json kept there
    local_dir: Path = Field(REPO / ".local", validation_alias=AliasChoices("MUSTER_LOCAL_DIR"))
    #: how many members the data set has
    members: int = Field(
        3000, ge=50, le=100_000, validation_alias=AliasChoices("MUSTER_DEMO_MEMBERS")
    )
    #: the simulated answers arrive within this many seconds of the alert
    answer_window_s: float = Field(
        45.0, gt=0, le=600, validation_alias=AliasChoices("MUSTER_DEMO_ANSWER_SECONDS")
    )
    #: rows per POST /members/import
    import_batch: int = Field(
        500, ge=1, le=50_000, validation_alias=AliasChoices("MUSTER_DEMO_IMPORT_BATCH")
    )
    # The three below come from the environment, else from .local/secrets.env.
    admin_email: str = Field("", validation_alias=AliasChoices("MUSTER_BOOTSTRAP_ADMIN_EMAIL"))
    admin_password: str = Field(
        "", validation_alias=AliasChoices("MUSTER_BOOTSTRAP_ADMIN_PASSWORD")
    )
    twilio_auth_token: str = Field("", validation_alias=AliasChoices("TWILIO_AUTH_TOKEN"))

    @property
    def secrets_file(self) -> Path:
        return self.local_dir / "secrets.env"

    @property
    def accounts_file(self) -> Path:
        return self.local_dir / "demo-accounts.json"

    def with_local_secrets(self) -> Settings:
        """Fill what the environment left empty from .local/secrets.env (`make up` wrote it)."""
        found: dict[str, str] = {}
        if self.secrets_file.is_file():
            for line in self.secrets_file.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and not key.startswith("#"):
                    found[key.strip()] = value.strip()
        return self.model_copy(
            update={
                "admin_email": self.admin_email or found.get("MUSTER_BOOTSTRAP_ADMIN_EMAIL", ""),
                "admin_password": self.admin_password
                or found.get("MUSTER_BOOTSTRAP_ADMIN_PASSWORD", ""),
                "twilio_auth_token": self.twilio_auth_token or found.get("TWILIO_AUTH_TOKEN", ""),
                "public_base_url": self.public_base_url or self.alerts_url,
            }
        )
