"""EliminateRedundancy: an embedding column's ~40 ops -> one bag of table rows (RECom section 5, and more).

Rewrite rules, as data (`RULES`), applied by one engine until nothing fires; each rule matches at one binding
and returns its replacement, and records the fact that justified it (module attr "recom_tvm.facts"):

- sparse_column: SparseFillEmptyRows + [Unique + table gather] + SparseSegment{Sum,Mean,SqrtN} + the Select that
  zeroes empty rows  ->  `embedding_bag(table, ids, rows, mask, B, mode)`. The id filter feeding
  SparseFillEmptyRows (`Where(ids >= 0)` + two gathers) becomes the bag's mask, so no data-dependent shape is
  left. Rows must be sorted: proven (arange, Where outputs) or ensured on the host (`sort_rows` in the spec)
  when the feature is consumed by this column alone.
- one_per_row: a bag whose rows are provably `arange(B)` -> a plain gather (mean = sum = sqrtn of one id);
  with a mask -> gather + zero fill.
- gather_identity: `gather(x, arange(len(x)))` -> x.
- where_all_true: `Where(all-true 1-D mask)` -> arange coordinates (after FoldProvenComparisons).
Range checks (TF-CPU's GatherV2 error) are dropped where the value ranges prove the ids in range, moved to the
host (`id_checks`) where the ids are a feed or a host-stage output, and kept on the device otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import tvm
import tvm_ffi
from tvm import relax, tirx

from ..ops import defs
from ..shapes.index_expr import IndexExprs
from ..shapes.symbolic import analyzer, as_expr, const_array, is_tensor_const, prove_equal
from ._util import attach_spec, conjuncts, copy_attrs, positive_test, spec_of, strip_simplified
from .dataflow import DataflowView, op_name
from .dead_code import RemoveDeadCode
from .resolve_shapes import ResolveShapes
from .value_ranges import ValueRanges

FACTS_ATTR = "recom_tvm.facts"


@dataclasses.dataclass
class RuleContext:
    view: DataflowView
    ie: IndexExprs
    ranges: ValueRanges
    spec: object
    facts: list[str]
    inputs: dict[str, dict]  # Relax param name -> module input entry of the spec
    feature_of_indices: dict = dataclasses.field(default_factory=dict)  # indices tensor -> sparse feature
    params_by_ref: dict = dataclasses.field(default_factory=dict)  # host tensor -> Relax param

    def __post_init__(self) -> None:
        for f in self.spec.features:
            if f["kind"] == "sparse":
                self.feature_of_indices[f["tensors"]["indices"]] = f
        for p in self.view.func.params:
            inp = self.inputs.get(p.name)
            if inp is not None:
                self.params_by_ref[inp["ref"]] = p

    def label(self, text: str) -> str:
        col = text.split("(column ", 1)[1].rstrip(")") if "(column " in text else text
        return col


def _strip_cast(e):
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


def _is_var(e, v) -> bool:
    e = _strip_cast(analyzer().simplify(e))
    return isinstance(e, tirx.Var) and e.same_as(v)


def _is_true_mask(view: DataflowView, m, depth: int = 0) -> bool:
    e = view.resolve(m)
    if op_name(e) == "relax.logical_and" and depth < 8:  # TF's id filter ands in ones_like(weights)
        return all(_is_true_mask(view, a, depth + 1) for a in e.args)
    if is_tensor_const(e):
        arr = const_array(e)
        return arr.dtype == bool and bool(arr.all())
    if op_name(e) == "relax.full":
        v = e.args[1]
        return is_tensor_const(v) and bool(const_array(v).all())
    return False


def _is_zero(view: DataflowView, z) -> bool:
    e = view.resolve(z)
    if op_name(e) == "relax.zeros_like":
        return True
    if op_name(e) == "relax.full":
        return is_tensor_const(e.args[1]) and not const_array(e.args[1]).any()
    return is_tensor_const(e) and not const_array(e).any()


# ------------------------------------------------------------------------------------------- small rules
def rule_where_all_true(ctx: RuleContext, b: relax.Binding):
    cond = b.value.args[0]
    shape = cond.ty.shape
    if shape is None or len(shape.values) != 1 or not _is_true_mask(ctx.view, cond):
        return None
    n = shape.values[0]
    ctx.facts.append(f"Where over an all-true mask of {n} elements = arange({n}): no data-dependent size")
    return relax.op.reshape(relax.op.arange(0, as_expr(n), 1, "int64"), [as_expr(n), 1])


def _const_mask(view: DataflowView, m) -> bool | None:
    """True / False if the bool tensor m is that everywhere (a constant or a full), else None."""
    e = view.resolve(m)
    if op_name(e) == "relax.full":
        e = e.args[1]
    if is_tensor_const(e):
        arr = const_array(e)
        if arr.dtype == bool and arr.size and (arr.all() or not arr.any()):
            return bool(arr.reshape(-1)[0])
    return None


def rule_select_const(ctx: RuleContext, b: relax.Binding):
    """where(all-true, a, b) = a and where(all-false, a, b) = b when that operand already has the result's shape
    (a comparison the value ranges decided, e.g. Keras' `id < 0` over hashed ids)."""
    cond, x, y = b.value.args
    pick = _const_mask(ctx.view, cond)
    if pick is None:
        return None
    keep = x if pick else y
    out, ty = b.var.ty, keep.ty
    if out.shape is None or ty.shape is None or str(ty.dtype) != str(out.dtype) or len(ty.shape.values) != \
            len(out.shape.values) or not all(prove_equal(p, q) for p, q in zip(ty.shape.values, out.shape.values)):
        return None
    return keep


def rule_stack_as_concat(ctx: RuleContext, b: relax.Binding):
    """concat([x_i: [B, 1, D]], axis=1) -> reshape(concat([x_i as [B, D]], axis=-1), [B, F, D]): field embeddings
    stacked for an interaction layer (DeepFM's FM, xDeepFM's CIN, Keras' Concatenate(axis=1)) become the 2-D
    concat of columns the fusion reads, the [B, F, D] stack a free reshape of it."""
    out = b.var.ty
    axis = int(b.value.attrs.axis)
    fields = list(b.value.args[0].fields) if isinstance(b.value.args[0], relax.Tuple) else []
    if out.shape is None or len(out.shape.values) != 3 or axis not in (1, -2) or len(fields) < 2:
        return None
    dim = out.shape.values[2]
    if not isinstance(dim, tirx.IntImm):
        return None
    pieces = []
    for f in fields:
        shape = f.ty.shape.values if f.ty.shape is not None else None
        if shape is None or len(shape) != 3 or not prove_equal(shape[1], 1) or not prove_equal(shape[2], dim):
            return None
        pieces.append(relax.op.reshape(f, [shape[0], dim]))
    ctx.facts.append(f"{len(fields)} [B, 1, {dim.value}] embeddings stacked on axis 1 = a [B, {len(fields)} * "
                     f"{dim.value}] concat reshaped")
    return relax.op.reshape(relax.op.concat(pieces, axis=1), out.shape)


def rule_gather_identity(ctx: RuleContext, b: relax.Binding):
    x, idx, axis = b.value.args[0], b.value.args[1], int(b.value.args[2].value)
    if axis != 0 or idx.ty.shape is None or x.ty.shape is None or len(idx.ty.shape.values) != 1:
        return None
    n = idx.ty.shape.values[0]
    if not prove_equal(n, x.ty.shape.values[0]):
        return None
    j = IndexExprs.index("j")
    if not _is_var(ctx.ie.at(idx, [j]), j):
        return None
    return x


# ------------------------------------------------------------------------------------------ sparse column
def _sfer_output(ctx: RuleContext, e, index: int):
    """If e is (an alias of) output `index` of a SparseFillEmptyRows call, that call's var, else None."""
    e = ctx.view.resolve(e)
    if isinstance(e, relax.TupleGetItem) and e.index == index:
        src = ctx.view.root_var(e.tuple_value)
        if op_name(ctx.view.resolve(src)) == "recom.sparse_fill_empty_rows":
            return src
    return None


def _leaf_output(ctx: RuleContext, expr, dims: list):
    """(leaf, indices) of expr[dims] when it is a load of a leaf tensor, else None."""
    return ctx.ie.leaf(ctx.ie.at(expr, dims))


def _peel(ctx: RuleContext, x):
    """(X, where var, mask) if x = gather(X, Where(mask)[:, 0]) along axis 0 with a 1-D mask, else None."""
    g = ctx.view.call(x, "recom.gather")
    if g is None or int(g.args[2].value):
        return None
    j = IndexExprs.index("j")
    hit = ctx.ie.leaf(ctx.ie.at(g.args[1], [j]))
    if hit is None:
        return None
    leaf, ind = hit
    where = ctx.view.resolve(leaf)
    if op_name(where) != "recom.where" or len(ind) != 2 or not _is_var(ind[0], j) or not prove_equal(ind[1], 0):
        return None
    mask = where.args[0]
    if mask.ty.shape is None or len(mask.ty.shape.values) != 1:
        return None
    return g.args[0], ctx.view.root_var(leaf), mask


def _filter(ctx: RuleContext, idx_in, vals_in):
    """Undo the id filters: (I, V, mask) such that idx_in, vals_in = I, V at the entries where mask holds; or
    (idx_in, vals_in, True) when there is no filter. Filters may be stacked (TF prunes negative ids, then
    non-positive weights): each outer level's mask, computed on the entries the inner levels kept, is lifted
    back onto the original entries and and-ed in."""
    levels = []  # outermost first: (where var, mask)
    i_x, v_x = idx_in, vals_in
    for _ in range(8):
        pi, pv = _peel(ctx, i_x), _peel(ctx, v_x)
        if pi is None and pv is None:
            break
        if pi is None or pv is None or not pi[1].same_as(pv[1]):
            return None
        levels.append((pi[1], pi[2]))
        i_x, v_x = pi[0], pv[0]
    if not levels:
        return idx_in, vals_in, True
    n = i_x.ty.shape.values[0] if i_x.ty.shape is not None else None
    if n is None:
        return None
    mask = levels[-1][1]
    for k in range(len(levels) - 2, -1, -1):
        lifted = levels[k][1]
        for where_var, inner_mask in levels[k + 1:]:
            grid = inner_mask.ty.shape
            lifted = _lift(ctx, lifted, where_var, grid)
            if lifted is None:
                return None
        mask = _and(ctx.view, mask, lifted)
    return i_x, v_x, mask


def _and(view: DataflowView, a, b):
    """a & b without the trivial cases (an all-true side, the same mask twice) that the rewrites produce."""
    if _is_true_mask(view, a):
        return b
    if _is_true_mask(view, b) or tvm_ffi.structural_equal(a, b):
        return a
    return relax.op.logical_and(a, b)


def _rows_sorted(ctx: RuleContext, rows_of, n) -> tuple[bool, str | None, str]:
    """Are the rows (rows_of(j) = row of entry j) sorted? -> (sorted, feature to sort on the host, why)."""
    j = IndexExprs.index("j")
    e = _strip_cast(rows_of(j))
    if _is_var(e, j):
        return True, None, "rows = arange"
    hit = ctx.ie.leaf(e)
    if hit is None:
        return False, None, f"rows {e} not recognized"
    leaf, ind = hit
    if not (len(ind) == 2 and _is_var(ind[0], j) and prove_equal(ind[1], 0)):
        return False, None, f"rows {e} not recognized"
    if op_name(ctx.view.resolve(leaf)) == "recom.where":
        return True, None, "rows from Where (row-major)"
    if ctx.view.is_param(leaf):
        inp = ctx.inputs.get(leaf.name)
        if inp is not None and inp["source"] == "host":
            node = _host_node(ctx.spec, inp["ref"])
            if node is not None and node["op"] == "Where":
                return True, None, "rows from the host stage's Where (row-major)"
            if node is not None and node["op"] in ROW_MAJOR_HOST_OPS and inp["ref"] == node["outputs"][0]:
                return True, None, f"rows from the host stage's {node['op']} (row-major)"
            if node is not None and node["op"] == "ParseExampleV2" and \
                    inp["ref"] in node["outputs"][:len(node["attrs"]["sparse"])]:
                return True, None, "rows from the host stage's ParseExampleV2 (row-major)"
        if inp is not None and inp["source"] == "feed" and inp["ref"] in ctx.feature_of_indices:
            f = ctx.feature_of_indices[inp["ref"]]
            return True, f["name"], f"rows from feature {f['name']!r}, sorted on the host"
    return False, None, "rows of unknown order"


# host-stage ops whose first output is a SparseTensor's indices in row-major order by construction
ROW_MAJOR_HOST_OPS = frozenset({"SparseCross", "SparseCrossV2", "SparseCrossHashed", "StringSplit",
                                "StringSplitV2", "SparseReorder"})


def _row_of_each_entry(indices, n):
    """indices[:, 0] of a [n, 2] SparseTensor indices matrix, as [n]."""
    return relax.op.reshape(relax.op.strided_slice(indices, [1], [0], [1]), [as_expr(n)])


def _host_node(spec, tensor: str):
    for node in spec.host_plan:
        if tensor in node["outputs"]:
            return node
    return None


def _only_binds_symbols(ctx: RuleContext, b: relax.Binding, depth: int = 0) -> bool:
    """Is b a projection / match_cast whose result nothing reads (it only names a shape: dead once the
    values it describes are)?"""
    if depth > 8 or not isinstance(b.value, (relax.TupleGetItem, relax.Var)) and not isinstance(b, relax.MatchCast):
        return False
    return all(_only_binds_symbols(ctx, u, depth + 1) for u in ctx.view.users_of(b.var)) and \
        b.var.__hash__() not in ctx.view.outputs


_ELEMENTWISE = {"relax.less", "relax.less_equal", "relax.greater", "relax.greater_equal", "relax.equal",
                "relax.not_equal", "relax.astype", "relax.logical_and", "relax.logical_or", "relax.logical_not",
                "relax.add", "relax.subtract", "relax.multiply", "relax.isnan"}
_REDUCTIONS = {"relax.min", "relax.max", "relax.sum", "relax.prod"}


def _order_free(ctx: RuleContext, b: relax.Binding, depth: int = 0) -> bool:
    """Does reordering the entries of this 1-D binding's input leave every result reading it unchanged? True for
    elementwise ops (with scalars) that end in reductions over the whole tensor: an assert's `all(ids < n)`."""
    name = op_name(b.value)
    shape = b.var.ty.shape if isinstance(b.var.ty, relax.TensorType) else None
    if depth > 8 or shape is None:
        return False
    if name in _REDUCTIONS:
        return len(shape.values) == 0  # reduced over every axis
    if name not in _ELEMENTWISE or len(shape.values) != 1:
        return False
    if any(isinstance(a, relax.Expr) and isinstance(a.ty, relax.TensorType) and a.ty.shape is not None
           and len(a.ty.shape.values) not in (0, 1) for a in b.value.args):
        return False
    users = ctx.view.users_of(b.var)
    return bool(users) and all(_order_free(ctx, u, depth + 1) for u in users)


def _used_only_within(ctx: RuleContext, var, allowed: set, sink) -> bool:
    """Every transitive user of var, up to `sink`, lies in `allowed` (binding var keys), only binds symbols, or
    does not depend on the order of its entries (see _order_free)."""
    stack, seen = [var], set()
    while stack:
        v = stack.pop()
        for b in ctx.view.users_of(v):
            k = b.var.__hash__()
            if k in seen:
                continue
            seen.add(k)
            if k not in allowed:
                if _only_binds_symbols(ctx, b) or _order_free(ctx, b):
                    continue
                return False
            if not b.var.same_as(sink):
                stack.append(b.var)
    return True


def _chain_vars(ctx: RuleContext, sink, sources: list) -> set:
    """Keys of the bindings on some path from a source to sink (the column's subgraph)."""
    src_keys = {s.__hash__() for s in sources}
    memo: dict[int, bool] = {}

    def reaches(v) -> bool:
        k = v.__hash__()
        if k in src_keys:
            return True
        if k in memo:
            return memo[k]
        memo[k] = False
        value = ctx.view.value(v)
        if value is None:
            return False
        hits = [reaches(u) for u in relax.analysis.free_vars(value)]  # no short-circuit: visit every path
        memo[k] = any(hits)
        return memo[k]

    reaches(sink)
    return {k for k, ok in memo.items() if ok}


def _sort_on_host(ctx: RuleContext, b: relax.Binding, feature: str, paired: list | None = None) -> bool:
    """Ask the host to sort `feature`'s entries by row (and `paired` params, matched to its values by position)
    if nothing but this column reads them; False if something else does (reordering would not be safe)."""
    feed_vars = [ctx.params_by_ref[t] for t in ctx.spec.feature(feature)["tensors"].values()
                 if t in ctx.params_by_ref] + list(paired or [])
    col_chain = _chain_vars(ctx, b.var, feed_vars) | {b.var.__hash__()}
    if not all(_used_only_within(ctx, v, col_chain, b.var) for v in feed_vars):
        return False
    refs = []
    for p in paired or []:
        inp = ctx.inputs.get(p.name)
        if inp is None or inp["source"] != "feed" or inp["kind"] != "tensor":
            return False
        refs.append(inp["ref"])
    if feature not in ctx.spec.sort_rows:
        ctx.spec.sort_rows.append(feature)
    if refs:
        ctx.spec.sort_with[feature] = sorted(set(ctx.spec.sort_with.get(feature, [])) | set(refs))
    return True


def rule_sparse_column(ctx: RuleContext, b: relax.Binding):
    view = ctx.view
    cond, zeros, emb = b.value.args
    seg = view.call(emb, "recom.sparse_segment_reduce")
    if seg is None or not _is_zero(view, zeros):
        return None
    data, seg_idx, seg_ids, num_segments, mode = seg.args
    # segment ids = column 0 of SparseFillEmptyRows' indices
    hit = _leaf_output(ctx, seg_ids, [IndexExprs.index("j")])
    if hit is None:
        return None
    sfer_var = _sfer_output(ctx, hit[0], 0)
    if sfer_var is None:
        return None
    sfer = view.resolve(sfer_var)
    idx_in, vals_in, default, dense_shape = sfer.args
    batch = dense_shape.values[0]
    # the select zeroes exactly the empty rows: cond[i, d] == empty_row_indicator[i]
    i, d = IndexExprs.index("i"), IndexExprs.index("d")
    hit = _leaf_output(ctx, cond, [i, d])
    if hit is None or _sfer_output(ctx, hit[0], 2) is None or not _sfer_output(ctx, hit[0], 2).same_as(sfer_var) \
            or len(hit[1]) != 1 or not _is_var(hit[1][0], i):
        return None
    # rows of the table: gather(table, Unique(values).y) indexed by Unique's idx; or the table indexed by values
    gather = view.call(data, "recom.gather")
    uniq = None
    if gather is not None:
        y = view.resolve(gather.args[1])
        if not (isinstance(y, relax.TupleGetItem) and y.index == 0):
            return None
        uniq_var = view.root_var(y.tuple_value)
        uniq = view.call(uniq_var, "recom.unique")
        ui = view.resolve(seg_idx)
        if uniq is None or not (isinstance(ui, relax.TupleGetItem) and ui.index == 1
                                and view.root_var(ui.tuple_value).same_as(uniq_var)):
            return None
        if _sfer_output(ctx, uniq.args[0], 1) is None or not _sfer_output(ctx, uniq.args[0], 1).same_as(sfer_var):
            return None
        table, check, label = gather.args[0], bool(int(gather.args[3].value)), gather.args[4].value
    else:  # SparseSegment* straight over the table: its indices are the ids, which TF-CPU range-checks
        if _sfer_output(ctx, seg_idx, 1) is None:
            return None
        table, check = data, True
        label = f"SparseSegment{mode.value.capitalize() if mode.value != 'sqrtn' else 'SqrtN'} over {data}"
    if table.ty.shape is None or len(table.ty.shape.values) != 2:
        return None
    # the num_segments, when given, must be the batch (SparseFillEmptyRows fills every row)
    if not (isinstance(num_segments, tirx.IntImm) and num_segments.value < 0) and not prove_equal(
            num_segments, batch):
        return None
    # the SparseFillEmptyRows input, without the id filter
    undone = _filter(ctx, idx_in, vals_in)
    if undone is None:
        return None
    indices, ids, mask = undone
    if mask is not True and _is_true_mask(view, mask):
        mask = True
    n = ids.ty.shape.values[0]

    def rows_of(j):
        return ctx.ie.at(indices, [j, 0])

    ok, sort_feature, why_rows = _rows_sorted(ctx, rows_of, n)
    if not ok:
        return None
    # nothing else may read the SparseFillEmptyRows outputs or the bag before the select
    chain = _chain_vars(ctx, b.var, [sfer_var])
    chain.add(b.var.__hash__())
    if not _used_only_within(ctx, sfer_var, chain, b.var):
        return None
    if sort_feature is not None and not _sort_on_host(ctx, b, sort_feature):
        return None
    column = ctx.label(label) if label else "?"
    rows = _row_of_each_entry(indices, n)
    ctx.facts.append(
        f"column {column}: SparseFillEmptyRows{' + Unique' if uniq is not None else ''} + SparseSegment-"
        f"{mode.value} + empty-row Select -> embedding_bag({mode.value}) with {batch} bags; "
        f"{'id filter -> mask' if mask is not True else 'no filter left'}; {why_rows}")
    return defs.embedding_bag(table, ids, rows, mask, as_expr(batch), mode.value, check, label)


# ----------------------------------------------------------------------------------------- weighted column
def _same_values(ctx: RuleContext, a, b) -> bool:
    """Do a and b hold the same values (the same var, or equal index expressions at every position)?"""
    if ctx.view.root_var(a).same_as(ctx.view.root_var(b)):
        return True
    if a.ty.shape is None or b.ty.shape is None or len(a.ty.shape.values) != len(b.ty.shape.values):
        return False
    # the same index vars for both, left unbounded (a and b may have different, equal-at-run-time extents)
    idx = [tirx.Var(f"same_k{i}", "int64") for i in range(len(a.ty.shape.values))]
    return bool(tvm_ffi.structural_equal(ctx.ie.at(a, idx), ctx.ie.at(b, idx)))


def _segment_sum(ctx: RuleContext, e):
    """(data, segment ids) if e = SegmentSum(data, segment ids): a sum reduction over every row in order."""
    seg = ctx.view.call(e, "recom.sparse_segment_reduce")
    if seg is None or seg.args[4].value != "sum":
        return None
    j = IndexExprs.index("j")
    if not _is_var(ctx.ie.at(seg.args[1], [j]), j):
        return None
    return seg.args[0], seg.args[2], seg.args[3]


def _div_no_nan(ctx: RuleContext, e):
    """(x, y) if e = where(y == 0, 0, x / y) (TF's DivNoNan as imported), else None."""
    w = ctx.view.call(e, "relax.where")
    if w is None:
        return None
    cond, zero, quot = w.args
    eq, div = ctx.view.call(cond, "relax.equal"), ctx.view.call(quot, "relax.divide")
    if eq is None or div is None or not _is_zero(ctx.view, zero) or not _is_zero(ctx.view, eq.args[1]):
        return None
    if not _same_values(ctx, eq.args[0], div.args[1]):
        return None
    return div.args[0], div.args[1]


def _table_rows(ctx: RuleContext, g):
    """(table, ids, check, label) if g = table[Unique(ids).y][Unique(ids).idx] or table[ids], else None."""
    view = ctx.view
    outer = view.call(g, "recom.gather")
    if outer is None or int(outer.args[2].value):
        return None
    inner = view.call(outer.args[0], "recom.gather")
    if inner is not None and not int(inner.args[2].value):
        y, idx = view.resolve(inner.args[1]), view.resolve(outer.args[1])
        if isinstance(y, relax.TupleGetItem) and y.index == 0 and isinstance(idx, relax.TupleGetItem) \
                and idx.index == 1 and view.root_var(y.tuple_value).same_as(view.root_var(idx.tuple_value)):
            uniq = view.call(view.root_var(y.tuple_value), "recom.unique")
            if uniq is not None:  # gathering through Unique and back is gathering the ids themselves
                return inner.args[0], uniq.args[0], bool(int(inner.args[3].value)), inner.args[4].value
    return outer.args[0], outer.args[1], bool(int(outer.args[3].value)), outer.args[4].value


def rule_weighted_column(ctx: RuleContext, b: relax.Binding):
    """A weighted_categorical_column: the ids and the weights each go through the id filter, the weight filter
    (mean / sqrtn) and their own SparseFillEmptyRows; then table rows times weights, a SegmentSum, divided by the
    SegmentSum of the weights (or the root of that of their squares) with DivNoNan, and the empty rows zeroed
    -> `embedding_bag(..., weights)` with both filters as its mask."""
    view = ctx.view
    cond, zeros, emb = b.value.args
    if not _is_zero(view, zeros):
        return None
    dnn = _div_no_nan(ctx, emb)
    num, den, mode = (emb, None, "sum") if dnn is None else (dnn[0], dnn[1], None)
    hit = _segment_sum(ctx, num)
    if hit is None:
        return None
    prod, seg_ids, num_segments = hit
    mul = view.call(prod, "relax.multiply")
    if mul is None:
        return None
    for rows_x, w_x in (mul.args, mul.args[::-1]):
        found = _table_rows(ctx, rows_x)
        if found is not None and w_x.ty.shape is not None and len(w_x.ty.shape.values) == 2:
            break
    else:
        return None
    table, ids_f, check, label = found
    if table.ty.shape is None or len(table.ty.shape.values) != 2 or not view.is_param(view.root_var(table)):
        return None
    # weights [n, 1] = the values of a SparseFillEmptyRows (default weight 1) ...
    whit = _leaf_output(ctx, w_x, [IndexExprs.index("j"), 0])
    sfer_w = _sfer_output(ctx, whit[0], 1) if whit is not None else None
    sfer_i = _sfer_output(ctx, ids_f, 1)
    if sfer_w is None or sfer_i is None:
        return None
    # ... the denominator: SegmentSum(w) (mean) or sqrt(SegmentSum(w * w)) (sqrtn), over the same segments
    if den is not None:
        root = view.call(den, "relax.sqrt")
        dhit = _segment_sum(ctx, root.args[0] if root is not None else den)
        if dhit is None or not _same_values(ctx, dhit[1], seg_ids):
            return None
        if root is None:
            mode = "mean" if _same_values(ctx, dhit[0], w_x) else None
        else:
            sq = view.resolve(dhit[0])
            if op_name(sq) == "relax.power" and _same_values(ctx, sq.args[0], w_x) and is_tensor_const(sq.args[1]) \
                    and float(const_array(sq.args[1])) == 2.0:
                mode = "sqrtn"
            elif op_name(sq) == "relax.multiply" and _same_values(ctx, sq.args[0], w_x) and \
                    _same_values(ctx, sq.args[1], w_x):
                mode = "sqrtn"
        if mode is None:
            return None
    # segments = rows of the ids' SparseFillEmptyRows (column 0 of its indices)
    j = IndexExprs.index("j")
    shit = _leaf_output(ctx, seg_ids, [j])
    if shit is None or len(shit[1]) != 2 or not _is_var(shit[1][0], j) or not prove_equal(shit[1][1], 0):
        return None
    seg_sfer = _sfer_output(ctx, shit[0], 0)
    if seg_sfer is None or not (seg_sfer.same_as(sfer_i) or seg_sfer.same_as(sfer_w)):
        return None
    si, sw = view.resolve(sfer_i), view.resolve(sfer_w)
    idx_i, ids_in, _, dense_shape = si.args
    idx_w, w_in, _, dense_shape_w = sw.args
    batch = dense_shape.values[0]
    if not (_same_values(ctx, idx_i, idx_w) and all(prove_equal(a, c) for a, c in zip(dense_shape.values,
                                                                                        dense_shape_w.values))):
        return None
    # the select zeroes exactly the empty rows
    i, d = IndexExprs.index("i"), IndexExprs.index("d")
    chit = _leaf_output(ctx, cond, [i, d])
    empty = _sfer_output(ctx, chit[0], 2) if chit is not None else None
    if empty is None or not (empty.same_as(sfer_i) or empty.same_as(sfer_w)) or len(chit[1]) != 1 \
            or not _is_var(chit[1][0], i):
        return None
    if not (isinstance(num_segments, tirx.IntImm) and num_segments.value < 0) and not prove_equal(num_segments,
                                                                                                 batch):
        return None
    # both inputs, without their filters: the same entries, the same mask
    undone_i, undone_w = _filter(ctx, idx_i, ids_in), _filter(ctx, idx_w, w_in)
    if undone_i is None or undone_w is None:
        return None
    indices, ids, mask = undone_i
    indices_w, weights, mask_w = undone_w
    if not _same_values(ctx, indices, indices_w):
        return None
    if (mask is True) != (mask_w is True) or (mask is not True and not tvm_ffi.structural_equal(mask, mask_w)):
        return None  # (both masks are built from the same filter chain: structurally equal when they agree)
    if mask is not True and _is_true_mask(view, mask):
        mask = True
    n = ids.ty.shape.values[0]
    ok, sort_feature, why_rows = _rows_sorted(ctx, lambda jj: ctx.ie.at(indices, [jj, 0]), n)
    if not ok:
        return None
    chain = _chain_vars(ctx, b.var, [sfer_i, sfer_w]) | {b.var.__hash__()}
    if not (_used_only_within(ctx, sfer_i, chain, b.var) and _used_only_within(ctx, sfer_w, chain, b.var)):
        return None
    if sort_feature is not None:  # the weights move with the ids (TF pairs them by position)
        w_param = view.root_var(weights)
        if not view.is_param(w_param) or not _sort_on_host(ctx, b, sort_feature, [w_param]):
            return None
    column = ctx.label(label) if label else "?"
    rows = _row_of_each_entry(indices, n)
    ctx.facts.append(
        f"column {column}: weighted ({mode}): two SparseFillEmptyRows + Unique + rows x weights + SegmentSum"
        f"{' / SegmentSum(w' + ('^2)' if mode == 'sqrtn' else ')') if mode != 'sum' else ''} + empty-row Select "
        f"-> embedding_bag({mode}, weights) with {batch} bags; "
        f"{'filters -> mask' if mask is not True else 'no filter left'}; {why_rows}")
    return defs.embedding_bag(table, ids, rows, mask, as_expr(batch), mode, check, label, weights=weights)


def rule_one_per_row(ctx: RuleContext, b: relax.Binding):
    table, ids, rows, mask, num_bags, mode, check, label, _ = b.value.args
    if defs.bag_weighted(b.value):
        return None  # w e / w is not e in floating point: the weighted bag stays (TF computes it so)
    n = ids.ty.shape.values[0] if ids.ty.shape is not None else None
    if n is None or not prove_equal(n, num_bags):
        return None
    j = IndexExprs.index("j")
    if not _is_var(ctx.ie.at(rows, [j]), j):
        return None
    gathered = defs.gather(table, ids, 0, bool(int(check.value)), label.value)
    column = ctx.label(label.value) if label.value else "?"
    if _is_true_mask(ctx.view, mask) or len(mask.ty.shape.values) == 0:
        ctx.facts.append(f"column {column}: rows = arange({num_bags}), one id per row -> plain gather")
        return gathered
    ctx.facts.append(f"column {column}: rows = arange({num_bags}), at most one id per row -> gather + zero fill")
    zero = relax.const(0, str(table.ty.dtype))
    safe_ids = relax.op.where(mask, ids, relax.const(0, str(ids.ty.dtype)))
    gathered = defs.gather(table, safe_ids, 0, bool(int(check.value)), label.value)
    return relax.op.where(relax.op.expand_dims(mask, [1]), gathered, zero)


_ELEMENTWISE = {"relax.add", "relax.subtract", "relax.multiply", "relax.equal", "relax.not_equal", "relax.less",
                "relax.less_equal", "relax.greater", "relax.greater_equal", "relax.logical_and", "relax.logical_or",
                "relax.logical_not", "relax.where", "relax.astype", "relax.maximum", "relax.minimum",
                "relax.floor_mod", "relax.floor_divide", "relax.full"}


def _lift(ctx: RuleContext, expr, where_var, grid_shape, depth: int = 0):
    """Rebuild `expr`, computed on the Where-compacted entries gather_nd(X, W), on the dense grid instead
    (elementwise ops commute with the compaction). None if something is not elementwise."""
    if depth > 32:
        return None
    if is_tensor_const(expr) and const_array(expr).size == 1:
        return expr
    e = ctx.view.resolve(expr)
    if is_tensor_const(e) and const_array(e).size == 1:
        return e
    name = op_name(e)
    if name == "relax.gather_nd" and ctx.view.root_var(e.args[1]).same_as(where_var):
        return e.args[0]
    if name == "recom.gather" and int(e.args[2].value) == 0:  # X[Where(m)[:, 0]] (1-D compaction)
        j = IndexExprs.index("j")
        hit = ctx.ie.leaf(ctx.ie.at(e.args[1], [j]))
        if hit is not None and ctx.view.root_var(hit[0]).same_as(where_var) and len(hit[1]) == 2 \
                and _is_var(hit[1][0], j) and prove_equal(hit[1][1], 0):
            return e.args[0]
    if name == "relax.full":  # a constant mask / value the size of the compacted entries
        return relax.op.full(grid_shape, e.args[1], str(e.ty.dtype))
    if name not in _ELEMENTWISE:
        return None
    args = []
    for a in e.args:
        if isinstance(a, (relax.Var, relax.Call)) or is_tensor_const(a):
            lifted = _lift(ctx, a, where_var, grid_shape, depth + 1)
            if lifted is None:
                return None
            args.append(lifted)
        else:
            args.append(a)
    if name == "relax.logical_and":
        return _and(ctx.view, *args)
    return relax.Call(e.op, args, e.attrs, e.ty_args if hasattr(e, "ty_args") else None)


def rule_densify(ctx: RuleContext, b: relax.Binding):
    """A bag over Where(M)-compacted entries of a dense [B, T] input -> a bag over the whole grid with M as mask:
    the dense padded input ("" / -1 = missing) needs no data-dependent compaction."""
    table, ids, rows, mask, num_bags, mode, check, label, _ = b.value.args
    if defs.bag_weighted(b.value):
        return None
    j = IndexExprs.index("j")
    hit = ctx.ie.leaf(ctx.ie.at(rows, [j]))
    if hit is None:
        return None
    w_leaf, ind = hit
    where = ctx.view.resolve(w_leaf)
    if op_name(where) != "recom.where" or len(ind) != 2 or not _is_var(ind[0], j) or not prove_equal(ind[1], 0):
        return None
    grid = where.args[0]
    if grid.ty.shape is None or len(grid.ty.shape.values) != 2:
        return None
    bsz, width = grid.ty.shape.values
    if not prove_equal(bsz, num_bags):
        return None
    where_var = ctx.view.root_var(w_leaf)
    dense_ids = _lift(ctx, ids, where_var, grid.ty.shape)
    if dense_ids is None:
        return None
    if _is_true_mask(ctx.view, mask) or len(mask.ty.shape.values) == 0:
        dense_mask = grid
    else:
        lifted = _lift(ctx, mask, where_var, grid.ty.shape)
        if lifted is None:
            return None
        dense_mask = relax.op.logical_and(grid, lifted)
    n = as_expr(bsz) * as_expr(width)
    flat_rows = relax.op.reshape(relax.op.broadcast_to(
        relax.op.reshape(relax.op.arange(0, as_expr(bsz), 1, "int64"), [as_expr(bsz), 1]),
        [as_expr(bsz), as_expr(width)]), [n])
    column = ctx.label(label.value) if label.value else "?"
    ctx.facts.append(f"column {column}: dense padded input [{bsz}, {width}]: Where/GatherNd compaction -> mask over "
                     f"the grid (no data-dependent size)")
    return defs.embedding_bag(table, relax.op.reshape(dense_ids, [n]), flat_rows, relax.op.reshape(dense_mask, [n]),
                              num_bags, mode.value, bool(int(check.value)), label.value)


def _replace_load(e, target, var):
    """e with every occurrence of the (structurally equal) subexpression `target` replaced by `var`."""
    if tvm_ffi.structural_equal(e, target):
        return var
    for cls, make in ((tirx.And, tirx.And), (tirx.Or, tirx.Or), (tirx.GE, lambda a, b: a >= b),
                      (tirx.GT, lambda a, b: a > b), (tirx.LT, lambda a, b: a < b), (tirx.LE, lambda a, b: a <= b),
                      (tirx.NE, lambda a, b: a != b), (tirx.EQ, lambda a, b: a == b)):
        if isinstance(e, cls):
            return make(_replace_load(e.a, target, var), _replace_load(e.b, target, var))
    if isinstance(e, tirx.Not):
        return tirx.Not(_replace_load(e.a, target, var))
    if isinstance(e, tirx.Cast):
        return tirx.Cast(str(e.ty.dtype), _replace_load(e.value, target, var))
    return e


def _mask_keeps_ids_in(ctx: RuleContext, ids, mask, lo: int, hi: int) -> bool:
    """Does the mask keep every entry whose id lies in [lo, hi)? (Then checking all ids on the host is exact
    for that range: the mask drops only ids TF never reports.)"""
    if _is_true_mask(ctx.view, mask) or len(mask.ty.shape.values) == 0:
        return True
    j = IndexExprs.index("j")
    id_e = _strip_cast(ctx.ie.at(ids, [j]))
    m_e = ctx.ie.at(mask, [j])
    v = _id_var("large_id", id_e, lo, hi)
    return analyzer().can_prove(_replace_load(m_e, id_e, v))


_ID_SPAN = 1 << 40  # ids beyond +-2^40 behave as those inside for every mask the rules meet


def _id_var(name: str, id_e, lo: int, hi: int) -> tirx.Var:
    """A variable standing for the id id_e, bound to [lo, hi) as far as its dtype reaches (int32 ids: the ranges
    of +-2^40 above are not constants of their type; the extent must be one too)."""
    dtype = id_e.ty.dtype
    bits, signed = dtype.bits, not str(dtype).startswith("uint")
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    lo, hi = max(lo, low), min(hi, high)
    lo = max(lo, hi - high)  # the extent, hi - lo, is a constant of the type too
    v = tirx.Var(name, str(dtype))
    if hi > lo:
        analyzer().bind(v, tvm.ir.Range.from_min_extent(tirx.const(lo, str(dtype)), tirx.const(hi - lo, str(dtype))))
    return v


def _weight_gate(ctx: RuleContext, call, limit: int) -> str | None:
    """A weighted bag whose mask, for ids >= limit, reduces to `weight > 0` (TF prunes ids and non-positive
    weights before its gather): the host tensor of the weights, so the host checks only ids with a positive
    weight. None otherwise."""

    ids, mask, weights = call.args[1], call.args[3], call.args[8]
    if not defs.bag_weighted(call) or len(mask.ty.shape.values) == 0:
        return None
    w_tensor = _host_tensor_of(ctx, weights)
    if w_tensor is None:
        return None
    j = IndexExprs.index("j")
    id_e = _strip_cast(ctx.ie.at(ids, [j]))
    w_e = strip_simplified(ctx.ie.at(weights, [j]))
    v = _id_var("large_id", id_e, limit, limit + (1 << 40))
    gated = False
    for t in conjuncts(_replace_load(ctx.ie.at(mask, [j]), id_e, v)):
        if positive_test(t, w_e):
            gated = True
        elif not analyzer().can_prove(t):
            return None
    return w_tensor if gated else None


def _host_tensor_of(ctx: RuleContext, ids):
    """The host-side tensor the ids are a reshape / cast of, if any."""
    for _ in range(8):
        root = ctx.view.root_var(ids)
        if ctx.view.is_param(root):
            inp = ctx.inputs.get(root.name)
            return None if inp is None or inp["kind"] != "tensor" else inp["ref"]
        e = ctx.view.resolve(ids)
        if op_name(e) not in ("relax.reshape", "relax.astype"):
            return None
        ids = e.args[0]
    return None


def rule_range_check(ctx: RuleContext, b: relax.Binding):
    """TF-CPU's GatherV2 error for ids outside the table: proven away by the value ranges, moved to the host
    when the ids are an input, else kept on the device (a device->host sync)."""
    call = b.value
    is_bag = op_name(call) == "recom.embedding_bag"
    table, ids = call.args[0], call.args[1]
    check = call.args[6] if is_bag else call.args[3]
    if not int(check.value) or table.ty.shape is None or not isinstance(table.ty.shape.values[0], tirx.IntImm):
        return None
    limit = int(table.ty.shape.values[0].value)
    mask = call.args[3] if is_bag else relax.const(True, "bool")
    label = (call.args[7] if is_bag else call.args[4]).value
    lo, hi = ctx.ranges.of(ids)
    column = ctx.label(label) if label else "?"
    kept_nonneg = (lo is not None and lo >= 0) or (is_bag and not _is_true_mask(ctx.view, mask)
                                                  and _mask_drops_negative(ctx, ids, mask))
    if hi is not None and hi < limit and kept_nonneg:
        ctx.facts.append(f"column {column}: ids in [{lo}, {hi}], table has {limit} rows: range check proven")
    else:
        tensor, low = _host_tensor_of(ctx, ids), None
        if tensor is None:
            wrapped = _wrapped_host_tensor(ctx, ids, limit) if not is_bag else None
            if wrapped is None:
                return None
            tensor, low = wrapped
        entry = {"tensor": tensor, "limit": limit, "label": label}
        if low is not None:  # Keras' Embedding maps [-rows, 0) to id + rows first: the raw ids in [low, limit)
            entry["low"] = low
        elif not kept_nonneg:
            # negative ids reach the gather (a Keras Embedding or tf.gather of feed ids): TF-CPU raises for them
            # as for ids >= limit. The host checks them exactly only if the mask keeps every negative id.
            if not _mask_keeps_ids_in(ctx, ids, mask, -_ID_SPAN, 0):
                return None
            entry["negative"] = True
        if not _mask_keeps_ids_in(ctx, ids, mask, limit, _ID_SPAN):
            gate = _weight_gate(ctx, call, limit) if is_bag else None
            if gate is None:
                return None
            entry["where_positive"] = gate
        if entry not in ctx.spec.id_checks:
            ctx.spec.id_checks.append(entry)
        ctx.facts.append(f"column {column}: ids are the input {tensor!r}: range check moved to the host"
                         + (" (negative ids too)" if entry.get("negative") else "")
                         + (f" (ids whose weight in {entry['where_positive']!r} is > 0)" if "where_positive" in entry
                            else ""))
    args = list(call.args)
    args[6 if is_bag else 3] = relax.prim_value(0)
    return relax.Call(call.op, args)


def wrapped_ids(ie: IndexExprs, ids) -> tuple[tirx.PrimExpr, int, list] | None:
    """(raw id expression, rows, index vars) if every id is `raw < 0 ? raw + rows : raw` (Keras 3's Embedding /
    ops.take: fix_negative_indices), raw a load of a leaf; ids of any rank."""
    idx = [IndexExprs.index(f"w{k}") for k in range(len(ids.ty.shape.values))]
    e = _strip_cast(ie.at(ids, idx))
    if not isinstance(e, tirx.Select):
        return None
    raw = _strip_cast(e.false_value)
    if ie.leaf(raw) is None:
        return None
    cond, delta = e.condition, analyzer().simplify(e.true_value - e.false_value)
    neg = (isinstance(cond, tirx.LT) and tvm_ffi.structural_equal(_strip_cast(cond.a), raw)
           and isinstance(cond.b, tirx.IntImm) and cond.b.value == 0)
    if not neg or not isinstance(delta, tirx.IntImm) or delta.value <= 0:
        return None
    return raw, int(delta.value), idx


def _wrapped_host_tensor(ctx: RuleContext, ids, limit: int) -> tuple[str, int] | None:
    """(host tensor, lowest valid raw id) for ids that wrap negative raw ids of a host tensor by the table's rows
    (TF's gather then rejects raw ids outside [-rows, rows))."""
    hit = wrapped_ids(ctx.ie, ids)
    if hit is None or hit[1] != limit:
        return None
    leaf, ind = ctx.ie.leaf(hit[0])
    tensor = _host_tensor_of(ctx, leaf)
    dims = ids.ty.shape.values
    if tensor is None or len(ind) != len(hit[2]) or not all(
            _is_var(i, v) or (isinstance(d, tirx.IntImm) and d.value == 1) for i, v, d in zip(ind, hit[2], dims)):
        return None
    return tensor, -limit


def _mask_drops_negative(ctx: RuleContext, ids, mask) -> bool:
    """Does the mask drop every entry with a negative id?"""
    j = IndexExprs.index("j")
    id_e = _strip_cast(ctx.ie.at(ids, [j]))
    m_e = ctx.ie.at(mask, [j])
    v = _id_var("neg_id", id_e, -(1 << 40), 0)
    with analyzer().constraint_scope(v < 0):
        return analyzer().can_prove(tirx.Not(_replace_load(m_e, id_e, v)))


RULES: list[tuple[str, str, Callable]] = [
    ("where_all_true", "recom.where", rule_where_all_true),
    ("select_const", "relax.where", rule_select_const),
    ("stack_as_concat", "relax.concat", rule_stack_as_concat),
    ("gather_identity", "recom.gather", rule_gather_identity),
    ("sparse_column", "relax.where", rule_sparse_column),
    ("weighted_column", "relax.where", rule_weighted_column),
    ("one_per_row", "recom.embedding_bag", rule_one_per_row),
    ("densify", "recom.embedding_bag", rule_densify),
    ("range_check", "recom.embedding_bag", rule_range_check),
    ("range_check", "recom.gather", rule_range_check),
]


@relax.expr_functor.mutator
class _Apply(relax.PyExprMutator):
    def __init__(self, mod, replacements: dict) -> None:
        super().__init__(mod)
        self.replacements = replacements

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        repl = self.replacements.get(binding.var.__hash__())
        if repl is None:
            return super().visit_var_binding_(binding)
        new_value = self.visit_expr(repl)
        if isinstance(new_value, relax.Var):
            self.set_var_remap(binding.var, new_value)
            return None
        if isinstance(binding.var, relax.DataflowVar):
            new_var = self.builder_.emit(new_value, binding.var.name)
        else:  # a dataflow block's output stays an output
            new_var = self.builder_.emit_output(new_value, binding.var.name)
        self.set_var_remap(binding.var, new_var)
        return None


def _sweep(mod: tvm.IRModule, gv, spec, facts: list, enabled: set) -> tuple[tvm.IRModule, int]:
    func = mod[gv]
    view = DataflowView(func)
    ctx = RuleContext(view, IndexExprs(view.value), ValueRanges(func, spec), spec, facts,
                      {i["name"]: i for i in spec.module_inputs})
    replacements = {}
    for binding in view.order:
        if not isinstance(binding, relax.VarBinding):
            continue
        name = op_name(binding.value)
        for rule_name, anchor, rule in RULES:
            if anchor != name or rule_name not in enabled:
                continue
            repl = rule(ctx, binding)
            if repl is not None:
                replacements[binding.var.__hash__()] = repl
                break
    if not replacements:
        return mod, 0
    out = _apply(mod, gv, func, replacements)
    before = _shapeless(func)
    if _shapeless(out[gv]) > before:  # some rewrite left a tensor TVM cannot lower: find it, keep the rest
        for key in list(replacements):
            if _shapeless(_apply(mod, gv, func, {key: replacements[key]})[gv]) > before:
                del replacements[key]
                facts.append("a rewrite not applied: it computes a tensor of a shape Relax cannot tell (masks over "
                             "counts it cannot prove equal, e.g. a weighted column's ids and weights each compacted "
                             "by its own Where); that column stays as imported")
        if not replacements:
            return mod, 0
        out = _apply(mod, gv, func, replacements)
    return out, len(replacements)


def _apply(mod: tvm.IRModule, gv, func, replacements: dict) -> tvm.IRModule:
    mutator = _Apply(mod, replacements)
    mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


def _shapeless(func) -> int:
    """Elementwise bindings whose shape Relax cannot infer: LegalizeOps cannot lower them."""
    count = [0]

    def visit(e):
        if isinstance(e, relax.Call) and op_name(e) in _ELEMENTWISE:
            ty = getattr(e, "ty", None)
            if isinstance(ty, relax.TensorType) and ty.shape is None and ty.ndim != 0:
                count[0] += 1

    relax.analysis.post_order_visit(func, visit)
    return count[0]


@tvm.ir.transform.module_pass(opt_level=0, name="EliminateRedundancy")
class EliminateRedundancy:
    """Apply RULES until nothing fires; record facts and spec updates on the module."""

    def __init__(self, rules: list[str] | None = None, max_sweeps: int = 8) -> None:
        self.enabled = set(rules) if rules is not None else {r[0] for r in RULES}
        self.max_sweeps = max_sweeps

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        if spec is None:
            raise ValueError("EliminateRedundancy needs the module's serving spec (import with recom_tvm)")
        facts = list(mod.attrs[FACTS_ATTR]) if mod.attrs is not None and FACTS_ATTR in mod.attrs else []
        out = RemoveDeadCode()(mod)  # dead uses (e.g. an unused reverse_index_map) must not block rules
        # TF computes some values twice (a weighted column filters ids and weights with two equal Where ops):
        # merged first, so the rules see one value where there is one
        out = copy_attrs(mod, relax.transform.EliminateCommonSubexpr(call_only=False)(out))
        for gv, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            for _ in range(self.max_sweeps):
                out, fired = _sweep(out, gv, spec, facts, self.enabled)
                if not fired:
                    break
                out = RemoveDeadCode()(copy_attrs(mod, out))
                out = ResolveShapes()(out)
        out = copy_attrs(mod, out)
        out = attach_spec(out, spec)
        return out.with_attr(FACTS_ATTR, [str(f) for f in dict.fromkeys(facts)])  # unique, in order
