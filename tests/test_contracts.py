from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import JobStatus, Stats
from contracts.export import render, stale
from contracts.versions import FIXTURE_DIR, REGISTRY, schema_path


def _fixtures(kind: str) -> list[Path]:
    return sorted((FIXTURE_DIR / kind).glob("*.json"))


def test_checked_in_schemas_match_the_models():
    assert stale() == [], "run `python -m contracts.export` and commit contracts/schemas/"


def test_every_registered_contract_has_a_versioned_schema():
    for name, (_, version) in REGISTRY.items():
        schema = json.loads(schema_path(name).read_text())
        assert schema["x-contract-version"] == version
        assert schema["$id"].endswith(f"/{name}/{version}.json")
        assert render(name) == schema_path(name).read_text()


@pytest.mark.parametrize("path", _fixtures("valid"), ids=lambda p: p.stem)
def test_golden_valid_fixture_is_accepted(path: Path):
    model, _ = REGISTRY[path.stem.split("__")[0]]
    model.model_validate_json(path.read_text())


@pytest.mark.parametrize("path", _fixtures("invalid"), ids=lambda p: p.stem)
def test_golden_invalid_fixture_is_rejected(path: Path):
    model, _ = REGISTRY[path.stem.split("__")[0]]
    with pytest.raises(ValidationError):
        model.model_validate_json(path.read_text())


def test_stats_from_counts_totals_by_status_and_type():
    counts = {("hash", JobStatus.COMPLETED): 3, ("hash", JobStatus.FAILED): 1, ("sleep", JobStatus.PENDING): 2}

    stats = Stats.from_counts(counts, None, "store")

    assert (stats.total_jobs, stats.completed, stats.failed, stats.pending, stats.running) == (6, 3, 1, 2, 0)
    assert stats.by_type["hash"].total == 4
    assert stats.by_type["sleep"].pending == 2
