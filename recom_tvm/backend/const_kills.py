"""Remove the kills TVM's KillAfterLastUse emits for variables that are a constant under another name.

Why: KillAfterLastUse kills every tensor or object after its last use except what the VM does not hold in a
register; it knows a constant only as a variable bound directly to one (`lv = metadata[...]`). A match_cast of a
constant (`lv1 = R.match_cast(lv, R.Tensor((2, n)))`: an importer checking a constant's dims against a symbolic
one, e.g. ctx.unify in ConcatV2 of a fed [None, None] tensor and a constant) is a constant too in VM codegen (the
cast only checks, the variable names the constant's kConstIdx), but KillAfterLastUse takes it for a register and
emits `R.memory.kill_tensor(lv1)`, and codegen then fails: "Expected the object to be killed to be stored in a
register, but argument lv1 produced VM instruction of type kConstIdx" (CodeGenVM::EmitKillObject).

So, right after KillAfterLastUse, the kills (R.memory.kill_tensor, R.memory.kill_storage, R.vm.kill_object: the
three it emits) whose argument is bound to a constant, directly or through a chain of var bindings and match_casts,
are dropped; every other kill stays. A constant lives as long as the executable, so nothing is freed later than
before. Functions without such a kill are left as they are (the module itself where none has one).
"""

from __future__ import annotations

import tvm
from tvm import relax

from ..ir_module import map_functions

_KILLS = tuple(tvm.ir.Op.get(name) for name in
               ("relax.memory.kill_tensor", "relax.memory.kill_storage", "relax.vm.kill_object"))


def _is_kill(expr) -> bool:
    return isinstance(expr, relax.Call) and any(expr.op.same_as(op) for op in _KILLS)


def _scan(seq: relax.SeqExpr, constants: set, drops: set) -> None:
    """Walk seq's bindings in order (and those of its branches): `constants` gets the variables that are a
    constant under another name, `drops` the variables of the kills of one."""
    for block in seq.blocks:
        for b in block.bindings:
            value = b.value
            if isinstance(value, relax.If):
                for branch in (value.true_branch, value.false_branch):
                    if isinstance(branch, relax.SeqExpr):
                        _scan(branch, constants, drops)
            elif isinstance(value, tvm.ir.GenericConst) or (isinstance(value, relax.Var) and value in constants):
                constants.add(b.var)  # a VarBinding or a MatchCast of a constant, or of such a variable
            elif _is_kill(value) and len(value.args) == 1 and isinstance(value.args[0], relax.Var) and \
                    value.args[0] in constants:
                drops.add(b.var)


@relax.expr_functor.mutator
class _DropBindings(relax.PyExprMutator):
    def __init__(self, drops: set) -> None:
        super().__init__()
        self.drops = drops

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.var not in self.drops:
            super().visit_var_binding_(binding)


def drop_constant_kills(func: relax.Function) -> relax.Function:
    """`func` without its kills of constants (see the module docstring); `func` itself where it has none."""
    drops: set = set()
    if isinstance(func.body, relax.SeqExpr):
        _scan(func.body, set(), drops)
    if not drops:
        return func
    return _DropBindings(drops).visit_expr(func)


@tvm.transform.module_pass(opt_level=0, name="recom_tvm.DropConstantKills")
def DropConstantKills(mod: tvm.IRModule, _ctx) -> tvm.IRModule:  # noqa: N802 - a pass, named like TVM's
    """The kills of constants KillAfterLastUse emitted removed (see the module docstring); runs right after it."""
    return map_functions(mod, relax.Function, drop_constant_kills)
