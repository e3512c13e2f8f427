"""TensorFlow graph -> Relax IRModule with symbolic dims, parameters, and the serving spec.

The walk is op by op in topological order over the nodes the outputs need. Each TF tensor becomes a Known,
Device or Host value (see values.py): shape arithmetic is folded at import time, string ops go to the host stage,
everything else becomes Relax bindings (standard Relax ops, or recom ops for TF's sparse ops).
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import tvm
from tvm import relax

from .. import config
from ..module_spec import attach_spec
from ..errors import ConversionError, RecomError, UnsupportedOpError
from ..runtime.spec import InputSpec
from ..shapes.symbolic import dim_str
from . import converters
from .columns import ColumnResolver
from .context import ImportContext
from .graph import Graph, Node, parse_tensor_name
from .liveness import DEAD, MERGE_OPS, SWITCH_OPS, Liveness
from .loader import Feature, LoadedGraph, load
from .row_broadcast import RowBroadcast
from .tables import TABLE_OPS, Table, resolve_tables
from .values import Host, Known, host_attrs, host_input

_STRING_OPS = {"StringToHashBucketFast", "StringToHashBucket", "StringToHashBucketStrong", "AsString",
               "StringJoin", "StringSplit", "StringSplitV2", "Substr", "StringLower", "StringUpper",
               "RegexReplace", "StaticRegexReplace", "RegexFullMatch", "StaticRegexFullMatch", "StringStrip",
               "StringLength", "StringToNumber", "ReduceJoin", "StringNGrams", "DecodeRaw", "ParseExample",
               "ParseExampleV2", "ParseSingleExample", "SparseCross", "SparseCrossV2", "SparseCrossHashed",
               "UnicodeDecode", "UnicodeDecodeWithOffsets", "UnicodeEncode", "UnicodeTranscode",
               "StringFormat"}  # host-stage ops: what feeds them runs on the host too
_DTYPE_ATTRS = ("T", "Tparams", "dtype", "DstT", "SrcT")
# ops whose (first) result is a string whatever their dtype attributes say (AsString's T is its input's)
_STRING_RESULT_OPS = frozenset({"AsString", "StringJoin", "StringLower", "StringUpper", "RegexReplace",
                                "StaticRegexReplace", "StringStrip", "Substr", "ReduceJoin", "StringFormat"})
# ops kept on the host when they read host-stage results and constants only (see _host_closed): vocabulary ids
# with OOV buckets, and the row partition of a string split (RaggedTensor.from_value_rowids: bincount + cumsum),
# which the module then reads as it reads a ragged feed's row_splits. Not the id filters and gathers of a column's
# core (Where, GatherV2, ...): the redundancy passes rewrite those in the module.
_HOST_CLOSED = {"NotEqual", "Equal", "AddV2", "SelectV2", "Sub", "Mul", "Cast", "StridedSlice", "DenseBincount",
                "Cumsum", "ConcatV2", "Max", "Min", "Maximum", "Minimum", "Reshape"}
_SHAPE_FEED_MAX = 8  # static int vectors up to this size (dense_shape & co.) are fed as symbolic shapes


def from_tensorflow(source: Any, signature: str | dict | None = None,
                    outputs: list[str] | dict[str, str] | None = None, *,
                    assets: dict[str, str] | None = None, assets_dir: str | None = None,
                    ) -> tuple[tvm.IRModule, dict[str, np.ndarray], InputSpec]:
    """Import a TF model into Relax.

    Args:
        source: path to a frozen GraphDef (.pb) or a SavedModel directory, GraphDef bytes / message, or a
            `tf.function` ConcreteFunction.
        signature: SavedModel signature name (default "serving_default"), or for a .pb a dict (or JSON file)
            `{"inputs": {feature: placeholder | {"indices", "values", "dense_shape"}}, "outputs": {...}}`.
        outputs: tensor names to return instead of the signature's outputs (a list: each output is named by its
            node; a dict: output name -> tensor name, e.g. `{"score": ..., "embedding": ...}`). Without a
            signature's outputs either, the graph's sinks (nodes nothing reads, except initializers and other
            effect-only ops).
        assets: for a frozen GraphDef, `{path in the graph: local file}` for vocabulary files the graph names
            by a path that is not on this machine or lies outside the model's folder (the only files read
            outside it, besides `assets_dir`); keys may also be file names.
        assets_dir: for a frozen GraphDef, a folder holding vocabulary files under their file names.

    Returns:
        (mod, params, spec): `mod["main"]` takes the module inputs listed in `spec` then the params;
        params maps parameter names to numpy arrays (the embedding tables and weights).
    """
    t0 = time.perf_counter()
    loaded = load(source, signature, outputs, assets, assets_dir)
    config.log(f"loaded {loaded.source}: {len(loaded.graph.nodes)} nodes in {time.perf_counter() - t0:.2f}s")
    try:
        mod, params, spec = _Importer(loaded).run()
    except UnconvertibleNodes as err:
        if not config.host_fallback:
            raise err.error(fallback_hint=True) from None
        from .corun import corun_nodes

        corun = corun_nodes(loaded.graph, [f.node for f in err.failures], loaded)
        config.log(f"host co-run through TensorFlow: {len(err.failures)} node(s) without a converter "
                   f"({sorted({f.op for f in err.failures})}), {len(corun)} node(s) in the co-run subgraph")
        try:
            mod, params, spec = _Importer(loaded, corun=corun, corun_failures=err.failures).run()
        except UnconvertibleNodes as after:  # what reads the co-run's outputs cannot be translated either
            failure = after.error(fallback_hint=False)
            failure.args = (f"{failure.args[0]}\n(after running {len(err.failures)} node(s) without a converter "
                            f"through TensorFlow on the host: {sorted({f.op for f in err.failures})}; "
                            f"RECOM_TVM_HOST_FALLBACK=0 reports those instead)",)
            raise failure from None
    mod = attach_spec(mod, spec)
    config.log(f"imported into Relax in {time.perf_counter() - t0:.2f}s "
               f"({len(spec.module_inputs)} inputs, {len(params)} params)")
    return mod, params, spec


def _node_dtype(node: Node) -> str | None:
    for key in _DTYPE_ATTRS:
        if key in node.attrs:
            return node.attrs[key]
    return None


class UnconvertibleNodes(Exception):
    """Raised by the walk once it is done when some nodes had no translation (collected, not stopped at)."""

    def __init__(self, failures: list[RecomError]) -> None:
        super().__init__(f"{len(failures)} node(s) cannot be translated")
        self.failures = failures

    def error(self, fallback_hint: bool) -> RecomError:
        if not any(isinstance(f, UnsupportedOpError) for f in self.failures) and len(self.failures) == 1:
            return self.failures[0]  # one supported op with inputs we cannot translate: its own error
        return UnsupportedOpError.many(self.failures, fallback_hint=fallback_hint)


def _has_converter(op: str) -> bool:
    return op in converters.DEVICE or op in converters.KNOWN or op in converters.HOST or \
        op in converters.PLACED or op in TABLE_OPS or op in ("Const", "Shape", "Size", "Rank", "ShapeN")


class _Importer:
    def __init__(self, loaded: LoadedGraph, corun: set[str] | None = None,
                 corun_failures: list | None = None) -> None:
        self.corun = corun or set()  # nodes run on the host by TensorFlow (config.host_fallback)
        self.corun_failures = corun_failures or []
        self.failures: list[RecomError] = []  # nodes without a translation, in graph order
        self.poisoned: set[str] = set()  # their nodes and everything reading them (not converted)
        self.feed_symbols: dict[str, list] = {}  # input size symbol -> [feed tensor, axis, "shape" | "value"]
        self.rows = RowBroadcast(self.feed_symbols)  # feeds whose one row TF may broadcast (row_broadcast.py)
        converters._load()
        self.loaded = loaded
        self.graph: Graph = loaded.graph
        self.columns = ColumnResolver(self.graph, loaded.features)
        self.tables = resolve_tables(self.graph, loaded.model_dir, loaded.tables, loaded.assets, loaded.assets_dir)
        self.ctx = ImportContext(self.columns)
        self.ctx.graph = self.graph
        self.ctx.fetched = {parse_tensor_name(t)[0] for _, t in loaded.outputs}
        self.live = self.ctx.liveness = Liveness(self.graph)
        self.values: dict[tuple[str, int], Any] = {}
        self.ctx.values = self.values  # converters that recognize a TF idiom read their inputs' producers
        self.structured = any(f.kind == "sparse" or f.name != parse_tensor_name(f.tensors.get("value", ""))[0]
                              for f in loaded.features)

    # ------------------------------------------------------------------------------------------ placement
    def _needed(self) -> list[str]:
        roots = [parse_tensor_name(t)[0] for _, t in self.loaded.outputs]
        # TF Asserts the outputs depend on through control edges (AssertGuard): their conditions are computed
        # too, and checked before the outputs are returned
        self.asserts = self.graph.guarding_asserts(roots)
        conds = [src for _, (src, _) in self.asserts]
        keep = self.graph.ancestors(roots + conds) | set(roots) | set(conds)
        # with conditionals (Switch / Merge): the predicates too, and the status of what may be dead
        keep, self.status_only = self.live.plan(keep, [a for a, _ in self.asserts])
        return [n for n in self.graph.order if n in keep or n in self.status_only]

    def _guard(self, outs: list) -> list:
        """Wrap each output in TF's Asserts: a packed call that raises TF's error when a condition is false."""
        for name, (src, idx) in self.asserts:
            status = self.live.node_status.get(name)
            if status is DEAD:  # in a branch that is never taken
                continue
            cond = self.values.get((src, idx))
            if cond is None:
                raise ConversionError("Assert", name, self.columns(name), f"condition {src}:{idx} not computed")
            if isinstance(cond, Known) and cond.concrete and bool(np.asarray(cond.numpy()).all()):
                continue
            dev = self.ctx.device(cond)
            if status:  # in a branch taken on some predicates only: it fails when taken and false
                from .converters.control_flow import unless_guarded

                dev = unless_guarded(self.ctx, dev, status)
            msg = " ".join(self.graph.const_strings(name)) or f"Assert node {name!r}"
            outs = [self.ctx.emit(relax.op.call_pure_packed("recom_tvm.check_assert", o.expr, dev.expr,
                                                            tvm.ir.StringImm(f"{msg} (Assert node {name!r})"),
                                                            ty_args=[o.expr.ty]), shape=list(o.shape))
                    for o in outs]
        return outs

    def _host_nodes(self, needed: list[str]) -> set[str]:
        nodes = self.graph.nodes
        stringy = {n for n in needed if nodes[n].op in _STRING_OPS or _node_dtype(nodes[n]) == "string"}
        host = set(stringy)
        for anc in self.graph.ancestors(stringy):
            if nodes[anc].op not in ("Const", "Placeholder", "PlaceholderWithDefault"):
                host.add(anc)
        return host & set(needed)

    # --------------------------------------------------------------------------------------- placeholders
    def _bind_placeholders(self, needed: set[str]) -> None:
        ctx = self.ctx
        roles: dict[str, tuple[Feature, str]] = {}
        for f in self.loaded.features:
            for part, t in f.tensors.items():
                roles[parse_tensor_name(t)[0]] = (f, part)
        for name in self.graph.order:
            node = self.graph.nodes[name]
            if name not in needed or not (node.op == "Placeholder" or (
                    node.op == "PlaceholderWithDefault" and name in roles)):
                continue
            dtype = node.attr("dtype")
            shape = node.attr("shape")
            feat, part = roles.get(name, (None, None))
            if dtype == "resource" and feat is None:
                if name not in self.tables:
                    raise ConversionError(node.op, name, self.columns(name),
                                          "a TF2 lookup table left as a resource input by freezing: its contents "
                                          "are not in this graph. Import the SavedModel instead, or write the .pb "
                                          "with recom_tvm.frontend.loader.freeze_with_tables")
                self.values[(name, 0)] = self.tables[name]
                continue
            # each feature has its own batch symbol: TF does not require equal batches until an op (a concat)
            # does; there the importer asserts the equality on the host, with that op's error
            batch = ctx.symbols.get(f"B_{self._ident(feat.name)}", f"batch size of feature {feat.name}") \
                if feat is not None and self.structured else None
            if feat is not None and feat.kind == "sparse" and part in ("indices", "dense_shape") and \
                    shape in ([-1], [-1, -1]) and self._rank_unknown(feat):
                # a SparseTensor of unknown rank (v1.sparse_placeholder without a shape, as Estimator serving
                # receivers write them): taken as rank 2, the rank of every feature column's input, so the graph's
                # own tf.cond on the rank is decided at import; a dense_shape of another length is a FeedError
                shape = [2] if part == "dense_shape" else [-1, 2]
            if shape is None:
                raise ConversionError(node.op, name, None, "unknown rank; give the input a shape")
            tensor = name + ":0"
            label = feat.name if feat else name
            if (dtype in ("int32", "int64") and part in (None, "dense_shape", "value") and
                    (len(shape) == 0 and part in (None, "value") or
                     len(shape) == 1 and 0 <= shape[0] <= _SHAPE_FEED_MAX)):
                # a small int vector (a dense shape) or an int scalar (a num_segments, a bincount size fed at run
                # time): its values become size symbols, so ops whose output shape they set still compile
                syms = []
                for i in range(shape[0] if shape else 1):
                    if part == "dense_shape" and i == 0 and batch is not None:
                        syms.append(batch)
                    else:
                        syms.append(ctx.symbols.fresh(f"{label}_dim{i}" if part == "dense_shape" else
                                                      f"{label}_{i}", f"value {i} of feed {tensor}"))
                self.values[(name, 0)] = ctx.shape_feed_input(tensor, dtype, syms, scalar=not shape)
                for i, sym in enumerate(syms):
                    self.feed_symbols.setdefault(sym.name, [tensor, i, "value"])
                continue
            # Feeds live on the host; they become module inputs when a compiled op first reads them.
            ctx.feed_tensors.add(tensor)
            dims = self._dims(shape, label, part, batch)
            for i, d in enumerate(dims):
                if not isinstance(d, int):
                    self.feed_symbols.setdefault(d.name, [tensor, i, "shape"])
            self.values[(name, 0)] = ctx.host_values[tensor] = Host(tensor, dtype, dims)

    def _row_candidates(self) -> None:
        """Dense feeds whose one row TF may broadcast against the batch (row_broadcast.py)."""
        for f in self.loaded.features:
            t = f.tensors.get("value")
            if f.kind == "dense" and t and parse_tensor_name(t) in self.values:
                self.rows.feed(parse_tensor_name(t), self.values[parse_tensor_name(t)])

    def _row_broadcast(self) -> list[dict]:
        """[{"features": [repeated together], "anchors": [[feature, part, axis, "shape" | "value"]]}] for the spec:
        where the runtime reads the size each group of one-row features is repeated to (runtime/row_broadcast.py)."""
        final = [parse_tensor_name(t) for _, t in self.loaded.outputs] + [src for _, src in self.asserts]
        part_of = {parse_tensor_name(t): (f.name, part) for f in self.loaded.features for part, t in f.tensors.items()}
        plan = []
        for members, symbols in self.rows.finish(final):
            anchors = []
            for sym in symbols:
                tensor, axis, kind = self.feed_symbols[sym]
                if parse_tensor_name(tensor) in part_of:
                    anchors.append([*part_of[parse_tensor_name(tensor)], axis, kind])
            if anchors:
                plan.append({"features": [part_of[parse_tensor_name(t)][0] for t in members], "anchors": anchors})
        return plan

    def _rank_unknown(self, feat) -> bool:
        """A sparse feature whose dense_shape input has no static length (v1.sparse_placeholder(shape=None))."""
        node = self.graph.nodes.get(parse_tensor_name(feat.tensors.get("dense_shape", ""))[0])
        return node is not None and node.attr("shape") == [-1]

    def _ident(self, label: str) -> str:
        """A feature (or placeholder) name as an identifier for its size symbols, unique per name: "a.b" and
        "a_b" must not share nnz / batch symbols (the runtime binds symbols by name)."""
        idents = self.__dict__.setdefault("_idents", {})
        got = idents.get(label)
        if got is None:
            base = re.sub(r"\W", "_", label)
            got, i, taken = base, 1, set(idents.values())
            while got in taken:
                i += 1
                got = f"{base}_{i}"
            idents[label] = got
        return got

    def _dims(self, shape: list[int], label: str, part: str | None, batch) -> list:
        sym = self.ctx.symbols
        dims = []
        for i, d in enumerate(shape):
            if d >= 0:
                dims.append(d)
            elif part == "row_splits" and i == 0:
                dims.append(sym.get(f"splits_{self._ident(label)}", f"batch + 1 of ragged feature {label}"))
            elif part in ("indices", "values") and i == 0:
                dims.append(sym.get(f"nnz_{self._ident(label)}", f"number of ids of feature {label}"))
            elif part == "value" and i == 0 and batch is not None:
                dims.append(batch)
            else:
                dims.append(sym.fresh(f"{label}_dim{i}", f"dim {i} of feed {label}"))
        return dims

    # ----------------------------------------------------------------------------------------------- walk
    def _refuse_string_outputs(self) -> None:
        """A string output (a lowered query, StringLookup(invert=True) of top-k ids) would pull its whole producing
        chain into the host stage and fail there on some numeric op with a puzzling message: say what it is."""
        for out_name, t in self.loaded.outputs:
            name, index = parse_tensor_name(t)
            node = self.graph.nodes[name]
            if index == 0 and (node.op in _STRING_RESULT_OPS or _node_dtype(node) == "string"):
                raise ConversionError(node.op, name, self.columns(name),
                                      f"output {out_name!r} ({t}) is a string tensor: models with string outputs "
                                      "are not supported (the compiled module returns numbers); return the ids, "
                                      "hashes or scores and map them to strings outside the model")

    def run(self) -> tuple[tvm.IRModule, dict[str, np.ndarray], InputSpec]:
        self._refuse_string_outputs()
        needed = self._needed()
        host_nodes = self._host_nodes(needed)
        bb = self.ctx.bb
        with bb.function("main"):
            with bb.dataflow():
                self._bind_placeholders(set(needed))
                self._row_candidates()
                if self.corun:
                    self.rows.disable()
                    from .corun import emit_corun

                    emit_corun(self, needed)
                for i, name in enumerate(needed):
                    node = self.graph.nodes[name]
                    if (name, 0) in self.values or name in self.corun:  # a bound input, or run by TF
                        continue
                    if self.live.active and not self._alive(node):
                        continue
                    self._convert(node, name in host_nodes)
                    if config.verbose and i and i % 5000 == 0:
                        config.log(f"  converted {i}/{len(needed)} nodes")
                if self.failures:  # close the function cleanly, then report every failure at once
                    gv = bb.emit_output(relax.const(0, "int32"))
                else:
                    outs = self._guard([self.ctx.device(self._output(t)) for _, t in self.loaded.outputs])
                    result = outs[0].expr if len(outs) == 1 else relax.Tuple([o.expr for o in outs])
                    gv = bb.emit_output(result)
            bb.emit_func_output(gv, params=[] if self.failures else [inp.var for inp in self.ctx.inputs])
        if self.failures:
            raise UnconvertibleNodes(self.failures)
        mod = bb.finalize()
        mod["main"] = self.ctx.define_missing_symbols(mod["main"])
        # module inputs first, then the params (tables and weights)
        order = sorted(range(len(self.ctx.inputs)), key=lambda k: self.ctx.inputs[k].source == "param")
        inputs = [self.ctx.inputs[k] for k in order]
        f = mod["main"]
        mod["main"] = relax.Function([f.params[k] for k in order], f.body, f.ret_ty, f.is_pure, f.attrs, f.span)
        num_input = sum(1 for inp in inputs if inp.source != "param")
        mod["main"] = mod["main"].with_attr("num_input", num_input)
        out_types = [(o.dtype, [dim_str(d) for d in o.shape]) for o in outs]
        spec = InputSpec.build(self.loaded, self.graph, inputs, self.ctx.host_plan, out_types,
                               self.ctx.symbols.origin)
        spec.assertions = list(self.ctx.assertions)
        spec.feed_symbols = self.feed_symbols
        spec.row_broadcast = self._row_broadcast()
        if self.corun_failures:
            spec.corun = [{"op": f.op, "node": f.node, "column": f.column} for f in self.corun_failures]
        return mod, dict(self.ctx.params), spec

    def _alive(self, node: Node) -> bool:
        """Track the node's status (see liveness.py); False when it is not to be converted: dead, or needed for
        its status only."""
        st = self.live.visit(node)
        if node.op in SWITCH_OPS and st is not DEAD and len(node.inputs) > 1:
            pred = self.values.get(node.inputs[1])
            known = None
            if isinstance(pred, Known) and pred.concrete and pred.numpy().size == 1:
                known = bool(np.asarray(pred.numpy()).reshape(()))
            self.live.switched(node, pred, known)
        if node.name in self.status_only or st is DEAD:
            return False
        if st and not any(src in self.poisoned for src, _ in node.inputs):
            from .converters.control_flow import check_speculatable

            self.ctx.node = node
            try:
                check_speculatable(self.ctx, node, [self.values.get(k) for k in node.inputs])
            except ConversionError as err:  # reported with the graph's other failures
                self.failures.append(err)
                self.poisoned.add(node.name)
                return False
        return True

    def _output(self, tensor: str):
        key = parse_tensor_name(tensor)
        st = self.live.status(*key)
        if st is DEAD or st:
            raise ConversionError(self.graph.nodes[key[0]].op, key[0], self.columns(key[0]),
                                  "this output is computed only in a branch of a conditional (Switch) that is "
                                  + ("never taken" if st is DEAD else "taken on some inputs only")
                                  + "; TensorFlow fails to fetch it otherwise")
        return self.values[key]

    def _inputs(self, node: Node) -> list:
        """The values of the node's data inputs; a Merge's dead inputs are None (ctx.live_inputs has the live
        ones with their guards)."""
        live = None
        if node.op in MERGE_OPS and self.live.active:
            self.ctx.live_inputs = [(i, self.live.status(s, k)) for i, (s, k) in enumerate(node.inputs)
                                    if self.live.status(s, k) is not DEAD]
            live = {i for i, _ in self.ctx.live_inputs}
        ins = []
        for i, (src, idx) in enumerate(node.inputs):
            if live is not None and i not in live:
                ins.append(None)
                continue
            if (src, idx) not in self.values:
                raise ConversionError(node.op, node.name, self.columns(node.name),
                                      f"input {src}:{idx} was not produced")
            ins.append(self.values[(src, idx)])
        return ins

    def _convert(self, node: Node, on_host: bool) -> None:
        ctx = self.ctx
        ctx.node = node
        if any(src in self.poisoned for src, _ in node.inputs):
            # downstream of a node without a translation: not converted, but reported too if its op has none
            self.poisoned.add(node.name)
            if not _has_converter(node.op):
                self.failures.append(UnsupportedOpError(node.op, node.name, self.columns(node.name)))
            return
        ins = self._inputs(node)
        try:
            outs = self._dispatch(node, ins, on_host)
        except (UnsupportedOpError, ConversionError) as err:
            if err.node != node.name:  # raised about another node (e.g. an Assert's condition): not ours
                raise
            self.failures.append(err)  # keep walking: every failure of the graph is reported at once
            self.poisoned.add(node.name)
            return
        except RecomError:
            raise
        except Exception as err:  # keep the node / column context on unexpected failures
            self.failures.append(ConversionError(node.op, node.name, self.columns(node.name),
                                                 f"{type(err).__name__}: {err}"))
            self.poisoned.add(node.name)
            return
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for i, v in enumerate(outs):
            self.values[(node.name, i)] = v
        self.rows.visit(node, ins, outs)

    def _dispatch(self, node: Node, ins: list, on_host: bool):
        op = node.op
        if op == "Const":
            return Known(node.attr("value"), node.attr("dtype"))
        if all(isinstance(v, Known) for v in ins) and op in converters.KNOWN:
            try:
                return converters.KNOWN[op](self.ctx, node, ins)
            except converters.NotFoldable:
                pass
        if op in TABLE_OPS:
            if node.name not in self.tables:
                raise ConversionError(op, node.name, self.columns(node.name),
                                      "no initializer the importer can read (LookupTableImportV2 / "
                                      "InitializeTableV2 from constants, or InitializeTableFromTextFileV2)")
            return self.tables[node.name]
        if ins and isinstance(ins[0], Table) and op in ("Identity", "IdentityN"):  # a table handle passed along
            return ins[0]
        if op in converters.PLACED:
            self.ctx.on_host = on_host  # (a lookup whose result feeds the host stage runs there)
            return converters.PLACED[op](self.ctx, node, ins)
        if op in ("Shape", "Size", "Rank", "ShapeN"):
            return converters.DEVICE[op](self.ctx, node, ins)
        if op == "IdentityN" and any(isinstance(v, Host) for v in ins):
            return list(ins)  # (an inlined tf.cond's outputs: strings pass through as they are)
        if on_host or any(isinstance(v, Host) and v.dtype == "string" for v in ins):
            return self._host(node, ins)
        if op == "DenseBincount" and not isinstance(ins[1], Known):
            from .converters.host_ops import clamped_size

            size = clamped_size(self.ctx, node.inputs[1])  # bincount(minlength=n, maxlength=n): the size is n
            ins = ins if size is None else [ins[0], size, *ins[2:]]
        if op in _HOST_CLOSED and self._host_closed(ins):
            try:
                return self._host(node, ins)
            except ConversionError:  # no host rule for these inputs: the op runs in the module as usual
                if op not in converters.DEVICE:
                    raise
        if op not in converters.DEVICE:
            raise UnsupportedOpError(op, node.name, self.columns(node.name))
        return converters.DEVICE[op](self.ctx, node, ins)

    def _host_closed(self, ins: list) -> bool:
        """Every input is a host-stage result or a small known value (a constant or sizes), and one is a
        host-stage result (not a feed): keep the op on the host, so its consumer reads one host tensor."""
        produced = self.ctx.host_outputs
        return any(isinstance(v, Host) and v.tensor in produced for v in ins) and all(
            (isinstance(v, Host) and v.tensor in produced) or (isinstance(v, Known) and v.value.size <= 8)
            for v in ins)

    def _host(self, node: Node, ins: list):
        ctx = self.ctx
        if node.op not in converters.HOST:
            raise UnsupportedOpError(node.op, node.name, self.columns(node.name),
                                     "it works on strings (or feeds a string op), so it must run in the host "
                                     f"stage, which supports {sorted(converters.HOST)}")
        out_types = converters.HOST[node.op](ctx, node, ins)
        inputs = []
        for v in ins:
            if (inp := host_input(v)) is not None:
                inputs.append(inp)
            elif isinstance(v, Known):  # sizes used as data: computed on the host from the feeds' shapes
                inputs.append({"tensor": ctx.host_known(v)})
            else:
                ctx.fail("a host-stage op reads a value computed on the device")
        outputs = [f"{node.name}:{i}" for i in range(len(out_types))]
        attrs = host_attrs(node.attrs)
        ctx.add_host_op({"name": node.name, "op": node.op, "inputs": inputs, "attrs": attrs,
                              "outputs": outputs})
        outs = [Host(t, dt, shape) for t, (dt, shape) in zip(outputs, out_types)]
        for h in outs:
            ctx.host_values[h.tensor] = h
        return outs
