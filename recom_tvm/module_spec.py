"""The serving spec travels with the Relax module as an attribute, so passes can update it (e.g. add a host check)."""

from __future__ import annotations

import tvm

from .runtime.spec import InputSpec

SPEC_ATTR = "recom_tvm.spec"


def attach_spec(mod: tvm.IRModule, spec: InputSpec) -> tvm.IRModule:
    return mod.with_attr(SPEC_ATTR, spec.to_json())


def spec_of(mod: tvm.IRModule) -> InputSpec | None:
    attrs = mod.attrs
    if attrs is not None and SPEC_ATTR in attrs:
        return InputSpec.from_json(str(attrs[SPEC_ATTR]))
    return None
