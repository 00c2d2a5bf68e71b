"""Deployment artefacts, tested as far as a machine without a Docker engine allows."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest
import yaml
from fastapi.testclient import TestClient

from service.__main__ import _parser
from service.app import create_app
from service.runtime import SentinelUrl
from service.settings import Settings
from tests.backends import (
    MARIADB_HOST,
    MARIADB_PORT,
    REDIS_DB,
    REDIS_PORT,
    check_redis,
    mariadb_url,
)
from tests.conftest import make_settings
from tests.faults import free_port

ROOT = Path(__file__).resolve().parents[2]
UNPREFIXED = {
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "HOST": "host",
    "PORT": "port",
}


def setting_of(variable: str) -> str | None:
    if variable in UNPREFIXED:
        return UNPREFIXED[variable]
    name = variable.removeprefix("AURORA_").lower()
    return name if variable.startswith("AURORA_") and name in Settings.model_fields else None


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_describes_a_working_stack() -> None:
    services = compose()["services"]
    assert set(services) == {"tidb", "redis", "migrate", "service"}
    assert services["tidb"]["image"].startswith("pingcap/tidb")
    assert "4000:4000" in services["tidb"]["ports"]
    service, migrate = services["service"], services["migrate"]
    assert service["image"] == migrate["image"] == "aurora-config-service"
    assert "8004:8004" in service["ports"]
    assert service["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "redis": {"condition": "service_healthy"},
    }
    assert "/health/ready" in " ".join(service["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert service["environment"]["DATABASE_URL"].startswith("mysql+pymysql://root@tidb:4000/")
    assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    # the migration step's command is one our CLI accepts
    args = _parser().parse_args(migrate["command"])
    assert (args.command, args.wait, args.create_database) == ("migrate", 120, True)


def test_every_variable_the_compose_file_sets_is_a_real_setting() -> None:
    for name, service in compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            assert setting_of(variable), f"{name}: {variable} is not a setting"
            if "${" not in str(value):  # the values themselves validate
                field = setting_of(variable)
                Settings(_env_file=None, **{field: value})  # type: ignore[arg-type,call-arg]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, argument = line.strip().partition(" ")
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, argument.strip()))
    return stages


def test_dockerfile_is_multi_stage_slim_non_root_with_a_healthcheck() -> None:
    build, final = dockerfile_stages()
    assert build[0] == ("FROM", "python:3.11-slim AS build")
    assert final[0] == ("FROM", "python:3.11-slim")
    final_text = dict(final)
    assert "--from=build /opt/venv /opt/venv" in final_text["COPY"]
    assert final_text["USER"] == "aurora"
    assert final_text["EXPOSE"] == "8004"
    assert "/health/live" in final_text["HEALTHCHECK"]
    assert final_text["ENTRYPOINT"] == '["python", "-m", "service"]'
    assert "PORT=8004" in final_text["ENV"]


def test_dockerfile_commands_work_as_a_shell_script_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """The build stage, run as a script (paths moved under tmp_path), then the image's command."""
    build, final = dockerfile_stages()
    venv, src = tmp_path / "venv", tmp_path / "src"
    src.mkdir()
    script = ["set -eu", f"cd {src}"]
    for instruction, raw in build[1:]:
        argument = raw.replace("/opt/venv", str(venv))
        if instruction == "RUN":
            script.append(argument)
        elif instruction == "ENV":
            script += [f"export {pair}" for pair in shlex.split(argument)]
        elif instruction == "COPY":
            *sources, target = argument.split()
            script += [f"cp -r {ROOT / s} {target}" for s in sources]
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.lower()
    assert "fastapi==" in installed
    for dev_only in ("pytest", "ruff", "mypy", "schemathesis"):
        assert dev_only not in installed, f"{dev_only} is not a runtime dependency"
    # The image's command, from that virtualenv, on embedded defaults (found this: fakeredis
    # was a dev dependency, and the embedded default could not start from runtime deps).
    port = free_port()
    env = {
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite:///{tmp_path}/aurora.db",
        "AURORA_LOG_FORMAT": "json",
    }
    entry = ["python", "-m", "service"]
    assert dict(final)["ENTRYPOINT"] == '["python", "-m", "service"]'
    server = subprocess.Popen(
        entry, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=15)[0].decode()
    assert '"level": "WARNING"' in output
    assert "AUTHENTICATION IS DISABLED" in output


def test_sentinel_urls_parse() -> None:
    parsed = SentinelUrl.parse("redis+sentinel://:s%40cret@a:26379,b:26380,c/mymaster/3")
    assert parsed == SentinelUrl(
        [("a", 26379), ("b", 26380), ("c", 26379)], "mymaster", 3, "s@cret"
    )
    assert SentinelUrl.parse("redis+sentinel://h:1/m").db == 0
    with pytest.raises(ValueError, match="service-name"):
        SentinelUrl.parse("redis+sentinel://h:1")


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A real Redis Sentinel on 127.0.0.1 watching the local Redis (it only watches: quorum of
    one, and a down-after far longer than the test)."""
    check_redis()
    port, name = free_port(), f"aurora-test-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {name} 127.0.0.1 {REDIS_PORT} 1\n"
        f"sentinel down-after-milliseconds {name} 600000\n"
    )
    process = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, name
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.mariadb
def test_the_service_runs_on_redis_through_sentinel(
    sentinel: tuple[int, str], mariadb_database: str, redis_prefix: str
) -> None:
    port, name = sentinel
    url = f"redis+sentinel://127.0.0.1:{port}/{name}/{REDIS_DB}"
    settings = make_settings(mariadb_database, redis_url=url, redis_prefix=redis_prefix)
    with TestClient(create_app(settings)) as client:
        flag = client.post(
            "/api/v1/feature-flags/",
            json={"flag_key": f"s-{uuid.uuid4().hex[:6]}", "is_enabled": True},
        )
        assert flag.headers["x-aurora-propagation"] == "complete"
        assert client.get(f"/api/v1/feature-flags/check/{flag.json()['flag_key']}").json() == {
            "enabled": True
        }
        status = client.get("/status").json()
        assert status["read_model"]["feed_connected"] is True
        assert client.get("/health/ready").json()["redis"] == "ok"
        client.delete(f"/api/v1/feature-flags/{flag.json()['id']}")


@pytest.mark.mariadb
def test_migrate_waits_creates_the_database_and_applies_the_schema(mariadb_database: str) -> None:
    name = f"aurora_test_migrate_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "DATABASE_URL": mariadb_url(name), "AURORA_LOG_FORMAT": "text"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "service", "migrate", "--wait", "5", "--create-database"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", database=name)
        with admin.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            tables = {row[0] for row in cursor.fetchall()}
        admin.close()
        assert {
            "app_configurations",
            "feature_flags",
            "config_history",
            "change_outbox",
            "api_tokens",
        } <= tables
    finally:
        admin = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user="root", autocommit=True)
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    dead = {**env, "DATABASE_URL": "mysql+pymysql://root@127.0.0.1:1/aurora"}
    started = time.monotonic()
    failed = subprocess.run(
        [sys.executable, "-m", "service", "migrate", "--wait", "2"],
        env=dead,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert time.monotonic() - started >= 2  # it kept trying for the time it was given
    assert re.search(r"cannot migrate", failed.stderr)
