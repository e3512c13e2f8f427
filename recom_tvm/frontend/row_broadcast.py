"""Dense feeds whose single row TF broadcasts against the batch, found while the graph converts.

TF broadcasts a [1, ...] operand against a [B, ...] one in elementwise ops: a request-level context feed (the user's
features, one row) meets per-candidate features (B rows) in a two-tower score, or a placeholder_with_default of one
row scales a batch. The importer binds both dims as one size symbol (a run-time broadcast of every feed dim would
cost every fused op), so the compiled model reads B rows of the feed. For a feed whose every use reaches such a
broadcasting op through row-wise ops only (row i of the result reads row i of the feed and nothing else of it:
elementwise ops, lookups of its ids, matmuls by weights, reductions over other axes, reshapes keeping dim 0, slices
and splits keeping every row), repeating its one row B times before the module runs gives TF's answer exactly: from
the broadcasting op on, TF's values and the compiled model's are equal. The runtime does that repeat (runtime/row_broadcast.py) for the feeds
found here, reading B from the sizes of the feeds the broadcast meets (`anchors`: input size symbols).

Provenance per value: {feed tensor: state}. "raw": dim 0 is the feed's rows (row-wise so far); "met": derived from
the feed after it was broadcast (harmless from there); "shape": a known value computed from the feed's shape (only
a reshape's target may read it). A value computed by anything else from a raw feed disqualifies that feed, as does
a raw feed reaching an output or an Assert (its row count would show)."""

from __future__ import annotations

import numpy as np
from tvm import tirx

from ..shapes.symbolic import is_const_int, prove_equal
from .values import Host, Known

RAW, MET, SHAPE = "raw", "met", "shape"

# ops whose output row i reads row i of every operand (TF broadcasting among them), by name: data, not code
ELEMENTWISE = frozenset("""
Identity StopGradient Snapshot PreventGradient EnsureShape CheckNumerics Cast Bitcast ZerosLike OnesLike
Neg Abs Exp Log Sqrt Rsqrt Square Relu Relu6 Elu Selu LeakyRelu Sigmoid Tanh Erf Erfc Floor Ceil Sign Round Rint
LogicalNot IsNan IsInf IsFinite Reciprocal Log1p Expm1 Softplus Softsign Sin Cos Tan Atan Asin Acos Sinh Cosh
Asinh Acosh Atanh Invert
Add AddV2 Sub Mul RealDiv Div DivNoNan Maximum Minimum FloorDiv FloorMod Pow TruncateDiv TruncateMod Atan2
BitwiseAnd BitwiseOr BitwiseXor LeftShift RightShift Xdivy Xlogy SquaredDifference AddN ClipByValue
Less LessEqual Greater GreaterEqual Equal NotEqual LogicalAnd LogicalOr Select SelectV2
StringToHashBucketFast StringToHashBucketStrong StringToHashBucket StringLower StringUpper StringStrip
StaticRegexReplace RegexReplace StaticRegexFullMatch RegexFullMatch StringLength StringToNumber Substr StringJoin
AsString Bucketize
""".split())
# elementwise ops that do not broadcast (equal shapes or scalars): feeds meeting there are joined, as in a concat
NO_BROADCAST = frozenset("AddN Select ClipByValue StringJoin".split())

# ops with one row-carrying input (index) whose other inputs must not depend on any feed's rows: gathers of ids
# from a table (axis 0, no batch dims), a matmul by weights, a bias, a table lookup of keys
ROW_INPUT = {"GatherV2": 1, "Gather": 1, "ResourceGather": 1, "MatMul": 0, "BiasAdd": 0, "BiasAddV1": 0,
             "LookupTableFindV2": 1, "LookupTableFind": 1, "OneHot": 0}
# reductions: row-wise when the reduced axes (input 1) leave dim 0 alone
REDUCTIONS = frozenset("Sum Mean Max Min Prod All Any EuclideanNorm ArgMax ArgMin".split())
# shape ops: row-wise when the result keeps the input's dim 0 (same symbol); input 1 may read the feed's shape
SHAPE_OPS = frozenset("Reshape ExpandDims Squeeze".split())
# matmuls broadcasting their batch dims (all but the last two) as elementwise ops do: row-wise where dim 0 is one
# of them (rank >= 3: tf_keras' Dot layer, [n, 1, d] @ [B, d, 1])
BATCH_MATMUL = frozenset("BatchMatMulV2 BatchMatMulV3".split())
# slices and splits: row-wise when they keep every row, in order (user_dense[:, :3], tf.split(x, 2, axis=1))
SLICES = frozenset("StridedSlice Slice Split SplitV".split())
# along the last axis of a matrix or higher
LAST_AXIS = frozenset("Softmax LogSoftmax".split())
# the feeds' shape, as known values
SHAPE_READS = frozenset("Shape ShapeN Size".split())


