"""Graph-level Relax passes over imported embedding-column models (one pass per file)."""

from .cse import CommonSubexprAcrossColumns
from .dead_code import RemoveDeadCode
from .eliminate_redundancy import EliminateRedundancy
from .identify_columns import ColumnInfo, identify_columns, summary
from .pipeline import PASSES, optimize
from .resolve_shapes import ResolveShapes
from .value_ranges import FoldProvenComparisons, ValueRanges

__all__ = ["ColumnInfo", "CommonSubexprAcrossColumns", "EliminateRedundancy", "FoldProvenComparisons", "PASSES",
           "RemoveDeadCode", "ResolveShapes", "ValueRanges", "identify_columns", "optimize", "summary"]
