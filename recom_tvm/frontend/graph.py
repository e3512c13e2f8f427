"""A read-only view of a TensorFlow GraphDef: nodes, decoded attributes, tensor names, topological order."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable

import numpy as np

from ..errors import ModelFormatError
from .. import tfproto as proto

# TF DataType enum -> numpy dtype name ("string" for DT_STRING); reference types (+100) map like their base.
TF_DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 9: "int64",
    10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
    23: "uint64",
}
_VAL_FIELDS = {
    "float32": "float_val", "float64": "double_val", "int32": "int_val", "uint8": "int_val", "int16": "int_val",
    "int8": "int_val", "uint16": "int_val", "int64": "int64_val", "bool": "bool_val", "uint32": "uint32_val",
    "uint64": "uint64_val", "float16": "half_val",
}


def tf_dtype(enum: int) -> str:
    """Numpy dtype name of a TF DataType enum value."""
    name = TF_DTYPES.get(enum % 100 if enum > 100 else enum)
    if name is None:
        raise ModelFormatError(f"unsupported TensorFlow dtype enum {enum}")
    return name


def decode_shape(shape) -> list[int] | None:
    """TensorShapeProto -> list of dims (-1 unknown), or None for unknown rank."""
    if shape.unknown_rank:
        return None
    return [int(d.size) for d in shape.dim]


def decode_tensor(t) -> np.ndarray:
    """TensorProto -> numpy array (strings as an object array of bytes)."""
    dtype = tf_dtype(t.dtype)
    shape = decode_shape(t.tensor_shape) or []
    count = int(np.prod(shape)) if shape else 1
    if dtype == "string":
        vals = list(t.string_val)
        if len(vals) == 1 and count != 1:
            vals = vals * count
        return np.array(vals, dtype=object).reshape(shape)
    if dtype == "bfloat16":  # (bfloat16: the top 16 bits of a float32; ml_dtypes, which TensorFlow installs)
        import ml_dtypes

        if t.tensor_content:
            if len(t.tensor_content) != count * 2:
                raise ModelFormatError(f"a bfloat16 constant of shape {shape} holds {len(t.tensor_content)} bytes "
                                       "(truncated or corrupt)")
            bits = np.frombuffer(t.tensor_content, dtype=np.uint16).copy()
        else:
            bits = np.array(list(t.half_val), dtype=np.uint16)  # TF keeps the 16 bits in half_val
        return _filled(bits.view(ml_dtypes.bfloat16), shape, count)
    if t.tensor_content:
        if len(t.tensor_content) != count * np.dtype(dtype).itemsize:
            raise ModelFormatError(f"a {dtype} constant of shape {shape} holds {len(t.tensor_content)} bytes "
                                   "(truncated or corrupt)")
        arr = np.frombuffer(t.tensor_content, dtype=dtype).copy()
        return arr.reshape(shape)
    field = _VAL_FIELDS.get(dtype)
    if field is None:
        raise ModelFormatError(f"cannot decode a constant of dtype {dtype}")
    vals = list(getattr(t, field))
    if dtype == "float16":
        arr = np.array(vals, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(vals, dtype=dtype)
    return _filled(arr, shape, count)


def _filled(arr: np.ndarray, shape: list, count: int) -> np.ndarray:
    """The values of a TensorProto's repeated field as the array of `shape`."""
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 0:  # TF: a constant without values is zeros; large ones stay virtual (see zero_array)
        return zero_array(shape, arr.dtype)
    # TF stores repeated trailing values once: fill the rest with the last one.
    out = np.empty(count, dtype=arr.dtype)
    out[: arr.size] = arr
    out[arr.size :] = arr[-1]
    return out.reshape(shape)


