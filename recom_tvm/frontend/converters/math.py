"""Elementwise ops: arithmetic, comparisons, logic, activations, casts, select."""

from __future__ import annotations

import numpy as np
import tvm_ffi
from tvm import relax, tirx

from ...shapes.symbolic import as_expr, is_const_int, prove_equal, simplify, is_prim
from ..values import Device, Known
from . import PASSTHROUGH, NotFoldable, device, known
from .random import Uniform, uniform_binary, uniform_floor


# --------------------------------------------------------------------------------------------- helpers
def _sym_map(fn, *arrays):
    """Apply fn elementwise over (possibly object-dtype) arrays with numpy broadcasting."""
    out = np.frompyfunc(fn, len(arrays), 1)(*arrays)
    out = np.asarray(out, dtype=object)
    flat = [simplify(x) if is_prim(x) else x for x in out.reshape(-1)]
    return np.array(flat, dtype=object).reshape(out.shape)


def _finish(arr: np.ndarray, dtype: str) -> Known:
    if arr.dtype == object and all(is_const_int(x) or isinstance(x, (bool, np.bool_)) for x in arr.flat):
        arr = np.array([int(x) for x in arr.flat], dtype=dtype).reshape(arr.shape)
    return Known(arr, dtype)


def _prove(fn, a, b) -> bool:
    """Decide a symbolic comparison or give up."""
    if is_const_int(a) and is_const_int(b):
        return bool(fn(int(a), int(b)))
    res = fn(a, b)
    if hasattr(res, "asobject"):  # == / != on a PrimExpr give TVM's EqualOp / NotEqualOp (not PrimExprs)
        res = res.asobject()
    res = simplify(res)
    if isinstance(res, int):
        return bool(res)
    raise NotFoldable


def broadcast_pair(ctx, a: Device, b: Device) -> tuple[Device, Device]:
    """Equal-rank operands whose dims are neither provably equal nor 1 must match (TF requires it)."""
    if len(a.shape) != len(b.shape):
        return a, b
    target, need = broadcast_target(a.shape, b.shape)
    return (a, ctx.match_shape_cast(b, target, broadcast=True)) if need else (a, b)


def broadcast_target(a_shape, b_shape) -> tuple[list, bool]:
    """(the shape b must have, whether b needs a match_cast to it) for b broadcast against a of equal rank."""
    target = []
    need = False
    for x, y in zip(a_shape, b_shape):
        if prove_equal(y, 1) or prove_equal(x, 1):
            target.append(y)
        elif prove_equal(x, y):
            target.append(x)
            # equal for our analyzer (SymEngine, size facts) but maybe not for Relax's own shape inference, which
            # would then leave the result's shape unknown (and the op unlowerable): say it with a match_cast
            need = need or not tvm_ffi.structural_equal(x, y)
        else:
            target.append(x)
            need = True
    return target, need


def _broadcast_all(ctx, devs: list[Device]) -> list[Device]:
    """The operands of the highest rank, each dim that is not 1 cast to the first such dim among them, in order
    (a [B, 1] condition, a scalar and a [B', 3] branch of tf.where: Relax cannot infer the result's shape from
    separate batch symbols, and left the op unlowered: a crash at build)."""
    rank = max(len(d.shape) for d in devs)
    target: list = [None] * rank
    for d in devs:
        if len(d.shape) == rank:
            for i, s in enumerate(d.shape):
                if target[i] is None and not prove_equal(s, 1):
                    target[i] = s
    out = []
    for d in devs:
        want = [s if t is None or prove_equal(s, 1) else t for s, t in zip(d.shape, target)]
        out.append(ctx.match_shape_cast(d, want, broadcast=True) if len(d.shape) == rank else d)
    return out


def _operands(ctx, node, ins, dtype=None):
    dtype = dtype or node.attr("T")
    devs = []
    for v in ins:
        if isinstance(v, Known) and v.concrete and v.value.size == 1 and dtype:
            devs.append(None)
        else:
            devs.append(ctx.device(v))
    out = []
    for v, d in zip(ins, devs):
        if d is None:
            out.append(relax.const(np.asarray(v.numpy()).astype(dtype).reshape(v.value.shape), dtype))
        else:
            out.append(d)
    if all(isinstance(x, Device) for x in out) and len(out) == 2:
        a, b = broadcast_pair(ctx, out[0], out[1])
        return [a.expr, b.expr]
    return [x.expr if isinstance(x, Device) else x for x in out]


# ------------------------------------------------------------------------------------------ passthrough
@device(*PASSTHROUGH)
def _identity(ctx, node, ins):
    return ins[0]


@known(*PASSTHROUGH)
def _identity_known(ctx, node, ins):
    return ins[0]


