"""Job types: a registry of plain handler functions, each with its own pydantic payload model."""

from observatory.jobs.registry import JobType, Registry, default_registry, job_type

__all__ = ["JobType", "Registry", "default_registry", "job_type"]
