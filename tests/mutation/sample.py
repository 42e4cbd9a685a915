"""Deterministic, stratified sample of cosmic-ray work items (see README.md).

Run from the repository root after ``cosmic-ray init tests/mutation/<name>.toml <name>.sqlite`` for
each name below; keeps ``N[name]`` mutants of each session and deletes the rest, after dropping
mutants inside type annotations (every module has ``from __future__ import annotations``, so
annotations never run: those mutants are equivalent by construction).
"""

import ast
import random
import sqlite3
import sys

SEED = 20261123
N = {"builder": 20, "loader": 20, "download": 2, "init": 1, "registry": 1}


def annotation_spans(source: str) -> list:
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, ast.arg) and node.annotation:
            annotations.append(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            annotations.append(node.returns)
        if isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations]
    return spans


def sample(name: str, count: int, folder: str = ".") -> None:
    db = sqlite3.connect(f"{folder}/{name}.sqlite")
    path = db.execute("select module_path from mutation_specs limit 1").fetchone()[0]
    with open(path) as f:
        source = f.read()
    assert "from __future__ import annotations" in source, path
    spans = annotation_spans(source)
    query = "select start_pos_row, start_pos_col, operator_name, occurrence, job_id from mutation_specs"
    rows = sorted(db.execute(query).fetchall())
    pool = [r for r in rows if not any(s <= (r[0], r[1]) < e for s, e in spans)]
    keep = {r[-1] for r in random.Random(f"{SEED}-{name}").sample(pool, count)}
    drop = [(r[-1],) for r in rows if r[-1] not in keep]
    db.executemany("delete from mutation_specs where job_id = ?", drop)
    db.executemany("delete from work_items where job_id = ?", drop)
    db.commit()
    print(f"{name}: {len(rows)} mutants, {len(rows) - len(pool)} in annotations, {count} sampled")


if __name__ == "__main__":
    for name, count in N.items():
        sample(name, count, *sys.argv[1:])
