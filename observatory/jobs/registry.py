"""The job-type registry.

Built-in types live one per module in `observatory.jobs.builtin` and register themselves on import.
Third-party packages add types through the `observatory.job_types` entry-point group, whose entries
point at a module (imported for its `@job_type` side effect) or at a `JobType` object.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from contracts.models import Resources, json_numbers
from observatory.errors import InvalidSubmission

ENTRY_POINT_GROUP = "observatory.job_types"

Handler = Callable[[Any], Any]

DEFAULT_RESOURCES = Resources(cpus=1)  # an isolated handler that says nothing takes one core
CPU_BOUND_LIMIT = Resources(cpus=4, memory_mib=4096)  # what a submission may ask for the CPU-bound built-ins


@dataclass(frozen=True)
class JobType:
    name: str
    description: str
    payload_model: type[BaseModel]
    handler: Handler
    default_timeout_s: float = 300.0
    # True: each run is its own Ray task, so a timeout or a cancel kills it for real (the default). False: it
    # runs inside the processor, in micro-batches, for short work where a Ray task would cost more than the
    # job; its timeout and cancellation are then not enforced while it runs.
    isolated: bool = True
    # What each run's Ray task asks for, and the most a submission may ask for (None for inline types).
    resources: Resources | None = None
    max_resources: Resources | None = None

    def run(self, payload: dict[str, Any]) -> Any:
        return self.handler(self.payload_model.model_validate(payload))


_DECLARED: dict[str, JobType] = {}


def _nul_at(value: Any, path: tuple[str | int, ...] = ()) -> list[str | int] | None:
    """Where the first NUL character is (in a key or a string), or None: no store can keep one."""
    if isinstance(value, str):
        return list(path) if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return [*path, key]
        found = _nul_at(item, (*path, key))
        if found is not None:
            return found
    return None


def job_type(
    name: str,
    payload_model: type[BaseModel],
    description: str = "",
    default_timeout_s: float = 300.0,
    isolated: bool = True,
    resources: Resources | None = None,
    max_resources: Resources | None = None,
) -> Callable[[Handler], Handler]:
    """Decorator: register `handler` as job type `name`, taking a validated `payload_model`. An isolated
    type's runs ask Ray for `resources` (default one CPU); a submission may ask for up to `max_resources`
    (default: no more than `resources`). Inline types run inside the processor and take neither."""
    if not isolated and (resources or max_resources):
        raise ValueError(f"job type {name!r} runs inside the processor: it cannot ask for resources")
    own = (resources or DEFAULT_RESOURCES) if isolated else None
    most = (max_resources or own) if isolated else None
    if own is not None and most is not None and (over := own.exceeds(most)):
        raise ValueError(f"job type {name!r}: its resources exceed its max_resources ({over[0][0]})")

    def register(handler: Handler) -> Handler:
        doc = description or (handler.__doc__ or "").strip().splitlines()[0]
        _DECLARED[name] = JobType(name, doc, payload_model, handler, default_timeout_s, isolated, own, most)
        return handler

    return register


class Registry:
    def __init__(self, types: dict[str, JobType]) -> None:
        self._types = dict(sorted(types.items()))

    @property
    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def __iter__(self):  # noqa: ANN204 - iterator of JobType
        return iter(self._types.values())

    def validate(self, name: str, payload: dict[str, Any], loc: list[str | int]) -> dict[str, Any]:
        """Check a payload at the edge; returns it normalised (defaults filled in)."""
        jt = self._types.get(name)
        if jt is None:
            known = ", ".join(self._types)
            raise InvalidSubmission(
                f"unknown job type {name!r}; known types: {known}",
                [([*loc, "type"], f"unknown job type {name!r}; known types: {known}")],
            )
        try:
            # Strict, as JSON: what the published schema says is an integer must arrive as one (no "5" -> 5),
            # while JSON's own encodings (date-time and uuid strings) still parse.
            raw = json.dumps(json_numbers(payload))
            valid = jt.payload_model.model_validate_json(raw, strict=True).model_dump(mode="json")
        except ValidationError as e:
            details = [([*loc, "payload", *err["loc"]], err["msg"]) for err in e.errors()]
            raise InvalidSubmission(f"invalid payload for job type {name!r}", details) from None
        nul = _nul_at(valid)  # in what is kept: fields the model ignores are dropped, NULs and all
        if nul is not None:
            where = [*loc, "payload", *nul]
            raise InvalidSubmission(
                f"invalid payload for job type {name!r}", [(where, "NUL characters are not allowed")]
            )
        return valid

    def resources(self, name: str, asked: Resources | None, loc: list[str | int]) -> Resources | None:
        """What a run of this submission asks Ray for: the type's defaults, with the fields `asked` gives
        replaced, within the type's limits (InvalidSubmission beyond them)."""
        jt = self._types[name]
        if jt.resources is None or jt.max_resources is None:
            if asked is not None:
                msg = f"job type {name!r} runs inside the processor and takes no resources"
                raise InvalidSubmission(msg, [([*loc, "resources"], msg)])
            return None
        if asked is None:
            return jt.resources
        given = asked.model_dump(include=asked.model_fields_set)
        if "custom" in given:
            given["custom"] = {**jt.resources.custom, **asked.custom}
        merged = Resources.model_validate({**jt.resources.model_dump(), **given})
        if over := merged.exceeds(jt.max_resources):
            details = [([*loc, "resources", *field.split(".", 1)], msg) for field, msg in over]
            raise InvalidSubmission(f"resources beyond what job type {name!r} allows", details)
        return merged

    def run(self, name: str, payload: dict[str, Any]) -> Any:
        jt = self._types.get(name)
        if jt is None:
            raise KeyError(name)
        return jt.run(payload)


def _load_builtins() -> None:
    from observatory.jobs import builtin

    for mod in pkgutil.iter_modules(builtin.__path__):
        importlib.import_module(f"{builtin.__name__}.{mod.name}")


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        if isinstance(obj, JobType):
            _DECLARED[obj.name] = obj


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    _load_builtins()
    _load_entry_points()
    return Registry(_DECLARED)
