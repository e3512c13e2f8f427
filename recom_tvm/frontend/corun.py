"""Host co-run (RECom's CPU co-run, `config.host_fallback`): nodes without a converter, and everything they read,
run on the host in TensorFlow before the compiled module; their results feed it like any host-stage tensor.

The co-run subgraph is cut out of the frozen graph as NodeDefs (its feeds become placeholders, table
initializers come along) and stored in the host plan as one `TFSubgraph` node; recom_tvm.runtime.corun runs it
in a TF session. Correct but slow (and the serving host needs TensorFlow): the import says which ops it covers,
`spec.corun` lists them, `recom_tvm.load` refuses the model where TensorFlow is missing.
"""

from __future__ import annotations

import base64

from ..errors import ConversionError, ModelFormatError
from .graph import Graph, parse_tensor_name
from .loader import LoadedGraph
from .partitioned import OP as PARTITIONED_OP
from .values import Host

_FEEDS = ("Placeholder",)
_INIT_OPS = ("LookupTableImportV2", "InitializeTableV2", "LookupTableImport", "InitializeTable")
_HANDLE_TYPES = (20, 21)  # DataType DT_RESOURCE, DT_VARIANT
_FILE_INIT_OPS = ("InitializeTableFromTextFileV2", "InitializeTableFromTextFile")


def corun_nodes(graph: Graph, failed: list[str], loaded: LoadedGraph) -> set[str]:
    """The failed nodes and every non-feed node they read from (data edges), plus the initializers of the
    tables among them."""
    feeds = {parse_tensor_name(t)[0] for f in loaded.features for t in f.tensors.values()}
    keep = set(failed) | graph.ancestors(failed)
    keep = {n for n in keep if n not in feeds and graph.nodes[n].op not in _FEEDS}
    tables = {n for n in keep if graph.nodes[n].op in ("HashTableV2", "HashTable", "MutableHashTableV2")}
    for node in graph.nodes.values():
        if node.inputs and node.inputs[0][0] in tables and node.op in _INIT_OPS + _FILE_INIT_OPS:
            if node.op in _FILE_INIT_OPS:
                raise ModelFormatError(f"host co-run: table {node.inputs[0][0]!r} is initialized from a file "
                                       f"({node.op} node {node.name!r}), which the co-run subgraph cannot carry")
            keep |= {node.name} | {n for n in graph.ancestors([node.name]) if graph.nodes[n].op not in _FEEDS}
    for n in keep:
        if graph.nodes[n].op == "Placeholder" or graph.nodes[n].attr("dtype") == "resource" and \
                graph.nodes[n].op.startswith("Placeholder"):
            raise ModelFormatError(f"host co-run: node {n!r} reads a TF2 resource input; import the SavedModel")
    return keep


def _tf():
    try:
        import tensorflow as tf
    except ImportError as err:
        raise ModelFormatError("host co-run (config.host_fallback) needs TensorFlow at import and on the serving "
                               "host: pip install tensorflow-cpu") from err
    return tf


def emit_corun(importer, needed: list[str]) -> None:
    """Add the co-run subgraph to the host plan and bind the tensors it hands to the rest of the graph."""
    tf = _tf()
    graph, ctx, corun = importer.graph, importer.ctx, importer.corun
    order = [n for n in graph.order if n in corun]
    # what the rest of the graph (and the outputs, and the asserts) reads from the co-run part
    boundary: list[tuple[str, int]] = []
    for name in needed:
        if name in corun:
            continue
        for src, idx in graph.nodes[name].inputs:
            if src in corun and (src, idx) not in boundary:
                boundary.append((src, idx))
    for t in [t for _, t in importer.loaded.outputs] + [f"{s}:{i}" for _, (s, i) in importer.asserts]:
        src, idx = parse_tensor_name(t)
        if src in corun and (src, idx) not in boundary:
            boundary.append((src, idx))
    feeds = []
    for n in order:
        for src, _ in graph.nodes[n].inputs:
            if src not in corun and src not in feeds:
                feeds.append(src)
    gd = type(graph.graph_def)()
    defs = {nd.name: nd for nd in graph.graph_def.node}
    for n in feeds:  # a TF2 function's captured table or variable: a handle the host stage never has
        if "dtype" in defs[n].attr and defs[n].attr["dtype"].type in _HANDLE_TYPES:
            reader = next(m for m in order if n in (s for s, _ in graph.nodes[m].inputs))
            raise ConversionError(graph.nodes[reader].op, reader, importer.columns(reader),
                                  f"host co-run: it reads {n!r}, a TensorFlow resource handle (a captured table "
                                  "or variable) that cannot be handed to TensorFlow on the host")
    for n in order:  # (our own node for a partitioned lookup: TensorFlow does not know it)
        if graph.nodes[n].op == PARTITIONED_OP:
            raise ConversionError("ParallelDynamicStitch", n, importer.columns(n),
                                  "host co-run: a partitioned embedding lookup whose inputs the module cannot take "
                                  "(its shards must be constants, its ids computed in the module)")
    for n in feeds:  # the serving feeds it reads, as plain placeholders
        nd = gd.node.add(name=n, op="Placeholder")
        for key in ("dtype", "shape"):
            if key in defs[n].attr:
                nd.attr[key].CopyFrom(defs[n].attr[key])
    for n in order:
        nd = gd.node.add()
        nd.CopyFrom(defs[n])
        del nd.input[:]
        nd.input.extend(i for i in defs[n].input if not i.startswith("^") or i[1:] in corun)
    data = gd.SerializeToString()
    # TF's shape inference gives each handed-over tensor's dtype and (partly) its shape
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(tf.compat.v1.GraphDef.FromString(data), name="")
    outputs, out_types = [], []
    for src, idx in boundary:
        t = g.get_tensor_by_name(f"{src}:{idx}")
        if t.dtype in (tf.resource, tf.variant):
            raise ConversionError(graph.nodes[src].op, src, importer.columns(src),
                                  f"host co-run: this output is a TensorFlow {t.dtype.name} handle (a table or "
                                  "variable: e.g. a frozen graph whose table initializer was pruned), which the "
                                  "compiled model cannot take")
        if t.shape.rank is None:
            raise ConversionError(graph.nodes[src].op, src, importer.columns(src),
                                  "host co-run: TensorFlow cannot tell the rank of this output")
        dims = [d if d is not None else ctx.symbols.fresh(f"{src.rsplit('/', 1)[-1]}_{idx}_{k}",
                                                          f"size {k} of {src}:{idx}, computed by TensorFlow "
                                                          "(host co-run)")
                for k, d in enumerate(t.shape.as_list())]
        dtype = "string" if t.dtype == tf.string else t.dtype.as_numpy_dtype.__name__
        outputs.append(f"{src}:{idx}")
        out_types.append((dtype, dims))
    init = [n for n in order if graph.nodes[n].op in _INIT_OPS]
    ctx.add_host_op({"name": "recom_tvm/host_corun", "op": "TFSubgraph",
                     "inputs": [{"tensor": f + ":0"} for f in feeds],
                     "attrs": {"graph_def": base64.b64encode(data).decode("ascii"),
                               "feeds": [f + ":0" for f in feeds], "fetches": outputs, "init": init,
                               "ops": sorted({f.op for f in importer.corun_failures})},
                     "outputs": outputs})
    for t, (dtype, dims) in zip(outputs, out_types):
        h = Host(t, dtype, dims)
        ctx.host_values[t] = h
        importer.values[parse_tensor_name(t)] = h
