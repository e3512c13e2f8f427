"""Resolve a TF model source into a frozen graph plus its serving signature.

Sources: a frozen GraphDef (.pb file or bytes, read with protobuf alone), a SavedModel directory (TF2 object-based
or TF1 Estimator-style; freezing its variables needs TensorFlow), or a `tf.function` ConcreteFunction.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from .graph import Graph, parse_tensor_name


@dataclasses.dataclass
class Feature:
    """One serving input. Dense: `tensors = {"value": t}`; sparse: indices / values / dense_shape tensors."""

    name: str
    kind: str  # "dense" | "sparse" | "ragged"
    tensors: dict[str, str]

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "tensors": self.tensors}


@dataclasses.dataclass
class LoadedGraph:
    graph: Graph
    features: list[Feature]
    outputs: list[tuple[str, str]]  # (output name, tensor name)
    source: str
    model_dir: str | None = None  # where vocabulary files may be read from
    tables: dict = dataclasses.field(default_factory=dict)  # TF2 resource placeholder -> (keys, values)
    assets: dict[str, str] = dataclasses.field(default_factory=dict)  # graph path -> local file (see tables.py)
    assets_dir: str | None = None  # a folder holding vocabulary files by name


SPARSE_PARTS = ("indices", "values", "dense_shape")
RAGGED_PARTS = ("values", "row_splits")  # a RaggedTensor's components in tf.nest's flatten order


def _node_of(tensor: str) -> str:
    return parse_tensor_name(tensor)[0]


def load(source: Any, signature: str | dict | None = None, outputs: list[str] | dict[str, str] | None = None,
         assets: dict | None = None, assets_dir: str | os.PathLike | None = None) -> LoadedGraph:
    """Dispatch on the kind of `source`; see `recom_tvm.from_tensorflow`."""
    loaded = _load(source, signature, outputs)
    if assets or assets_dir is not None:
        if not _is_graphdef_source(source):
            raise ModelFormatError("assets= / assets_dir= map the vocabulary files of a frozen GraphDef; a "
                                   "SavedModel or ConcreteFunction carries its own assets")
        if assets_dir is not None and not os.path.isdir(assets_dir):
            raise ModelFormatError(f"assets_dir {os.fspath(assets_dir)!r} is not a directory")
        for graph_path, local in (assets or {}).items():
            if not os.path.isfile(local):
                raise ModelFormatError(f"assets: {graph_path!r} is mapped to {os.fspath(local)!r}, which is not a file")
        loaded.assets = {str(k): os.path.abspath(v) for k, v in (assets or {}).items()}
        loaded.assets_dir = os.path.abspath(assets_dir) if assets_dir is not None else None
    return loaded


def _is_graphdef_source(source) -> bool:
    if isinstance(source, (bytes, bytearray)) or type(source).__name__ == "GraphDef":
        return True
    return isinstance(source, (str, os.PathLike)) and os.path.isfile(os.fspath(source))


def _load(source: Any, signature, outputs) -> LoadedGraph:
    if isinstance(source, (bytes, bytearray)):
        return _from_graphdef_bytes(bytes(source), signature, outputs, "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                raise ModelFormatError(f"{path!r} is a directory without saved_model.pb: not a SavedModel")
            return _from_saved_model(path, signature if isinstance(signature, str) or signature is None else None,
                                     outputs)
        if not os.path.exists(path):
            raise ModelFormatError(f"model path {path!r} does not exist")
        with open(path, "rb") as f:
            data = f.read()
        loaded = _from_graphdef_bytes(data, signature, outputs, path)
        loaded.model_dir = os.path.dirname(os.path.abspath(path))
        return loaded
    if type(source).__name__ == "GraphDef" and hasattr(source, "SerializeToString"):
        return _from_graphdef_bytes(source.SerializeToString(), signature, outputs, "<GraphDef>")
    if hasattr(source, "structured_input_signature") and hasattr(source, "graph"):
        return _from_concrete_function(source, outputs, "<ConcreteFunction>")
    if hasattr(source, "get_concrete_function"):
        raise ModelFormatError("pass a ConcreteFunction: call fn.get_concrete_function(<input specs>) first")
    raise ModelFormatError(f"cannot import a {type(source).__name__}: expected a .pb path, a SavedModel "
                           "directory, GraphDef bytes or a tf.function ConcreteFunction")


# ---------------------------------------------------------------------------------------------------------- GraphDef
def _features_from_spec(spec: dict | None, graph: Graph) -> list[Feature]:
    """Features from an explicit signature dict, or from the graph's Placeholders (see _placeholder_features)."""
    if spec is None:
        return _placeholder_features(graph)
    feats = []
    for name, desc in spec.get("inputs", spec).items():
        if isinstance(desc, str):
            feats.append(Feature(name, "dense", {"value": _full(desc)}))
        elif isinstance(desc, dict) and set(desc) == set(SPARSE_PARTS):
            feats.append(Feature(name, "sparse", {k: _full(desc[k]) for k in SPARSE_PARTS}))
        elif isinstance(desc, dict) and set(desc) == set(RAGGED_PARTS):
            feats.append(Feature(name, "ragged", {k: _full(desc[k]) for k in RAGGED_PARTS}))
        else:
            raise ModelFormatError(f"signature input {name!r}: expected a tensor name or a dict with keys "
                                   f"{SPARSE_PARTS} (a SparseTensor) or {RAGGED_PARTS} (a RaggedTensor), "
                                   f"got {desc!r}")
    for f in feats:
        _restore_pruned_part(graph, f)
        for t in f.tensors.values():
            node = _node_of(t)
            if node not in graph.nodes:
                raise ModelFormatError(f"signature input {f.name!r} names tensor {t!r}, which is not in the graph")
            if graph.nodes[node].op not in ("Placeholder", "PlaceholderWithDefault"):
                raise ModelFormatError(f"signature input {f.name!r} names {t!r}, a {graph.nodes[node].op} "
                                       "node, not a Placeholder")
    return feats