@device("EnsureShape")
def _ensure_shape(ctx, node, ins):
    """tf.ensure_shape: the input, once every dim its `shape` pins (not -1) has that size, else TF's error (checked
    before launch); a compiled value takes the pinned sizes as its static shape (a user row pinned to 1 then
    broadcasts against the items as in TF). It passed through unchecked: ensure_shape(user, [1, 4]) fed three
    rows answered where TF raises. (A size learnt while the module runs is not checked.)"""
    x = ins[0]
    want = node.attr("shape")
    if want is None or not hasattr(x, "shape"):  # unknown rank: nothing pinned
        return x
    if len(want) != len(x.shape):
        ctx.fail(f"the input has rank {len(x.shape)}, the expected shape {list(want)} rank {len(want)}")
    got = [str(d) for d in x.shape]
    pinned = False
    for k, (d, w) in enumerate(zip(x.shape, want)):
        if w >= 0 and not (is_const_int(d) and int(d) == w):
            ctx.assume(as_expr(d) == w, f"Shape of tensor {node.inputs[0][0]} {got} is not compatible with "
                                        f"expected shape {list(want)} (dim {k})")
            pinned = True
    if not pinned or not isinstance(x, Device):  # (a feed or host-stage tensor stays where it is)
        return x
    shape = [w if w >= 0 else d for d, w in zip(x.shape, want)]
    return ctx.emit(relax.op.reshape(x.expr, [as_expr(s) for s in shape]), shape=shape)


@device("IdentityN")
def _identity_n(ctx, node, ins):
    return list(ins)


@known("IdentityN")
def _identity_n_known(ctx, node, ins):
    return list(ins)


# ------------------------------------------------------------------------------------- NaN-exact forms
# TF's max / min / relu keep NaN (Eigen's PropagateNaN); TVM's max / min drop it. Written as selects for floats.
# (Which zero max(-0.0, 0.0) gives differs between TF's own scalar and vectorized kernels.)
def _is_float(x) -> bool:
    return str(x.ty.dtype).startswith(("float", "bfloat"))


def _tf_max(a, b):
    if not (_is_float(a) and _is_float(b)):
        return relax.op.maximum(a, b)
    return relax.op.where(relax.op.isnan(b), b, relax.op.where(relax.op.less(a, b), b, a))


def _tf_min(a, b):
    if not (_is_float(a) and _is_float(b)):
        return relax.op.minimum(a, b)
    return relax.op.where(relax.op.isnan(b), b, relax.op.where(relax.op.less(b, a), b, a))


def tf_relu(x, cap):
    """TF's Relu / Relu6: NaN stays NaN (TVM's relu and clip are max / min, which drop it). Written as where(less)
    (the CUDA pipeline inlines the bool; recom_tvm.backend.inline_predicates)."""
    if not _is_float(x):
        return relax.op.nn.relu(x) if cap is None else relax.op.clip(x, 0, int(cap))
    dt = str(x.ty.dtype)
    y = relax.op.where(relax.op.less(x, relax.const(0.0, dt)), relax.const(0.0, dt), x)
    if cap is not None:
        y = relax.op.where(relax.op.greater(y, relax.const(cap, dt)), relax.const(cap, dt), y)
    return y


# --------------------------------------------------------------------------------------------- binary
def _equal(a, b):
    """x == y; bools compared as integers (TVM's llvm codegen emits a float compare of two i1 for a bool ==, which
    fails LLVM's verifier: tf.equal(mask, True) and ragged broadcasting's shape asserts crashed the build)."""
    if str(a.ty.dtype) == "bool":
        a, b = relax.op.astype(a, "int8"), relax.op.astype(b, "int8")
    return relax.op.equal(a, b)


def _not_equal(a, b):
    """TF's x != y: true where either is NaN. TVM's llvm codegen lowers a float != to an ordered compare (false
    at NaN: tf.math.count_nonzero of a NaN counted 0 where TF counts 1); not(x == y) is right on every target."""
    if str(a.ty.dtype).startswith(("float", "bfloat")):
        return relax.op.logical_not(relax.op.equal(a, b))
    if str(a.ty.dtype) == "bool":
        return relax.op.logical_not(_equal(a, b))
    return relax.op.not_equal(a, b)


def _floor_mod(a, b):
    """TF's FloorMod. Floats as TF's kernel (google_floor_fmod): r = fmod(x, y), plus y where r is nonzero and of
    the other sign than y. TVM's x - floor(x / y) * y lost x past 2^24 (floormod(1e20, 3.0) gave 2.2e12, TF 2) and
    gave NaN for a finite x by an infinite y (TF: x, or x + y where the signs differ)."""
    if not _is_float(a):
        return relax.op.floor_mod(a, b)
    dt = str(a.ty.dtype)
    zero = relax.const(0.0, dt)
    r = relax.op.mod(a, b)  # truncmod: fmod on floats (llvm frem, CUDA fmodf), exact
    other_sign = relax.op.logical_xor(relax.op.less(b, zero), relax.op.less(r, zero))
    fix = relax.op.logical_and(relax.op.not_equal(r, zero), other_sign)
    return relax.op.where(fix, relax.op.add(r, b), r)


