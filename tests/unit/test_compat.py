"""The contract compatibility gate (contracts/compat.py): what counts as breaking, and the bump policy."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from contracts.compat import breaking_changes, check, main

DATA = Path(__file__).parent.parent / "data" / "compat"
RELEASED = DATA / "released"
BUMPED_CHANGELOG = DATA / "breaking_bumped" / "CHANGELOG.md"


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A pydantic-style object schema."""
    return {"type": "object", "properties": properties, "required": required or [], **extra}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    """How pydantic writes `X | None = None`."""
    return {"anyOf": [schema, {"type": "null"}], "default": None}


LIMIT = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
MODE = {"enum": ["fast", "slow"], "type": "string"}
BASE = _object({"name": {"type": "string"}, "limit": LIMIT, "mode": MODE, "note": _optional({"type": "string"})})


def _changed(edit: Any) -> dict[str, Any]:
    """A copy of BASE with `edit` applied to it."""
    schema = copy.deepcopy(BASE)
    edit(schema)
    return schema


# --- breaking_changes: each breaking rule ---------------------------------------------------------------------


# (what changed, the change, the findings): one row per rule of contracts/compat.py
BREAKING = [
    pytest.param(
        lambda s: s["properties"].pop("name"),
        ["properties.name: property removed"],
        id="a_removed_property_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"].update(full_name=s["properties"].pop("name")),
        ["properties.name: property removed"],
        id="a_renamed_property_is_a_removal",
    ),
    pytest.param(
        lambda s: s["required"].append("limit"),
        ["properties.limit: newly required"],
        id="an_existing_property_newly_required_is_breaking",
    ),
    pytest.param(
        lambda s: (s["properties"].update(owner={"type": "string"}), s["required"].append("owner")),
        ["properties.owner: newly required"],
        id="a_new_required_property_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["name"].update(type="integer"),
        ["properties.name: type narrowed, no longer accepts string"],
        id="a_changed_type_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"].update(note={"type": "string"}),
        ["properties.note: type narrowed, no longer accepts null"],
        id="dropping_null_from_an_optional_field_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["mode"]["enum"].remove("slow"),
        ['properties.mode: enum value "slow" removed'],
        id="a_removed_enum_value_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["name"].update(enum=["x"]),
        ['properties.name: now limited to the values "x"'],
        id="a_free_field_limited_to_an_enum_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["limit"].update(maximum=1000),
        ["properties.limit: maximum lowered 1000000 -> 1000"],
        id="a_lowered_maximum_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["limit"].update(minimum=10),
        ["properties.limit: minimum raised 1 -> 10"],
        id="a_raised_minimum_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["name"].update(maxLength=64),
        ["properties.name: maxLength added 64"],
        id="a_new_bound_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["note"]["anyOf"][0].update(minLength=1),
        ["properties.note.anyOf[0]: minLength added 1"],
        id="a_bound_inside_an_optional_field_is_found",
    ),
    pytest.param(
        lambda s: s.update(additionalProperties=False),
        ["additionalProperties: changed from allowed to false"],
        id="additional_properties_turned_false_is_breaking",
    ),
    pytest.param(
        lambda s: s["properties"]["name"].update(pattern="^[a-z]+$"),
        ['properties.name: pattern added "^[a-z]+$"'],
        id="an_added_pattern_is_breaking",
    ),
]
ADDITIVE = [
    pytest.param(
        lambda s: s["properties"].update(tags=_optional({"type": "array", "items": {"type": "string"}})),
        id="a_new_optional_property_is_additive",
    ),
    pytest.param(lambda s: s["properties"]["mode"]["enum"].append("auto"), id="a_new_enum_value_is_additive"),
    pytest.param(
        lambda s: (s["properties"]["limit"].update(maximum=10**9), s["properties"]["limit"].pop("minimum")),
        id="a_relaxed_bound_is_additive",
    ),
    pytest.param(
        lambda s: s["properties"].update(name=_optional({"type": "string"})), id="a_field_made_nullable_is_additive"
    ),
    pytest.param(
        lambda s: s["properties"]["name"].update(title="Name", description="Who", default="x"),
        id="annotations_do_not_count",
    ),
]


