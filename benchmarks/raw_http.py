"""The single-submit load: keep-alive HTTP/1.1 connections that each send one prepared request at a time.

The load generator shares the machine with the system it measures, so what it spends per request is taken
from the gateway. aiohttp spends most of its ~0.3 ms of CPU per request building the request and parsing
the answer in Python; here the request is a fixed byte string and an answer is framed by its Content-Length,
with only its status line parsed, as load tools such as wrk do. Every answer is checked: the caller counts a
status other than the expected one as an error, and an answer this client cannot frame (no status line or
Content-Length) stops the benchmark instead of being miscounted.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from benchmarks.measure import BenchError

HEADER_END = b"\r\n\r\n"
LENGTH = b"\r\ncontent-length:"


class _Connection(asyncio.Protocol):
    """One connection; `exchange` sends a request and returns the answer's status and body. Data that no
    request waits for (a server's notice before it closes, or more than the answer) closes the connection:
    it is out of step, and the next post opens another."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._answer is None or self._answer.done():
            self.close()
            return
        end = self._buffer.find(HEADER_END)
        if end < 0:
            return
        try:
            status, length = _frame(bytes(self._buffer[:end]))
        except BenchError as e:
            self._fail(e)
            self.close()
            return
        body_at = end + len(HEADER_END)
        if len(self._buffer) < body_at + length:
            return
        body = bytes(self._buffer[body_at : body_at + length])
        del self._buffer[: body_at + length]
        answer, self._answer = self._answer, None
        answer.set_result((status, body))
        if self._buffer:
            self.close()

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


def _frame(head: bytes) -> tuple[int, int]:
    """The status and Content-Length of an answer's head (BenchError when it has neither)."""
    head = head.lower()
    at = head.find(LENGTH)
    if not head.startswith(b"http/1.") or at < 0:
        raise BenchError(f"an answer without a status line or Content-Length: {head[:200]!r}")
    stop = head.find(b"\r\n", at + len(LENGTH))
    try:
        return int(head[9:12]), int(head[at + len(LENGTH) : stop if stop >= 0 else len(head)])
    except ValueError:
        raise BenchError(f"an answer with a malformed status or Content-Length: {head[:200]!r}") from None


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
        """The answer's status and body; a connection closed meanwhile is opened again first (OSError when that
        fails, ConnectionError when the server closes it before answering)."""
        if self._connection is None or self._connection.closed:  # never opened, or closed by the server meanwhile
            self.close()
            _, self._connection = await asyncio.get_running_loop().create_connection(
                _Connection, self._host, self._port
            )
        try:
            return await self._connection.exchange(self._request)
        except BaseException:  # failed or cut short (a timeout's cancellation): its answer would come out of step
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
