"""Small helpers shared by the passes."""

from __future__ import annotations

import tvm

from ..module_spec import attach_spec, spec_of  # noqa: F401  (re-exported for the passes)


def copy_attrs(src: tvm.IRModule, dst: tvm.IRModule) -> tvm.IRModule:
    """Carry module attributes (the serving spec) across a pass that rebuilt the module."""
    if src.attrs is None:
        return dst
    for key in src.attrs.keys():
        if dst.attrs is None or key not in dst.attrs:
            dst = dst.with_attr(key, src.attrs[key])
    return dst
