"""A consume loop on its own thread that reconnects with backoff: shared by every consuming actor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import retry, retry_if_exception_type, stop_never, wait_exponential

from observatory.errors import BusUnavailable
from observatory.ports import Bus, Delivery

log = logging.getLogger(__name__)

RECONNECT_MAX_WAIT_S = 10.0  # cap of the exponential backoff between reconnects to the broker


class ConsumerLoop:
    def __init__(
        self,
        bus: Bus,
        queue: str,
        on_message: Callable[[Delivery], None],
        prefetch: int,
        name: str,
        drain_s: float = 0.0,
    ) -> None:
        """`drain_s`: after a stop, how long the loop keeps its connection for the messages handed over to be
        settled (acked after their commit), instead of handing them back to the queue at once."""
        self._bus, self._queue, self._on_message, self._prefetch = bus, queue, on_message, prefetch
        self._drain_s = drain_s
        self._stop = threading.Event()
        self.connected = False
        self._thread = threading.Thread(target=self._run, name=f"{name}-consume", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.join(timeout)

    def request_stop(self) -> None:
        """Take no more messages (those in hand are still settled, for up to `drain_s`)."""
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait for the loop to end; whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        @retry(
            stop=stop_never,
            wait=wait_exponential(multiplier=0.2, max=RECONNECT_MAX_WAIT_S),
            retry=retry_if_exception_type(BusUnavailable),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "consumer on %s reconnecting: %s", self._queue, rs.outcome.exception() if rs.outcome else ""
            ),
        )
        def consume() -> None:
            self.connected = True
            try:
                self._bus.consume(self._queue, self._on_message, self._prefetch, self._stop, self._drain_s)
            finally:
                self.connected = False

        consume()
