"""Screen a SavedModel before TensorFlow loads it.

Loading a TF2 SavedModel (or a TF1 one through a Session) runs graph code from the model: variable restores, table
initializers, and whatever else its functions hold. recom_tvm never unpickles anything, but TensorFlow would
execute ops that call back into Python or touch arbitrary files. So before handing a SavedModel to TensorFlow,
its protobuf is read with our own schema (no TensorFlow involved) and refused when

- any graph or function holds an op that runs Python (PyFunc, EagerPyFunc, ...) or reads / writes a file by a
  path taken from the graph (ReadFile, WriteFile, ImmutableConst, ...), or
- an asset (vocabulary file) lies outside the model's directory (absolute or `..` path, or a symlink out), or a
  table initializer reads a vocabulary file by a constant path outside it,

unless `config.allow_unsafe_paths` is set (the file rules only; Python-calling ops are always refused).
The checkpoint ops TensorFlow's loader itself drives (RestoreV2 / SaveV2 with the model's own prefix) are fine.
"""

from __future__ import annotations

import os

from .. import config
from ..errors import ModelFormatError

# Ops that execute Python: never loadable.
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
# Ops that open a path computed in the graph (not the checkpoint prefix TF's loader passes).
FILE_OPS = frozenset({"ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "FixedLengthRecordReader",
                      "FixedLengthRecordReaderV2", "TextLineReader", "TextLineReaderV2", "TFRecordReader",
                      "TFRecordReaderV2", "WholeFileReader", "WholeFileReaderV2", "TFRecordDataset",
                      "TextLineDataset", "FixedLengthRecordDataset", "DebugIdentity", "DebugIdentityV2",
                      "SummaryWriter", "CreateSummaryFileWriter", "WriteSummary"})


def _nodes(meta):
    """(where, node) for every node of the MetaGraph's graph and of its function library."""
    for n in meta.graph_def.node:
        yield "graph", n
    for f in meta.graph_def.library.function:
        for n in f.node_def:
            yield f"function {f.signature.name!r}", n


def screen_saved_model(path: str, sm) -> None:
    """Raise ModelFormatError if the parsed SavedModel `sm` at `path` is not safe to hand to TensorFlow."""
    root = os.path.realpath(path)
    for meta in sm.meta_graphs:
        for where, node in _nodes(meta):
            if node.op in PYTHON_OPS:
                raise ModelFormatError(f"SavedModel {path!r}: {node.op} node {node.name!r} ({where}) runs Python "
                                       "code from the model; refusing to load it")
            if node.op in FILE_OPS and not config.allow_unsafe_paths:
                raise ModelFormatError(f"SavedModel {path!r}: {node.op} node {node.name!r} ({where}) opens a file "
                                       "named by the graph; refusing to load it (set recom_tvm.config."
                                       "allow_unsafe_paths / RECOM_TVM_ALLOW_UNSAFE_PATHS=1 to allow)")
        for asset in asset_defs(meta):
            check_asset_path(path, root, asset.filename)
        for where, node, filename in _vocabulary_paths(meta):
            real = os.path.realpath(filename)
            if not config.allow_unsafe_paths and os.path.commonpath([real, root]) != root:
                raise ModelFormatError(f"SavedModel {path!r}: {node.op} node {node.name!r} ({where}) reads the "
                                       f"vocabulary file {filename!r} outside the model's directory; refusing to "
                                       "load it (set recom_tvm.config.allow_unsafe_paths / "
                                       "RECOM_TVM_ALLOW_UNSAFE_PATHS=1 to allow)")


TEXT_OPS = ("InitializeTableFromTextFileV2", "InitializeTableFromTextFile")


def asset_defs(meta) -> list:
    """The MetaGraph's assets: `asset_file_def` (TF2) and the TF1 "saved_model_assets" collection."""
    from .. import tfproto as proto

    out = list(meta.asset_file_def)
    if "saved_model_assets" in meta.collection_def:
        for item in meta.collection_def["saved_model_assets"].any_list.value:
            a = proto.AssetFileDef()
            a.ParseFromString(item.value)
            out.append(a)
    return out


def _vocabulary_paths(meta):
    """(where, node, path) of table initializers reading a file named by a constant of the graph (not an asset,
    which TF's loader redirects into the model's assets/)."""
    assets = {a.tensor_info.name.split(":")[0] for a in asset_defs(meta)}
    scopes = [("graph", list(meta.graph_def.node))] + [
        (f"function {f.signature.name!r}", list(f.node_def)) for f in meta.graph_def.library.function]
    for where, nodes in scopes:
        by_name = {n.name: n for n in nodes}
        for n in nodes:
            if n.op not in TEXT_OPS or len(n.input) < 2:
                continue
            src = by_name.get(n.input[1].lstrip("^").split(":")[0])
            while src is not None and src.op == "Identity" and src.input:
                src = by_name.get(src.input[0].lstrip("^").split(":")[0])
            if src is None or src.op != "Const" or src.name in assets:
                continue  # a function argument (a captured asset) or an asset tensor
            vals = src.attr["value"].tensor.string_val
            if vals:
                yield where, n, vals[0].decode("utf-8", "replace")


def check_asset_path(path: str, root: str, filename: str) -> None:
    """An asset must resolve inside the model's assets directory (after symlinks)."""
    if config.allow_unsafe_paths:
        return
    assets = os.path.join(root, "assets")
    target = os.path.realpath(os.path.join(assets, filename))
    if os.path.isabs(filename) or os.path.commonpath([target, assets]) != assets:
        raise ModelFormatError(f"SavedModel {path!r}: asset {filename!r} lies outside the model's directory; "
                               "refusing to read it (set recom_tvm.config.allow_unsafe_paths / "
                               "RECOM_TVM_ALLOW_UNSAFE_PATHS=1 to allow)")
