"""Graph-level Relax passes over imported embedding-column models (one pass per file)."""

from .cse import CommonSubexprAcrossColumns
from .eliminate_redundancy import EliminateRedundancy
from .pipeline import PASSES, optimize
from .resolve_shapes import ResolveShapes
from .value_ranges import FoldProvenComparisons, ValueRanges

__all__ = ["CommonSubexprAcrossColumns", "EliminateRedundancy", "FoldProvenComparisons", "PASSES",
           "ResolveShapes", "ValueRanges", "optimize"]
