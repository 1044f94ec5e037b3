"""Run as a separate process: take one message without acking it, then die without any clean-up."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from observatory.ports import Bus, Delivery


def make_bus(kind: str, where: str, lease_s: float, inline_types: tuple[str, ...] = ()) -> Bus:
    if kind == "rabbitmq":
        from observatory.adapters.rabbitmq import RabbitBus

        url, ns = where.split(" ", 1)
        return RabbitBus(url, ns, inline_types)
    from observatory.adapters.sqlite_bus import SQLiteBus

    return SQLiteBus(Path(where), lease_s=lease_s, inline_types=inline_types)


def main() -> None:
    kind, where, lease_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    bus = make_bus(kind, where, lease_s)

    def on_message(d: Delivery) -> None:
        print("took", flush=True)
        os._exit(0)  # no ack, no close: like a SIGKILL mid-job

    bus.consume("jobs", on_message, 1, threading.Event())


if __name__ == "__main__":
    main()
