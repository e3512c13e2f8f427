"""State shared by the op converters while one graph is imported."""

from __future__ import annotations

import dataclasses
import re
from typing import NoReturn

import numpy as np
import tvm_ffi
import tvm
from tvm import relax, tirx

from ..errors import ConversionError
from ..shapes.symbolic import analyzer, as_expr, dim_str, is_const_int, is_prim, prove_equal, simplify
from .graph import Node
from .values import Device, Host, Known, Symbols, Value

# Constants at least this large become function parameters ("tables as params"), not inline constants.
PARAM_MIN_ELEMENTS = 256


@dataclasses.dataclass
class ModuleInput:
    """One parameter of the Relax function and where its runtime value comes from."""

    var: relax.Var
    source: str  # "feed" | "host" | "param"
    ref: str  # placeholder tensor, host tensor or param name
    kind: str  # "tensor" | "shape"
    dtype: str

    def to_json(self) -> dict:
        ty = self.var.ty
        if self.kind in ("shape", "shape_of"):
            shape = [dim_str(v) for v in ty.values]
        else:
            shape = [dim_str(v) for v in ty.shape.values]
        return {"name": self.var.name, "source": self.source, "ref": self.ref, "kind": self.kind,
                "dtype": self.dtype, "shape": shape}


class ImportContext:
    def __init__(self, column_of) -> None:
        self.bb = relax.BlockBuilder()
        self.symbols = Symbols()
        self.inputs: list[ModuleInput] = []
        self.params: dict[str, np.ndarray] = {}
        self.host_plan: list[dict] = []
        self.host_outputs: set[str] = set()  # every tensor a host-stage op produces (see add_host_op)
        self.node: Node | None = None
        self.on_host = False  # the node being converted feeds the host stage (PLACED converters read it)
        self._column_of = column_of
        self._materialized: dict[int, tuple[Known, Device]] = {}
        self._host_inputs: dict[str, Device] = {}
        self.feed_tensors: set[str] = set()
        self.host_values: dict[str, Host] = {}  # host tensors (feeds, host-stage outputs) by name
        self._params_of: dict[int, tuple[Known, Device]] = {}  # id(value) -> (value, its parameter)
        self.assertions: list[dict] = []  # host-checked preconditions (recom_tvm.runtime.assertions)
        self.assertion_symbols: set[str] = set()
        self._var_names: set[str] = set()  # names of the function's parameters (inputs and params): unique
        self._host_known: dict = {}
        self.fetched: set[str] = set()  # the nodes whose outputs the model returns
        # Grappler's rewrites (converters/math.py): (node, 0) -> (Mul / Add family, x, folded constant) of x op c,
        # and whether a node folds to a constant
        self.pushed_chains: dict = {}
        self.grappler_folds: dict[str, bool] = {}
        self._consumers: dict[str, list[str]] | None = None

    def consumers(self) -> dict[str, list[str]]:
        """The graph's Graph.consumers(), computed once per import (several converters ask for it)."""
        if self._consumers is None:
            self._consumers = self.graph.consumers()
        return self._consumers

    # ------------------------------------------------------------------------------------------- errors
    def add_host_op(self, node: dict) -> None:
        """Append a node to the host-stage plan ({"name", "op", "inputs", "attrs", "outputs"})."""
        self.host_plan.append(node)
        self.host_outputs.update(node["outputs"])

    def fail(self, detail: str) -> NoReturn:
        node = self.node
        raise ConversionError(node.op if node else "?", node.name if node else "?",
                              self._column_of(node.name) if node else None, detail)

    def label(self) -> str:
        """'<op> node <name> (column <c>)' for runtime error messages."""
        col = self._column_of(self.node.name)
        return f"{self.node.op} node {self.node.name!r}" + (f" (column {col!r})" if col else "")

    def assume(self, cond, message: str) -> None:
        """Record a precondition on the input sizes, checked on the host before launch (TF raises when it fails).

        Conditions on data-dependent sizes cannot be checked before launch; the module checks those itself."""
        from ..shapes.assertions import assertion

        cond = analyzer().simplify(cond)
        if isinstance(cond, tirx.IntImm):
            if not cond.value:
                self.fail(message)
            return
        names = set()
        _names(cond, names)
        if self._data_dependent(names):
            return
        entry = assertion(cond, message)
        if entry not in self.assertions:
            self.assertions.append(entry)
            self.assertion_symbols |= names

    def _data_dependent(self, names: set) -> bool:
        """Whether any of these symbols is a size learnt while the module runs (not checkable before launch)."""
        return any(self.symbols.origin.get(n, "").startswith("data-dependent") for n in names)

    def symbols_of(self, expr) -> set:
        """The names of the size symbols in a PrimExpr."""
        names: set = set()
        _names(expr, names)
        return names

    # ------------------------------------------------------------------------------------- emission
    def emit(self, expr: relax.Expr, name: str = "", shape: list | None = None) -> Device:
        """Emit a binding; a result of unknown shape is match_cast to `shape`, or to fresh symbols."""
        var = expr if isinstance(expr, relax.Var) else self.bb.emit(expr, name)
        ty = var.ty
        if not isinstance(ty, relax.TensorType):
            self.fail(f"internal: expected a tensor result, got {ty}")
        if ty.shape is None and shape is not None:
            var = self.bb.match_cast(var, relax.TensorType([as_expr(s) for s in shape], str(ty.dtype)))
            ty = var.ty
        if ty.shape is None:
            if ty.ndim < 0:
                self.fail("internal: result of unknown rank")
            base = (self.node.name.rsplit("/", 1)[-1] if self.node else "d")
            dims = [self.symbols.fresh(f"{base}_{i}", f"data-dependent size at {self.node.name}")
                    for i in range(ty.ndim)]
            var = self.bb.match_cast(var, relax.TensorType(dims, str(ty.dtype)))
            ty = var.ty
        return Device(var, str(ty.dtype), list(ty.shape.values))

    def match_shape(self, dev: Device, shape: list, broadcast: bool = False) -> Device:
        """Assert (at run time if unprovable) that `dev` has `shape`, and continue with that shape. broadcast: the
        op is a broadcasting one (its error says what TF would do with a size-1 dim)."""
        if len(dev.shape) == len(shape) and all(prove_equal(a, b) for a, b in zip(dev.shape, shape)):
            return dev
        if len(dev.shape) != len(shape):
            self.fail(f"rank mismatch: {len(dev.shape)} vs {len(shape)}")
        for k, (a, b) in enumerate(zip(dev.shape, shape)):
            if isinstance(a, tirx.Var) and isinstance(b, tirx.Var) and not prove_equal(a, b) and \
                    self._is_input_symbol(a) and self._is_input_symbol(b):
                hint = (" (where one is 1 TF broadcasts it; recom_tvm binds the two as one size and repeats a "
                        "one-row feed only where nothing but row-wise ops lie between it and this op: repeat the "
                        "size-1 input to the other's size)") if broadcast else ""
                self.assume(a == b, f"{self.label()}: dimension {k} must be equal in its inputs, "
                                    f"got {a.name} != {b.name}{hint}")
        src = self._reshaped(dev)
        exprs = [(k, a, b) for k, (a, b) in enumerate(zip(dev.shape, shape)) if not prove_equal(a, b) and
                 not (isinstance(a, tirx.Var) and isinstance(b, tirx.Var))]
        if src is not None and exprs and all(self.checkable_on_host(a) and self.checkable_on_host(b)
                                             for a, b in zip(dev.shape, shape) if not prove_equal(a, b)):
            # a reshape's result cast to other sizes (x * w rows of a tile to the batch's x): TVM's
            # CanonicalizeBindings (in KillAfterLastUse) recursed without end on such a match_cast and the build
            # crashed (SIGSEGV). The sizes are input sizes: checked on the host before launch, then one reshape
            for k, a, b in exprs:
                self.assume(as_expr(a) == as_expr(b), f"{self.label()}: dimension {k} must be equal in its "
                                                      f"inputs, got {a} != {b}")
            var = self.bb.emit(relax.op.reshape(src, [as_expr(s) for s in shape]))
            return Device(var, dev.dtype, list(var.ty.shape.values))
        var = self.bb.match_cast(dev.expr, relax.TensorType([as_expr(s) for s in shape], dev.dtype))
        return Device(var, dev.dtype, list(var.ty.shape.values))

    def _reshaped(self, dev: Device):
        """The input of the reshape `dev` is bound to, or None."""
        try:
            value = self.bb.lookup_binding(dev.expr) if isinstance(dev.expr, relax.Var) else None
        except Exception:  # noqa: BLE001 - not bound in this builder's scope
            return None
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") == "relax.reshape":
            return value.args[0]
        return None

    def checkable_on_host(self, dim) -> bool:
        """A dim the host can compute before launch: a constant, or an expression of input sizes only."""
        if is_const_int(dim):
            return True
        names = self.symbols_of(as_expr(dim))
        return bool(names) and names <= self.symbols.origin.keys() and not self._data_dependent(names)

    def match_shape_cast(self, dev: Device, shape: list, broadcast: bool = False) -> Device:
        """match_shape, casting even when the dims are provably equal but written differently."""
        if len(dev.shape) == len(shape) and all(tvm_ffi.structural_equal(as_expr(a), as_expr(b))
                                                for a, b in zip(dev.shape, shape)):
            return dev
        if all(prove_equal(a, b) for a, b in zip(dev.shape, shape)) and len(dev.shape) == len(shape):
            var = self.bb.match_cast(dev.expr, relax.TensorType([as_expr(s) for s in shape], dev.dtype))
            return Device(var, dev.dtype, list(var.ty.shape.values))
        return self.match_shape(dev, shape, broadcast)

    def _is_input_symbol(self, v) -> bool:
        return v.name in self.symbols.origin and not self.symbols.origin[v.name].startswith("data-dependent")

    def unify(self, values: list[Device], dims: list[int] | None = None) -> list[Device]:
        """Make the given dims (default: all) of same-rank values share the first value's symbols."""
        ref = values[0].shape
        out = [values[0]]
        for v in values[1:]:
            if len(v.shape) != len(ref):
                out.append(v)
                continue
            target = [ref[i] if (dims is None or i in dims) else v.shape[i] for i in range(len(ref))]
            out.append(self.match_shape(v, target))
        return out

    # --------------------------------------------------------------------------------------- values
    def known(self, v: Value, what: str) -> np.ndarray:
        if not isinstance(v, Known):
            self.fail(f"{what} must be known when the model is compiled (a constant or a shape expression)")
        return v.value

    def known_ints(self, v: Value, what: str) -> list:
        """A known int scalar or vector as a list of ints / PrimExprs."""
        arr = self.known(v, what)
        return [simplify(x) if is_prim(x) else int(x) for x in np.asarray(arr).reshape(-1)]

    def const_ints(self, v: Value, what: str) -> list[int]:
        vals = self.known_ints(v, what)
        for x in vals:
            if not is_const_int(x):
                self.fail(f"{what} must be a constant, got the symbolic value {x}")
        return [int(x) for x in vals]

    def device(self, v: Value, table: bool = False) -> Device:
        """The value as a Relax expression (materializing known and host values).

        table: a constant read by a gather is an embedding table: always a parameter, whatever its size."""
        if isinstance(v, Device):
            return v
        if isinstance(v, Host):
            return self._host_input(v)
        if table and v.concrete and v.dtype != "string":
            return self._param(v)
        # keyed by identity; the entry keeps v alive, so a later Known cannot reuse its id and get its Device (a
        # converter's temporary Known, freed after the call, did: a stale [2] vector where a [1] was asked for)
        if id(v) not in self._materialized:
            self._materialized[id(v)] = (v, self._materialize_known(v))
        return self._materialized[id(v)][1]

    def _materialize_known(self, v: Known) -> Device:
        if v.dtype == "string":
            self.fail("a string constant reaches a compiled op; string ops run in the host stage only")
        if v.concrete:
            arr = v.numpy()
            if arr.size >= PARAM_MIN_ELEMENTS:
                return self._param(v)
            return self.emit(relax.const(arr, v.dtype))
        # Symbolic known values (e.g. a shape used as data): a tiny kernel writes the expressions.
        flat = [as_expr(x) for x in v.value.reshape(-1)]
        from ..ops.legalize import _Lowerer

        t = _Lowerer(self.bb).shape_tensor(flat)
        dev = self.emit(relax.op.astype(t, v.dtype) if v.dtype != "int64" else t)
        if list(v.value.shape) != [len(flat)]:
            dev = self.emit(relax.op.reshape(dev.expr, list(v.value.shape)))
        return dev

    def _param(self, v: Known) -> Device:
        """The parameter holding constant `v`: one per TF constant (reads of one Const, as in shared embeddings,
        share it). Two Consts of equal content stay two parameters: `set_params` may give them different
        weights (equal initial values say nothing about the trained ones)."""
        hit = self._params_of.get(id(v))
        if hit is not None and hit[0] is v:
            return hit[1]
        dev = self._new_param(v.numpy())
        self._params_of[id(v)] = (v, dev)
        return dev

    def unique_name(self, base: str) -> str:
        """A parameter name not taken yet: the passes and the spec key module inputs by name, and tensor names
        that differ only in punctuation ("a.b", "a_b") sanitise alike."""
        name, i = base, 1
        while name in self._var_names or name in self.params:
            i += 1
            name = f"{base}_{i}"
        self._var_names.add(name)
        return name

    def _new_param(self, arr: np.ndarray) -> Device:
        name = self.unique_name(_var_name(self.node.name) if self.node else "param")
        self.params[name] = arr
        var = relax.Var(name, relax.TensorType(list(arr.shape), str(arr.dtype)))
        self.inputs.append(ModuleInput(var, "param", name, "tensor", str(arr.dtype)))
        return Device(var, str(arr.dtype), list(var.ty.shape.values))

    def _host_input(self, v: Host) -> Device:
        if v.dtype == "string":
            self.fail(f"the string tensor {v.tensor!r} reaches a compiled op; only numbers cross from the "
                      "host stage to the compiled module")
        if v.tensor not in self._host_inputs:
            var = relax.Var(self.unique_name(_var_name(v.tensor)),
                            relax.TensorType([as_expr(s) for s in v.shape], v.dtype))
            source = "feed" if v.tensor in self.feed_tensors else "host"
            self.inputs.append(ModuleInput(var, source, v.tensor, "tensor", v.dtype))
            self._host_inputs[v.tensor] = Device(var, v.dtype, list(var.ty.shape.values))
        return self._host_inputs[v.tensor]

    def define_missing_symbols(self, func: relax.Function) -> relax.Function:
        """Symbols used by the module but defined only by host tensors' shapes (e.g. a string feed [B, T] whose
        Shape() reaches a compiled op) become `shape_of` inputs: the runtime passes those tensors' shapes."""
        missing = {v.name for v in relax.analysis.free_symbolic_vars(func)}
        defined = {v.name for v in relax.analysis.defined_symbolic_vars(func)}
        missing |= self.assertion_symbols - defined
        extra = []
        for name, host in self.host_values.items():
            if not missing:
                break
            dims = [d for d in host.shape if isinstance(d, tirx.Var)]
            if any(d.name in missing for d in dims):
                var = relax.Var(self.unique_name(_var_name(host.tensor) + "_shape"),
                                relax.ShapeType([as_expr(d) for d in host.shape]))
                inp = ModuleInput(var, "feed" if name in self.feed_tensors else "host", host.tensor, "shape_of",
                                  host.dtype)
                extra.append(inp)
                missing -= {d.name for d in dims}
        if missing:
            raise ConversionError("?", "?", None, f"internal: symbols {sorted(missing)} are used but never defined")
        if not extra:
            return func
        self.inputs[:0] = extra
        return relax.Function([i.var for i in extra] + list(func.params), func.body, func.ret_ty, func.is_pure,
                              func.attrs, func.span)

    def host_known(self, v: Known) -> str:
        """A symbolic known value (sizes used as data) computed in the host stage, from the dims and values of
        the host tensors that define its symbols (a `SymbolicValue` plan node); its tensor name."""
        from ..shapes.assertions import to_ast

        key = ("known", id(v))
        if key in self._host_known:  # (the entry keeps v alive: its id is not reused, see device())
            return self._host_known[key][1]
        where: dict[str, tuple[str, str, int]] = {}
        for inp in self.inputs:
            if inp.kind == "shape":
                for i, d in enumerate(inp.var.ty.values):
                    if isinstance(d, tirx.Var):
                        where.setdefault(d.name, (inp.ref, "value", i))
        for host in self.host_values.values():
            for i, d in enumerate(host.shape):
                if isinstance(d, tirx.Var):
                    where.setdefault(d.name, (host.tensor, "dim", i))
        asts = [to_ast(x) if is_prim(x) else ["int", int(x)] for x in v.value.reshape(-1)]
        names: set[str] = set()
        for x in v.value.reshape(-1):
            if is_prim(x):
                _names(x, names)
        missing = sorted(names - set(where))
        if missing:
            self.fail(f"the sizes {missing} are not known in the host stage")
        tensors = sorted({where[n][0] for n in names})
        symbols = {n: [where[n][1], tensors.index(where[n][0]), where[n][2]] for n in sorted(names)}
        out = f"{self.node.name}/recom_sizes_{len(self._host_known)}:0"
        self.add_host_op({"name": out[:-2], "op": "SymbolicValue", "inputs": [{"tensor": t} for t in tensors],
                          "attrs": {"values": asts, "symbols": symbols, "dtype": v.dtype,
                                    "shape": list(v.value.shape)}, "outputs": [out]})
        self.host_values[out] = Host(out, v.dtype, list(v.value.shape))
        self._host_known[key] = (v, out)
        return out

    def shape_feed_input(self, tensor: str, dtype: str, symbols: list[tirx.Var], source: str = "feed",
                         scalar: bool = False) -> Known:
        """A small int vector (a dense_shape), or an int scalar (`scalar`: one symbol), passed as a Shape: its
        values bind `symbols`."""
        var = relax.Var(self.unique_name(_var_name(tensor)), relax.ShapeType(symbols))
        self.inputs.append(ModuleInput(var, source, tensor, "shape", dtype))
        value = np.array(symbols, dtype=object)
        return Known(value.reshape(()) if scalar else value, dtype)

    def check(self, value: Device, cond: Device, message: str) -> Device:
        """`value`, once the bool tensor `cond` is all true; else TF's InvalidArgumentError with `message` naming
        this node (a run-time check: one device->host sync)."""
        text = f"{self.label()}: {message}"
        return self.emit(relax.op.call_pure_packed("recom_tvm.check_assert", value.expr, cond.expr,
                                                   tvm.ir.StringImm(text), ty_args=[value.expr.ty]),
                         shape=list(value.shape))

    def size_scalar(self, n, dtype: str) -> relax.Expr:
        """A rank-0 tensor holding the size `n` (an int or a symbolic dim) in `dtype`."""
        if is_const_int(n):
            return relax.const(int(n), dtype)
        return self.scalar(Known(np.array(n, dtype=object), dtype), dtype)

    def scalar(self, v: Value, dtype: str) -> relax.Expr:
        """A rank-0 device tensor of `dtype` (for fill values, defaults)."""
        if isinstance(v, Known) and v.concrete:
            return relax.const(np.asarray(v.numpy()).reshape(()).astype(dtype), dtype)
        dev = self.device(v)
        if dev.shape:
            dev = self.emit(relax.op.reshape(dev.expr, []))
        return dev.expr


def _names(e, out: set) -> None:
    if isinstance(e, tirx.Var):
        out.add(e.name)
        return
    for attr in ("a", "b", "value"):
        sub = getattr(e, attr, None)
        if sub is not None and is_prim(sub):
            _names(sub, out)


def _var_name(tensor: str) -> str:
    """A C identifier for a TF tensor name (CUDA codegen uses parameter names verbatim)."""
    name = tensor[:-2] if tensor.endswith(":0") else tensor
    name = re.sub(r"\W", "_", name)
    return name if name and not name[0].isdigit() else "t_" + name


def shape_expr(dims) -> relax.ShapeExpr:
    return relax.ShapeExpr([as_expr(d) for d in dims])


__all__ = ["ImportContext", "ModuleInput", "shape_expr", "tvm"]
