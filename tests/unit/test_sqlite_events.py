"""The embedded event store: what the shared conformance suite (tests/test_event_store.py) leaves unpinned."""

from __future__ import annotations

import pytest

from observatory.adapters.sqlite_events import SQLiteEventStore
from observatory.errors import EventStoreUnavailable


def test_unusable_file_is_an_event_store_unavailable_error(tmp_path):
    with pytest.raises(EventStoreUnavailable):
        SQLiteEventStore(tmp_path).setup()  # a folder, not a database file
