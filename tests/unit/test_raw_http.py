"""The benchmark's single-submit client (benchmarks/raw_http.py) against a real socket server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from benchmarks.measure import BenchError
from benchmarks.raw_http import Poster

Answer = Callable[[bytes], list[bytes]]  # a request's bytes -> the chunks to send back (none: close)
CLOSE = b""  # as a chunk: close the connection there


async def _serve(answer: Answer, seen: list[tuple[int, bytes]]) -> asyncio.Server:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        me = connections
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            request = head + await reader.readexactly(length)
            seen.append((me, request))
            chunks = answer(request)
            if not chunks:
                break
            for chunk in chunks:
                if chunk == CLOSE:
                    writer.close()
                    return
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)  # the answer arrives in pieces
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@contextlib.asynccontextmanager
async def _poster(answer: Answer, seen: list[tuple[int, bytes]], body: bytes = b"{}") -> AsyncIterator[Poster]:
    """A Poster of `body` to a server answering with `answer`; both closed at the end."""
    server = await _serve(answer, seen)
    poster = Poster(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/jobs", body)
    try:
        yield poster
    finally:
        poster.close()
        server.close()


def test_requests_share_a_keep_alive_connection_and_answers_are_framed_by_content_length():
    async def main() -> None:
        seen: list[tuple[int, bytes]] = []
        answers = iter([b"first", b'{"job_id": "x"}'])

        def answer(_: bytes) -> list[bytes]:
            body = next(answers)
            head = f"HTTP/1.1 202 Accepted\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n"
            return [head.encode()[:10], head.encode()[10:] + body[:2], body[2:]]

        async with _poster(answer, seen, b'{"type": "noop"}') as poster:
            assert await poster.post() == (202, b"first")
            assert await poster.post() == (202, b'{"job_id": "x"}')
        assert [c for c, _ in seen] == [1, 1]
        request = seen[0][1]
        assert request.startswith(b"POST /api/jobs HTTP/1.1\r\n")
        assert b"\r\nContent-Type: application/json\r\n" in request
        assert b"\r\nContent-Length: 16\r\n" in request
        assert request.endswith(b'\r\n\r\n{"type": "noop"}')

    asyncio.run(main())


def test_an_error_status_and_its_body_come_back_as_they_are():
    async def main() -> None:
        body = b'{"detail": "bad"}'
        answer = [b"HTTP/1.1 422 Unprocessable\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)]
        async with _poster(lambda _: answer, []) as poster:
            assert await poster.post() == (422, body)

    asyncio.run(main())


def test_an_answer_without_content_length_stops_the_benchmark():
    async def main() -> None:
        chunked = [b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"]
        async with _poster(lambda _: chunked, []) as poster:
            with pytest.raises(BenchError, match="without a status line or Content-Length"):
                await asyncio.wait_for(poster.post(), 5)

    asyncio.run(main())


def test_a_closed_connection_fails_the_post_and_the_next_one_reconnects():
    async def main() -> None:
        seen: list[tuple[int, bytes]] = []
        replies = iter([[], [b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"]])
        async with _poster(lambda _: next(replies), seen) as poster:
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(poster.post(), 5)
            assert await asyncio.wait_for(poster.post(), 5) == (202, b"ok")
        assert [c for c, _ in seen] == [1, 2]

    asyncio.run(main())


async def _closed(poster: Poster) -> None:
    """Until the poster's connection is closed (the server's close, or the client's own, has landed)."""

    async def closed() -> None:
        while not poster._connection.closed:  # noqa: SLF001
            await asyncio.sleep(0.01)

    await asyncio.wait_for(closed(), 5)


OK = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok"


def test_a_connection_the_server_closed_after_answering_is_reopened_without_an_error():
    async def main() -> None:
        seen: list[tuple[int, bytes]] = []
        async with _poster(lambda _: [OK, CLOSE], seen) as poster:
            assert await asyncio.wait_for(poster.post(), 5) == (202, b"ok")
            await _closed(poster)
            assert await asyncio.wait_for(poster.post(), 5) == (202, b"ok")
        assert [c for c, _ in seen] == [1, 2]

    asyncio.run(main())


def test_data_that_no_request_waits_for_closes_the_connection_instead_of_answering_the_next():
    async def main() -> None:
        seen: list[tuple[int, bytes]] = []
        stale = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
        replies = iter([[OK + stale], [OK, stale], [OK]])  # with the answer, then after it
        async with _poster(lambda _: next(replies), seen) as poster:
            for _ in range(2):
                assert await asyncio.wait_for(poster.post(), 5) == (202, b"ok")
                await _closed(poster)
            assert await asyncio.wait_for(poster.post(), 5) == (202, b"ok")  # not a stale 408
        assert [c for c, _ in seen] == [1, 2, 3]

    asyncio.run(main())


def test_an_answer_with_a_malformed_status_line_stops_the_benchmark():
    async def main() -> None:
        async with _poster(lambda _: [b"HTTP/1.1 2x2 Huh\r\nContent-Length: 0\r\n\r\n"], []) as poster:
            with pytest.raises(BenchError, match="malformed status"):
                await asyncio.wait_for(poster.post(), 5)

    asyncio.run(main())
