"""The fast path answers exactly as the routes do (on both backends)."""

from __future__ import annotations

from fastapi.testclient import TestClient

CONFIGS = "/api/v1/configurations"
FLAGS = "/api/v1/feature-flags"

REQUESTS = [
    f"{FLAGS}/check/half?user_id=1",
    f"{FLAGS}/check/half?user_id=2",
    f"{FLAGS}/check/half",
    f"{FLAGS}/check/off?user_id=1",
    f"{FLAGS}/check/half?environment=staging&user_id=1",
    f"{FLAGS}/check/missing?user_id=1",
    f"{FLAGS}/check/half?user_id=",
    f"{FLAGS}/check/half?environment=moon",
    f"{FLAGS}/check/a%2F..%2Fb",
    f"{FLAGS}/check/half?user_id=" + "x" * 257,
    # Issue 10: any Unicode key (percent-decoded as UTF-8), and context properties.
    f"{FLAGS}/check/Hell%C3%B8_W%C3%B8rld?user_id=1",
    f"{FLAGS}/check/%F0%9F%9A%80",
    f"{FLAGS}/check/a%7Cb?user_id=1",
    f"{FLAGS}/check/de?user_id=7&properties%5Bcountry%5D=DE",
    f"{FLAGS}/check/de?user_id=7&properties[country]=AT",
    f"{FLAGS}/check/de?user_id=7&properties[]=DE",
    f"{FLAGS}/check/de?user_id=7&properties[country]=" + "x" * 17000,
    f"{FLAGS}/check/%E2%80%AEevil",
    f"{CONFIGS}/value/db/host?service_name=billing",
    f"{CONFIGS}/value/db/host?service_name=auth",
    f"{CONFIGS}/value/db/host",
    f"{CONFIGS}/value/nested",
    f"{CONFIGS}/value/db/host?service_name=bad%20name",
    f"{CONFIGS}/value/db/host?environment=staging",
    f"{CONFIGS}/value/missing",
    f"{CONFIGS}/value/%C3%A9",
]


def test_fast_path_and_routes_agree(client: TestClient) -> None:
    client.post(
        f"{FLAGS}/", json={"flag_key": "half", "is_enabled": True, "rollout_percentage": 50}
    )
    client.post(f"{FLAGS}/", json={"flag_key": "off"})
    client.post(
        f"{FLAGS}/", json={"flag_key": "half", "environment": "staging", "is_enabled": True}
    )
    for key in ("Hellø_Wørld", "🚀", "a|b"):
        client.post(f"{FLAGS}/", json={"flag_key": key, "is_enabled": True})
    country = {"context_name": "country", "operator": "IN", "values": ["DE"]}
    targeted = {"flag_key": "de", "is_enabled": True, "rules": [{"constraints": [country]}]}
    assert client.post(f"{FLAGS}/", json=targeted).status_code == 201
    client.put(f"{CONFIGS}/key/db/host", json={"value": "global"})
    client.put(f"{CONFIGS}/key/db/host", params={"service_name": "billing"}, json={"value": "own"})
    client.put(f"{CONFIGS}/key/nested", json={"value": {"a": [1, 2.5, None, True]}})
    state = client.app.state  # type: ignore[attr-defined]
    assert state.replica.copy("production") is not None

    fast = [client.get(url) for url in REQUESTS]
    assert state.reads.served["fast_path"] == 14  # the plainly valid ones that exist
    state.replica.distrust()  # now every request goes through the FastAPI routes
    routed = [client.get(url) for url in REQUESTS]
    assert state.reads.served["fast_path"] == 14
    for url, a, b in zip(REQUESTS, fast, routed, strict=True):
        assert (a.status_code, a.json()) == (b.status_code, b.json()), url
        assert a.headers["content-type"] == b.headers["content-type"], url
        assert a.headers.get("etag") == b.headers.get("etag"), url