# tf.compat.v1.sparse_placeholder(name=X) writes these three Placeholders
_SPARSE_PLACEHOLDER_PARTS = {"indices": "indices", "values": "values", "shape": "dense_shape"}
_SPARSE_PLACEHOLDER_NAMES = {part: name for name, part in _SPARSE_PLACEHOLDER_PARTS.items()}


def _placeholder_features(graph: Graph) -> list[Feature]:
    """Features of a GraphDef given without a signature: a sparse feature X for each `X/indices`, `X/values`,
    `X/shape` Placeholder triple (what `tf.compat.v1.sparse_placeholder(name=X)` writes; the shape is a
    PlaceholderWithDefault when the static shape is partly unknown), else one dense feature per Placeholder, named
    by its node. Sorted by name, so the order never depends on the graph's node order."""
    placeholders = {n: graph.nodes[n] for n in graph.order
                    if graph.nodes[n].op in ("Placeholder", "PlaceholderWithDefault")}
    groups: dict[str, dict[str, str]] = {}
    for name in placeholders:
        prefix, _, part = name.rpartition("/")
        if prefix and part in _SPARSE_PLACEHOLDER_PARTS:
            groups.setdefault(prefix, {})[_SPARSE_PLACEHOLDER_PARTS[part]] = name + ":0"
    feats, used = [], set()
    for prefix, parts in groups.items():
        shapes = {k: placeholders[t[:-2]].attr("shape") for k, t in parts.items()}
        dtypes = {k: placeholders[t[:-2]].attr("dtype") for k, t in parts.items()}
        # a triple, or its values and one part the freeze left (_restore_pruned_part; values alone stay a dense
        # feed "X/values", as TF serving that frozen graph takes it)
        if "values" in parts and len(parts) >= 2 and prefix not in placeholders \
                and all(dtypes[k] == "int64" for k in ("indices", "dense_shape") if k in parts) \
                and ("indices" not in parts or (shapes["indices"] is not None and len(shapes["indices"]) == 2)):
            full = {k: parts.get(k, f"{prefix}/{_SPARSE_PLACEHOLDER_NAMES[k]}:0") for k in SPARSE_PARTS}
            if any(_node_of(t) in graph.nodes and _node_of(t) not in placeholders for t in full.values()):
                continue  # the missing part's name is another node's
            feat = Feature(prefix, "sparse", full)
            _restore_pruned_part(graph, feat)
            feats.append(feat)
            used |= {t[:-2] for t in parts.values()}
    feats += [Feature(n, "dense", {"value": n + ":0"}) for n, node in placeholders.items()
              if n not in used and node.op == "Placeholder"]
    return sorted(feats, key=lambda f: f.name)