_BINARY = {
    "Add": relax.op.add, "AddV2": relax.op.add, "Sub": relax.op.subtract, "Mul": relax.op.multiply,
    "RealDiv": relax.op.divide, "Maximum": lambda a, b: _tf_max(a, b), "Minimum": lambda a, b: _tf_min(a, b),
    "FloorDiv": relax.op.floor_divide, "FloorMod": lambda a, b: _floor_mod(a, b), "Pow": relax.op.power,
    # C's truncating / and % (integers); on floats TruncateMod is C's fmod (tf.truncatemod of floats)
    "TruncateDiv": relax.op.divide, "TruncateMod": relax.op.mod,
    "Atan2": relax.op.atan2, "BitwiseAnd": relax.op.bitwise_and, "BitwiseOr": relax.op.bitwise_or,
    "BitwiseXor": relax.op.bitwise_xor, "LeftShift": relax.op.left_shift, "RightShift": relax.op.right_shift,
    "Xdivy": lambda a, b: relax.op.where(relax.op.equal(a, relax.const(0, a.ty.dtype)), a, relax.op.divide(a, b)),
    "Xlogy": lambda a, b: relax.op.where(relax.op.equal(a, relax.const(0, a.ty.dtype)), a,
                                         relax.op.multiply(a, relax.op.log(b))),
    # tf.math.xlog1py: 0 where x is 0 (a NaN y too), else x * log1p(y), log1p accurate near 0 as TF's
    "Xlog1py": lambda a, b: relax.op.where(relax.op.equal(a, relax.const(0, a.ty.dtype)), relax.const(0, a.ty.dtype),
                                           relax.op.multiply(a, _log1p(b))),
    "Less": relax.op.less, "LessEqual": relax.op.less_equal, "Greater": relax.op.greater,
    "GreaterEqual": relax.op.greater_equal, "Equal": lambda a, b: _equal(a, b), "NotEqual": lambda a, b: _not_equal(a, b),
    "LogicalAnd": relax.op.logical_and, "LogicalOr": relax.op.logical_or,
}
_COMPARE = {"Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual"}


def _fixed_clamp(ctx, node, ins):
    """min(c, max(d, y)) with d >= c is c, and max(c, min(d, y)) with d <= c is c, whatever y: tf.math.bincount's
    size with minlength == maxlength (Keras' CategoryEncoding) is a constant although it reads the data."""
    inner = "Maximum" if node.op == "Minimum" else "Minimum"
    for k in (0, 1):
        c, y = ins[k], ins[1 - k]
        if not (isinstance(c, Known) and c.concrete and c.numpy().size == 1) or \
                not all(is_const_int(d) for d in y.shape):
            continue
        src = ctx.graph.nodes[node.inputs[1 - k][0]]
        if src.op != inner:
            continue
        cv = c.numpy().reshape(()).item()
        for s, _ in src.inputs:
            const = ctx.graph.nodes[s]
            d = const.attr("value") if const.op == "Const" else None
            if d is None or np.asarray(d).size != 1:
                continue
            d = np.asarray(d).reshape(()).item()
            if (node.op == "Minimum" and d >= cv) or (node.op == "Maximum" and d <= cv):
                return Known(np.full([int(x) for x in y.shape], cv, dtype=c.dtype), c.dtype)
    return None


_INT_DIVISIONS = ("FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod")


def _nonzero_divisor(ctx, v):
    """An integer division's divisor, checked nonzero where it is not a constant without zeros: TF raises
    'Integer division by zero' where the compiled division would trap (SIGFPE on a CPU: the serving process died)
    or give garbage (GPU). One device->host sync, for divisors computed at run time only (hash modulos divide by
    constants)."""
    if isinstance(v, Known) and v.concrete and np.all(np.asarray(v.numpy()) != 0):
        return v
    d = ctx.device(v)
    ok = ctx.emit(relax.op.not_equal(d.expr, relax.const(0, d.dtype)), shape=list(d.shape))
    return ctx.check(d, ok, "Integer division by zero")


@device(*_BINARY)
def _binary(ctx, node, ins):
    if any(isinstance(v, Uniform) for v in ins):  # TF1 dropout's mask at inference (random.py)
        return uniform_binary(ctx, node, ins)
    dtype = "bool" if node.op in ("LogicalAnd", "LogicalOr") else node.attr("T")
    if node.op == "RealDiv" and dtype and not dtype.startswith("float"):
        ctx.fail(f"RealDiv on {dtype}")
    if node.op in ("Minimum", "Maximum"):
        fixed = _fixed_clamp(ctx, node, ins)
        if fixed is not None:
            return fixed
    if node.op in _INT_DIVISIONS and dtype and np.dtype(dtype).kind in "iu":
        ins = [ins[0], _nonzero_divisor(ctx, ins[1])]
    elif node.op == "TruncateDiv":
        ctx.fail(f"{node.op} on {dtype} (integers are supported)")
    if node.op == "Pow" and dtype and np.dtype(dtype).kind in "iu":
        return _int_pow(ctx, node, ins)
    if node.op == "Pow" and (pow_form := _grappler_pow(ctx, node, ins)) is not None:
        return pow_form
    if node.op == "RealDiv" and (recip := _grappler_reciprocal(ctx, node, ins[1])) is not None:
        node_op, ins = "Mul", [ins[0], recip]
    else:
        node_op = node.op
    if node_op in _PUSHED and str(dtype) in ("float32", "float64"):
        pushed = _constant_push_down(ctx, node, node_op, ins)
        if pushed is not None:
            return pushed
    a, b = _operands(ctx, node, ins, dtype)
    if node.op in ("Maximum", "Minimum") and str(dtype).startswith("float"):
        return _float_min_max(ctx, node.op, a, b)
    return ctx.emit(_BINARY[node.op](a, b))


