"""Contract compatibility gate: the exported schemas against the last release (`python -m contracts.compat`).

`contracts/released/` holds the JSON Schemas of the last release; `contracts/schemas/` holds the current ones.
`breaking_changes(old, new)` lists what a client written against `old` could trip over in `new`, after
resolving local `$ref`s on both sides. Breaking:

- a property removed (a rename is a removal plus an addition);
- a property newly listed in `required`, whether the property is new or not;
- a type narrowed: a JSON type that was accepted (`type`, `anyOf`/`oneOf` branches incl. `null`, the type
  of a `const`/`enum`) no longer is; `integer` counts as covered by `number`;
- an enum value removed, a `const` changed, or a field that took any value now limited to some;
- a bound tightened: `minimum`/`exclusiveMinimum`/`minLength`/`minItems`/`minProperties` raised or added,
  `maximum`/`exclusiveMaximum`/`maxLength`/`maxItems`/`maxProperties` lowered or added;
- `additionalProperties` turned `false` (or given a narrower schema), `pattern`/`format` added or changed,
  `multipleOf`/`uniqueItems` added;
- an `anyOf`/`oneOf` variant removed, or, for a discriminated union, a discriminator value removed.

Widening is additive and passes: a new optional property, a new enum value, a new variant, a bound relaxed
or dropped, a field made optional or nullable. That is the conventional reading for what clients *send*.
The schemas also describe what clients *receive*, where a new enum value can surprise a strict reader; we
accept that on purpose and expect readers to tolerate unknown values. Annotations (`title`, `description`,
`default`, `examples`, `$id`) never count. The check is conservative where schemas say the same thing in
different words (`exclusiveMinimum: 0` -> `minimum: 1` on an integer is reported).

`check()` applies the policy: a contract with breaking changes passes only when its `x-contract-version`
has a higher MAJOR than the released one and `contracts/CHANGELOG.md` has a line naming the contract and
the new version (`## job_submission 2.0`). A version that went down, or a released contract that is gone,
always fails. New contracts pass. `--release` (run when cutting a release) re-runs the gate and, when it
passes, copies the current schemas into `contracts/released/`, which becomes the new baseline.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

PACKAGE_DIR = Path(__file__).parent
RELEASED_DIR = PACKAGE_DIR / "released"
CURRENT_DIR = PACKAGE_DIR / "schemas"
CHANGELOG = PACKAGE_DIR / "CHANGELOG.md"
VERSION_KEY = "x-contract-version"

UNION_KEYS = ("anyOf", "oneOf")
# Keywords that never change what validates; they are not merged into union branches.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment", "$id"}
    | {"$schema", "$defs", "definitions", "discriminator", VERSION_KEY}
)
LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


# --- schema helpers -------------------------------------------------------------------------------------------


def _as_schema(node: Any) -> Schema:
    """JSON Schema allows `true` (anything) and `false` (nothing) as schemas; give both the dict form."""
    if node is False:
        return {"not": {}}
    return node if isinstance(node, dict) else {}


def _pointer(root: Schema, ref: str) -> Any:
    """The node a local `#/...` JSON pointer names, or None."""
    node: Any = root
    for part in [p.replace("~1", "/").replace("~0", "~") for p in ref[1:].split("/") if p]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _resolve(node: Any, root: Schema) -> tuple[Schema, str | None]:
    """Follow local `$ref`s (and a lone `allOf` wrapper); returns the schema and the first ref followed."""
    schema = _as_schema(node)
    first: str | None = None
    seen: set[str] = set()
    while True:
        if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            schema = {**rest, **_as_schema(schema["allOf"][0])}
            continue
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#") or ref in seen:
            return schema, first
        target = _pointer(root, ref)
        if target is None:
            return schema, first
        seen.add(ref)
        first = first or ref
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**_as_schema(target), **siblings} if siblings else _as_schema(target)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _is_union(schema: Schema) -> bool:
    types = schema.get("type")
    return any(k in schema for k in UNION_KEYS) or (isinstance(types, list) and len(types) > 1)


def _covered(json_type: str, types: frozenset[str] | None) -> bool:
    """Whether a value of `json_type` is accepted by `types` (None: any type)."""
    return types is None or json_type in types or (json_type == "integer" and "number" in types)


def _join(path: str, *parts: str) -> str:
    return ".".join(p for p in (path, *parts) if p)


def _at(path: str, message: str) -> str:
    return f"{path or '(root)'}: {message}"


# --- union branches -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Branch:
    """One alternative of a node: `anyOf`/`oneOf` branch, one type of a type list, or the node itself."""

    raw: Schema  # unresolved, so a `$ref` inside still reaches the recursion guard
    key: tuple[str, str]  # how branches are matched: ("$ref", name), ("const", value) or ("type", types)
    types: frozenset[str] | None
    label: str  # "anyOf[1]" for a union branch, "" otherwise


def _type_set(schema: Schema, root: Schema) -> frozenset[str] | None:
    """The JSON types a schema accepts; None when it accepts any."""
    if _is_union(schema):
        sets = [b.types for b in _branches(schema, root)]
        return None if any(s is None for s in sets) else frozenset().union(*[s for s in sets if s is not None])
    if schema.get("not") == {}:
        return frozenset()
    if isinstance(schema.get("type"), str):
        return frozenset({schema["type"]})
    if isinstance(schema.get("type"), list):
        return frozenset(schema["type"])
    if "const" in schema:
        return frozenset({_json_type(schema["const"])})
    if isinstance(schema.get("enum"), list):
        return frozenset(_json_type(v) for v in schema["enum"])
    return None


def _branch_key(raw: Schema, resolved: Schema, types: frozenset[str] | None) -> tuple[str, str]:
    if isinstance(raw.get("$ref"), str):
        return ("$ref", raw["$ref"].rsplit("/", 1)[-1])
    if "const" in resolved:
        return ("const", _dump(resolved["const"]))
    return ("type", ",".join(sorted(types)) if types is not None else "*")


def _branches(schema: Schema, root: Schema) -> list[_Branch]:
    """A node's alternatives; keywords beside `anyOf`/`oneOf` apply to every branch, so they are merged in."""
    outer = {k: v for k, v in schema.items() if k not in UNION_KEYS and k not in ANNOTATIONS}
    raws = [(f"{k}[{i}]", {**outer, **_as_schema(b)}) for k in UNION_KEYS for i, b in enumerate(schema.get(k, []))]
    branches: list[_Branch] = []
    for label, raw in raws or [("", outer)]:
        resolved = _resolve(raw, root)[0]
        types = resolved.get("type")
        if isinstance(types, list) and len(types) > 1 and not any(k in resolved for k in UNION_KEYS):
            for single in types:
                part = {**resolved, "type": single}
                branches.append(_Branch(part, ("type", single), frozenset({single}), label))
            continue
        type_set = _type_set(resolved, root)
        branches.append(_Branch(raw, _branch_key(raw, resolved, type_set), type_set, label))
    return branches