def _restore_pruned_part(graph: Graph, feat: Feature) -> None:
    """A SparseTensor feed whose `indices` or `dense_shape` the outputs never read (embedding_lookup_sparse reads
    no dense_shape, a weighted column reads only its weights' values): freezing prunes those Placeholders, though
    the user still feeds the whole SparseTensor. Put them back as Placeholders nothing reads, so the feed is taken
    (and its parts checked against each other) as the signature declares it. Never the values."""
    if feat.kind != "sparse" or _node_of(feat.tensors["values"]) not in graph.nodes:
        return
    missing = [k for k, t in feat.tensors.items() if _node_of(t) not in graph.nodes]
    if not missing or any(not feat.tensors[k].endswith(":0") for k in missing):
        return
    rank = -1  # from the part that is left, where it says
    if len(missing) == 1:
        other = graph.nodes[_node_of(feat.tensors["dense_shape" if missing[0] == "indices" else "indices"])]
        shape = other.attr("shape") if other.op == "Placeholder" else None
        if shape is not None and len(shape) == (1 if missing[0] == "indices" else 2):
            rank = shape[-1]
    for k in missing:
        graph.add_placeholder(_node_of(feat.tensors[k]), "int64", [-1, rank] if k == "indices" else [rank])


def _full(t: str) -> str:
    return t if ":" in t else t + ":0"


# Nodes that are never a model's output although nothing reads them: initializers and other ops run for their
# effect (a TF1 freeze keeps the table initializers, which only `init_all_tables` reads by a control edge),
# inputs, and resource handles
_NOT_OUTPUTS = frozenset({
    "NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert", "Print", "PrintV2", "SaveV2", "RestoreV2",
    "Save", "SaveSlices", "Restore", "RestoreSlice", "MergeV2Checkpoints", "LookupTableImportV2", "LookupTableImport",
    "InitializeTableV2", "InitializeTable", "InitializeTableFromTextFileV2", "InitializeTableFromTextFile",
    "LookupTableInsertV2", "LookupTableInsert", "LookupTableRemoveV2", "HashTableV2", "HashTable",
    "MutableHashTableV2", "MutableHashTableOfTensorsV2", "MutableDenseHashTableV2", "VarHandleOp",
    "VariableV2", "Variable", "AssignVariableOp", "Assign", "AssignAdd", "AssignSub", "VarIsInitializedOp",
    "IsVariableInitialized", "DestroyResourceOp"})


def _default_outputs(graph: Graph) -> list[tuple[str, str]]:
    """The graph's sinks (nodes no other node reads), except initializers and other ops run for their effect."""
    consumed = {src for n in graph.nodes.values() for src, _ in n.inputs}
    outs = [n for n in graph.order if n not in consumed and graph.nodes[n].op not in _NOT_OUTPUTS]
    if not outs:
        raise ModelFormatError("the graph has no output node; pass outputs=[...]")
    return [(n, n + ":0") for n in sorted(outs)]


def _from_graphdef_bytes(data: bytes, signature, outputs, source: str) -> LoadedGraph:
    graph = Graph.from_bytes(data)
    spec = signature if isinstance(signature, dict) else None
    if isinstance(signature, str) and os.path.exists(signature):
        with open(signature) as f:
            spec = json.load(f)
    feats = _features_from_spec(spec, graph)
    outs = _outputs(outputs, spec, graph)
    return LoadedGraph(graph, feats, outs, source)


def _named_outputs(outputs) -> list[tuple[str, str]]:
    """`outputs` as (output name, tensor): a dict names them; a list is named by each tensor's node."""
    if isinstance(outputs, dict):
        return [(str(k), _full(v)) for k, v in outputs.items()]
    return [(_node_of(o), _full(o)) for o in outputs]


