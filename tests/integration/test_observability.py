"""/metrics and the structured request log."""

from __future__ import annotations

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.logs import JsonFormatter


def sample(body: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        if metric == name or metric == f"{name}{{{wanted}}}":
            return float(value)
    raise AssertionError(f"{name}{{{wanted}}} not in metrics")


def test_metrics_cover_requests_reads_outbox_replica_and_health(client: TestClient) -> None:
    client.post("/api/v1/feature-flags/", json={"flag_key": "f", "is_enabled": True})
    for _ in range(3):
        client.get("/api/v1/feature-flags/check/f", params={"user_id": "1"})
    client.get("/api/v1/feature-flags/key/f")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    route = "/api/v1/feature-flags/check/{key:path}"  # the same label as the route
    assert sample(body, "aurora_http_requests_total", method="GET", route=route, status="200") == 3
    assert (
        sample(body, "aurora_http_request_duration_seconds_count", method="GET", route=route) == 3
    )
    assert sample(body, "aurora_reads_total", tier="fast_path") == 3
    assert sample(body, "aurora_cache_hits_total") >= 4
    assert sample(body, "aurora_cache_misses_total") == 0
    assert sample(body, "aurora_propagation_total", outcome="complete") == 1
    assert sample(body, "aurora_outbox_pending") == 0
    assert sample(body, "aurora_outbox_oldest_age_seconds") == 0
    assert sample(body, "aurora_replica_trusted", environment="production") == 1
    assert sample(body, "aurora_replica_lag_revisions", environment="production") == 0
    assert sample(body, "aurora_sse_subscribers", environment="production") == 0
    assert sample(body, "aurora_redis_up") == 1
    assert sample(body, "aurora_database_up") == 1
    assert sample(body, "aurora_feed_connected") == 1
    assert sample(body, "aurora_read_model_verified", environment="production") == 1
    assert sample(body, "aurora_read_model_rebuilds_total", cause="missing") == 3  # one per env
    assert sample(body, "aurora_read_model_lost_data_total", cause="lost_writes") == 0
    assert sample(body, "aurora_propagation_total", outcome="superseded") == 0
    assert sample(body, "aurora_outbox_quarantined_total") == 0
    # route labels are templates, never raw paths (bounded cardinality)
    assert "/check/f" not in body


def test_one_json_line_per_request_with_id_route_status_duration_and_actor(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="service.requests"):
        response = client.get("/api/v1/feature-flags/", headers={"X-Request-ID": "req-123"})
        client.get("/api/v1/configurations/value/missing", headers={"X-Request-ID": "bad id!"})
    assert response.headers["x-request-id"] == "req-123"
    records = [r for r in caplog.records if r.name == "service.requests"]
    assert len(records) == 2
    first = json.loads(JsonFormatter().format(records[0]))
    assert first["request_id"] == "req-123"
    assert first["route"] == "/api/v1/feature-flags/"
    assert first["status"] == 200
    assert first["actor"] == "anonymous"
    assert first["duration_ms"] >= 0
    second = json.loads(JsonFormatter().format(records[1]))
    assert second["request_id"] != "bad id!"  # an unsafe incoming id is replaced
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", second["request_id"])
    made = {client.get("/health").headers["x-request-id"] for _ in range(50)}
    assert len(made) == 50  # one of its own for every request
    assert second["status"] == 404
