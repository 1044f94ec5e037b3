"""The tolerant reader of the event contract: newer minors are read, other majors refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts import CONTRACT_VERSION, EventEnvelope

COMPLETED = Path(__file__).parents[2] / "contracts" / "fixtures" / "valid" / "event_envelope__completed.json"


def event(version: str, **extra: Any) -> dict[str, Any]:
    data = json.loads(COMPLETED.read_text())
    data["contract_version"] = version
    data.update(extra)
    return data


def test_a_newer_minor_is_read_without_the_fields_it_added():
    data = event("1.9", trace_flags="01")
    data["payload"]["priority"] = 5
    data["producer"]["region"] = "eu"

    e = EventEnvelope.model_validate_json(json.dumps(data))

    assert e.contract_version == "1.9" and e.payload.result == {"sha256": "00", "rounds": 2}
    dumped = json.loads(e.model_dump_json())
    assert "trace_flags" not in dumped and "priority" not in dumped["payload"] and "region" not in dumped["producer"]


@pytest.mark.parametrize("version", ["1.0", "1.1", CONTRACT_VERSION])
def test_a_known_version_still_refuses_unknown_fields(version):
    with pytest.raises(ValidationError, match="trace_flags"):
        EventEnvelope.model_validate(event(version, trace_flags="01"))


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.1"])
def test_another_major_is_refused_naming_both_versions(version):
    with pytest.raises(ValidationError) as e:
        EventEnvelope.model_validate_json(json.dumps(event(version)))
    message = str(e.value)
    assert f"contract version {version} has an unknown major version" in message and CONTRACT_VERSION in message


@pytest.mark.parametrize("version", ["1", "1.x", "", "v1.2", 1.2])
def test_a_malformed_version_is_refused(version):
    with pytest.raises(ValidationError, match="MAJOR.MINOR"):
        EventEnvelope.model_validate(event(version))


def test_a_newer_minor_still_needs_every_field_this_reader_requires():
    data = event("1.9")
    del data["payload"]["job_id"]
    with pytest.raises(ValidationError, match="job_id"):
        EventEnvelope.model_validate(data)