def _outputs(outputs, spec, graph) -> list[tuple[str, str]]:
    if outputs is not None:
        outs = _named_outputs(outputs)
    elif spec is not None and "outputs" in spec:
        outs = [(k, _full(v)) for k, v in spec["outputs"].items()]
    else:
        outs = _default_outputs(graph)
    for _, t in outs:
        if _node_of(t) not in graph.nodes:
            raise ModelFormatError(f"output tensor {t!r} is not in the graph")
    return outs


# ------------------------------------------------------------------------------------------- TensorFlow-backed paths
def _tf():
    try:
        import tensorflow as tf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ModelFormatError("importing a SavedModel or a tf.function needs TensorFlow "
                               "(pip install 'recom_tvm[tf]'); a frozen .pb imports without it") from err
    return tf


def _from_concrete_function(fn, outputs, source: str) -> LoadedGraph:
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(fn)
    graph = Graph.from_bytes(frozen.graph.as_graph_def().SerializeToString())
    n_inputs = len(tf.nest.flatten(fn.structured_input_signature, expand_composites=True))
    placeholders = [t.name for t in frozen.inputs[:n_inputs]]
    tables = export_captured_tables(tf, fn, graph)
    graph.fed_consts = {_node_of(t.name) for t in fn.graph.internal_captures} & set(graph.nodes)
    feats = _features_from_structure(tf, fn.structured_input_signature, placeholders, _arg_names(fn))
    if outputs is None:
        flat_out = tf.nest.flatten(fn.structured_outputs, expand_composites=True)
        names = _output_names(tf, fn.structured_outputs)
        outs = [(names[i], frozen.outputs[i].name) for i in range(len(flat_out))]
    else:
        outs = _outputs(outputs, None, graph)
    return LoadedGraph(graph, feats, outs, source, source if os.path.isdir(source) else None, tables)


def export_captured_tables(tf, fn, graph) -> dict:
    """TF2 freezing keeps tables as resource placeholders: {placeholder node: (keys, values)} read from the
    tables `fn` captures (LookupTableExportV2) while TensorFlow holds them."""
    tables = {}
    finds = table_finds(graph)
    for internal, handle in zip(fn.graph.internal_captures, fn.captured_inputs):
        name = _node_of(internal.name)
        if handle.dtype != tf.resource or name not in finds:
            continue
        kt, vt = finds[name].attr("Tin"), finds[name].attr("Tout")
        try:
            keys, values = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=tf.as_dtype(kt),
                                                          Tvalues=tf.as_dtype(vt))
        except Exception as err:  # noqa: BLE001 - e.g. a table kind without export
            raise ModelFormatError(f"cannot read the contents of table {name!r}: {err}") from err
        keys, values = keys.numpy(), values.numpy()
        order = np.argsort(keys, kind="stable")  # TF exports in hash order, which differs from load to load
        tables[name] = (keys[order], values[order])
    return tables


def table_finds(graph) -> dict:
    """{table node: its first LookupTableFindV2 (graph order)}, the table reached through Identity chains; one
    pass over the graph (per captured resource it was quadratic: ~1,200 captured variables of model F)."""
    out = {}
    for n in graph.nodes.values():
        if n.op == "LookupTableFindV2" and n.inputs:
            out.setdefault(_through_identity(graph, n.inputs[0][0]), n)
    return out


def _through_identity(graph, name: str) -> str:
    """The node an Identity chain starts from (inlined calls pass resources through Identity nodes)."""
    for _ in range(32):
        node = graph.nodes.get(name)
        if node is None or node.op != "Identity" or not node.inputs:
            return name
        name = node.inputs[0][0]
    return name


