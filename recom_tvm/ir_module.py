"""Replacing functions of an IRModule in a pass: the copy every module pass here makes the same way."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tvm


def replace_functions(mod: tvm.IRModule, updates: Mapping) -> tvm.IRModule:
    """A copy of `mod` (its attributes kept) with the functions in `updates` ({GlobalVar: function}) replaced;
    `mod` itself where there are none."""
    if not updates:
        return mod
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in updates.items():
        out[gv] = func
    return out


def map_functions(mod: tvm.IRModule, kind: type, fn: Callable) -> tvm.IRModule:
    """`mod` with every function of type `kind` replaced by fn(function); unchanged ones (fn returned the same
    object) are kept, and `mod` itself comes back where none changed."""
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, kind):
            new = fn(func)
            if not new.same_as(func):
                updates[gv] = new
    return replace_functions(mod, updates)