def _same_key(old: _Branch, new: _Branch) -> bool:
    return old.key == new.key


def _same_types(old: _Branch, new: _Branch) -> bool:
    return old.types == new.types


def _widens(old: _Branch, new: _Branch) -> bool:
    """`new` accepts every type of `old` and more (integer -> number, string -> any)."""
    if old.types == new.types:
        return False
    return new.types is None or (old.types is not None and all(_covered(t, new.types) for t in old.types))


def _match(old: list[_Branch], new: list[_Branch]) -> dict[int, _Branch]:
    """Old branch index -> the new branch it became: same ref/const/type first, then same types, then a new
    branch of wider types (several old branches may merge into one: integer | number -> number)."""
    pairs: dict[int, _Branch] = {}
    free = list(new)
    for test, pool in ((_same_key, free), (_same_types, free), (_widens, new)):
        for i, branch in enumerate(old):
            found = next((b for b in pool if i not in pairs and test(branch, b)), None)
            if found is not None:
                pairs[i] = found
                free[:] = [b for b in free if b is not found]
    return pairs


# --- the comparison -------------------------------------------------------------------------------------------


@dataclass
class _Walk:
    old_root: Schema
    new_root: Schema
    # Pairs being compared further up the stack; meeting one again means a recursive model, so stop there.
    active: set[tuple[object, object]] = field(default_factory=set)