def freeze_with_tables(fn):
    """A ConcreteFunction frozen into a GraphDef that keeps its lookup tables (TF2 freezing alone leaves them as
    resource placeholders): each becomes a HashTableV2 initialized from constant keys and values, as in a TF1
    freeze, so the .pb imports on its own. Returns (GraphDef, frozen function)."""
    tf = _tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(fn)
    gd = frozen.graph.as_graph_def()
    graph = Graph.from_bytes(gd.SerializeToString())
    n_inputs = len(tf.nest.flatten(fn.structured_input_signature, expand_composites=True))
    tables = export_captured_tables(tf, fn, graph)
    finds = table_finds(graph) if tables else {}
    for node in gd.node:
        if node.name not in tables:
            continue
        keys, values = tables[node.name]
        key_dtype, value_dtype = tf.as_dtype(finds[node.name].attr("Tin")), tf.as_dtype(finds[node.name].attr("Tout"))
        node.op = "HashTableV2"
        node.ClearField("attr")
        node.attr["key_dtype"].type = key_dtype.as_datatype_enum
        node.attr["value_dtype"].type = value_dtype.as_datatype_enum
        node.attr["shared_name"].s = node.name.encode()
        for suffix, arr, dt in (("keys", keys, key_dtype), ("values", values, value_dtype)):
            c = gd.node.add(name=f"{node.name}/recom_{suffix}", op="Const")
            c.attr["dtype"].type = dt.as_datatype_enum
            c.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr, dtype=dt))
        init = gd.node.add(name=f"{node.name}/recom_import", op="LookupTableImportV2",
                           input=[node.name, f"{node.name}/recom_keys", f"{node.name}/recom_values"])
        init.attr["Tin"].type = key_dtype.as_datatype_enum
        init.attr["Tout"].type = value_dtype.as_datatype_enum
    return gd, frozen


def _output_names(tf, structure) -> list[str]:
    """A name per flat output tensor, in tf.nest's order: a dict's keys; a key holding a list or dict, or a
    SparseTensor / RaggedTensor (several tensors), names each part after the key ("scores/0", "sp/indices",
    "sp/values", "sp/dense_shape"; a key per tensor before: its second part failed the import with an IndexError)."""
    if not isinstance(structure, dict):
        flat = tf.nest.flatten(structure, expand_composites=True)
        return ["output_0"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]
    names: list[str] = []

    def walk(obj, path):
        if isinstance(obj, dict):
            for k in sorted(obj):
                walk(obj[k], path + [str(k)])
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, path + [str(i)])
        else:
            n = len(tf.nest.flatten(obj, expand_composites=True))
            base = "/".join(path)
            if n == 1:
                names.append(base)
            elif isinstance(obj, tf.SparseTensor) and n == 3:
                names.extend(f"{base}/{part}" for part in ("indices", "values", "dense_shape"))
            else:
                names.extend(f"{base}/{i}" for i in range(n))

    walk(structure, [])
    return names


def _leaves(tf, structure, sort_keys: bool, arg_names: list[str] | None = None) -> list[tuple[str, Any]]:
    """(feature name, spec) leaves of an input signature `(args, kwargs)`, dict keys sorted (tf.nest's
    flatten order) or in insertion order; positional arguments named by `arg_names` when known."""
    out: list[tuple[str, Any]] = []

    def walk(obj, path):
        if isinstance(obj, dict):
            for k in (sorted(obj) if sort_keys else obj):
                walk(obj[k], path + [str(k)])
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, path + [str(i)] if len(obj) > 1 else path)
        else:
            out.append(("/".join(path) or getattr(obj, "name", None) or f"input_{len(out)}", obj))

    args, kwargs = structure if (isinstance(structure, tuple) and len(structure) == 2
                                 and isinstance(structure[1], dict)) else (structure, {})
    if arg_names and isinstance(args, (list, tuple)) and len(arg_names) >= len(args) and not (
            len(args) == 1 and isinstance(args[0], dict)):  # a lone feature dict: its keys are the names
        for name, a in zip(arg_names, args):
            walk(a, [name])
    else:
        walk(args, [])
    walk(kwargs, [])
    return out


def _arg_names(fn) -> list[str] | None:
    """The python parameter names of a (restored) ConcreteFunction, to name positional inputs."""
    try:
        return [str(k) for k in fn.function_type.parameters]
    except Exception:  # noqa: BLE001 - older functions have no function_type
        return None


