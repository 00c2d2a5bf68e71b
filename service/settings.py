"""The one settings object. Nothing else in the code base reads the environment."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENVIRONMENTS = ("development", "staging", "production")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Settings(BaseSettings):
    """Settings from the environment (and an optional .env file).

    DATABASE_URL, REDIS_URL, HOST and PORT are read without a prefix; everything else is AURORA_*.
    `.env.example` lists each with its default; keep the two in step.
    """

    model_config = SettingsConfigDict(
        env_prefix="AURORA_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = Field(
        default="sqlite:///./aurora.db",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "host"))
    port: int = Field(default=8004, ge=1, le=65535, validation_alias=AliasChoices("PORT", "port"))

    environments: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ENVIRONMENTS
    default_environment: str = "production"
    max_value_bytes: int = Field(default=64 * 1024, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_timeout_seconds: float = Field(default=5.0, gt=0)
    migrate_on_start: bool = False  # SQLite always migrates on start; servers use `migrate`
    write_retries: int = Field(default=5, ge=1, le=20)
    # Targeting limits (issue 10): a write over one is a 422 naming the setting.
    max_rules_per_flag: int = Field(default=100, ge=1)
    max_constraints_per_rule: int = Field(default=50, ge=1)
    max_values_per_constraint: int = Field(default=1000, ge=1)
    max_segments_per_environment: int = Field(default=1000, ge=1)
    max_context_bytes: int = Field(default=16 * 1024, ge=256)  # one evaluation's context
    log_level: str = "INFO"

    # Access control. Unset: enabled, except on the embedded SQLite default (which says so
    # loudly at start); a server database runs open only with an explicit AURORA_AUTH=disabled.
    auth: Literal["enabled", "disabled"] | None = None
    admin_token: SecretStr | None = None  # an admin token that lives only in the environment
    token_cache_seconds: float = Field(default=5.0, gt=0)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()  # closed by default
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    log_format: Literal["json", "text"] | None = None  # unset: text on SQLite, else JSON
    # FastAPI's native OpenTelemetry. Off by default: Prometheus covers the service, and even
    # with no provider configured it looks at the environment on every request.
    opentelemetry: bool = False

    # Read model (issue #4). Without REDIS_URL an in-process Redis (fakeredis) stands in:
    # the same code, single process only.
    redis_prefix: str = Field(default="aurora:", pattern=r"^[A-Za-z0-9:._-]{1,64}$")
    feed_length: int = Field(default=10_000, ge=100)
    propagation_wait_seconds: float = Field(default=0.5, ge=0)
    relay_interval_seconds: float = Field(default=0.5, gt=0)
    replica_wait_seconds: float = Field(default=5.0, ge=0)
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    sse_retry_ms: int = Field(default=1000, ge=100)
    sse_queue_size: int = Field(default=1000, ge=10)
    sse_send_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("environments", "cors_origins", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_environments(self) -> Settings:
        bad = [e for e in self.environments if not _ENVIRONMENT.fullmatch(e)]
        if bad:
            raise ValueError(f"environment names are 1-64 of A-Z a-z 0-9 _ -, not {bad}")
        if not self.environments:
            raise ValueError("AURORA_ENVIRONMENTS must name at least one environment")
        if self.default_environment not in self.environments:
            raise ValueError(
                f"AURORA_DEFAULT_ENVIRONMENT={self.default_environment!r} is not one of "
                f"AURORA_ENVIRONMENTS={','.join(self.environments)}"
            )
        return self

    @property
    def database_backend(self) -> str:
        return self.database_url.split(":", 1)[0].split("+", 1)[0]

    @property
    def embedded(self) -> bool:
        """The `make run` default: a SQLite file, no servers."""
        return self.database_backend == "sqlite"

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "enabled" or (self.auth is None and not self.embedded)

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or (self.log_format is None and not self.embedded)
