"""Mutation check of the request path's core: inject a fault, run the tests that should notice, count the kills.

A developer script, not part of CI (one mutant costs a pytest run with model builds: minutes). Faults are
generated from the source by small AST rewrites inside chosen functions, then a seeded sample is run:

  compare      a comparison flipped at its boundary (<  <=, >  >=, ==  !=)          off-by-one in a check
  constant     an integer constant + 1 (0 -> 1, 1 -> 2, ...)                         off-by-one in an index
  boolop       `and` <-> `or`                                                        a condition weakened
  not          `not x` -> `x`
  raise        a `raise` inside an `if` -> `pass`                                     a dropped check
  guard        `if <cond>: return None` -> never taken                                a dropped rule guard
  combiner     the fused kernel's combiner codes swapped (mean <-> sqrtn, sum <-> mean)

Each mutant is a copy of recom_tvm with one file rewritten (ast.unparse: the unmutated file unparses to the same
AST, checked), imported by a pytest run over TESTS (`-x`: the first failure kills it; a timeout counts as killed
too, and is listed). The unmutated package passes TESTS (the suite). Results go to
benchmarks/results/mutation_<date>.json; the findings (kill rate, survivors, what closed them) are written up in
docs/MUTATION.md. --budget-s stops sampling when the time is spent (the rest listed as not run).

    .venv/bin/python ci/mutation.py --list                      # how many mutants each target yields
    nice .venv/bin/python ci/mutation.py --per-file 8 --seed 0 --budget-s 1500  # a sample, 25 minutes at most
    .venv/bin/python ci/mutation.py --only packer:7             # one mutant (after a survivor got a test)
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# file -> the functions (qualified by nesting, "_make" covers the TVMScript macros inside it) to mutate
TARGETS = {
    "packer": ("recom_tvm/runtime/packer.py", ["pack", "flat_table_layout", "apply_recipes"]),
    "fused_kernel": ("recom_tvm/ops/fused_kernel.py", ["_make", "_plan", "num_units", "_UnitMap",
                                                       "column_classes", "_vec_stores"]),
    "feeds": ("recom_tvm/runtime/feeds.py", ["cast_exact", "_convert", "_check_sparse", "_check_ragged",
                                             "normalize_feeds", "sort_rows", "check_ids"]),
    "redundancy": ("recom_tvm/passes/eliminate_redundancy.py",
                   ["rule_range_check", "_mask_keeps_ids_in", "_mask_drops_negative", "_weight_gate",
                    "rule_sparse_column", "rule_one_per_row", "rule_weighted_column", "rule_densify",
                    "_rows_sorted", "_filter", "_sort_on_host"]),
}
# the tests each target's mutants run: the ones that exercise the target, the quickest first (-x stops at the
# first failure; a survivor runs them all, so the lists stay short enough for a sample in ~25 minutes)
_GATHERS = "tests/test_plain_gathers.py"
TESTS = {
    "packer": [_GATHERS, "tests/test_weighted.py", "tests/test_numeric_transforms.py",
               "tests/test_column_types.py::test_combiners", "tests/test_separate_dense_inputs.py"],
    "fused_kernel": ["tests/test_fused_classes.py", _GATHERS, "tests/test_weighted.py",
                     "tests/test_column_types.py::test_combiners", "tests/test_numeric_transforms.py",
                     "tests/test_column_types.py::test_identity_without_default_out_of_range_raises_like_tf"],
    "feeds": ["tests/test_feed_errors.py", "tests/test_string_feed_forms.py", _GATHERS,
              "tests/test_user_fed_indices.py",
              "tests/test_column_types.py::test_unsorted_sparse_rows_match_tf"],
    "redundancy": ["tests/passes/test_eliminate_redundancy.py", _GATHERS, "tests/test_user_fed_indices.py",
                   "tests/test_weighted.py", "tests/test_column_types.py::test_combiners"],
}
COMBINER_MUTANTS = [  # (file, old, new, what): the fused kernel reads combiner codes from fused_layout
    ("recom_tvm/runtime/fused_layout.py", 'MODE = {"sum": 0, "mean": 1, "sqrtn": 2}',
     'MODE = {"sum": 0, "mean": 2, "sqrtn": 1}', "combiner codes: mean <-> sqrtn"),
    ("recom_tvm/runtime/fused_layout.py", 'MODE = {"sum": 0, "mean": 1, "sqrtn": 2}',
     'MODE = {"sum": 1, "mean": 0, "sqrtn": 2}', "combiner codes: sum <-> mean"),
]


@dataclasses.dataclass
class Mutant:
    target: str
    index: int
    file: str
    line: int
    kind: str
    what: str
    source: str  # the whole mutated file

    @property
    def key(self) -> str:
        return f"{self.target}:{self.index}"


class _Sites(ast.NodeVisitor):
    """Collect mutation sites (node ids) inside the chosen functions."""

    def __init__(self, functions: list[str]) -> None:
        self.functions = set(functions)
        self.depth = 0
        self.sites: list[tuple[str, ast.AST, object]] = []

    def _scoped(self, node) -> None:
        inside = node.name in self.functions
        self.depth += inside
        self.generic_visit(node)
        self.depth -= inside

    visit_FunctionDef = visit_ClassDef = _scoped

    def generic_visit(self, node) -> None:
        if self.depth:
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
                self.sites.append(("compare", node, None))
            elif isinstance(node, ast.Constant) and type(node.value) is int and not isinstance(node.value, bool) \
                    and node.value in (0, 1, 2, 3, 4):
                self.sites.append(("constant", node, None))
            elif isinstance(node, ast.BoolOp):
                self.sites.append(("boolop", node, None))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                self.sites.append(("not", node, None))
            elif isinstance(node, ast.If):
                for i, stmt in enumerate(node.body):
                    if isinstance(stmt, ast.Raise):
                        self.sites.append(("raise", node, i))
                if len(node.body) == 1 and isinstance(node.body[0], ast.Return) and (
                        node.body[0].value is None or (isinstance(node.body[0].value, ast.Constant)
                                                       and node.body[0].value.value is None)):
                    self.sites.append(("guard", node, None))
        super().generic_visit(node)


_FLIP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """Put `new` where `old` is in tree."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[i for i, v in enumerate(value) if v is old][0]] = new
                return
    raise AssertionError("node not found")


