"""Minimal serving specs for Before/Expected pass tests (the passes read module inputs and the host plan)."""

from __future__ import annotations

import tvm

from recom_tvm.module_spec import attach_spec, spec_of
from recom_tvm.runtime.spec import InputSpec


def with_spec(mod: tvm.IRModule, inputs: dict[str, tuple[str, str]] | None = None, host_plan=None,
              features=None, assertions=None) -> tvm.IRModule:
    """inputs: relax param name -> (source, ref); every other param is a feed of itself."""
    inputs = inputs or {}
    module_inputs = []
    for p in mod["main"].params:
        source, ref = inputs.get(p.name, ("feed", p.name + ":0"))
        module_inputs.append({"name": p.name, "source": source, "ref": ref, "kind": "tensor", "dtype": "",
                              "shape": []})
    spec = InputSpec(features=features or [], placeholders={}, module_inputs=module_inputs,
                     host_plan=host_plan or [], outputs=[], symbols={}, assertions=assertions or [])
    return attach_spec(mod, spec)


def hashed(tensor: str, buckets: int) -> dict:
    """A host-plan node: StringToHashBucketFast producing `tensor`."""
    return {"name": tensor.split(":")[0], "op": "StringToHashBucketFast", "inputs": [{"tensor": "raw:0"}],
            "attrs": {"num_buckets": buckets}, "outputs": [tensor]}


def strip(mod: tvm.IRModule) -> tvm.IRModule:
    """The module without attributes, for structural comparison."""
    return tvm.IRModule(dict(mod.functions_items()))


__all__ = ["hashed", "spec_of", "strip", "with_spec"]