def _grappler_pow(ctx, node, ins):
    """x ** c as a served TF graph computes it: Grappler's ConvertPow rewrites a float Pow by a constant exponent
    (every element equal) into Square (2), x * Square(x) (3), Sqrt (0.5), Rsqrt (-0.5), Reciprocal (-1) or x
    itself (1). They differ from pow(): tf.pow(x, 0.5) is NaN at -inf and -0 at -0 (pow: inf, 0), x * x * x
    rounds twice. None where TF computes pow (an exponent that is not such a constant, or one TF cannot fold)."""
    e = ins[1]
    if not (isinstance(e, Known) and e.concrete) or not _folded_by_grappler(ctx, node.inputs[1][0]):
        return None
    vals = np.unique(np.asarray(e.numpy(), dtype=np.float64).reshape(-1))
    if vals.size != 1 or float(vals[0]) not in (2.0, 3.0, 1.0, 0.5, -0.5, -1.0):
        return None
    c = float(vals[0])
    x = ctx.device(ins[0])
    if len(e.shape) > len(x.shape) or any(not is_const_int(d) or int(d) != 1 for d in e.shape):
        return None  # (a Pow that broadcasts x to the exponent's shape stays one)
    if c == 1.0:
        return x
    dt = x.dtype
    sq = relax.op.multiply(x.expr, x.expr)
    form = {2.0: sq, 3.0: relax.op.multiply(x.expr, sq), 0.5: relax.op.sqrt(x.expr),
            -0.5: relax.op.divide(relax.const(1.0, dt), relax.op.sqrt(x.expr)),
            -1.0: relax.op.divide(relax.const(1.0, dt), x.expr)}[c]
    return ctx.emit(form, shape=list(x.shape))


def _int_pow(ctx, node, ins):
    """tf.pow of integers (TVM's power is float-only: the build failed with 'power only applies to float'): by
    squaring, wrapping on overflow as TF's (pow(x, 0) is 1, 0 ** 0 too). The exponent must be a scalar constant;
    a negative one is TF's 'Integers to negative integer powers are not allowed'."""
    dtype = node.attr("T")
    e = ins[1]
    if not (isinstance(e, Known) and e.concrete and np.asarray(e.numpy()).size == 1):
        ctx.fail(f"Pow of {dtype} by a run-time exponent (a scalar constant exponent is supported)")
    k = int(np.asarray(e.numpy()).reshape(()))
    if k < 0:
        ctx.fail(f"Integers to negative integer powers are not allowed (TF's error; exponent {k})")
    x = ctx.device(ins[0])
    if k == 0:
        return ctx.emit(relax.op.ones_like(x.expr), shape=list(x.shape))
    out, base = None, x
    while k:
        if k & 1:
            out = base if out is None else ctx.emit(relax.op.multiply(out.expr, base.expr), shape=list(x.shape))
        k >>= 1
        if k:
            base = ctx.emit(relax.op.multiply(base.expr, base.expr), shape=list(x.shape))
    return out


_PUSHED = {"Mul": np.multiply, "Add": np.add, "AddV2": np.add}


def _constant_push_down(ctx, node, op: str, ins):
    """x op c as TF computes it (float Mul / Add with a constant Grappler folds): Grappler's ConstantPushDown
    turns c2 op (x op c1) into x op (c2 op c1), folded to one constant, where the inner node feeds nothing else and
    is not fetched (x / 100 * 10 is x * fl(fl(1 / 100) * 10) in a served graph). Records x op c for an outer node;
    returns the emitted value, or None (not x op c: emitted as usual)."""
    chain = ctx.pushed_chains
    k = next((k for k in (1, 0) if isinstance(ins[k], Known) and ins[k].concrete and
              (k == 1 and node.op == "RealDiv" or _folded_by_grappler(ctx, node.inputs[k][0]))), None)
    if k is None or isinstance(ins[1 - k], Known):
        return None
    c, x = ins[k], ins[1 - k]
    family = "Mul" if op == "Mul" else "Add"
    inner = node.inputs[1 - k]
    hit = chain.get(inner)
    if hit is not None and hit[0] == family and inner[0] not in ctx.fetched and len(ctx.consumers()[inner[0]]) == 1:
        _, x, c1 = hit
        with np.errstate(all="ignore"):
            c = Known(np.asarray(_PUSHED[op](c.numpy(), c1.numpy()), dtype=c.dtype), c.dtype)
    chain[(node.name, 0)] = (family, x, c)
    a, b = _operands(ctx, node, [x, c], c.dtype)
    return ctx.emit(_BINARY[op](a, b))


# Ops Grappler's constant folding leaves alone although their inputs are constants (stateful or random)
_NOT_FOLDED = ("Placeholder", "PlaceholderWithDefault", "VarHandleOp", "VariableV2", "Variable", "ReadVariableOp",
               "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "Multinomial",
               "RandomShuffle", "LookupTableFindV2", "LookupTableSizeV2", "HashTableV2")


def _folded_by_grappler(ctx, name: str) -> bool:
    """Whether TensorFlow's Grappler folds node `name` into a constant: it reads nothing but Consts of the graph
    through ops that fold. Consts the loader froze from variables or a function's captured tensors
    (`Graph.fed_consts`) are fed to the graph at run time: TF cannot fold them."""
    graph = ctx.graph
    memo = ctx.grappler_folds
    stack = [name]
    while stack:
        cur = stack[-1]
        if cur in memo:
            stack.pop()
            continue
        node = graph.nodes[cur]
        if node.op == "Const":
            memo[cur] = cur not in graph.fed_consts
        elif node.op in _NOT_FOLDED or not node.inputs:
            memo[cur] = False
        else:
            todo = [s for s, _ in node.inputs if s not in memo]
            if todo:
                stack.extend(todo)
                continue
            memo[cur] = all(memo[s] for s, _ in node.inputs)
        stack.pop()
    return memo[name]


