"""The gateway's OpenAPI document with one submission variant per registered job type.

The server validates a submission in two steps (the envelope by `JobSubmission`, then the payload by the
type's own model from the registry), so FastAPI alone would publish `payload` as a free object. This module
rebuilds `JobSubmission` in the document as a union discriminated on `type`, each variant carrying that
type's payload schema, from the same registry the server validates with and `/api/job-types` lists."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from contracts import JobSubmission, Resources
from contracts.models import NO_NUL
from observatory.jobs.registry import JobType, Registry

REF = "#/components/schemas/{model}"


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))


def variant(jt: JobType) -> type[BaseModel]:
    """`JobSubmission` for one type: `type` fixed to its name, `payload` its model (required when the
    model has required fields; otherwise `{}` by default, as the server fills in the defaults)."""
    required = any(f.is_required() for f in jt.payload_model.model_fields.values())
    payload: Any = (jt.payload_model, Field(...) if required else Field(default_factory=dict))
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{_camel(jt.name)}Submission",
        __base__=JobSubmission,
        __doc__=f"A `{jt.name}` job: {jt.description}" if jt.description else f"A `{jt.name}` job.",
        type=(Literal[jt.name], Field(description="The job type.")),  # type: ignore[valid-type]
        payload=payload,
        resources=_resources(jt),
    )


def _resources(jt: JobType) -> Any:
    """The variant's `resources`: bounded by the type's limits, or only null for an inline type."""
    field = JobSubmission.model_fields["resources"]
    most = jt.max_resources
    if most is None:
        return (None, Field(default=None, description="This type runs inside the processor: no resources."))
    own = jt.resources.model_dump_json() if jt.resources is not None else "{}"
    custom = create_model(  # type: ignore[call-overload]
        f"{_camel(jt.name)}CustomResources",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{name: (float, Field(default=0, ge=0, le=amount)) for name, amount in most.custom.items()},
    )
    bounded = create_model(  # type: ignore[call-overload]
        f"{_camel(jt.name)}Resources",
        __base__=Resources,
        __doc__=f"What a `{jt.name}` run may ask Ray for (the type's default: {own}).",
        cpus=(float, Field(default=0, ge=0, le=most.cpus)),
        memory_mib=(int, Field(default=0, ge=0, le=most.memory_mib)),
        gpus=(float, Field(default=0, ge=0, le=most.gpus)),
        custom=(custom, Field(default_factory=custom)),
    )
    return (bounded | None, Field(default=None, description=field.description))


def submission_schemas(registry: Registry) -> dict[str, Any]:
    """Component schemas: `JobSubmission` as the discriminated union, plus every variant and payload model."""
    variants = tuple(variant(jt) for jt in registry)
    union: Any = variants[0] if len(variants) == 1 else Annotated[Union[variants], Field(discriminator="type")]  # noqa: UP007
    schema = TypeAdapter(union).json_schema(ref_template=REF)
    components: dict[str, Any] = schema.pop("$defs", {})
    for name, component in components.items():
        if name.endswith("Payload") or name.endswith("Submission"):
            _no_nul(component)
    schema["description"] = (
        "A job to run: `type` selects one of the registered job types (GET /api/job-types), and `payload` "
        "must match that type's schema."
    )
    components["JobSubmission"] = schema
    return components


def _no_nul(schema: Any) -> None:
    """Every free string of a payload refuses NUL characters (the server does, see Registry.validate)."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & schema.keys():
            schema["pattern"] = NO_NUL
        for value in schema.values():
            _no_nul(value)
    elif isinstance(schema, list):
        for value in schema:
            _no_nul(value)


def typed_submissions(app: FastAPI, registry: Registry) -> None:
    """Make `app.openapi()` publish the per-type submission union (built once, then cached by FastAPI)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = plain()
            document["components"]["schemas"].update(submission_schemas(registry))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
