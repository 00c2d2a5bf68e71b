"""The deadline bounds connecting too: a database host that drops SYNs (a partition before the
connection exists) is a 503 within the call's deadline, not the engine's connect timeout."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from database.engine import make_engine
from service.errors import Unavailable
from service.store import Store
from service.usecases import targets

pytestmark = pytest.mark.anyio


@contextmanager
def port_that_drops_syns() -> Iterator[int]:
    """A listener whose accept queue is full: Linux drops further SYNs, so a connect hangs
    exactly as it does across a partition (and on 127.0.0.1, nothing else is touched)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    queued = socket.create_connection(("127.0.0.1", port), timeout=1.0)  # fills the queue
    try:
        yield port
    finally:
        queued.close()
        server.close()


async def test_connecting_keeps_to_the_deadline_not_the_connect_timeout() -> None:
    with port_that_drops_syns() as port:
        engine = make_engine(f"mysql+pymysql://root@127.0.0.1:{port}/aurora", timeout=10.0)
        store = Store(engine, limit=1, retries=3, timeout=1.0)
        started = time.monotonic()
        try:
            with pytest.raises(Unavailable, match="did not answer within 1s"):
                await store.run(targets.load, "production")
        finally:
            engine.dispose()
        assert time.monotonic() - started < 1.0 + 1.0  # the deadline, plus the 1 s