def _features_from_structure(tf, structure, placeholders: list[str], arg_names=None) -> list[Feature]:
    """Pair the nested input signature (TensorSpec / SparseTensorSpec leaves) with a ConcreteFunction's flat
    placeholders, which follow tf.nest's flatten order (dict keys sorted). Their generated names (x, x_1, ...)
    do not follow any one order, so they are never used for the pairing."""
    leaves = _leaves(tf, structure, sort_keys=True, arg_names=arg_names)
    feats, i = [], 0
    for name, spec in leaves:
        if isinstance(spec, tf.SparseTensorSpec):
            feats.append(Feature(name, "sparse", dict(zip(SPARSE_PARTS, placeholders[i:i + 3]))))
            i += 3
        elif isinstance(spec, tf.RaggedTensorSpec):
            if spec.ragged_rank != 1:
                raise ModelFormatError(f"input {name!r}: ragged_rank {spec.ragged_rank} (1 is supported)")
            feats.append(Feature(name, "ragged", dict(zip(RAGGED_PARTS, placeholders[i:i + 2]))))
            i += 2
        elif isinstance(spec, tf.TensorSpec):
            feats.append(Feature(name, "dense", {"value": placeholders[i]}))
            i += 1
        elif spec is None or isinstance(spec, (bool, int, float, str, bytes)):
            continue  # a Python argument (`def serve(ids, training=False)`): traced in as a constant, not fed
        else:
            raise ModelFormatError(f"input {name!r}: unsupported input spec {type(spec).__name__} "
                                   "(dense tensors, SparseTensors and RaggedTensors are supported)")
    if i != len(placeholders):
        raise ModelFormatError(f"the input signature has {i} tensors but the function {len(placeholders)}")
    return feats


def _read_saved_model(path: str):
    """saved_model.pb parsed with recom_tvm's own schema (no TensorFlow), screened before TF may load it."""
    from .. import tfproto as proto
    from .screen import screen_saved_model

    sm = proto.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        try:
            sm.ParseFromString(f.read())
        except Exception as err:
            raise ModelFormatError(f"{path}/saved_model.pb is not a valid SavedModel: {err}") from err
    if not sm.meta_graphs:
        raise ModelFormatError(f"{path}/saved_model.pb holds no MetaGraph")
    screen_saved_model(path, sm)
    return sm