def _grappler_reciprocal(ctx, node, divisor) -> Known | None:
    """TF divides a float by a constant as Grappler rewrites it (constant folding's ReduceDivToReciprocalMul):
    x * (1 / c), with 1 / c rounded to the dtype; that differs from x / c in the last bit (70 / 100 * 10 floors to
    6 in a served graph, 7 in eager TF), which flips floors, casts to int and bucket boundaries. Where the divisor
    is a constant TF folds (not a variable, not a captured tensor) and the division is not itself fetched; None
    where TF divides."""
    if not (isinstance(divisor, Known) and divisor.concrete and divisor.dtype in ("float16", "float32", "float64")):
        return None
    if node.name in ctx.fetched or not _folded_by_grappler(ctx, node.inputs[1][0]):
        return None
    c = np.asarray(divisor.numpy(), dtype=divisor.dtype)
    with np.errstate(divide="ignore"):
        return Known(np.asarray(np.divide(np.ones((), c.dtype), c), dtype=c.dtype), divisor.dtype)


def _float_min_max(ctx, op: str, a, b):
    """TF's float Maximum / Minimum: NaN if either operand is NaN; TVM's max / min drop a NaN (tf.clip_by_value(nan)
    is nan). On ties the first operand (TF's scalar kernel; its vectorized one may return the other zero)."""
    other_wins = relax.op.less(a, b) if op == "Maximum" else relax.op.less(b, a)
    pick = ctx.emit(relax.op.where(other_wins, b, a))
    return ctx.emit(relax.op.where(relax.op.isnan(b), b, pick.expr))  # (b != b folds to false in TIR)


@device("ClipByValue")
def _clip_by_value(ctx, node, ins):
    """TF's ClipByValue op (tf.saturate_cast writes it before the cast): min(x, hi), then max(that, lo), with
    TF-CPU's NaN rules (Eigen's cwiseMin / cwiseMax: `hi < x ? hi : x`, then `m < lo ? lo : m`): a NaN in x stays,
    a NaN bound clips nothing. The bounds are scalars or of x's shape."""
    x = ctx.device(ins[0])
    lo, hi = ins[1], ins[2]
    dt = x.dtype

    def bound(v):
        if isinstance(v, Known) and v.concrete and v.numpy().size == 1:
            return relax.const(np.asarray(v.numpy()).astype(dt).reshape(()), dt)
        b = ctx.device(v)
        if b.shape and len(b.shape) != len(x.shape):
            ctx.fail(f"a bound of shape {b.shape} for an input of shape {x.shape} (scalars or its shape)")
        return (ctx.match_shape(b, x.shape) if b.shape else b).expr

    lo, hi = bound(lo), bound(hi)
    m = ctx.emit(relax.op.where(relax.op.less(hi, x.expr), hi, x.expr), shape=list(x.shape))
    return ctx.emit(relax.op.where(relax.op.less(m.expr, lo), lo, m.expr), shape=list(x.shape))


@device("DivNoNan")
def _div_no_nan(ctx, node, ins):
    """x / y, 0 where y == 0 (TF's DivNoNan; weighted mean / sqrtn combiners)."""
    dtype = node.attr("T")
    if dtype and not str(dtype).startswith("float"):
        ctx.fail(f"DivNoNan on {dtype}")
    a, b = _operands(ctx, node, ins, dtype)
    zero = relax.const(0, dtype or "float32")
    ratio = ctx.emit(relax.op.divide(a, b))
    is_zero = ctx.emit(relax.op.equal(b, zero))
    return ctx.emit(relax.op.where(is_zero.expr, zero, ratio.expr))


@device("MulNoNan")
def _mul_no_nan(ctx, node, ins):
    """tf.math.multiply_no_nan: x * y, 0 where y == 0 even where x is NaN or inf (a weight of 0 masking a
    feature that may be NaN)."""
    dtype = node.attr("T")
    a, b = _operands(ctx, node, ins, dtype)
    zero = relax.const(0, dtype or "float32")
    prod = ctx.emit(relax.op.multiply(a, b))
    is_zero = ctx.emit(relax.op.equal(b, zero))
    return ctx.emit(relax.op.where(is_zero.expr, zero, prod.expr))


@device("AddN")
def _add_n(ctx, node, ins):
    """The sum of N tensors of one shape (tf.math.add_n; linear_model's weighted sum over its columns)."""
    xs = ctx.unify([ctx.device(v) for v in ins])
    if any(len(x.shape) != len(xs[0].shape) for x in xs):
        ctx.fail(f"inputs of different ranks {[len(x.shape) for x in xs]}")
    out = xs[0].expr
    for x in xs[1:]:
        out = relax.op.add(out, x.expr)
    return ctx.emit(out, shape=list(xs[0].shape))


