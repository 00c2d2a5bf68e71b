"""Randomized fault storms (issue 9): seeded writes from two instances interleaved with faults.

One deployment: a private `redis-server` with AOF (tests/redis_servers.py), MariaDB behind a TCP
proxy (tests/faults.py), and two service processes. Each seed draws, from its own
`random.Random(seed)`, FAULTS_PER_SEED steps of a few writes (through a random live instance)
and one fault: Redis restarted from a random older RDB snapshot, Redis SIGKILLed and restarted
from its AOF, the database connection cut or silently dropped, an instance SIGKILLed and
started again, or every change subscription killed (CLIENT KILL TYPE pubsub). Then everything is
healed and the seed passes when, within CONVERGE_SECONDS, both instances read every key exactly
as the database holds it and call their replica trusted, and every key whose last write was
acknowledged holds that write's value.

`make test` runs SEEDS seeds (20); `make soak` runs 500. A failure names its seed; run one seed
again with `AURORA_FAULT_SEED=<seed> AURORA_FAULT_SEEDS=1 pytest tests/e2e/test_fault_storm.py`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from tests.backends import MARIADB_HOST, MARIADB_PASSWORD, MARIADB_PORT, MARIADB_USER
from tests.e2e.servers import Server
from tests.faults import TcpProxy
from tests.redis_servers import RedisProcess

pytestmark = [pytest.mark.mariadb, pytest.mark.redis_faults]
log = logging.getLogger(__name__)

FIRST_SEED = int(os.environ.get("AURORA_FAULT_SEED", "0"))
SEEDS = int(os.environ.get("AURORA_FAULT_SEEDS", "20"))
FAULTS_PER_SEED = 10
CONVERGE_SECONDS = 20.0
KEYS = tuple(f"storm.k{i}" for i in range(6))
ENV = "production"
VALUES = "/api/v1/configurations"
SNAPSHOTS_KEPT = 4


@dataclass
class Storm:
    root: Path
    env: dict[str, str]
    redis: RedisProcess
    proxy: TcpProxy
    database: str
    servers: dict[str, Server] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    snapshots: list[Path] = field(default_factory=list)
    # key -> (value written, acknowledged?) of the last write attempted
    last_write: dict[str, tuple[int, bool]] = field(default_factory=dict)
    counter: int = 0
    journal: list[str] = field(default_factory=list)

    # -- instances ---------------------------------------------------------------------

    def start(self, name: str) -> None:
        port = self.ports.get(name)
        server = Server(self.env, self.root / f"server-{name}.log", port)
        self.ports[name] = server.port
        self.servers[name] = server

    def live(self) -> list[Server]:
        return [s for s in self.servers.values() if s.process.poll() is None]

    def heal(self) -> None:
        self.proxy.restore()
        if not self.redis.running():
            self.redis.start()
        for name, server in list(self.servers.items()):
            if server.process.poll() is not None:
                self.start(name)
        for server in self.servers.values():
            server.wait_ready(within=CONVERGE_SECONDS)

    def stop(self) -> None:
        for server in self.servers.values():
            server.terminate(within=5)

    # -- writes and faults -------------------------------------------------------------

    def write(self, rng: random.Random, http: httpx.Client) -> None:
        live = self.live()
        if not live:
            return
        server, key = rng.choice(live), rng.choice(KEYS)
        self.counter += 1
        value = self.counter
        try:
            response = http.put(f"{server.url}{VALUES}/key/{key}", json={"value": value})
            acknowledged = response.status_code in (200, 201)
        except httpx.HTTPError:
            acknowledged = False
        self.last_write[key] = (value, acknowledged)
        self.journal.append(f"write {key}={value} via {server.port}: {acknowledged}")

    def snapshot(self) -> None:
        path = self.root / f"snapshot-{self.counter}.rdb"
        if self.redis.running():
            self.snapshots.append(self.redis.save(path))
            del self.snapshots[:-SNAPSHOTS_KEPT]

    def fault(self, rng: random.Random, http: httpx.Client) -> None:
        faults: dict[str, Callable[[], None]] = {
            "redis restored from an older snapshot": lambda: self._restore(rng),
            "redis SIGKILLed, restarted from its AOF": self._redis_kill,
            "database connection cut": lambda: self._database_out(rng, http, self.proxy.cut),
            "database silently dropped": lambda: self._database_out(
                rng, http, self.proxy.blackhole
            ),
            "an instance SIGKILLed": lambda: self._instance_kill(rng),
            "change subscriptions killed": self._subscriptions_cut,
        }
        name = rng.choice(sorted(faults))
        self.journal.append(f"fault: {name}")
        faults[name]()

    def _restore(self, rng: random.Random) -> None:
        if not self.snapshots:
            return
        snapshot = rng.choice(self.snapshots)
        if self.redis.running():
            if rng.random() < 0.5:
                self.redis.shutdown_nosave()
            else:
                self.redis.kill()
        self.redis.restart_from(dump=snapshot)

    def _redis_kill(self) -> None:
        if self.redis.running():
            self.redis.kill()
        self.redis.start()

    def _database_out(
        self, rng: random.Random, http: httpx.Client, how: Callable[[], None]
    ) -> None:
        how()
        if rng.random() < 0.5:  # a write meets the outage (and waits out the deadline)
            self.write(rng, http)
        self.proxy.restore()

    def _instance_kill(self, rng: random.Random) -> None:
        live = [name for name, s in self.servers.items() if s.process.poll() is None]
        if len(live) < 2:
            return  # keep one instance serving: the other is still starting
        name = rng.choice(live)
        self.servers[name].process.kill()
        self.servers[name].process.wait(10)
        self.start(name)  # starts in the background; writes go to the other meanwhile

    def _subscriptions_cut(self) -> None:
        if self.redis.running():
            with self.redis.client() as client:
                client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

    # -- the verdict -------------------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        connection = pymysql.connect(
            host=MARIADB_HOST,
            port=MARIADB_PORT,
            user=MARIADB_USER,
            password=MARIADB_PASSWORD,
            database=self.database,
            connect_timeout=5,
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT config_key, config_value FROM app_configurations "
                    "WHERE environment = %s AND service_scope = ''",
                    (ENV,),
                )
                return {key: json.loads(value) for key, value in cursor.fetchall()}
        finally:
            connection.close()

    def disagreements(self, http: httpx.Client) -> list[str]:
        truth = self.truth()
        wrong = [
            f"{key}: the database holds {truth.get(key)!r}, the last acknowledged write {value}"
            for key, (value, acknowledged) in self.last_write.items()
            if acknowledged and truth.get(key) != value
        ]
        for server in self.servers.values():
            status = http.get(f"{server.url}/status").json()["read_model"]
            if not status["replica"].get(ENV, {}).get("trusted"):
                wrong.append(f"{server.port}: replica not trusted yet")
            for key in KEYS:
                response = http.get(f"{server.url}{VALUES}/value/{key}")
                seen = response.json().get("value") if response.status_code == 200 else None
                if seen != truth.get(key):
                    wrong.append(f"{server.port} reads {key}={seen!r}, database {truth.get(key)!r}")
        return wrong


@pytest.fixture
def storm(mariadb_database: str, redis_prefix: str, tmp_path: Path) -> Iterator[Storm]:
    proxy = TcpProxy(MARIADB_PORT, MARIADB_HOST)
    proxy.restore()
    redis = RedisProcess(tmp_path, "redis", appendonly=True)
    redis.start()
    database = mariadb_database.rsplit("/", 1)[1].split("?", 1)[0]
    url = mariadb_database.replace(f"{MARIADB_HOST}:{MARIADB_PORT}", f"127.0.0.1:{proxy.port}")
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis.url,
        "AURORA_REDIS_PREFIX": redis_prefix,
        "AURORA_DB_TIMEOUT_SECONDS": "1",
        "AURORA_PROPAGATION_WAIT_SECONDS": "1",
        "AURORA_LOG_LEVEL": "WARNING",
    }
    storm = Storm(tmp_path, env, redis, proxy, database)
    try:
        for name in ("A", "B"):
            storm.start(name)
        storm.heal()
        yield storm
    finally:
        storm.stop()
        redis.stop()
        proxy.close()


# The service runs in processes of its own; what the garbage collector finds unclosed in this
# process is the harness's: now and then the TCP proxy's event loop (tests/faults.py) loses a
# socket it accepted at the very moment a cut or a restore closes it (an fd reused while asyncio
# still watched it). It says nothing about the service under test, so it does not fail the run.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_random_faults_lose_nothing_and_every_instance_converges(storm: Storm) -> None:
    started = time.monotonic()
    with httpx.Client(timeout=5.0) as http:
        for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
            rng = random.Random(seed)
            storm.journal = [f"seed {seed}"]
            storm.snapshot()
            for _ in range(FAULTS_PER_SEED):
                for _ in range(rng.randint(1, 3)):
                    storm.write(rng, http)
                storm.fault(rng, http)
                storm.snapshot()
            storm.heal()
            deadline = time.monotonic() + CONVERGE_SECONDS
            while wrong := storm.disagreements(http):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"seed {seed} did not converge within {CONVERGE_SECONDS}s: {wrong}\n"
                        f"rerun: AURORA_FAULT_SEED={seed} AURORA_FAULT_SEEDS=1 pytest "
                        f"tests/e2e/test_fault_storm.py\n" + "\n".join(storm.journal)
                    )
                time.sleep(0.1)
            log.info("seed %d converged (%.1fs into the run)", seed, time.monotonic() - started)
