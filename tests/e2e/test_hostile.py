"""Hostile input against a real server process: header floods, odd paths, SQL metacharacters.
Each gets a clear 4xx (or a closed connection for a flood) and leaves the data unchanged."""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
import pytest

from tests.e2e.servers import Server

pytestmark = pytest.mark.mariadb

Instance = Callable[..., AbstractContextManager[Server]]
C = "/api/v1/configurations"


def raw_request(server: Server, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            sock.sendall(payload)
        except OSError:
            return b""  # the server closed the connection on us: refused
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, OSError):
            pass
        return b"".join(chunks)


def state(server: Server) -> object:
    return httpx.get(f"{server.url}{C}/", params={"limit": 1000}).json()


def test_header_floods_are_refused_and_the_server_carries_on(instance: Instance) -> None:
    with instance() as server:
        httpx.put(f"{server.url}{C}/key/k", json={"value": 1})
        before = state(server)
        many = b"".join(b"X-Flood-%d: x\r\n" % i for i in range(20_000))
        answer = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
        huge = b"X-Big: " + b"a" * 200_000 + b"\r\n"
        answer = raw_request(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + huge + b"\r\n")
        assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
        # A head that never ends is refused too, not buffered until the client gives up.
        endless = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000
        assert raw_request(server, endless).startswith((b"HTTP/1.1 400", b"HTTP/1.1 431"))
        # Just under the limit (16 KiB) is served.
        fine = b"".join(b"X-Fine-%d: %s\r\n" % (i, b"a" * 1000) for i in range(15))
        answer = raw_request(
            server,
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fine + b"\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        assert httpx.get(f"{server.url}/health/live").status_code == 200
        assert state(server) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/configurations/key/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/configurations/value/a/../../b",
        "/api/v1/configurations/key/%00",
        "/api/v1/configurations/key/%ff%fe",
        "/api/v1/feature-flags/check/%2e%2e",
    ],
)
def test_odd_paths_get_clear_4xx(instance: Instance, path: str) -> None:
    with instance() as server:
        answer = raw_request(
            server, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, answer[:300]
        assert b"Traceback" not in answer


def test_sql_metacharacters_are_data(instance: Instance) -> None:
    nasty = "'; DROP TABLE app_configurations; -- \" \\ % _ `x` /* */"
    with instance() as server:
        created = httpx.post(
            f"{server.url}{C}/",
            json={"config_key": "sql.test", "config_value": nasty, "description": nasty},
        )
        assert created.status_code == 201
        shown = httpx.get(f"{server.url}{C}/value/sql.test").json()
        assert shown["value"] == nasty
        assert httpx.get(f"{server.url}{C}/{created.json()['id']}").json()["description"] == nasty
        listed = httpx.get(f"{server.url}{C}/", params={"key_prefix": "%' OR '1'='1"}).json()
        assert listed["total"] == 0  # LIKE metacharacters in a prefix are literal
        refused = httpx.get(f"{server.url}{C}/value/sql.test", params={"service_name": "x' OR 1=1"})
        assert refused.status_code == 422
        assert httpx.get(f"{server.url}{C}/").json()["total"] == 1