@device("SquaredDifference")
def _sqdiff(ctx, node, ins):
    a, b = _operands(ctx, node, ins)
    d = ctx.emit(relax.op.subtract(a, b))
    return ctx.emit(relax.op.multiply(d.expr, d.expr))


@device("BiasAdd", "BiasAddV1")
def _bias_add(ctx, node, ins):
    fmt = node.attr("data_format", b"NHWC")
    if fmt not in (b"NHWC", "NHWC", None):
        ctx.fail(f"data_format {fmt!r} (only NHWC / channels-last is supported)")
    a, b = _operands(ctx, node, ins)
    return ctx.emit(relax.op.add(a, b))


_KNOWN_BINARY = {
    "Add": lambda a, b: a + b, "AddV2": lambda a, b: a + b, "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "FloorDiv": lambda a, b: tirx.floordiv(a, b) if is_prim(a) or is_prim(
        b) else a // b,
    "FloorMod": lambda a, b: tirx.floormod(a, b) if is_prim(a) or is_prim(
        b) else a % b,
    "Maximum": lambda a, b: tirx.max(a, b) if is_prim(a) or is_prim(
        b) else max(a, b),
    "Minimum": lambda a, b: tirx.min(a, b) if is_prim(a) or is_prim(
        b) else min(a, b),
}
_KNOWN_COMPARE = {
    "Less": lambda a, b: a < b, "LessEqual": lambda a, b: a <= b, "Greater": lambda a, b: a > b,
    "GreaterEqual": lambda a, b: a >= b, "Equal": lambda a, b: a == b, "NotEqual": lambda a, b: a != b,
}


@known(*_KNOWN_BINARY, *_KNOWN_COMPARE, "RealDiv", "LogicalAnd", "LogicalOr")
def _binary_known(ctx, node, ins):
    a, b = ins
    if a.dtype == "string" or b.dtype == "string":
        raise NotFoldable
    if a.concrete and b.concrete:
        x, y = a.numpy(), b.numpy()
        if node.op in _INT_DIVISIONS and np.asarray(y).dtype.kind in "iu" and np.any(np.asarray(y) == 0):
            raise NotFoldable  # TF's run-time error (_nonzero_divisor), not numpy's 0 and a warning
        fns = {"RealDiv": np.divide, "FloorDiv": np.floor_divide, "FloorMod": np.mod, "Maximum": np.maximum,
               "Minimum": np.minimum, "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
               "Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "Less": np.less,
               "LessEqual": np.less_equal, "Greater": np.greater, "GreaterEqual": np.greater_equal,
               "Equal": np.equal, "NotEqual": np.not_equal}
        res = fns[node.op](x, y)
        dtype = "bool" if node.op in _KNOWN_COMPARE or node.op.startswith("Logical") else a.dtype
        return Known(np.asarray(res).astype(dtype), dtype)
    if node.op in _KNOWN_COMPARE:
        fn = _KNOWN_COMPARE[node.op]
        res = np.frompyfunc(lambda p, q: _prove(fn, p, q), 2, 1)(a.value, b.value)
        return Known(np.asarray(res, dtype=bool), "bool")
    if node.op not in _KNOWN_BINARY:
        raise NotFoldable
    return _finish(_sym_map(_KNOWN_BINARY[node.op], a.value, b.value), a.dtype)


# ---------------------------------------------------------------------------------------------- unary
def _round_half_even(x):
    """TF's Round and Rint: halves to the even neighbour (banker's rounding; TVM's round takes them away from
    zero). Integers are their own rounding."""
    dt = str(x.ty.dtype)
    if not dt.startswith(("float", "bfloat")):
        return x
    c = lambda v: relax.const(v, dt)  # noqa: E731
    f = relax.op.floor(x)
    d = relax.op.subtract(x, f)
    up = relax.op.add(f, c(1.0))
    f_odd = relax.op.not_equal(relax.op.subtract(f, relax.op.multiply(c(2.0), relax.op.floor(
        relax.op.multiply(f, c(0.5))))), c(0.0))
    tie = relax.op.where(f_odd, up, f)
    # NaN / inf: floor(x) is x, d is NaN, and every comparison false picks `tie` = f = x
    return relax.op.where(relax.op.greater(d, c(0.5)), up, relax.op.where(relax.op.less(d, c(0.5)), f, tie))


def _expm1(x):
    """exp(x) - 1 without its cancellation near 0 (TF's Expm1 is accurate there): x + x^2 / 2 + x^3 / 6 below
    |x| = 1e-3 (the truncation, x^3 / 24 relative, stays under 5e-11: below float32's precision)."""
    dt = str(x.ty.dtype)
    c = lambda v: relax.const(v, dt)  # noqa: E731
    small = relax.op.multiply(x, relax.op.add(c(1.0), relax.op.multiply(x, relax.op.add(
        c(0.5), relax.op.multiply(x, c(1.0 / 6.0))))))
    return relax.op.where(relax.op.less(relax.op.abs(x), c(1e-3)), small,
                          relax.op.subtract(relax.op.exp(x), c(1.0)))