def _from_saved_model(path: str, signature: str | None, outputs) -> LoadedGraph:
    signature = signature or "serving_default"
    sm = _read_saved_model(path)
    if not sm.meta_graphs[0].object_graph_def:  # a TF1 SavedModel (no object graph)
        return _from_tf1_saved_model(path, signature, outputs)
    tf = _tf()
    try:
        loaded = tf.saved_model.load(path)
    except Exception as err:  # noqa: BLE001 - TF's errors for missing / truncated variables and the like
        raise ModelFormatError(f"TensorFlow cannot load the SavedModel {path!r}: {type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if signature not in loaded.signatures:
        raise ModelFormatError(f"SavedModel {path!r} has no signature {signature!r}; "
                               f"it has {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    # Signatures flatten SparseTensors into anonymous components; the restored function the signature wraps
    # keeps the nested structure (feature names, SparseTensor grouping), so import that one when it exists.
    nested = _find_nested_function(tf, loaded, fn)
    return _from_concrete_function(nested or fn, outputs, path)


def _find_nested_function(tf, loaded, sig_fn):
    """The restored ConcreteFunction the signature wraps (the signature calls it; its body is the callee's),
    with nested inputs; None when there is none or it cannot be told apart from another (then the signature
    itself is imported: flat input names, the same results)."""
    def flat_specs(cf):
        return sorted(str((s.dtype, s.shape.as_list() if s.shape.rank is not None else None))
                      for s in tf.nest.flatten(cf.structured_input_signature, expand_composites=True)
                      if hasattr(s, "dtype"))  # tf_keras adds python values (training=False)

    callees = _called_function_bodies(sig_fn)
    sig_captures = {id(t) for t in sig_fn.captured_inputs}
    want = flat_specs(sig_fn)
    found, seen = [], set()
    for attr in dir(loaded):
        if attr.startswith("_") or attr == "signatures":
            continue
        try:
            obj = getattr(loaded, attr)
        except Exception:  # noqa: BLE001 - restored objects may raise on access
            continue
        for cf in getattr(obj, "concrete_functions", []) or []:
            if id(cf) in seen:
                continue
            seen.add(id(cf))
            leaves = tf.nest.flatten(cf.structured_input_signature, expand_composites=True)
            if not all(hasattr(x, "dtype") for x in leaves):
                continue  # a tf_keras call with python arguments (training=...): keep the signature's names
            named = _leaves(tf, cf.structured_input_signature, True)
            if all(n.replace("/", "").isdigit() for n, _ in named) and not any(
                    isinstance(x, (tf.SparseTensorSpec, tf.RaggedTensorSpec)) for _, x in named):
                continue  # positional dense inputs: the signature's names (args_0, args_0_1, ...) are the feeds
            if flat_specs(cf) != want or named == _leaves(tf, sig_fn.structured_input_signature, True):
                continue
            if _function_body(cf.function_def) not in callees:
                continue  # same inputs, another computation (a second signature's function)
            found.append(cf)
    if len(found) > 1:  # the same body twice (e.g. two copies of a model): the one with the same variables
        found = [cf for cf in found if {id(t) for t in cf.captured_inputs} <= sig_captures]
    return found[0] if len(found) == 1 else None


def _function_body(fdef) -> tuple:
    """A FunctionDef's nodes as (name, op) pairs: equal for a function and its renamed restored copies."""
    return tuple(sorted((n.name, n.op) for n in fdef.node_def))


def _called_function_bodies(fn) -> set:
    """The bodies of the functions `fn`'s graph calls (a signature wrapper calls the function it serves)."""
    lib = {f.signature.name: f for f in fn.graph.as_graph_def().library.function}
    out = set()
    for op in fn.graph.get_operations():
        if op.type in ("StatefulPartitionedCall", "PartitionedCall"):
            name = op.get_attr("f").name
            if name in lib:
                out.add(_function_body(lib[name]))
    return out


def _from_tf1_saved_model(path: str, signature: str, outputs) -> LoadedGraph:
    tf = _tf()
    v1 = tf.compat.v1
    with tf.Graph().as_default() as g, v1.Session(graph=g) as sess:
        try:
            meta = v1.saved_model.loader.load(sess, [v1.saved_model.tag_constants.SERVING], path)
        except Exception as err:  # noqa: BLE001 - TF's errors for missing / truncated variables and the like
            raise ModelFormatError(f"TensorFlow cannot load the SavedModel {path!r}: {type(err).__name__}: "
                                   f"{str(err).splitlines()[0] if str(err) else ''}") from err
        if signature not in meta.signature_def:
            raise ModelFormatError(f"SavedModel {path!r} has no signature {signature!r}; "
                                   f"it has {sorted(meta.signature_def)}")
        sig = meta.signature_def[signature]
        feats = []
        for key in sorted(sig.inputs):
            info = sig.inputs[key]
            if info.WhichOneof("encoding") == "coo_sparse":
                c = info.coo_sparse
                feats.append(Feature(key, "sparse", {"indices": c.indices_tensor_name,
                                                      "values": c.values_tensor_name,
                                                      "dense_shape": c.dense_shape_tensor_name}))
            elif info.WhichOneof("encoding") == "name":
                feats.append(Feature(key, "dense", {"value": info.name}))
            else:
                raise ModelFormatError(f"signature input {key!r}: unsupported encoding "
                                       f"{info.WhichOneof('encoding')}")
        outs = [(k, sig.outputs[k].name) for k in sorted(sig.outputs)]
        if outputs is not None:
            outs = _named_outputs(outputs)
        keep = sorted({_node_of(t) for _, t in outs})
        # the signature's inputs too: a sparse input's part the outputs never read (a weighted column's weight
        # indices, embedding_lookup_sparse's dense_shape) would be pruned, and the feature lose a tensor
        keep += sorted({_node_of(t) for f in feats for t in f.tensors.values()} - set(keep))
        init = [op.name for op in g.get_operations() if op.type == "NoOp" and "init_all_tables" in op.name]
        gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), keep + init)
        variables = {op.name for op in g.get_operations() if op.type in _VARIABLE_OPS}
    graph = Graph.from_bytes(gd.SerializeToString())
    graph.fed_consts = variables & set(graph.nodes)  # (frozen under their own names)
    return LoadedGraph(graph, feats, outs, path, path)


_VARIABLE_OPS = ("VariableV2", "Variable", "VarHandleOp")
