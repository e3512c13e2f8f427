"""A build does not depend on what came before it: not on the order TensorFlow lists a graph's nodes in (its
freezing lists the same nodes differently from one load to the next, even within a process), nor on the
models imported and optimized earlier in the process.

tf2_string_preprocessing, built after the rest of the corpus in one process, came in a node order whose host
assertions left ResolveShapes two batch symbols in one concat (a build error at best)."""

from __future__ import annotations

import json
import random

import tvm

import recom_tvm
from recom_tvm import tfproto as proto
from recom_tvm.models import tf_export, zoo


def _shuffled(pb: bytes, seed: int) -> bytes:
    gd = proto.GraphDef()
    gd.ParseFromString(pb)
    nodes = list(gd.node)
    random.Random(seed).shuffle(nodes)
    del gd.node[:]
    gd.node.extend(nodes)
    return gd.SerializeToString()


def _import(pb: bytes, paths: dict):
    with open(paths["signature"]) as f:
        sig = json.load(f)
    return recom_tvm.from_tensorflow(pb, signature=sig)[0]


def test_import_and_optimize_ignore_graphdef_node_order():
    paths = tf_export.export(zoo.demo())
    with open(paths["pb"], "rb") as f:
        pb = f.read()
    base = _import(pb, paths)
    base_opt = recom_tvm.optimize(base)
    for seed in (1, 2):
        mod = _import(_shuffled(pb, seed), paths)
        tvm.ir.assert_structural_equal(mod, base)  # parameters, bindings and the spec (host assertions) alike
        tvm.ir.assert_structural_equal(recom_tvm.optimize(mod), base_opt)


def test_optimize_ignores_modules_optimized_before_it():
    """The analyzer and the kernel caches are process-wide: optimizing other models in between changes
    nothing."""
    def imported(spec):
        paths = tf_export.export(spec)
        with open(paths["pb"], "rb") as f:
            return _import(f.read(), paths)

    demo = imported(zoo.demo())
    first = recom_tvm.optimize(demo)
    for spec in (zoo.vocab_mix(), zoo.per_column_type()["hash_string"]):
        recom_tvm.optimize(imported(spec))
    tvm.ir.assert_structural_equal(recom_tvm.optimize(demo), first)
    tvm.ir.assert_structural_equal(recom_tvm.optimize(imported(zoo.demo())), first)