def _mutate(tree: ast.AST, site_index: int, functions: list[str]) -> tuple[str, int, str]:
    """Apply mutation number site_index to tree (in place) -> (kind, line, description)."""
    sites = _Sites(functions)
    sites.visit(tree)
    kind, node, extra = sites.sites[site_index]
    line = getattr(node, "lineno", 0)
    if kind == "compare":
        old = type(node.ops[0])
        node.ops[0] = _FLIP[old]()
        return kind, line, f"{old.__name__} -> {_FLIP[old].__name__}"
    if kind == "constant":
        node.value += 1
        return kind, line, f"{node.value - 1} -> {node.value}"
    if kind == "boolop":
        new = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        node.op = new
        return kind, line, f"{'and -> or' if isinstance(new, ast.Or) else 'or -> and'}"
    if kind == "not":
        _replace(tree, node, ast.Call(ast.Name("bool", ast.Load()), [node.operand], []))
        return kind, line, "not x -> x"
    if kind == "raise":
        node.body[extra] = ast.Pass()
        return kind, line, "raise -> pass"
    if kind == "guard":
        node.test = ast.Constant(False)
        return kind, line, "guard `if ...: return None` never taken"
    raise AssertionError(kind)


def generate(target: str) -> list[Mutant]:
    path, functions = TARGETS[target]
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    sites = _Sites(functions)
    sites.visit(ast.parse(text))
    out = []
    for i in range(len(sites.sites)):
        tree = ast.parse(text)
        kind, line, what = _mutate(tree, i, functions)
        ast.fix_missing_locations(tree)
        out.append(Mutant(target, i, path, line, kind, what, ast.unparse(tree) + "\n"))
    if target == "fused_kernel":
        for j, (file, old, new, what) in enumerate(COMBINER_MUTANTS):
            with open(os.path.join(ROOT, file)) as f:
                src = f.read()
            assert old in src, f"{file}: {old!r} not found"
            line = src[:src.index(old)].count("\n") + 1
            out.append(Mutant(target, len(sites.sites) + j, file, line, "combiner", what, src.replace(old, new)))
    return out


def unparsed(target: str) -> Mutant:
    """The target file as the mutants are written (ast.unparse), without a mutation."""
    path, _ = TARGETS[target]
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return Mutant(target, -1, path, 0, "none", "unparsed, unmutated", ast.unparse(ast.parse(text)) + "\n")


def _copy_package(dst: str) -> None:
    shutil.copytree(os.path.join(ROOT, "recom_tvm"), os.path.join(dst, "recom_tvm"),
                    ignore=shutil.ignore_patterns("__pycache__"))