def _merge(into: dict, prov: dict) -> None:
    for f, st in prov.items():
        old = into.get(f)
        # raw wins over met (some path is not yet broadcast), met over shape
        if old is None or st == RAW or (st == MET and old == SHAPE):
            into[f] = st


class RowBroadcast:
    """Provenance of every converted value; `feeds()` at the end names the feeds the runtime may repeat."""

    def __init__(self, feed_symbols: dict) -> None:
        self.feed_symbols = feed_symbols  # input size symbol -> [feed tensor, axis, kind] (importer)
        self.prov: dict[tuple[str, int], dict] = {}
        self.tainted: set[tuple[str, int]] = set()  # values depending on feeds in no row-wise way
        self.candidates: dict[str, tirx.Var] = {}  # feed tensor -> its dim-0 symbol
        self.bad: set[str] = set()
        self.anchors: dict[str, set[str]] = {}  # feed tensor -> symbols of the sizes it is broadcast against
        self.parent: dict[str, str] = {}  # feeds joined row by row (a concat): repeated together
        self.active = True

    # ------------------------------------------------------------------------------------------- inputs
    def feed(self, key: tuple[str, int], value) -> None:
        """A dense feed (a placeholder's value) of rank >= 1 whose dim 0 is a size symbol: a candidate."""
        if isinstance(value, Host) and value.shape and isinstance(value.shape[0], tirx.Var):
            tensor = f"{key[0]}:{key[1]}"
            self.candidates[tensor] = value.shape[0]
            self.prov[key] = {tensor: RAW}

    def disable(self) -> None:
        """Nodes TF runs on the host (co-run) are not visited: nothing can be proven then."""
        self.active = False

    # --------------------------------------------------------------------------------------------- walk
    def visit(self, node, ins: list, outs: list) -> None:
        if not self.active:
            return
        try:
            self._visit(node, ins, outs)
        except Exception:  # noqa: BLE001 - an op this analysis did not foresee: no feed is repeated then
            self.active = False

    def _visit(self, node, ins: list, outs: list) -> None:
        keys = list(node.inputs)
        provs = [self.prov.get(k) for k in keys]
        tainted = any(k in self.tainted for k in keys)
        if not tainted and not any(provs):
            return
        out_keys = [(node.name, i) for i in range(len(outs))]
        if outs and all(isinstance(o, Known) for o in outs):  # sizes or folded values: they carry the shape only
            shape = {}
            for p in provs:
                if p:
                    _merge(shape, {f: SHAPE for f, st in p.items() if st != MET})
            for k in out_keys:
                if shape:
                    self.prov[k] = dict(shape)
                if tainted:
                    self.tainted.add(k)
            return
        if node.op == "IdentityN" and not tainted:  # (a tf.function's outputs) each output is its input
            for k, p in zip(out_keys, provs):
                if p:
                    self.prov[k] = dict(p)
            return
        got = None if tainted else self._rule(node, ins, outs, provs)
        if got is None:  # not row-wise: every raw or shape-read feed among the inputs is out
            for p in provs:
                for f, st in (p or {}).items():
                    if st != MET:
                        self.bad.add(f)
            self.tainted.update(out_keys)
            return
        for k in out_keys:
            if got:
                self.prov[k] = got

    def _rule(self, node, ins, outs, provs) -> dict | None:
        """The outputs' provenance where the op is row-wise for its inputs' feeds, else None."""
        op = node.op
        # a feed's row count read as data (tf.shape(x)[0] * y): repeating the feed would change it; only a
        # reshape's target may read it
        if any(st == SHAPE for i, p in enumerate(provs) if p and not (op in SHAPE_OPS and i > 0)
               for st in p.values()):
            return None
        if op == "Select" and len({len(v.shape) for v in ins}) > 1:
            return None  # (v1: a vector condition lines up with dim 0, not with the last dims)
        if op == "EnsureShape" and (node.attr("shape") or [-1])[0] >= 0:
            return None  # (its dim 0 pinned: tf.ensure_shape(user, [1, d]) fails once the row is repeated)
        if op in ELEMENTWISE:
            return self._elementwise(node, ins, provs)
        if op in BATCH_MATMUL:
            if any(len(v.shape) < 3 for v, p in zip(ins, provs) if p and any(st != MET for st in p.values())):
                return None  # (a feed's rows as a matrix's rows)
            return self._elementwise(node, ins, provs)
        if op in SHAPE_READS:
            return {f: SHAPE for f, st in (provs[0] or {}).items() if st != MET} or None
        if op == "Rank":
            return {}
        out = outs[0] if outs else None
        if op in ROW_INPUT:
            k = ROW_INPUT[op]
            if k >= len(ins) or any(p and any(st != MET for st in p.values())
                                    for i, p in enumerate(provs) if i != k):
                return None
            if op in ("GatherV2", "Gather", "ResourceGather") and not self._gather_rows(node, ins):
                return None
            if op == "MatMul" and node.attr("transpose_a"):
                return None
            if op == "OneHot" and (node.attr("axis") if node.attr("axis") is not None else -1) == 0:
                return None
            return self._keeps_rows(provs[k], ins[k], out)
        if op in REDUCTIONS:
            axes = ins[1] if len(ins) > 1 else None
            rank = len(ins[0].shape)
            if not (isinstance(axes, Known) and axes.concrete) or (provs[1] and any(
                    st != MET for st in provs[1].values())):
                return None
            ax = {int(a) % max(rank, 1) for a in np.asarray(axes.numpy()).reshape(-1)}
            return dict(provs[0] or {}) if 0 not in ax and rank > 0 else None
        if op in SHAPE_OPS:
            own = provs[0] or {}
            for p in provs[1:]:  # the target shape may read the feed's own shape, nothing else row-dependent
                if p and any(st != MET and f not in own for f, st in p.items()):
                    return None
            return self._keeps_rows(own, ins[0], out)
        if op in SLICES:
            return self._slice(node, ins, provs, out)
        if op in LAST_AXIS:
            return dict(provs[0] or {}) if len(ins[0].shape) >= 2 else None
        if op == "ConcatV2":
            return self._concat(ins, provs)
        return None

    def _keeps_rows(self, prov, inp, out) -> dict | None:
        if not prov:
            return {}
        if out is None or not inp.shape or not out.shape or not _same(inp.shape[0], out.shape[0]):
            return None
        return dict(prov)

    def _slice(self, node, ins, provs, out) -> dict | None:
        """A slice keeping dim 0 whole (begin 0 or masked, end masked, stride 1, no new or shrunk axis there) or a
        split along another axis; the bounds, sizes and axis constants."""
        data = 1 if node.op == "Split" else 0
        rest = [i for i in range(len(ins)) if i != data]
        if any(provs[i] for i in rest) or not all(isinstance(ins[i], Known) and ins[i].concrete for i in rest):
            return None
        rank = len(ins[data].shape)
        consts = [[int(v) for v in np.asarray(ins[i].numpy()).reshape(-1)] for i in rest]
        if node.op == "StridedSlice":
            from .converters.array import strided_slice_spec

            slices, layout = strided_slice_spec(None, node, rank, *consts)
            if not layout or layout[0] != ("dim", 0) or slices[0][0] not in (None, 0) or slices[0][1] is not None \
                    or slices[0][2] != 1 or slices[0][3]:
                return None
        elif node.op == "Slice":
            begin, size = consts
            if not begin or begin[0] != 0 or size[0] != -1:
                return None
        elif rank == 0 or consts[-1 if node.op == "SplitV" else 0][0] % rank == 0:
            return None  # (a split along the rows)
        return self._keeps_rows(provs[data], ins[data], out)

    @staticmethod
    def _gather_rows(node, ins) -> bool:
        if node.op == "GatherV2":
            axis = ins[2] if len(ins) > 2 else None
            if not (isinstance(axis, Known) and axis.concrete and int(np.asarray(axis.numpy()).reshape(())) == 0):
                return False
        return int(node.attr("batch_dims") or 0) == 0  # (GatherV2's and ResourceGather's)

    def _concat(self, ins, provs) -> dict | None:
        axis = ins[-1]
        data, dprov = ins[:-1], provs[:-1]
        if not (isinstance(axis, Known) and axis.concrete) or (provs[-1] and any(
                st != MET for st in provs[-1].values())):
            return None
        rank = len(data[0].shape)
        if rank == 0 or int(np.asarray(axis.numpy()).reshape(())) % rank == 0:
            return None
        # TF requires equal dim 0: every operand some feed's rows (a constant of one row would pin it to 1); the
        # feeds joined here are repeated together or not at all (one fed with 1 row, the other with B: TF's error)
        raws = [[f for f, st in (p or {}).items() if st == RAW] for p in dprov]
        if not all(raws):
            return None
        for r in raws[1:]:
            self._join(raws[0][0], r[0])
        out: dict = {}
        for p in dprov:
            _merge(out, p or {})
        return out

    def _elementwise(self, node, ins, provs) -> dict | None:
        ranks = [len(v.shape) if v is not None else 0 for v in ins]
        top = max(ranks) if ranks else 0
        out: dict = {}
        for p in provs:
            _merge(out, p or {})
        if node.op in NO_BROADCAST:
            raws = [f for p in provs for f, st in (p or {}).items() if st == RAW]
            if any(ranks[i] != top for i, p in enumerate(provs) if p and RAW in p.values()):
                return None
            for f in raws[1:]:
                self._join(raws[0], f)
            return out
        for i, p in enumerate(provs):
            for f, st in (p or {}).items():
                if st != RAW:
                    continue
                if ranks[i] != top:  # its dim 0 lines up with another operand's inner dim
                    return None
                met = False
                for j, v in enumerate(ins):
                    if j == i or ranks[j] != top or prove_equal(v.shape[0], 1):
                        continue
                    other = provs[j] or {}
                    if other.get(f) == RAW:
                        continue  # the same rows on both sides
                    anchor = self._anchor(f, v.shape[0], other)
                    if anchor is None:
                        return None
                    if anchor:
                        self.anchors.setdefault(f, set()).add(anchor)
                    met = True
                if met:
                    out[f] = MET
        return out

    def _anchor(self, f: str, dim, other: dict) -> str | None:
        """The size symbol a raw feed f is broadcast against ("" where an earlier broadcast of f already gave
        one), or None when the other side's rows cannot be read from a feed."""
        if isinstance(dim, tirx.Var):
            if other.get(f) == MET and f in self.anchors:
                return ""
            src = self.feed_symbols.get(dim.name)
            own = self.candidates.get(f)
            if src is not None and src[0] != f and (own is None or dim.name != own.name):
                return dim.name
        return None

    def _root(self, f: str) -> str:
        while self.parent.get(f, f) != f:
            f = self.parent[f]
        return f

    def _join(self, a: str, b: str) -> None:
        ra, rb = self._root(a), self._root(b)
        if ra != rb:
            self.parent[rb] = ra

    # ------------------------------------------------------------------------------------------- result
    def finish(self, final_keys: list[tuple[str, int]]) -> list[tuple[list[str], list[str]]]:
        """[(feed tensors repeated together, anchor symbols)] the runtime may repeat; final_keys: the outputs and
        the Asserts' conditions (a raw feed there shows its row count)."""
        if not self.active:
            return []
        for k in final_keys:
            if k in self.tainted:
                continue  # its feeds were disqualified where it was computed
            for f, st in (self.prov.get(k) or {}).items():
                if st != MET:
                    self.bad.add(f)
        groups: dict[str, list[str]] = {}
        for f in self.candidates:
            groups.setdefault(self._root(f), []).append(f)
        out = []
        for members in groups.values():
            anchors = set().union(*(self.anchors.get(f, set()) for f in members))
            # a member that may not be repeated (or is no candidate) keeps the whole group as fed
            if anchors and not any(f in self.bad for f in members):
                own = {self.candidates[f].name for f in members}
                out.append((sorted(members), sorted(anchors - own)))
        return [g for g in out if g[1]]


def _same(a, b) -> bool:
    if is_const_int(a) or is_const_int(b):
        return False  # a dim 0 of fixed size is no feed's rows
    return a is b or prove_equal(a, b)
