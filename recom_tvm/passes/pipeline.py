"""recom_tvm.optimize: the graph-level pipeline, each pass switchable (for ablations and benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable

import tvm

from .. import config
from ._util import copy_attrs
from .cse import CommonSubexprAcrossColumns
from .dead_code import RemoveDeadCode
from .fuse_columns import FuseColumns
from .eliminate_redundancy import EliminateRedundancy
from .resolve_shapes import ResolveShapes
from .value_ranges import FoldProvenComparisons

PASSES = ("fold_comparisons", "eliminate_redundancy", "cse", "resolve_shapes", "fuse_columns")


def optimize(mod: tvm.IRModule, disable: Iterable[str] = ()) -> tvm.IRModule:
    """Run the embedding-column passes: fold comparisons the value ranges decide, rewrite each column into a
    bag of table rows, merge common work across columns, resolve shapes, fuse the columns of the concat into
    one kernel.

    disable: names from PASSES to skip, or "eliminate_redundancy.<rule>" to skip one rewrite rule.
    """
    disable = set(disable)
    unknown = {d for d in disable if d.split(".")[0] not in PASSES}
    if unknown:
        raise ValueError(f"unknown pass(es) {sorted(unknown)}; the passes are {PASSES}")
    from .eliminate_redundancy import RULES

    rules = [r[0] for r in RULES if f"eliminate_redundancy.{r[0]}" not in disable]
    seq = []
    if "fold_comparisons" not in disable:
        seq.append(FoldProvenComparisons())
    if "eliminate_redundancy" not in disable:
        seq.append(EliminateRedundancy(rules))
    if "cse" not in disable:
        seq.append(CommonSubexprAcrossColumns())
    if "resolve_shapes" not in disable:
        seq.append(ResolveShapes())
    if "fuse_columns" not in disable and "eliminate_redundancy" not in disable:
        seq.append(FuseColumns())
    out = mod
    for p in seq:
        out = copy_attrs(out, p(out))  # passes may update the spec attr; never restore an older one
        config.log(f"pass {p.info.name} done")
    # (not CanonicalizeBindings: it drops match_casts that are real run-time shape checks)
    return copy_attrs(out, RemoveDeadCode()(out))
