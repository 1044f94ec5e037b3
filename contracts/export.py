"""Write the JSON Schemas to contracts/schemas/ (`python -m contracts.export`, or `--check` in CI)."""

from __future__ import annotations

import json
import sys

from contracts.versions import REGISTRY, SCHEMA_DIR, schema_for, schema_path


def render(name: str) -> str:
    return json.dumps(schema_for(name), indent=2, sort_keys=True) + "\n"


def stale() -> list[str]:
    """Names whose checked-in schema differs from the models."""
    return [n for n in REGISTRY if not schema_path(n).exists() or schema_path(n).read_text() != render(n)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        names = stale()
        if names:
            print(f"stale schemas: {', '.join(names)}; run `python -m contracts.export`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in REGISTRY:
        schema_path(name).write_text(render(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
