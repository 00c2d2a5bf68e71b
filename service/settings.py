"""The one settings object. Nothing else in the code base reads the environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ENVIRONMENTS = ("development", "staging", "production")


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
    log_level: str = "INFO"

    @field_validator("environments", mode="before")
    @classmethod
    def _split_environments(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_environments(self) -> Settings:
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
