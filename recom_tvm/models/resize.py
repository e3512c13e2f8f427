"""Full-size variants of generated models without building them in TensorFlow.

RECom's models E and F have five (three) hash-bucket columns of 2^23 rows x 32: a frozen GraphDef cannot hold
those tables (protobuf's 2 GiB limit) and TF would need tens of GB to build and freeze them. A hash-bucket
column's graph does not depend on its size except in two places, so the full model is the small one with:
- StringToHashBucketFast's num_buckets set to the full row count, and
- the table constant re-declared [rows, dim] with no values (TF's meaning: zeros). The importer keeps such
  constants virtual (no memory); the real values are supplied where the model runs (`CompiledModel.set_params`),
  e.g. generated on the GPU from the spec's seed.
Reads and writes the GraphDef with recom_tvm's own protobuf schema: no TensorFlow needed.
"""

from __future__ import annotations

import json
import os
import re
import shutil

from .. import tfproto as proto
from ..frontend.graph import Graph


# DenseFeatures (tf_keras) or input_layer (TF1 feature columns): a ConcatV2 of the columns, or for one column
# an Identity named .../concat/concat
_DF_CONCAT = re.compile(r"(^|/)(dense_features(_\d+)?|input_layer)/concat$")
_DF_SINGLE = re.compile(r"(^|/)(dense_features(_\d+)?|input_layer)/concat/concat$")


def embedding_output(pb: str) -> str:
    """The tensor holding DenseFeatures' output (the embedding stage) in a generated model's frozen graph."""
    with open(pb, "rb") as f:
        g = Graph.from_bytes(f.read())
    try:
        return embedding_tensor(g)
    except ValueError as err:
        raise ValueError(f"{pb}: {err}") from None


def embedding_tensor(g: Graph) -> str:
    """The tensor holding DenseFeatures' (or TF1 input_layer's) output in a generated model's graph."""
    # Keras numbers layers per process: dense_features, dense_features_1, ...
    concat = [n for n in g.order if _DF_CONCAT.search(n) and g.nodes[n].op == "ConcatV2"]
    if concat:
        return concat[0] + ":0"
    single = [n for n in g.order if _DF_SINGLE.search(n)]
    if not single:
        raise ValueError("no DenseFeatures output found")
    return single[0] + ":0"


def resized_spec(spec, rows: dict[str, int]):
    """The ModelSpec the resized graph implements (hash-bucket columns with the new bucket counts)."""
    import dataclasses

    cols = tuple(dataclasses.replace(c, buckets=rows[c.name]) if c.name in rows else c for c in spec.columns)
    return dataclasses.replace(spec, name=f"{spec.name}_resized", columns=cols)


def resize_hash_columns(src_dir: str, dst_dir: str, rows: dict[str, int]) -> str:
    """Copy the model in `src_dir` (model.pb + signature.json) to `dst_dir` with the hash-bucket columns in
    `rows` (column name -> row count) resized. Returns the new model.pb path."""
    gd = proto.GraphDef()
    with open(os.path.join(src_dir, "model.pb"), "rb") as f:
        gd.ParseFromString(f.read())
    done = {c: {"hash": 0, "table": 0} for c in rows}
    for node in gd.node:
        for col, n in rows.items():
            scope = f"/{col}_embedding/"
            if scope not in f"/{node.name}/":
                continue
            if node.op == "StringToHashBucketFast":
                node.attr["num_buckets"].i = n
                done[col]["hash"] += 1
            elif node.op == "Const" and len(node.attr["value"].tensor.tensor_shape.dim) == 2 and \
                    node.attr["value"].tensor.dtype == 1:  # float32 [buckets, dim]: the table
                t = node.attr["value"].tensor
                t.tensor_shape.dim[0].size = n
                t.ClearField("tensor_content")
                t.ClearField("float_val")
                done[col]["table"] += 1
    bad = {c: d for c, d in done.items() if d != {"hash": 1, "table": 1}}
    if bad:
        raise ValueError(f"could not find exactly one hash op and one table per column: {bad}")
    os.makedirs(dst_dir, exist_ok=True)
    out = os.path.join(dst_dir, "model.pb")
    with open(out + ".tmp", "wb") as f:
        f.write(gd.SerializeToString())
    os.replace(out + ".tmp", out)
    shutil.copy(os.path.join(src_dir, "signature.json"), os.path.join(dst_dir, "signature.json"))
    with open(os.path.join(dst_dir, "resized.json"), "w") as f:
        json.dump({"from": src_dir, "rows": rows}, f)
    return out
