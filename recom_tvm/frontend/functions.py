"""Functional control flow and calls in a GraphDef, inlined into plain nodes before import.

TF2-style graphs keep `tf.cond` as `If` / `StatelessIf` nodes whose branches are functions of the graph's library
(a TF1 Session graph with control flow v2, TF2's default, frozen by `convert_variables_to_constants`; or a TF2
freeze with `lower_control_flow=False`), and calls as `PartitionedCall` / `StatefulPartitionedCall`. Lowering
them here the way TensorFlow's own LowerIfOp does (`Switch` of the predicate and of every input, both branches
inlined, a `Merge` per output) leaves the importer one form of conditional to handle: `Switch` / `Merge`, which
frozen TF1 graphs carry directly. Nodes without data inputs inside a branch get a control edge from the branch's
pivot, as TF's inliner gives them, so they are dead when their branch is not taken.

Function bodies name tensors `node:output_arg:index`; which output of the node that is depends on the op's
output arguments: `OUTPUT_ARGS` lists them for the multi-output ops recommendation graphs use, TensorFlow's op
registry answers for the rest when TensorFlow is installed.
"""

from __future__ import annotations

from ..errors import ModelFormatError

IF_OPS = ("If", "StatelessIf")
CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")
_MAX_INLINED_NODES = 1 << 22

# op -> its output arguments in order: (name, None) one tensor; (name, attr) a list whose length is the int attr
# `attr`, or the length of the type-list attr `attr`
OUTPUT_ARGS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Switch": (("output_false", None), ("output_true", None)),
    "RefSwitch": (("output_false", None), ("output_true", None)),
    "Merge": (("output", None), ("value_index", None)),
    "Unique": (("y", None), ("idx", None)), "UniqueV2": (("y", None), ("idx", None)),
    "UniqueWithCounts": (("y", None), ("idx", None), ("count", None)),
    "TopKV2": (("values", None), ("indices", None)), "TopK": (("values", None), ("indices", None)),
    "SparseFillEmptyRows": (("output_indices", None), ("output_values", None), ("empty_row_indicator", None),
                            ("reverse_index_map", None)),
    "SparseReshape": (("output_indices", None), ("output_shape", None)),
    "SparseCross": (("output_indices", None), ("output_values", None), ("output_shape", None)),
    "SparseCrossHashed": (("output_indices", None), ("output_values", None), ("output_shape", None)),
    "SparseCrossV2": (("output_indices", None), ("output_values", None), ("output_shape", None)),
    "StringSplit": (("indices", None), ("values", None), ("shape", None)),
    "StringSplitV2": (("indices", None), ("values", None), ("shape", None)),
    "SparseReorder": (("output_indices", None), ("output_values", None)),
    "LookupTableExportV2": (("keys", None), ("values", None)),
    "RaggedRange": (("rt_nested_splits", None), ("rt_dense_values", None)),
    "Split": (("output", "num_split"),), "SplitV": (("output", "num_split"),), "Unpack": (("output", "num"),),
    "ShapeN": (("output", "N"),), "IdentityN": (("output", "T"),),
    "If": (("output", "Tout"),), "StatelessIf": (("output", "Tout"),),
    "PartitionedCall": (("output", "Tout"),), "StatefulPartitionedCall": (("output", "Tout"),),
}


def _output_args(op: str) -> tuple | None:
    if op in OUTPUT_ARGS:
        return OUTPUT_ARGS[op]
    try:  # TensorFlow's registry, when it is installed (a frozen .pb imports without it)
        from tensorflow.python.framework import op_def_registry
    except ImportError:
        return None
    op_def = op_def_registry.get(op)
    if op_def is None:
        return None
    return tuple((a.name, a.number_attr or a.type_list_attr or None) for a in op_def.output_arg)


def _list_len(node, attr: str) -> int:
    a = node.attr[attr]
    kind = a.WhichOneof("value")
    if kind == "i":
        return int(a.i)
    if kind == "list":
        return len(a.list.type)
    raise ModelFormatError(f"node {node.name!r} ({node.op}): attribute {attr!r} is not a length")


