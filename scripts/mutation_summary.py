"""The mutation score per module from mutmut's result files, and the survivors not known to be equivalent.

Usage (from the repository root, after `mutmut run`): python scripts/mutation_summary.py MODULE...
Exits 1 when a mutant that is not documented as equivalent was not killed.

A survivor is equivalent when scripts/mutation-equivalent.txt names it (with the reason), or when it only
changes the letter case of SQL text or of a sqlite3.Row key in an embedded (SQLite) adapter: SQLite reads
keywords and identifiers, and sqlite3.Row looks up column names, without regard to case. SQL string
literals ('PENDING') do compare by case, so a mutant that changes one is never excused by that rule.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

EQUIVALENT = Path("scripts/mutation-equivalent.txt")
COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked")
SQLITE_ADAPTER = re.compile(r"^observatory\.adapters\.sqlite_\w+$")
# SQL text: a statement or a fragment of one (a placeholder, a keyword)
SQL_WORDS = "SELECT|INSERT|UPDATE|DELETE|WHERE|FROM|ORDER BY|GROUP BY|ON CONFLICT|SET|AND|OR|NULL|PRAGMA|RETURNING"
SQL = re.compile(rf"\?|\b({SQL_WORDS})\b", re.I)
PY_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SQL_LITERAL = re.compile(r"'[^']*'")


def documented() -> set[str]:
    if not EQUIVALENT.exists():
        return set()
    names = (line.split("#", 1)[0].strip() for line in EQUIVALENT.read_text().splitlines())
    return {n for n in names if n}


def sql_case_only(diff: str) -> bool:
    """True when the mutant only changes the case of SQL text or of a row key (see the module docstring)."""
    old = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    new = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if len(old) != 1 or len(new) != 1 or old[0] == new[0] or old[0].lower() != new[0].lower():
        return False
    if SQL_LITERAL.findall(old[0]) != SQL_LITERAL.findall(new[0]):
        return False
    changed = [
        (o, n) for o, n in zip(PY_STRING.finditer(old[0]), PY_STRING.finditer(new[0]), strict=True) if o[0] != n[0]
    ]
    row_key = [old[0][o.start() - 1 : o.start()] == "[" and old[0][o.end() : o.end() + 1] == "]" for o, _ in changed]
    return bool(changed) and all(SQL.search(o[0]) or key for (o, _), key in zip(changed, row_key, strict=True))


def main(modules: list[str]) -> int:
    """Print per module: the counts by status, the score (killed or timed out, of those tested), how many
    survivors are equivalent, and the score over the mutants that are not equivalent."""
    equivalent = documented()
    head = [*COLUMNS, "other", "total", "score", "equivalent", "score w/o eq."]
    print(f"{'module':40} " + " ".join(f"{c:>{max(len(c), 6)}}" for c in head))
    new: list[str] = []
    excused = {"documented": 0, "SQL letter case": 0}
    for module in modules:
        path = Path(module.replace(".", "/") + ".py")
        meta = Path("mutants") / f"{path}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        status = {k: status_by_exit_code[v] for k, v in codes.items()}
        eq = 0
        for k, s in sorted(status.items()):
            if s in ("killed", "timeout"):
                continue
            if k in equivalent:
                excused["documented"] += 1
            elif s == "survived" and SQLITE_ADAPTER.match(module) and sql_case_only(get_diff_for_mutant(k, path=path)):
                excused["SQL letter case"] += 1
            else:
                new.append(f"{s}: {k}")
                continue
            eq += 1
        n = {c: sum(1 for s in status.values() if s == c) for c in COLUMNS}
        tested = len(status) - n["not checked"]
        row = [*(n[c] for c in COLUMNS), len(status) - sum(n.values()), len(status)]
        row += [_pct(n["killed"] + n["timeout"], tested), eq, _pct(n["killed"] + n["timeout"], tested - eq)]
        print(f"{module:40} " + " ".join(f"{v:>{max(len(c), 6)}}" for c, v in zip(head, row, strict=True)))
    print(
        f"\nequivalent survivors: {excused['documented']} documented in {EQUIVALENT}, "
        f"{excused['SQL letter case']} changing only the letter case of SQL text or row keys"
    )
    if new:
        print(f"{len(new)} mutant(s) not killed (see `.venv/bin/mutmut show NAME`):")
        print("\n".join(f"  {m}" for m in new))
        return 1
    return 0


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