def _log1p(x, dt: str | None = None):
    """log(1 + x) without losing x where 1 + x rounds (TF's Log1p is accurate near 0: log(1 + 1e-8) is 1e-8, not
    0): log(u) * x / (u - 1) with u = fl(1 + x) cancels u's rounding error; x itself where u is 1, inf at inf."""
    dt = dt or str(x.ty.dtype)
    u = relax.op.add(x, relax.const(1.0, dt))
    scaled = relax.op.divide(relax.op.multiply(relax.op.log(u), x), relax.op.subtract(u, relax.const(1.0, dt)))
    return relax.op.where(relax.op.equal(u, relax.const(1.0, dt)), x,
                          relax.op.where(relax.op.equal(u, relax.const(np.inf, dt)), u, scaled))


def _atanh(x):
    """atanh(x) = log1p(2x / (1 - x)) / 2: TVM's 0.5 * log((1 + x) / (1 - x)) lost small x (relative error 1e-3 at
    x = 1e-5); +-inf at +-1 and NaN past them, as TF."""
    dt = str(x.ty.dtype)
    ratio = relax.op.divide(relax.op.multiply(relax.const(2.0, dt), x), relax.op.subtract(relax.const(1.0, dt), x))
    return relax.op.multiply(relax.const(0.5, dt), _log1p(ratio, dt))


def _sign(x):
    """TF's Sign keeps NaN (TVM's gives 0 there)."""
    if str(x.ty.dtype).startswith(("float", "bfloat")):
        return relax.op.where(relax.op.isnan(x), x, relax.op.sign(x))
    return relax.op.sign(x)


def _softplus(x):
    """TF's Softplus kernel (softplus_op.h): x above -t, exp(x) below t, else log1p(exp(x)), with t = log(eps) + 2
    of the dtype; log(exp(x) + 1) overflowed to inf above x = 88 (float32) and lost exp(x) below -17 (tf.math.
    log_sigmoid(x) = -softplus(-x) gave -inf instead of -100 at x = -100)."""
    dt = str(x.ty.dtype)
    eps = np.float32(2.0 ** -7) if dt == "bfloat16" else np.finfo(dt).eps  # (TF computes t in the dtype)
    t = float(np.log(eps) + eps.dtype.type(2.0))
    e = relax.op.exp(x)
    return relax.op.where(relax.op.greater(x, relax.const(-t, dt)), x,
                          relax.op.where(relax.op.less(x, relax.const(t, dt)), e, _log1p(e, dt)))


_UNARY = {
    "Neg": relax.op.negative, "Abs": relax.op.abs, "Exp": relax.op.exp, "Log": relax.op.log,
    "Sqrt": relax.op.sqrt, "Rsqrt": relax.op.rsqrt, "Square": relax.op.square, "Relu": lambda x: tf_relu(x, None),
    "Sigmoid": relax.op.sigmoid, "Tanh": relax.op.tanh, "Erf": relax.op.erf, "Floor": relax.op.floor,
    "Ceil": relax.op.ceil, "Sign": lambda x: _sign(x), "LogicalNot": relax.op.logical_not,
    "IsNan": relax.op.isnan, "IsInf": relax.op.isinf, "IsFinite": relax.op.isfinite,
    "Reciprocal": lambda x: relax.op.divide(relax.const(1.0, x.ty.dtype), x),
    "Erfc": lambda x: relax.op.subtract(relax.const(1.0, x.ty.dtype), relax.op.erf(x)),
    "Log1p": lambda x: _log1p(x), "Softplus": lambda x: _softplus(x),
    "Softsign": lambda x: relax.op.divide(x, relax.op.add(relax.op.abs(x), relax.const(1.0, x.ty.dtype))),
    "Relu6": lambda x: tf_relu(x, 6.0),
    "Sin": relax.op.sin, "Cos": relax.op.cos, "Tan": relax.op.tan, "Atan": relax.op.atan,
    "Asin": relax.op.asin, "Acos": relax.op.acos, "Sinh": relax.op.sinh, "Cosh": relax.op.cosh,
    "Asinh": relax.op.asinh, "Acosh": relax.op.acosh, "Atanh": lambda x: _atanh(x),
    "Round": _round_half_even, "Rint": _round_half_even, "Expm1": _expm1, "Invert": relax.op.bitwise_not,
    "Elu": lambda x: relax.op.where(relax.op.greater(x, relax.const(0.0, x.ty.dtype)), x,
                                    relax.op.subtract(relax.op.exp(x), relax.const(1.0, x.ty.dtype))),
}


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@device(*_UNARY)
def _unary(ctx, node, ins):
    if isinstance(ins[0], Uniform):  # floor(keep_prob + RandomUniform): TF 1.x dropout's mask (random.py)
        return uniform_floor(ctx, node, ins)
    x = ctx.device(ins[0])
    return ctx.emit(_UNARY[node.op](x.expr))


@device("Selu")
def _selu(ctx, node, ins):
    x = ctx.device(ins[0]).expr
    dt = x.ty.dtype
    neg = relax.op.multiply(relax.const(_SELU_ALPHA, dt), relax.op.subtract(relax.op.exp(x), relax.const(1.0, dt)))
    return ctx.emit(relax.op.multiply(relax.const(_SELU_SCALE, dt),
                                      relax.op.where(relax.op.greater(x, relax.const(0.0, dt)), x, neg)))


@device("LeakyRelu")
def _leaky_relu(ctx, node, ins):
    x = ctx.device(ins[0]).expr
    return ctx.emit(relax.op.nn.leakyrelu(x, float(node.attr("alpha", 0.2))))