@pytest.mark.parametrize(("change", "findings"), BREAKING)
def test_a_breaking_change_is_found(change, findings):
    assert breaking_changes(BASE, _changed(change)) == findings


@pytest.mark.parametrize("change", ADDITIVE)
def test_an_additive_schema_change_passes(change):
    assert breaking_changes(BASE, _changed(change)) == []


def test_dropping_a_type_from_a_type_list_is_breaking():
    old = _object({"id": {"type": ["string", "integer"]}})
    new = _object({"id": {"type": "string"}})

    assert breaking_changes(old, new) == ["properties.id: type narrowed, no longer accepts integer"]


def test_a_changed_const_is_breaking():
    old = _object({"kind": {"const": "a", "type": "string"}})
    new = _object({"kind": {"const": "b", "type": "string"}})

    assert breaking_changes(old, new) == ['properties.kind: const changed "a" -> "b"']


def test_a_changed_format_is_breaking():
    old = _object({"at": {"type": "string", "format": "date"}})
    new = _object({"at": {"type": "string", "format": "date-time"}})

    assert breaking_changes(old, new) == ['properties.at: format changed "date" -> "date-time"']


def test_a_change_inside_a_defs_model_is_found_through_the_ref():
    def schema(maximum: int) -> dict[str, Any]:
        item = _object({"size": {"type": "integer", "maximum": maximum}})
        return {**_object({"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}), "$defs": {"Item": item}}

    findings = breaking_changes(schema(100), schema(10))

    assert findings == ["properties.items.items.properties.size: maximum lowered 100 -> 10"]


def test_a_recursive_model_is_compared_without_looping():
    def schema(maximum: int) -> dict[str, Any]:
        node = _object({"value": {"type": "integer", "maximum": maximum}, "children": {"items": {"$ref": "#/$defs/N"}}})
        return {"$defs": {"N": node}, "$ref": "#/$defs/N"}

    assert breaking_changes(schema(9), schema(5)) == ["properties.value: maximum lowered 9 -> 5"]


def _union(*names: str) -> dict[str, Any]:
    defs = {n: _object({"kind": {"const": n.lower(), "type": "string"}}, ["kind"]) for n in names}
    mapping = {n.lower(): f"#/$defs/{n}" for n in names}
    discriminator = {"propertyName": "kind", "mapping": mapping}
    union = {"oneOf": [{"$ref": f"#/$defs/{n}"} for n in names], "discriminator": discriminator}
    return {**_object({"shape": union}), "$defs": defs}


def test_a_removed_discriminator_value_is_breaking():
    assert breaking_changes(_union("Circle", "Square"), _union("Circle")) == [
        'properties.shape: discriminator value "square" removed'
    ]


def test_a_removed_anyof_variant_is_breaking():
    old = _object({"x": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "string", "pattern": "^a"}]}})
    new = _object({"x": {"anyOf": [{"type": "string", "maxLength": 3}]}})

    assert breaking_changes(old, new) == ["properties.x: anyOf[1] (type string) removed"]


# --- breaking_changes: additive changes pass ------------------------------------------------------------------


def test_the_same_schema_has_no_breaking_change():
    assert breaking_changes(BASE, copy.deepcopy(BASE)) == []


def test_a_required_field_made_optional_is_additive():
    old = _changed(lambda s: s["required"].append("name"))

    assert breaking_changes(old, BASE) == []


def test_a_new_discriminator_value_is_additive():
    assert breaking_changes(_union("Circle"), _union("Circle", "Square")) == []


