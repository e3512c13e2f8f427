"""A Relax MLP like a TF model's dense tail, for tests and benchmarks of the dense tail's schedules."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax


def relax_mlp(k: int, layers: tuple[int, ...], seed: int = 0) -> tvm.IRModule:
    """main(x [B, k], w0, w1, ...): per layer matmul + bias + relu, sigmoid last. The weights are parameters
    after num_input = 1 and the biases constants: what the importer makes of a TF tail (its Relu included:
    `where(x < 0, 0, x)`, which keeps NaN)."""
    from ..frontend.converters.math import tf_relu

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([tvm.tirx.Var("B", "int64"), k], "float32"))
    ws, width = [], k
    for i, n in enumerate(layers):
        ws.append(relax.Var(f"w{i}", relax.TensorType([width, n], "float32")))
        width = n
    rng = np.random.default_rng(seed)
    with bb.function("main", [x, *ws], attrs={"num_input": 1}):
        with bb.dataflow():
            h = x
            for i, w in enumerate(ws):
                n = int(w.ty.shape.values[1])
                h = bb.emit(relax.op.matmul(h, w))
                h = bb.emit(relax.op.add(h, relax.const(rng.standard_normal(n).astype("float32"))))
                h = bb.emit(tf_relu(h, None) if i + 1 < len(ws) else relax.op.sigmoid(h))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    return bb.get()
