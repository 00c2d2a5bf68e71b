"""Real server processes (`python -m service`) for end-to-end tests, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.faults import free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "AURORA_LOG_LEVEL": "INFO",
            "AURORA_SSE_HEARTBEAT_SECONDS": "1",
            "AURORA_RELAY_INTERVAL_SECONDS": "0.1",
            "AURORA_AUTH": "disabled",
            **env,
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service"],
                cwd=ROOT,
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    feed = httpx.get(f"{self.url}/status", timeout=2).json()["read_model"]
                    if feed["feed_connected"]:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {within}s: {self.log.read_text()[-3000:]}")

    def terminate(self, within: float = 15.0) -> int:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@contextmanager
def running(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[Server]:
    server = Server(env, log, port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.terminate()