@known("Neg")
def _neg_known(ctx, node, ins):
    return _finish(_sym_map(lambda a: -a, ins[0].value), ins[0].dtype)


_EXACT_UNARY = {"Sqrt": np.sqrt, "Square": np.square, "Reciprocal": np.reciprocal, "Abs": np.abs}


@known(*_EXACT_UNARY)
def _exact_unary_known(ctx, node, ins):
    """Correctly rounded float ops of constants, folded as TF folds them (e.g. Keras' x / sqrt(variance) of a
    constant variance: the divisor Grappler makes a reciprocal, _grappler_reciprocal)."""
    v = ins[0]
    if not (v.concrete and v.dtype in ("float16", "float32", "float64")):
        raise NotFoldable
    with np.errstate(all="ignore"):
        return Known(np.asarray(_EXACT_UNARY[node.op](v.numpy()), dtype=v.dtype), v.dtype)


# ----------------------------------------------------------------------------------------------- cast
@device("Cast")
def _cast(ctx, node, ins):
    x = ctx.device(ins[0])
    dst = node.attr("DstT")
    if dst == "string" or x.dtype == "string":
        ctx.fail("casts to or from strings run in the host stage only")
    if dst == x.dtype:
        return x
    return ctx.emit(relax.op.astype(x.expr, dst))


@known("Cast")
def _cast_known(ctx, node, ins):
    v, dst = ins[0], node.attr("DstT")
    if v.dtype == "string" or dst == "string":
        raise NotFoldable
    if v.concrete:
        return Known(v.numpy().astype(dst), dst)
    if dst.startswith("int") or dst.startswith("uint"):
        return Known(v.value, dst)
    raise NotFoldable


# --------------------------------------------------------------------------------------------- select
@device("Select", "SelectV2")
def _select(ctx, node, ins):
    cond, a, b = (ctx.device(v) for v in ins)
    if node.op == "SelectV2":  # dims of separate features' batches, whichever operands carry them
        a, b, cond = _broadcast_all(ctx, [a, b, cond])
    else:
        a, b = broadcast_pair(ctx, a, b)
    if node.op == "Select" and len(cond.shape) == 1 and len(a.shape) > 1:
        # TF1 Select: a vector condition picks whole rows.
        cond = ctx.emit(relax.op.reshape(cond.expr, [cond.shape[0]] + [1] * (len(a.shape) - 1)))
        cond = ctx.match_shape(cond, [a.shape[0]] + [1] * (len(a.shape) - 1))
    elif node.op == "Select":
        cond = ctx.match_shape(cond, a.shape) if len(cond.shape) == len(a.shape) else cond
    return ctx.emit(relax.op.where(cond.expr, a.expr, b.expr))


@device("ZerosLike", "OnesLike")
def _zeros_like(ctx, node, ins):
    x = ctx.device(ins[0])
    fn = relax.op.zeros_like if node.op == "ZerosLike" else relax.op.ones_like
    return ctx.emit(fn(x.expr))


@known("ZerosLike", "OnesLike")
def _zeros_like_known(ctx, node, ins):
    v = ins[0]
    fill = 0 if node.op == "ZerosLike" else 1
    return Known(np.full(v.value.shape, fill, dtype=v.dtype if v.dtype != "string" else object), v.dtype)


# ------------------------------------------------------------------------------------ Cumsum / Cumprod
def _product_reducer():
    from tvm import te

    return te.comm_reducer(lambda a, b: a * b, lambda dtype: tirx.const(1, dtype), name="prod")


@device("Cumsum", "Cumprod")
def _scan(ctx, node, ins):
    """Running sums / products along an axis; exclusive (shifted by one, starting at 0 / 1) and reverse as TF."""
    x = ctx.device(ins[0])
    (axis,) = ctx.const_ints(ins[1], "the axis")
    rank = len(x.shape)
    if not -rank <= axis < rank:
        ctx.fail(f"axis {axis} out of range for rank {rank}")
    axis %= rank
    exclusive, reverse = bool(node.attr("exclusive", False)), bool(node.attr("reverse", False))
    product = node.op == "Cumprod"
    # (TVM 0.27 registers no legalization for relax.op.cumsum): a reduction per output element, quadratic in
    # the axis length, which is short where serving graphs use it (positions in a behaviour sequence), and
    # scheduled on GPUs like any reduction. It folds in TF's order (from the far end when reversed, as Eigen's
    # scan of the reversed tensor), so a serial reduction (CPU) rounds as TF does
    def compute(data):
        from tvm import te

        n = data.shape[axis]
        j = te.reduce_axis((0, n), "j")
        reducer = _product_reducer() if product else te.sum
        identity = tirx.const(1 if product else 0, data.dtype)

        def body(*idx):
            i, src = idx[axis], list(idx)
            src[axis] = n - 1 - j if reverse else j
            keep = (src[axis] > i if exclusive else src[axis] >= i) if reverse else \
                (j < i if exclusive else j <= i)
            return reducer(tirx.if_then_else(keep, data(*src), identity), axis=j)

        return te.compute(data.shape, body, name=node.op.lower())

    return ctx.emit(ctx.bb.call_te(compute, x.expr, primfunc_name_hint=node.op.lower()), shape=list(x.shape))
