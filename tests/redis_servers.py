"""Private `redis-server` processes for fault tests: restarts from persistence, kills, failovers.

Faults are done the way production does them (issue #9), never by editing data on a live
connection: a restore is a process restarted on an older RDB file, a crash is SIGKILL, a failover
is Sentinel promoting a replica. Every process runs on 127.0.0.1 on a free port under a directory
of the test's own, is stopped by its PID, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.faults import free_port

SERVER = "redis-server"
MASTER_NAME = "aurora-master"


def _wait(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll `check` until it is true; Redis errors count as "not yet"; TimeoutError at the end."""
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {within}s")
        time.sleep(0.02)


class RedisProcess:
    """One `redis-server` on a port of its own; it keeps the port across restarts."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        appendonly: bool = False,
        replicaof: int | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.replicaof = replicaof
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.answering_since: float | None = None  # monotonic time of the last first PONG

    @property
    def dump(self) -> Path:
        return self.dir / "dump.rdb"

    @property
    def aof_dir(self) -> Path:
        return self.dir / "appendonlydir"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def config(self) -> str:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            "dbfilename dump.rdb",
            'save ""',  # snapshots only when a test asks (SAVE/BGSAVE)
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync everysec",
            "appenddirname appendonlydir",
            "enable-debug-command local",
            f"logfile {self.log}",
            "daemonize no",
            "protected-mode no",
            "repl-diskless-sync-delay 0",
        ]
        if self.replicaof is not None:
            lines.append(f"replicaof 127.0.0.1 {self.replicaof}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def client_of(port: int, timeout: float = 2.0) -> redis.Redis:
        """A client of the test's own that never retries: a wait is the caller's, bounded."""
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return self.client_of(self.port, timeout)

    def command(self) -> list[str]:
        conf = self.dir / "redis.conf"
        conf.write_text(self.config())
        return [SERVER, str(conf)]

    def start(self, within: float = 10.0) -> float:
        """Start (or restart on the same port, from whatever files are in its directory) and
        wait until it answers PING (not LOADING: its data is in). Returns when it first did."""
        assert not self.running(), "already running"
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            with self.client(0.5) as c:
                return bool(c.ping())

        try:
            _wait(answers, within, f"{self.name} on port {self.port} answering PING")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.tail()}") from exc
        self.answering_since = time.monotonic()
        return self.answering_since

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def save(self, keep_as: Path) -> Path:
        """SAVE (a foreground snapshot) and copy the RDB file: a backup to restore later."""
        with self.client() as c:
            c.save()
        shutil.copyfile(self.dump, keep_as)
        return keep_as

    def bgsave(self, keep_as: Path, within: float = 10.0) -> Path:
        """BGSAVE, wait for it to finish (one more snapshot counted), and copy the RDB file."""
        with self.client() as c:
            before = int(c.info("persistence")["rdb_saves"])
            c.bgsave()

            def done() -> bool:
                info = c.info("persistence")
                return int(info["rdb_saves"]) > before and info["rdb_bgsave_in_progress"] == 0

            _wait(done, within, "BGSAVE")
            assert c.info("persistence")["rdb_last_bgsave_status"] == "ok"
        shutil.copyfile(self.dump, keep_as)
        return keep_as

    def copy_aof(self, keep_as: Path) -> Path:
        """Copy the AOF directory as it stands (Redis writes it before it replies, so it holds
        every acknowledged write): later, the state a power cut would leave."""
        shutil.copytree(self.aof_dir, keep_as)
        return keep_as

    def shutdown_nosave(self, within: float = 10.0) -> None:
        """SHUTDOWN NOSAVE: a clean stop that writes nothing (the AOF is still flushed)."""
        with contextlib.suppress(redis.ConnectionError), self.client() as c:
            c.shutdown(nosave=True)
        self._reap(within)

    def kill(self, within: float = 10.0) -> None:
        """SIGKILL by PID: a crash; nothing is flushed that was not already."""
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        self._reap(within)

    def _reap(self, within: float) -> None:
        if self.process is not None:
            try:
                self.process.wait(within)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def restart_from(self, dump: Path | None = None, aof_dir: Path | None = None) -> float:
        """Start again on the same port from the given RDB file (the AOF directory removed, so
        the RDB is what loads) or AOF directory. The process must be stopped."""
        assert not self.running(), "stop it first"
        if dump is not None:
            shutil.rmtree(self.aof_dir, ignore_errors=True)
            shutil.copyfile(dump, self.dump)
        if aof_dir is not None:
            shutil.rmtree(self.aof_dir, ignore_errors=True)
            shutil.copytree(aof_dir, self.aof_dir)
        return self.start()

    def stop(self) -> None:
        """Teardown: SIGTERM by PID, then SIGKILL if it lingers."""
        if self.running():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class SentinelProcess(RedisProcess):
    """`redis-server sentinel.conf --sentinel` watching one master (quorum 2 of 3)."""

    def __init__(self, root: Path, name: str, master_port: int, *, quorum: int = 2) -> None:
        super().__init__(root, name)
        self.master_port = master_port
        self.quorum = quorum

    def config(self) -> str:
        return (
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            f"dir {self.dir}\n"
            f"logfile {self.log}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} {self.quorum}\n"
            # Short, so a failover takes a few seconds: down after 1 s without a PONG.
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 3000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )

    def command(self) -> list[str]:
        conf = self.dir / "sentinel.conf"  # Sentinel rewrites it, so it must be its own file
        conf.write_text(self.config())
        return [SERVER, str(conf), "--sentinel"]

    def master_port_now(self) -> int | None:
        with self.client() as c:
            addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return None if not addr else int(addr[1])

    def knows(self, replicas: int, sentinels: int) -> bool:
        with self.client() as c:
            found = c.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
            others = c.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)

        def flags(entry: object) -> str:
            fields = entry if isinstance(entry, list) else []
            pairs = dict(zip(fields[::2], fields[1::2], strict=False))
            value = pairs.get(b"flags", pairs.get("flags", b""))
            return value.decode() if isinstance(value, bytes) else str(value)

        healthy = [r for r in found if "down" not in flags(r) and "disconnected" not in flags(r)]
        return len(healthy) >= replicas and len(others) >= sentinels


class SentinelGroup:
    """A master, one replica and three sentinels: the smallest deployment that fails over."""

    def __init__(self, root: Path) -> None:
        self.master = RedisProcess(root, "master")
        self.replica = RedisProcess(root, "replica", replicaof=self.master.port)
        self.sentinels = [
            SentinelProcess(root, f"sentinel-{i}", self.master.port) for i in range(3)
        ]

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{MASTER_NAME}/0"

    def start(self, within: float = 15.0) -> None:
        self.master.start()
        self.replica.start()
        self.wait_replica_in_sync()
        for sentinel in self.sentinels:
            sentinel.start()
        # Each sentinel must know the replica and the two other sentinels (hello messages every
        # 2 s) before a failover can be agreed on.
        deadline = time.monotonic() + within
        for sentinel in self.sentinels:
            _wait(
                functools.partial(sentinel.knows, 1, 2),
                max(0.1, deadline - time.monotonic()),
                f"{sentinel.name} to see the replica and two sentinels",
            )

    def wait_replica_in_sync(self, within: float = 10.0) -> None:
        """Until the replica's link is up and it has applied everything the master sent."""

        def in_sync() -> bool:
            with self.master.client() as m, self.replica.client() as r:
                info = r.info("replication")
                offset = m.info("replication")["master_repl_offset"]
                return bool(
                    info.get("master_link_status") == "up"
                    and info.get("slave_repl_offset", -1) >= offset
                )

        _wait(in_sync, within, "the replica to catch up")

    def stall_replica(self, milliseconds: int) -> None:
        """CLIENT PAUSE WRITE on the replica: it stops applying its master's stream, so it
        misses whatever the master acknowledges next."""
        with self.replica.client() as r:
            r.execute_command("CLIENT", "PAUSE", str(milliseconds), "WRITE")

    def wait_promoted(self, port: int, within: float = 20.0) -> float:
        """Until a majority of sentinels name `port` the master and it says it is one; returns
        when it was first seen answering as master."""

        def promoted() -> bool:
            named = sum(1 for s in self.sentinels if s.running() and s.master_port_now() == port)
            if named < 2:
                return False
            with RedisProcess.client_of(port) as c:
                return bool(c.info("replication")["role"] == "master")

        _wait(promoted, within, f"a failover to port {port}")
        return time.monotonic()

    def stop(self) -> None:
        for process in (*self.sentinels, self.replica, self.master):
            process.stop()


@contextlib.contextmanager
def redis_server(root: Path, name: str = "redis", **options: object) -> Iterator[RedisProcess]:
    server = RedisProcess(root, name, **options)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def sentinel_group(root: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(root)
    try:
        group.start()
        yield group
    finally:
        group.stop()
