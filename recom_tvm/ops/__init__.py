"""recom's Relax operators for TF's sparse ops, their TIR kernels and their lowering."""

from . import defs
from .legalize import LegalizeRecomOps

__all__ = ["defs", "LegalizeRecomOps"]
