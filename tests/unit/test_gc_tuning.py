"""The services' garbage collector: requests' objects, freed by reference counting, trigger no collection."""

from __future__ import annotations

import gc

from observatory import gc_tuning


def test_many_objects_alive_at_once_trigger_no_collection_once_tuned():
    before, runs = gc.get_threshold(), []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc_tuning.tune()
    gc.callbacks.append(count)
    try:
        assert gc.get_freeze_count() > 0  # what the process held is frozen: never scanned again
        in_flight = [{"request": i} for i in range(20_000)]  # 16 requests' worth of dicts, lists, models
        del in_flight
        assert runs == []
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)
        gc.unfreeze()