def test_variants_folded_into_a_wider_type_are_additive():
    old = _object({"n": {"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]}})
    new = _object({"n": {"type": "number"}})

    assert breaking_changes(old, new) == []


# --- check(): the bump policy, on the fixtures in tests/data/compat ----------------------------------------------


def test_an_additive_change_passes(tmp_path):
    assert check(RELEASED, DATA / "additive", tmp_path / "CHANGELOG.md") == []


def test_a_breaking_change_fails_naming_the_fields(tmp_path):
    problems = check(RELEASED, DATA / "breaking", tmp_path / "CHANGELOG.md")

    assert len(problems) == 2
    assert problems[0].startswith("job_submission: properties.max_attempts: maximum lowered 20 -> 10")
    assert problems[1].startswith("job_submission: properties.timeout_s: property removed")
    assert all("bump job_submission to 2.0 in contracts/versions.py" in p for p in problems)


def test_a_breaking_change_with_a_major_bump_and_a_changelog_entry_passes():
    assert check(RELEASED, DATA / "breaking_bumped", BUMPED_CHANGELOG) == []


def test_a_major_bump_without_a_changelog_entry_fails(tmp_path):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Contract changelog\n\n### job 2.0\n")  # another contract: does not count

    problems = check(RELEASED, DATA / "breaking_bumped", changelog)

    assert len(problems) == 2
    assert all("bumped to 2.0, but describe the change" in p and "`job_submission 2.0`" in p for p in problems)


def test_a_changelog_entry_without_a_major_bump_fails():
    problems = check(RELEASED, DATA / "breaking", BUMPED_CHANGELOG)

    assert len(problems) == 2
    assert all("bump job_submission to 2.0" in p for p in problems)


def test_a_version_that_went_down_fails(tmp_path):
    current = tmp_path / "current"
    current.mkdir()
    text = (RELEASED / "job_submission.json").read_text()
    (current / "job_submission.json").write_text(text.replace('"1.1"', '"1.0"'))

    problems = check(RELEASED, current, tmp_path / "CHANGELOG.md")

    assert problems == ["job_submission: version went down 1.1 -> 1.0; versions only go up"]


def test_a_removed_contract_fails(tmp_path):
    problems = check(RELEASED, tmp_path, tmp_path / "CHANGELOG.md")

    assert len(problems) == 1
    assert problems[0].startswith("job_submission: contract removed")


def test_a_new_contract_passes(tmp_path):
    shutil.copytree(RELEASED, tmp_path / "current")
    (tmp_path / "current" / "brand_new.json").write_text('{"type": "object", "x-contract-version": "1.0"}')

    assert check(RELEASED, tmp_path / "current", tmp_path / "CHANGELOG.md") == []


# --- main() -----------------------------------------------------------------------------------------------------


def test_main_prints_the_problems_and_fails(tmp_path, capsys):
    code = main(["--released", str(RELEASED), "--current", str(DATA / "breaking"), "--changelog", str(tmp_path / "C")])

    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert "properties.timeout_s: property removed" in err


def test_main_passes_on_the_repository_as_it_is(capsys):
    code = main([])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.startswith("contracts compatible with the released baseline (")


def test_release_copies_the_current_schemas_into_the_baseline(tmp_path, capsys):
    released = tmp_path / "released"
    shutil.copytree(RELEASED, released)
    args = ["--released", str(released), "--current", str(DATA / "additive"), "--changelog", str(tmp_path / "C")]

    code = main([*args, "--release"])

    assert code == 0
    assert (released / "job_submission.json").read_text() == (DATA / "additive" / "job_submission.json").read_text()
    assert "released 1 contracts" in capsys.readouterr().out


def test_release_refuses_a_failing_gate(tmp_path, capsys):
    released = tmp_path / "released"
    shutil.copytree(RELEASED, released)
    args = ["--released", str(released), "--current", str(DATA / "breaking"), "--changelog", str(tmp_path / "C")]

    code = main([*args, "--release"])

    assert code == 1
    assert (released / "job_submission.json").read_text() == (RELEASED / "job_submission.json").read_text()
    assert "not released" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "found"),
    [("## job_submission 2.0", True), ("- job_submission: 2.0 drops timeout_s", True), ("job_submission 12.0", False)]
    + [("job_submission 2.0.1", False), ("batch_job_submission 2.0", False), ("job_submission 1.9", False)],
)
def test_the_changelog_entry_names_the_contract_and_the_version(tmp_path, line, found):
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(f"# Contract changelog\n\n{line}\n")

    assert (check(RELEASED, DATA / "breaking_bumped", changelog) == []) is found