def output_index(node, arg: str, idx: int, fname: str) -> int:
    """The flat output index of `node:arg:idx` inside function `fname`."""
    args = _output_args(node.op)
    if args is None:
        if idx == 0 or arg in ("output", "y", "z"):
            return idx  # ops with one output argument: the index inside it is the output index
        raise ModelFormatError(f"function {fname!r}: cannot tell which output of {node.op} node {node.name!r} "
                               f"'{arg}:{idx}' is (install TensorFlow for its op registry)")
    base = 0
    for name, length in args:
        n = 1 if length is None else _list_len(node, length)
        if name == arg:
            return base + idx
        base += n
    raise ModelFormatError(f"function {fname!r}: {node.op} node {node.name!r} has no output {arg!r}")


class _Inliner:
    def __init__(self, graph_def, node_cls) -> None:
        self.gd = graph_def
        self.node_cls = node_cls
        self.functions = {f.signature.name: f for f in graph_def.library.function}
        self.count = 0

    def run(self) -> None:
        """Replace every If / StatelessIf / call node (nested ones too) by inlined nodes."""
        nodes = list(self.gd.node)
        out: list = []
        while nodes:
            node = nodes.pop(0)
            if node.op in IF_OPS:
                new = self._lower_if(node)
            elif node.op in CALL_OPS:
                new = self._inline_call(node)
            else:
                out.append(node)
                continue
            self.count += len(new)
            if self.count > _MAX_INLINED_NODES:
                raise ModelFormatError("inlining the graph's functions exceeds "
                                       f"{_MAX_INLINED_NODES} nodes (recursive functions?)")
            nodes[:0] = new  # inlined bodies may hold further If / call nodes
        del self.gd.node[:]
        self.gd.node.extend(out)

    def _function(self, node, attr: str):
        name = node.attr[attr].func.name
        if name not in self.functions:
            raise ModelFormatError(f"{node.op} node {node.name!r}: function {name!r} is not in the graph's library")
        return self.functions[name]

    def _new(self, name: str, op: str, inputs: list[str], attrs: dict | None = None, like=None):
        nd = self.node_cls(name=name, op=op, input=inputs)
        if like is not None:
            nd.device = like.device
        for k, v in (attrs or {}).items():
            nd.attr[k].CopyFrom(v)
        return nd

    def _body(self, fn, prefix: str, args: list[str], pivot: str | None) -> tuple[list, list[str], list[str]]:
        """fn's nodes renamed under `prefix`, its arguments read from `args`; (nodes, returned tensors,
        control-return nodes). With `pivot`, nodes without data inputs get a control edge from it."""
        sig = fn.signature
        fname = sig.name
        if len(args) != len(sig.input_arg):
            raise ModelFormatError(f"function {fname!r} takes {len(sig.input_arg)} inputs, given {len(args)}")
        arg_of = {a.name: t for a, t in zip(sig.input_arg, args)}
        by_name = {n.name: n for n in fn.node_def}

        def ref(t: str) -> str:
            if t.startswith("^"):
                return "^" + prefix + t[1:]
            parts = t.split(":")
            if len(parts) == 1:
                if t in arg_of:
                    return arg_of[t]
                if t in by_name:
                    return f"{prefix}{t}"
                raise ModelFormatError(f"function {fname!r} reads {t!r}, which is neither an argument nor a node")
            if parts[0] not in by_name:
                raise ModelFormatError(f"function {fname!r} reads {t!r} from an unknown node")
            if len(parts) == 2:  # node:index (GraphDef style, seen in some exporters)
                return f"{prefix}{parts[0]}:{parts[1]}"
            i = output_index(by_name[parts[0]], parts[1], int(parts[2]), fname)
            return f"{prefix}{parts[0]}" + (f":{i}" if i else "")

        out = []
        for n in fn.node_def:
            nd = self.node_cls()
            nd.CopyFrom(n)
            nd.name = prefix + n.name
            del nd.input[:]
            data = [ref(t) for t in n.input if not t.startswith("^")]
            ctrl = [ref(t) for t in n.input if t.startswith("^")]
            if pivot is not None and not data:
                ctrl.append("^" + pivot)
            nd.input.extend(data + ctrl)
            out.append(nd)
        rets = []
        for a in sig.output_arg:
            if a.name not in fn.ret:
                raise ModelFormatError(f"function {fname!r} does not return its output {a.name!r}")
            rets.append(ref(fn.ret[a.name]))
        ctrl_rets = [prefix + v for v in fn.control_ret.values()]
        return out, rets, ctrl_rets

    def _lower_if(self, node) -> list:
        """Switch / Merge form of an If: TF's LowerIfOp."""
        data = [t for t in node.input if not t.startswith("^")]
        ctrl = [t for t in node.input if t.startswith("^")]
        if not data:
            raise ModelFormatError(f"{node.op} node {node.name!r} has no predicate")
        pred, args = data[0], data[1:]
        p = node.name + "/recom_"
        t_attr = node.attr["Tcond"] if "Tcond" in node.attr else None
        new = [self._new(p + "pred_switch", "Switch", [pred, pred] + ctrl, {"T": t_attr} if t_attr else None, node)]
        if t_attr is None:
            new[0].attr["T"].type = 10  # DT_BOOL
        new.append(self._new(p + "pivot_f", "Identity", [p + "pred_switch"], {"T": new[0].attr["T"]}, node))
        new.append(self._new(p + "pivot_t", "Identity", [p + "pred_switch:1"], {"T": new[0].attr["T"]}, node))
        tin = list(node.attr["Tin"].list.type) if "Tin" in node.attr else []
        for i, a in enumerate(args):
            sw = self._new(f"{p}input_{i}", "Switch", [a, pred] + ctrl, None, node)
            if i < len(tin):
                sw.attr["T"].type = tin[i]
            new.append(sw)
        outs = []
        done = []
        for branch, attr, port in (("else", "else_branch", 0), ("then", "then_branch", 1)):
            fn = self._function(node, attr)
            pivot = p + ("pivot_t" if port else "pivot_f")
            body, rets, cr = self._body(fn, f"{node.name}/{branch}/", [f"{p}input_{i}:{port}" if port else
                                                                      f"{p}input_{i}" for i in range(len(args))],
                                        pivot)
            new += body
            outs.append(rets)
            # live once the branch's side effects (its Asserts) ran; dead when the branch is not taken
            done.append(self._new(f"{p}{branch}_done", "Identity", [pivot] + ["^" + c for c in cr],
                                  {"T": new[0].attr["T"]}, node))
        new += done
        executed = self._new(p + "branch_executed", "Merge", [d.name for d in done], None, node)
        executed.attr["N"].i = 2
        executed.attr["T"].CopyFrom(new[0].attr["T"])
        new.append(executed)
        ctrl_rets = [executed.name]
        tout = list(node.attr["Tout"].list.type) if "Tout" in node.attr else []
        if len(outs[0]) != len(outs[1]):
            raise ModelFormatError(f"{node.op} node {node.name!r}: its branches return {len(outs[0])} and "
                                   f"{len(outs[1])} values")
        merges = []
        for k, (f_out, t_out) in enumerate(zip(*outs)):
            m = self._new(f"{p}merge_{k}", "Merge", [f_out, t_out], None, node)
            m.attr["N"].i = 2
            if k < len(tout):
                m.attr["T"].type = tout[k]
            merges.append(m)
        new += merges
        new.append(self._result(node, [m.name for m in merges], ctrl_rets, tout))
        return new

    def _inline_call(self, node) -> list:
        fn = self._function(node, "f")
        data = [t for t in node.input if not t.startswith("^")]
        ctrl = [t for t in node.input if t.startswith("^")]
        p = node.name + "/"
        # a control input of the call gates every node of the body, as TF's inliner does
        gate = None
        new = []
        if ctrl:
            gate = node.name + "/recom_input_control"
            new.append(self._new(gate, "NoOp", ctrl, None, node))
        body, rets, cr = self._body(fn, p, data, gate)
        new += body
        new.append(self._result(node, rets, cr, list(node.attr["Tout"].list.type) if "Tout" in node.attr else []))
        return new

    def _result(self, node, outputs: list[str], ctrl_rets: list[str], tout: list[int]):
        """The node keeping the original name: its outputs (IdentityN), control edges to the functions' side
        effects (their Asserts), so consumers and asserts reached through it stay connected."""
        op = "IdentityN" if outputs else "NoOp"
        nd = self._new(node.name, op, outputs + ["^" + c for c in ctrl_rets], None, node)
        if outputs:
            nd.attr["T"].list.type.extend(tout or [1] * len(outputs))
        return nd


def inline_functions(graph_def) -> int:
    """Inline the graph's If / StatelessIf (lowered to Switch / Merge) and call nodes in place; returns the
    number of nodes added."""
    if not any(n.op in IF_OPS + CALL_OPS for n in graph_def.node):
        return 0
    inl = _Inliner(graph_def, type(graph_def.node[0]))
    inl.run()
    return inl.count