def run_mutant(m: Mutant | None, tests: list[str], timeout: int, examples: int) -> tuple[str, float, str]:
    """-> (outcome: killed | survived | timeout | error, seconds, the failing test or note)."""
    with tempfile.TemporaryDirectory(prefix="recom_mut_") as tmp:
        _copy_package(tmp)
        if m is not None:
            with open(os.path.join(tmp, m.file), "w") as f:
                f.write(m.source)
        env = dict(os.environ, PYTHONPATH=tmp, RECOM_TVM_HYPOTHESIS_EXAMPLES=str(examples),
                   RECOM_TVM_CACHE=os.environ.get("RECOM_TVM_CACHE", os.path.join(ROOT, ".cache")),
                   PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--rootdir", ROOT,
               *[os.path.join(ROOT, t) for t in tests]]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - t0, f"over {timeout}s"
        dt = time.perf_counter() - t0
        tail = proc.stdout.strip().splitlines()
        if proc.returncode == 0:
            return "survived", dt, tail[-1] if tail else ""
        failed = [ln for ln in tail if ln.startswith(("FAILED", "ERROR"))]
        if proc.returncode in (1, 2) and (failed or "error" in (tail[-1] if tail else "")):
            return "killed", dt, (failed[0] if failed else tail[-1])[:200]
        return "killed", dt, f"exit {proc.returncode}: {(tail[-1] if tail else proc.stderr[-200:])[:200]}"


def _stratified(ms: list[Mutant], n: int, rng: random.Random) -> list[Mutant]:
    """n mutants taken round-robin over the kinds (each kind shuffled with rng): every kind of fault is tried,
    not only the most frequent (constants); the combiner swaps always."""
    by_kind: dict[str, list[Mutant]] = {}
    for m in ms:
        by_kind.setdefault(m.kind, []).append(m)
    for group in by_kind.values():
        rng.shuffle(group)
    out = list(by_kind.pop("combiner", []))
    kinds = sorted(by_kind)
    while len(out) < n and any(by_kind.values()):
        for k in kinds:
            if by_kind[k] and len(out) < n:
                out.append(by_kind[k].pop())
    return sorted(out, key=lambda m: m.index)


def _write(args, pool: dict, results: list) -> None:
    run = [r for r in results if r["outcome"] != "not run"]
    killed = sum(r["outcome"] in ("killed", "timeout") for r in run)
    with open(args.out, "w") as f:
        json.dump({"date": datetime.date.today().isoformat(), "machine": platform.node(), "seed": args.seed,
                   "per_file": args.per_file, "generated": {t: len(ms) for t, ms in pool.items()},
                   "run": len(run), "killed": killed, "kill_rate": round(killed / len(run), 3) if run else None,
                   "results": results}, f, indent=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", nargs="*", default=list(TARGETS))
    ap.add_argument("--per-file", type=int, default=8, help="mutants sampled per target (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="run these mutants (target:index)")
    ap.add_argument("--list", action="store_true", help="count the mutants and exit")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--examples", type=int, default=6, help="hypothesis examples per mutant run")
    ap.add_argument("--budget-s", type=float, default=0, help="stop starting mutants after this many seconds")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results",
                                                  f"mutation_{datetime.date.today().isoformat()}.json"))
    args = ap.parse_args(argv)
    pool = {t: generate(t) for t in args.targets}
    if args.list:
        for t, ms in pool.items():
            kinds: dict[str, int] = {}
            for m in ms:
                kinds[m.kind] = kinds.get(m.kind, 0) + 1
            print(f"{t}: {len(ms)} mutants {kinds}")
        return 0
    rng = random.Random(args.seed)
    if args.only:
        chosen = [m for ms in pool.values() for m in ms if m.key in set(args.only)]
    else:
        per_target = [ms if not args.per_file or len(ms) <= args.per_file else _stratified(ms, args.per_file, rng)
                      for ms in pool.values()]
        # round-robin over the targets: a --budget-s cut leaves every target sampled alike
        chosen = [ms[i] for i in range(max(map(len, per_target), default=0)) for ms in per_target if i < len(ms)]
    results = []
    for t in sorted({m.target for m in chosen}):  # the unparsed file is the same program: equal ASTs
        path, _ = TARGETS[t]
        with open(os.path.join(ROOT, path)) as f:
            tree = ast.parse(f.read())
        if ast.dump(ast.parse(unparsed(t).source)) != ast.dump(tree):
            print(f"{path}: ast.unparse changes the program", file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    for n, m in enumerate(chosen, 1):
        if args.budget_s and time.perf_counter() - t_start > args.budget_s:
            results.append({"key": m.key, "file": m.file, "line": m.line, "kind": m.kind, "what": m.what,
                            "outcome": "not run", "seconds": 0, "note": "time budget spent"})
            continue
        outcome, dt, note = run_mutant(m, TESTS[m.target], args.timeout, args.examples)
        results.append({"key": m.key, "file": m.file, "line": m.line, "kind": m.kind, "what": m.what,
                        "outcome": outcome, "seconds": round(dt, 1), "note": note})
        print(f"[{n}/{len(chosen)}] {m.key} {m.file}:{m.line} {m.kind} ({m.what}): {outcome} in {dt:.0f}s {note}",
              flush=True)
        _write(args, pool, results)
    _write(args, pool, results)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
