"""A TCP proxy on 127.0.0.1 that a test can break the way networks break: a dependency "going down".

It runs its own event loop in a thread, so sync tests (TestClient) and async tests alike can
use it. The faults, each undone by `restore()` (which listens again on the same port and
forwards again):

- `cut()`: refused. The listener closes and every open connection is closed at once (a FIN,
  or a RST if data was unread); new connects are refused (a stopped server, a closed port).
- `reset()`: new connections are accepted and reset at once (RST), and so is every open one (a
  crashed server behind a load balancer, a firewall rejecting with tcp-reset).
- `blackhole()`: a partition. New connections are accepted and held, open ones stay open, and
  nothing is forwarded either way: no answer, no close, until the client's own timeout. On
  `restore()` the held connections are reset (a healed partition: the peers that gave up answer
  RST), so only new connections work again.
- `cut_after(pattern)`: the next chunk the client sends containing `pattern` (e.g. a COMMIT
  packet) is forwarded to the server, then the client's connection is reset before any answer
  reaches it: "connection lost during COMMIT", with the commit itself sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["forward", "blackhole", "reset"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, not FIN: SO_LINGER with a zero timeout, then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode: Mode = "forward"
        self.cut_pattern: bytes | None = None
        self.cuts_done = 0  # how many connections cut_after() has reset
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread.start()

    def _call(self, coro: object, timeout: float = 5.0) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter | None = None,
    ) -> None:
        """Copy reader to writer; `client` is set on the client-to-server direction."""
        try:
            while data := await reader.read(65536):
                if self.mode != "forward":
                    continue  # blackholed: swallowed, never answered, never closed
                writer.write(data)
                await writer.drain()
                if client is not None and self.cut_pattern and self.cut_pattern in data:
                    self.cut_pattern = None
                    self.cuts_done += 1
                    _reset(client)  # the server got it; the client never hears back
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)  # tracked from the first moment, so cut() can abort it
        try:
            if self.mode == "reset":
                _reset(writer)
            elif self.mode == "blackhole":
                await self._hold(reader)  # until restore() resets it or the client gives up
            else:
                await self._forward(reader, writer)
        finally:
            # Whatever ended the handler (a cancel at close() included), the client's socket is
            # closed here: none is left to the garbage collector.
            writer.transport.abort()
            self._writers.discard(writer)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, client=writer), self._pipe(up_reader, writer)
            )
        finally:
            up_writer.transport.abort()
            self._writers.discard(up_writer)

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    async def _set_mode(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "reset" or (previous == "blackhole" and mode == "forward"):
            await self._reset_all()  # a healed partition: whoever gave up answers RST
        await self._start()

    def restore(self) -> None:
        self._call(self._set_mode("forward"))

    def cut(self) -> None:
        self._call(self._stop())

    def reset(self) -> None:
        self._call(self._set_mode("reset"))

    def blackhole(self) -> None:
        self._call(self._set_mode("blackhole"))

    def cut_after(self, pattern: bytes) -> None:
        self.cut_pattern = pattern

    async def _finish(self) -> None:
        """Cancel and await every task still running, so nothing is left to the GC."""
        await self._stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:  # every socket is closed: let the handlers end on their own first (a handler
            # that ends cancelled makes asyncio's stream callback log an error on Python 3.11)
            await asyncio.wait(tasks, timeout=1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self._call(self._finish())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@contextlib.contextmanager
def proxy_to(port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(port)
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.close()
