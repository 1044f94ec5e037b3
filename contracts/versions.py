"""Version registry: every exported contract, its version, and where its JSON Schema lives."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from contracts import models, workers

SCHEMA_DIR = Path(__file__).parent / "schemas"
FIXTURE_DIR = Path(__file__).parent / "fixtures"

# name -> (model, version). Bump the version on any incompatible change and re-export.
REGISTRY: dict[str, tuple[type[BaseModel], str]] = {
    "job_submission": (models.JobSubmission, "2.1"),
    "batch_submission": (models.BatchSubmission, "2.1"),
    "job_accepted": (models.JobAccepted, "1.0"),
    "job": (models.Job, "1.2"),
    "dead_letter": (models.DeadLetter, "1.0"),
    "event_envelope": (models.EventEnvelope, models.CONTRACT_VERSION),
    "event_batch": (models.EventBatch, "1.0"),
    "stats": (models.Stats, "1.1"),
    "error_response": (models.ErrorResponse, "1.0"),
    "alert_list": (models.AlertList, "1.0"),
    "stream_snapshot": (models.StreamSnapshot, "1.1"),
    "workers_view": (workers.WorkersView, "1.0"),
}


def schema_for(name: str) -> dict[str, object]:
    model, version = REGISTRY[name]
    schema = model.model_json_schema()
    schema["$id"] = f"https://observatory.local/schemas/{name}/{version}.json"
    schema["x-contract-version"] = version
    return schema


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.json"
