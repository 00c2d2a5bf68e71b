"""`.env.example` lists every setting, with the default the code really has."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UNPREFIXED = {"database_url", "redis_url", "host", "port"}


def documented() -> dict[str, str]:
    entries: dict[str, str] = {}
    for raw in (ROOT / ".env.example").read_text().splitlines():
        line = raw.strip().removeprefix("# ")
        if "=" in line and line.split("=", 1)[0].isupper():
            name, value = line.split("=", 1)
            entries[name] = value
    return entries


def env_name(field: str) -> str:
    return field.upper() if field in UNPREFIXED else f"AURORA_{field.upper()}"


def test_every_setting_is_in_env_example_with_its_default() -> None:
    docs = documented()
    defaults = Settings.model_construct()
    for field in Settings.model_fields:
        name = env_name(field)
        assert name in docs, f"{name} is missing from .env.example"
        value = getattr(defaults, field)
        if value is None:
            continue
        shown = ",".join(value) if isinstance(value, tuple) else str(value)
        assert docs[name].lower() == shown.lower(), f"{name}: documented {docs[name]}, code {shown}"
    assert set(docs) == {env_name(f) for f in Settings.model_fields}, "a documented setting is gone"
