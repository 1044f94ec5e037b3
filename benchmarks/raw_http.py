"""The single-submit load: keep-alive HTTP/1.1 connections that each send one prepared request at a time.

The load generator shares the machine with the system it measures, so what it spends per request is taken
from the gateway. aiohttp spends most of its ~0.3 ms of CPU per request building the request and parsing
the answer in Python; here the request is a fixed byte string and an answer is read only as far as its
status line and Content-Length, as load tools such as wrk do. Every answer is checked: a status other than
the expected one is counted as an error, and an answer this client cannot frame (no Content-Length) stops
the benchmark instead of being miscounted.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from benchmarks.measure import BenchError

HEADER_END = b"\r\n\r\n"
LENGTH = b"\r\ncontent-length:"


class _Connection(asyncio.Protocol):
    """One connection; `exchange` sends a request and returns the answer's status and body."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(HEADER_END)
        if end < 0 or self._answer is None:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(LENGTH)
        if at < 0:
            self._fail(BenchError(f"an answer without Content-Length: {head[:200]!r}"))
            return
        stop = head.find(b"\r\n", at + len(LENGTH))
        length = int(head[at + len(LENGTH) : stop if stop >= 0 else len(head)])
        body_at = end + len(HEADER_END)
        if len(self._buffer) < body_at + length:
            return
        body = bytes(self._buffer[body_at : body_at + length])
        del self._buffer[: body_at + length]
        answer, self._answer = self._answer, None
        answer.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"connection closed: {exc}"))

    def _fail(self, error: Exception) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError("connection closed")
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Poster:
    """POSTs of one fixed JSON body to `url` over a connection of its own."""

    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._request = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._connection: _Connection | None = None

    async def post(self) -> tuple[int, bytes]:
        """The answer's status and body; a closed connection is opened again (ConnectionError if that fails)."""
        if self._connection is None:
            _, self._connection = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port
            )
        try:
            return await self._connection.exchange(self._request)
        except ConnectionError:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
