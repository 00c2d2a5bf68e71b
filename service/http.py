"""uvicorn's HTTP/1.1 protocol for the service: httptools (llhttp) with a bound on request heads.

httptools parses about three times faster than h11 (bench/RESULTS.md), but unlike h11's
`max_incomplete_event_size` it has no limit on a request's head: it would buffer any number of
headers, and a header value of any length, in memory. This subclass keeps the limit
(AURORA_MAX_HEADER_BYTES) two ways:

- exactly, on what the parser delivered: the request target plus every header line; the
  request is refused (400, as uvicorn answers any malformed request) once they pass the limit;
- coarsely, on bytes received while a head is still incomplete (a single endless header that
  never reaches the parser's callbacks): 431 and the connection is closed once they pass it.

Without httptools installed the service falls back to h11 with the same limit
(service/__main__.py).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadTooLarge(Exception):
    """The request head passed the limit (raised inside a parser callback)."""


_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request header fields too large."
)


def bounded_httptools(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """An httptools protocol class that refuses request heads over `max_head_bytes`."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        limit = max_head_bytes

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0  # of the current head, exactly (target and header lines)
            self._reading_head = True
            self._unparsed = 0  # bytes received since the last complete head, at least

        def data_received(self, data: bytes) -> None:
            if self._reading_head:
                self._unparsed += len(data)
            super().data_received(data)
            if (
                self._reading_head
                and self._unparsed > self.limit
                and not self.transport.is_closing()
            ):
                self.logger.warning("Request head over %d bytes refused.", self.limit)
                self.transport.write(_REFUSAL)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._reading_head = True

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._reading_head = False
            self._unparsed = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._reading_head = True

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > self.limit:
                raise HeadTooLarge  # the parser stops; uvicorn answers 400 and closes

    return BoundedHttpToolsProtocol