def decode_attr(value):
    """AttrValue -> Python value (int, float, bool, bytes, dtype name, shape list, numpy array, or lists)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "type":
        return tf_dtype(value.type)
    if kind == "shape":
        return decode_shape(value.shape)
    if kind == "tensor":
        return decode_tensor(value.tensor)
    if kind == "func":
        return value.func.name
    if kind == "list":
        lv = value.list
        for field in ("s", "i", "f", "b"):
            if len(getattr(lv, field)):
                return list(getattr(lv, field))
        if len(lv.type):
            return [tf_dtype(t) for t in lv.type]
        if len(lv.shape):
            return [decode_shape(s) for s in lv.shape]
        if len(lv.tensor):
            return [decode_tensor(t) for t in lv.tensor]
        return []
    return getattr(value, kind)


LAZY_ZEROS_MIN = 1 << 20


def zero_array(shape, dtype) -> np.ndarray:
    """Zeros; above LAZY_ZEROS_MIN elements a read-only zero-strided view that takes no memory.

    Graphs whose huge tables were stripped out (their values supplied at load time, e.g. generated on the GPU)
    carry such constants; `is_virtual_zeros` tells them apart so nothing materializes or writes them."""
    count = int(np.prod(shape)) if len(shape) else 1
    if count >= LAZY_ZEROS_MIN:
        return np.broadcast_to(np.zeros((), dtype=dtype), shape)
    return np.zeros(shape, dtype=dtype)


def is_virtual_zeros(arr: np.ndarray) -> bool:
    return arr.size > 0 and arr.ndim > 0 and all(s == 0 for s in arr.strides)


def parse_tensor_name(name: str) -> tuple[str, int]:
    """'node:1' -> ('node', 1); 'node' -> ('node', 0)."""
    node, sep, idx = name.rpartition(":")
    if sep and idx.isdigit():
        return node, int(idx)
    return name, 0


@dataclasses.dataclass
class Node:
    """One GraphDef node with decoded attributes; `inputs` are data inputs as (node, output index)."""

    name: str
    op: str
    inputs: list[tuple[str, int]]
    control_inputs: list[str]
    attrs: dict
    device: str = ""

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)


class Graph:
    """Nodes of a GraphDef by name, in a topological order of data and control edges."""

    def __init__(self, graph_def) -> None:
        from .functions import inline_functions

        from .partitioned import rewrite_partitioned_lookups

        inline_functions(graph_def)  # If / StatelessIf -> Switch / Merge, calls -> their bodies
        rewrite_partitioned_lookups(graph_def)  # sharded tables' partition + gathers + stitch -> one node
        self.graph_def = graph_def  # the NodeDefs themselves, for subgraphs handed back to TF (host co-run)
        # Consts the loader froze from what TensorFlow feeds the graph at run time (variables, a function's
        # captured tensors): Grappler cannot fold them (see math.py's divisions by constants)
        self.fed_consts: set[str] = set()
        self.nodes: dict[str, Node] = {}
        for nd in graph_def.node:
            inputs, controls = [], []
            for inp in nd.input:
                if inp.startswith("^"):
                    controls.append(inp[1:])
                else:
                    inputs.append(parse_tensor_name(inp))
            if nd.name in self.nodes:
                raise ModelFormatError(f"duplicate node name {nd.name!r} in GraphDef")
            attrs = {k: decode_attr(v) for k, v in sorted(nd.attr.items())}  # a proto map: no fixed order
            self.nodes[nd.name] = Node(nd.name, nd.op, inputs, controls, attrs, nd.device)
        for node in self.nodes.values():
            for src, _ in node.inputs:
                if src not in self.nodes:
                    raise ModelFormatError(f"node {node.name!r} ({node.op}) reads {src!r}, which is not in the graph")
        self.order = self._topo_order()

    def add_placeholder(self, name: str, dtype: str, shape: list[int] | None) -> None:
        """A Placeholder nothing reads (a feed part the model's freeze pruned, kept so the feed stays whole).
        First in the order: it has no inputs, and its position must not depend on where it was added."""
        if name in self.nodes:
            raise ModelFormatError(f"cannot add placeholder {name!r}: the graph has a node of that name")
        enum = next(k for k, v in TF_DTYPES.items() if v == dtype)
        nd = self.graph_def.node.add(name=name, op="Placeholder")
        nd.attr["dtype"].type = enum
        if shape is None:
            nd.attr["shape"].shape.unknown_rank = True
        else:
            for d in shape:
                nd.attr["shape"].shape.dim.add(size=d)
        self.nodes[name] = Node(name, "Placeholder", [], [], {k: decode_attr(v) for k, v in sorted(nd.attr.items())})
        self.order.insert(0, name)

    @classmethod
    def from_bytes(cls, data: bytes) -> Graph:
        gd = proto.GraphDef()
        try:
            gd.ParseFromString(data)
        except Exception as err:  # protobuf raises DecodeError (message varies by backend)
            raise ModelFormatError(f"not a valid GraphDef: {err}") from err
        if not gd.node:
            raise ModelFormatError("the GraphDef holds no nodes (empty, truncated, or not a GraphDef)")
        return cls(gd)

    def _topo_order(self) -> list[str]:
        indeg = {n: 0 for n in self.nodes}
        users: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            # in input order (a set here made the order, and so which error is reported first, depend on
            # PYTHONHASHSEED)
            srcs = dict.fromkeys([s for s, _ in node.inputs] + [c for c in node.control_inputs if c in self.nodes])
            for s in srcs:
                indeg[node.name] += 1
                users[s].append(node.name)
        # ready nodes by name, not GraphDef position: TF's freezing (convert_variables_to_constants_v2) lists the
        # same nodes in a different order from one load to the next, and everything the importer emits (the
        # parameters, the host assertions, hence which batch symbol ResolveShapes keeps) follows this order
        ready = [n for n, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for u in users[n]:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(self.nodes):
            self._refuse_cycle(sorted(n for n, d in indeg.items() if d > 0))
        return order

    _LOOP_OPS = ("Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration", "LoopCond")

    def _refuse_cycle(self, cyc: list[str]) -> None:
        """A cycle is a while loop (TF lowers `While` / `StatelessWhile` to Enter / Merge / NextIteration / Exit
        when a SavedModel or a tf.function is frozen): refused naming the loop (its Enter nodes' frame) and the op
        types, with where such loops come from; any other cycle is a malformed graph."""
        frames: dict[str, list[str]] = {}
        for n, node in self.nodes.items():  # (an Enter reads from outside the loop: it is not on the cycle)
            if node.op in ("Enter", "RefEnter"):
                frame = node.attr("frame_name", b"")
                frame = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else str(frame)
                frames.setdefault(frame or n, []).append(n)
        if frames or any(self.nodes[n].op in self._LOOP_OPS for n in cyc):
            from ..errors import UnsupportedOpError

            ops = sorted({self.nodes[n].op for n in cyc if self.nodes[n].op in self._LOOP_OPS + ("Merge", "Switch")}
                         | ({"Enter"} if frames else set()))
            loop = sorted(frames)[0].removesuffix("/while_context") if frames else cyc[0]
            more = f" (and {len(frames) - 1} more loops)" if len(frames) > 1 else ""
            raise UnsupportedOpError(
                "While", loop, None,
                f"a while loop{more} (tf.while_loop, tf.map_fn / tf.scan, a Keras RNN layer: GRU, LSTM, SimpleRNN) "
                f"is not supported (conditionals are); TF wrote it as {', '.join(ops)} nodes, e.g. {cyc[:3]}")
        raise ModelFormatError(f"the graph has a cycle; nodes involved: {cyc[:5]}")

    def consumers(self) -> dict[str, list[str]]:
        """node name -> names of nodes reading any of its outputs."""
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for src, _ in node.inputs:
                out[src].append(node.name)
        return out

    def guarding_asserts(self, roots: Iterable[str]) -> list[tuple[str, tuple[str, int]]]:
        """(Assert node, its condition tensor) for every Assert the roots depend on through control edges
        (tf.debugging asserts and AssertGuard conditionals), the condition traced back through Switch /
        Identity to the tensor computed outside the guard."""
        seen: set[str] = set()
        stack = list(roots)
        found = []
        while stack:
            n = stack.pop()
            node = self.nodes[n]
            if node.op == "Assert" and node.inputs:
                src, idx = node.inputs[0]
                for _ in range(32):
                    cur = self.nodes[src]
                    if cur.op not in ("Identity", "Switch") or not cur.inputs:
                        break
                    src, idx = cur.inputs[0]
                found.append((n, (src, idx)))
            for src in [s for s, _ in node.inputs] + list(node.control_inputs):
                if src not in seen and src in self.nodes:
                    seen.add(src)
                    stack.append(src)
        return found

    def const_strings(self, name: str) -> list[str]:
        """The string constants an Assert prints (its data inputs), traced through Identity / Switch."""
        out = []
        for src, _ in self.nodes[name].inputs[1:]:
            for _ in range(32):
                cur = self.nodes[src]
                if cur.op not in ("Identity", "Switch") or not cur.inputs:
                    break
                src = cur.inputs[0][0]
            cur = self.nodes[src]
            if cur.op == "Const" and cur.attr("dtype") == "string":
                out += [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in np.asarray(cur.attr("value")).reshape(-1).tolist()]
        return out

    def ancestors(self, roots: Iterable[str]) -> set[str]:
        """All nodes the given nodes read from, transitively (data edges only)."""
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            n = stack.pop()
            for src, _ in self.nodes[n].inputs:
                if src not in seen:
                    seen.add(src)
                    stack.append(src)
        return seen