def _compare(old_raw: Any, new_raw: Any, path: str, walk: _Walk) -> list[str]:
    old, old_ref = _resolve(old_raw, walk.old_root)
    new, new_ref = _resolve(new_raw, walk.new_root)
    key = (old_ref or id(old), new_ref or id(new))
    if key in walk.active:
        return []
    walk.active.add(key)
    try:
        if _is_union(old) or _is_union(new):
            return _compare_unions(old, new, path, walk)
        return _compare_plain(old, new, path, walk)
    finally:
        walk.active.discard(key)


def _mapping(schema: Schema) -> dict[str, str] | None:
    discriminator = schema.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(discriminator.get("mapping"), dict):
        return discriminator["mapping"]
    return None


def _compare_discriminated(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    old_map, new_map = _mapping(old) or {}, _mapping(new) or {}
    label = "oneOf" if "oneOf" in old else "anyOf"
    findings: list[str] = []
    old_prop, new_prop = old["discriminator"].get("propertyName"), new["discriminator"].get("propertyName")
    if old_prop != new_prop:
        findings.append(_at(path, f"discriminator property changed {old_prop} -> {new_prop}"))
    for value, ref in old_map.items():
        if value not in new_map:
            findings.append(_at(path, f"discriminator value {_dump(value)} removed"))
        else:
            findings += _compare({"$ref": ref}, {"$ref": new_map[value]}, _join(path, f"{label}[{value}]"), walk)
    return findings


def _compare_unions(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    if _mapping(old) is not None and _mapping(new) is not None:
        return _compare_discriminated(old, new, path, walk)
    old_branches, new_branches = _branches(old, walk.old_root), _branches(new, walk.new_root)
    pairs = _match(old_branches, new_branches)
    new_types = _type_set(new, walk.new_root)
    findings: list[str] = []
    for i, branch in enumerate(old_branches):
        if i in pairs:
            findings += _compare(branch.raw, pairs[i].raw, _join(path, branch.label), walk)
        elif lost := _lost_types(branch.types, new_types):
            findings.append(_at(path, f"type narrowed, no longer accepts {lost}"))
        elif not _subsumed(branch, new_branches, path, walk):
            findings.append(_at(path, f"{branch.label or 'variant'} ({_describe(branch)}) removed"))
    return findings


def _subsumed(branch: _Branch, new_branches: list[_Branch], path: str, walk: _Walk) -> bool:
    """Whether a new branch accepts all the old one did (two string variants folded into one plain string)."""
    return any(not _compare(branch.raw, new.raw, path, walk) for new in new_branches)


def _describe(branch: _Branch) -> str:
    kind, value = branch.key
    if kind == "type":
        return "any value" if value == "*" else f"type {value}"
    return value if kind == "$ref" else f"const {value}"


def _lost_types(old: frozenset[str] | None, new: frozenset[str] | None) -> str:
    """The accepted types `new` drops from `old`, as text; empty when none."""
    if new is None:
        return ""
    if old is None:
        return f"any type (now only {', '.join(sorted(new)) or 'nothing'})"
    return ", ".join(sorted(t for t in old if not _covered(t, new)))


def _compare_plain(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    lost = _lost_types(_type_set(old, walk.old_root), _type_set(new, walk.new_root))
    findings = [_at(path, f"type narrowed, no longer accepts {lost}")] if lost else []
    findings += _value_findings(old, new, path, narrowed=bool(lost))
    findings += _bound_findings(old, new, path)
    findings += _keyword_findings(old, new, path)
    findings += _object_findings(old, new, path, walk)
    findings += _array_findings(old, new, path, walk)
    return findings


def _value_set(schema: Schema) -> dict[str, Any] | None:
    """The values a schema is limited to, keyed by their JSON text; None when not limited to a list."""
    if "const" in schema:
        return {_dump(schema["const"]): schema["const"]}
    if isinstance(schema.get("enum"), list):
        return {_dump(v): v for v in schema["enum"]}
    if schema.get("type") == "null":
        return {"null": None}
    if schema.get("type") == "boolean":
        return {"true": True, "false": False}
    return None


def _value_findings(old: Schema, new: Schema, path: str, narrowed: bool) -> list[str]:
    old_values, new_values = _value_set(old), _value_set(new)
    if new_values is None:
        return []
    if old_values is None:
        return [] if narrowed else [_at(path, f"now limited to the values {', '.join(new_values)}")]
    if "const" in old and "const" in new:
        changed = _dump(old["const"]) != _dump(new["const"])
        return [_at(path, f"const changed {_dump(old['const'])} -> {_dump(new['const'])}")] if changed else []
    new_types = _type_set(new, {})
    removed = [k for k, v in old_values.items() if k not in new_values and _covered(_json_type(v), new_types)]
    return [_at(path, f"enum value {k} removed") for k in removed]


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bound_findings(old: Schema, new: Schema, path: str) -> list[str]:
    findings: list[str] = []
    for keyword, tighter, verb in [(k, 1, "raised") for k in LOWER_BOUNDS] + [(k, -1, "lowered") for k in UPPER_BOUNDS]:
        before, after = _number(old.get(keyword)), _number(new.get(keyword))
        if after is None:
            continue
        if before is None:
            findings.append(_at(path, f"{keyword} added {_dump(after)}"))
        elif (after - before) * tighter > 0:
            findings.append(_at(path, f"{keyword} {verb} {_dump(before)} -> {_dump(after)}"))
    return findings


def _keyword_findings(old: Schema, new: Schema, path: str) -> list[str]:
    findings: list[str] = []
    for keyword in ("pattern", "format"):
        before, after = old.get(keyword), new.get(keyword)
        if after is not None and after != before:
            change = f"added {_dump(after)}" if before is None else f"changed {_dump(before)} -> {_dump(after)}"
            findings.append(_at(path, f"{keyword} {change}"))
    before, after = _number(old.get("multipleOf")), _number(new.get("multipleOf"))
    if after and (before is None or before % after != 0):
        findings.append(_at(path, f"multipleOf {'added' if before is None else 'changed to'} {_dump(after)}"))
    if new.get("uniqueItems") is True and old.get("uniqueItems") is not True:
        findings.append(_at(path, "uniqueItems added"))
    return findings


def _object_findings(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    findings: list[str] = []
    for name, schema in old_props.items():
        sub = _join(path, "properties", name)
        if name in new_props:
            findings += _compare(schema, new_props[name], sub, walk)
        else:
            findings.append(_at(sub, "property removed"))
    old_required = set(old.get("required", []))
    for name in new.get("required", []):
        if name not in old_required:
            findings.append(_at(_join(path, "properties", name), "newly required"))
    return findings + _additional_findings(old, new, path, walk)


def _additional_findings(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    before, after = old.get("additionalProperties", True), new.get("additionalProperties", True)
    sub = _join(path, "additionalProperties")
    if before is False or (before is True and after is True):
        return []
    if after is False:
        return [_at(sub, "changed from allowed to false")]
    return _compare(before, after, sub, walk)


def _array_findings(old: Schema, new: Schema, path: str, walk: _Walk) -> list[str]:
    findings: list[str] = []
    if "items" in old or "items" in new:
        findings += _compare(old.get("items", True), new.get("items", True), _join(path, "items"), walk)
    for i, (before, after) in enumerate(zip(old.get("prefixItems", []), new.get("prefixItems", []), strict=False)):
        findings += _compare(before, after, _join(path, f"prefixItems[{i}]"), walk)
    return findings


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What breaks a client of `old` in `new` (two schemas of one contract), as `path: what changed`."""
    findings = _compare(old, new, "", _Walk(old, new))
    return list(dict.fromkeys(findings))  # a shared $defs model reached twice by one path reports once


# --- the gate ---------------------------------------------------------------------------------------------------


def _version(schema: Schema) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", str(schema.get(VERSION_KEY, "")))
    return (int(match[1]), int(match[2])) if match else None


def _in_changelog(lines: list[str], name: str, version: str) -> bool:
    """Whether one line names the contract (as a whole word) and the version (not part of a longer one)."""
    name_re = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    version_re = re.compile(rf"(?<![\w.]){re.escape(version)}(?!\.?\d)")
    return any(name_re.search(line) and version_re.search(line) for line in lines)


def _shown(path: Path) -> str:
    """A path as the messages show it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(PACKAGE_DIR.parent))
    except ValueError:
        return str(path)


def _load(path: Path) -> Schema:
    schema = json.loads(path.read_text())
    if not isinstance(schema, dict):
        raise ValueError("not a JSON object")
    return schema


def _check_contract(old_path: Path, new_path: Path, changelog: Path, lines: list[str]) -> list[str]:
    name = old_path.stem
    if not new_path.exists():
        return [f"{name}: contract removed ({_shown(new_path)} is gone); its clients still use it, keep exporting it"]
    try:
        old, new = _load(old_path), _load(new_path)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        return [f"{name}: cannot read the schema: {e}"]
    old_version, new_version = _version(old), _version(new)
    if old_version is None or new_version is None:
        return [f"{name}: {VERSION_KEY} missing or not MAJOR.MINOR; re-export with `python -m contracts.export`"]
    released, current = old[VERSION_KEY], new[VERSION_KEY]
    if new_version < old_version:
        return [f"{name}: version went down {released} -> {current}; versions only go up"]
    findings = breaking_changes(old, new)
    if not findings:
        return []
    if new_version[0] > old_version[0]:
        if _in_changelog(lines, name, current):
            return []
        todo = f"describe the change in {_shown(changelog)} under a line naming `{name} {current}`"
        return [f"{name}: {finding} (breaking; bumped to {current}, but {todo})" for finding in findings]
    target = f"{old_version[0] + 1}.0"
    todo = (
        f"bump {name} to {target} in contracts/versions.py, re-export (`python -m contracts.export`), "
        f"and describe the change in {_shown(changelog)} under a line naming `{name} {target}`"
    )
    return [f"{name}: {finding} (breaking; {todo})" for finding in findings]


def check(released_dir: Path, current_dir: Path, changelog: Path) -> list[str]:
    """Problems that keep the current schemas from shipping after the released ones; empty means pass."""
    if not released_dir.is_dir():
        return [f"no released baseline at {_shown(released_dir)}; run `python -m contracts.compat --release`"]
    lines = changelog.read_text().splitlines() if changelog.exists() else []
    problems: list[str] = []
    for old_path in sorted(released_dir.glob("*.json")):
        problems += _check_contract(old_path, current_dir / old_path.name, changelog, lines)
    return problems


def release(current_dir: Path, released_dir: Path) -> int:
    """Make the current schemas the released baseline; returns how many were copied."""
    released_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted(current_dir.glob("*.json"))
    for path in paths:
        shutil.copyfile(path, released_dir / path.name)
    return len(paths)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.compat",
        description="Fail when the exported contract schemas break the last release without a major bump.",
    )
    parser.add_argument("--released", type=Path, default=RELEASED_DIR, help="the released schemas (baseline)")
    parser.add_argument("--current", type=Path, default=CURRENT_DIR, help="the schemas about to ship")
    parser.add_argument("--changelog", type=Path, default=CHANGELOG, help="where breaking bumps are described")
    parser.add_argument(
        "--release",
        action="store_true",
        help="when cutting a release: check, then copy the current schemas into the released directory",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = check(args.released, args.current, args.changelog)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        if args.release:
            print("not released: fix the problems above first", file=sys.stderr)
        return 1
    if args.release:
        count = release(args.current, args.released)
        print(f"released {count} contracts into {_shown(args.released)}")
        return 0
    count = len(list(args.released.glob("*.json")))
    print(f"contracts compatible with the released baseline ({count} contracts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
