"""A frozen GraphDef run by TensorFlow in a v1 Session (graph mode, Grappler on): the reference our outputs are
compared with, and the TF-CPU baseline of the benchmarks. Fed with recom_tvm-style feeds through the placeholders a
signature dict names (`{"inputs": {feature: tensor | {"indices", "values", "dense_shape"}}, "outputs": {...}}`)."""

from __future__ import annotations

import json

import numpy as np

TABLE_INIT_OPS = ("LookupTableImportV2", "InitializeTableV2", "InitializeTableFromTextFileV2", "LookupTableImport",
                  "InitializeTable", "InitializeTableFromTextFile")


def _utf8(v: np.ndarray) -> np.ndarray:
    if v.dtype != object:
        return v
    return np.vectorize(lambda x: x.encode() if isinstance(x, str) else x, otypes=[object])(v) if v.size else v


class FrozenGraphRunner:
    """`assets` ({path in the graph: local file}, as `from_tensorflow(..., assets=)` takes it) redirects the
    vocabulary files the graph's table initializers read."""

    def __init__(self, pb: str, signature: dict | str, threads: int = 0, assets: dict | None = None) -> None:
        import tensorflow as tf

        v1 = tf.compat.v1
        if isinstance(signature, str):
            with open(signature) as f:
                signature = json.load(f)
        self.inputs, self.outputs = signature["inputs"], signature["outputs"]
        gd = v1.GraphDef()
        with open(pb, "rb") as f:
            gd.ParseFromString(f.read())
        for node in gd.node if assets else ():
            if node.op == "Const" and node.attr["value"].tensor.string_val:
                vals = node.attr["value"].tensor.string_val
                for i, v in enumerate(vals):
                    local = assets.get(v.decode("utf-8", "replace"))
                    if local is not None:
                        vals[i] = local.encode()
        self.graph = tf.Graph()
        with self.graph.as_default():
            v1.import_graph_def(gd, name="")
        cfg = v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
        self.sess = v1.Session(graph=self.graph, config=cfg)
        inits = [op for op in self.graph.get_operations() if op.type in TABLE_INIT_OPS]
        if inits:  # a TF1 freeze keeps its tables' initializers: run them once, as a TF1 serving session does
            self.sess.run(inits)

    def feed_dict(self, feeds: dict) -> dict:
        fd = {}
        for name, t in self.inputs.items():
            if isinstance(t, dict):
                for part, value in zip(("indices", "values", "dense_shape"), feeds[name]):
                    fd[_tensor(t[part])] = _utf8(np.asarray(value))
            else:
                fd[_tensor(t)] = _utf8(np.asarray(feeds[name]))
        return fd

    def run(self, fd: dict, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """{output name: array} of the signature's outputs (or of `outputs`) for a prepared feed dict."""
        names = sorted(self.outputs) if outputs is None else outputs
        return dict(zip(names, self.sess.run([_tensor(self.outputs[k]) for k in names], feed_dict=fd)))

    def __call__(self, feeds: dict) -> dict[str, np.ndarray]:
        return self.run(self.feed_dict(feeds))

    def close(self) -> None:
        self.sess.close()


def _tensor(name: str) -> str:
    return name if ":" in name else name + ":0"
