"""The compilation pipeline `recom_tvm.build` runs: TVM's default one, plus

- first, symbols that only rename a dim substituted (recom_tvm.backend.symbol_aliases): TVM's CanonicalizeBindings
  would otherwise leave one used after the match_cast defining it, and VMShapeLower fail;
- reductions over extents that may be empty give TF's identity (recom_tvm.backend.empty_reductions): TVM's leave
  their output unwritten;
- on CUDA, bool intermediates of fused functions inlined (recom_tvm.backend.inline_predicates: TF's Relu is
  `where(x < 0, 0, x)`, and a loaded bool buffer keeps a layer from every matmul schedule);
- the dense tail's schedules (recom_tvm.schedules.dense_tail): every dense layer gets one schedule per batch bucket
  (tuned records from a database where it has them, else the defaults), before dlight schedules what is left; on
  CUDA, split-K's partial sums an output Relax plans (recom_tvm.backend.partial_sums), so graphs capture the split;
- on CUDA, a CUDA-graph variant of `main` for batches up to config.cuda_graph_max_batch
  (recom_tvm.backend.cuda_graph) and TVM's RewriteCUDAGraph, host calls kept out of the graphs
  (recom_tvm.backend.host_calls);
- right after TVM's KillAfterLastUse, its kills of constants it takes for VM registers (a match_cast of a
  constant) removed (recom_tvm.backend.const_kills): VM codegen fails on them;
- on CUDA (config.keep_storage), `main`'s storages kept until the caller's stream is synchronised
  (recom_tvm.backend.keep_storage): what lets each VM run on a stream of its own.

config.dense_tail = "off" and config.cuda_graph = False give TVM's pipeline, the bool intermediates inlined.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import tvm
from tvm import relax

from .. import config
from ..ir_module import replace_functions
from .allocation_symbols import record_allocation_symbols
from .const_kills import DropConstantKills
from .cuda_graph import graph_variant_pass
from .empty_reductions import GuardEmptyReductions
from .float_extrema import FloatExtremaStartAtInf
from .host_calls import FenceHostCalls
from .inline_predicates import InlineBoolIntermediates
from .keep_storage import KeepStorageUntilSync
from .nonfinite_fills import NonFiniteFills
from .partial_sums import LiftPartialSums
from .symbol_aliases import SubstituteSymbolAliases

USE_CUDA_GRAPH = "relax.backend.use_cuda_graph"


def dense_tail_pass(target: tvm.target.Target, resolve: Callable | None = None,
                    graphs: bool = False) -> tvm.transform.Pass:
    """Schedule every dense layer of the module; `resolve(func, layer)` -> its buckets or None (the defaults).
    config.dense_split_k off: no layer splits K over blocks (the defaults come from CUDA_ONE_KERNEL, a database's
    buckets lose their split). graphs: the build captures CUDA graphs, where split-K's partial sums must be a tensor
    Relax plans (LiftPartialSums, next): a layer whose split cannot be bounded (a split bucket without a batch
    limit, only from a database) is scheduled without the split instead (its partial sums would be a workspace the
    kernel's host side allocates per call: no cudaMalloc while a stream captures)."""
    from ..schedules.dense_tail import default_buckets, match_dense, one_kernel_buckets, schedule_buckets
    from .partial_sums import lift_workspace, workspace_buffers

    kind = target.kind.name

    @tvm.transform.module_pass(opt_level=0, name="recom_tvm.ScheduleDenseTail")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions_items():
            layer = match_dense(func)
            if layer is None:
                continue
            tuned = resolve(func, layer) if resolve else None
            one_kernel = not config.dense_split_k
            for from_db, buckets in ([(True, tuned)] if tuned else []) + [(False, default_buckets(kind, one_kernel))]:
                if one_kernel:
                    buckets = one_kernel_buckets(buckets)
                try:
                    done = schedule_buckets(func, buckets, target)
                    if graphs and workspace_buffers(done) and lift_workspace(done) is None:
                        done = schedule_buckets(func, one_kernel_buckets(buckets), target)
                    updates[gv] = done
                    break
                except Exception as err:  # noqa: BLE001 - a layer we cannot schedule keeps TVM's default
                    why = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                    if from_db:  # a database's records that do not build: say so, use the defaults
                        warnings.warn(f"dense layer {gv.name_hint} (K={layer.k}, N={layer.n}): its tuned schedules "
                                      f"do not build ({why}); using the default ones", stacklevel=2)
                    else:  # a slower kernel, not a wrong one: say so (it was a verbose-only log line, and a
                        # regression of the gemv on narrow layers went unseen for a session)
                        warnings.warn(f"dense layer {gv.name_hint} (K={layer.k}, N={layer.n}) keeps TVM's default "
                                      f"schedule (slower than the dense tail's): {why}", stacklevel=2)
        config.log(f"dense tail ({kind}): {len(updates)} layer(s) scheduled"
                   + (f": {', '.join(sorted(gv.name_hint for gv in updates))}" if updates else ""))
        return replace_functions(mod, updates)

    return _pass


def cuda_legalize_passes(target: tvm.target.Target, dense: bool = True, resolve: Callable | None = None,
                         default_schedule: bool = True, graphs: bool = False) -> list:
    """TVM's CUDA legalization (legalize, fuse) with our passes before its default schedule (dlight, the last
    pass, which schedules what is left): bool intermediates inlined (TF's Relu), then the dense layers.
    default_schedule=False leaves dlight out (tests look at what our passes scheduled)."""
    from tvm.relax.backend.cuda import pipeline as backend

    legalize = list(backend.legalize_passes(target))
    last = legalize[-1].info.name if legalize else ""
    ends_with_dlight = "ApplyDefaultSchedule" in last or "dlight" in last.lower()
    if ends_with_dlight:
        from .default_schedule import gpu_default_schedule

        legalize[-1] = gpu_default_schedule()  # the same rules, one failing on a function passes it on
    ours = [InlineBoolIntermediates()] + ([dense_tail_pass(target, resolve, graphs), LiftPartialSums] if dense else [])
    tail = legalize[-1:] if ends_with_dlight and default_schedule else []
    return (legalize[:-1] if ends_with_dlight else legalize) + ours + tail


def relax_pipeline(target: tvm.target.Target, dense: bool = True, resolve: Callable | None = None,
                   graph_max_batch: int | None = None, sink: dict | None = None) -> tvm.transform.Pass:
    """TVM's default pipeline for the target with the dense tail's schedules and, on CUDA, the graph variant.
    sink: gets "symbols", what the module's allocations are sized by (backend/allocation_symbols.py)."""
    kind = target.kind.name
    if kind == "cuda":
        from tvm.relax.backend.cuda import pipeline as backend

        legalize = cuda_legalize_passes(target, dense, resolve, graphs=bool(graph_max_batch))
        lower = list(backend.dataflow_lower_passes(target))
        finalize = list(backend.finalize_passes(target))
        if graph_max_batch:
            lower.append(graph_variant_pass(graph_max_batch))
        finalize = _recom_finalize(finalize, target, bool(graph_max_batch), sink)
        passes = list(backend.library_dispatch_passes(target)) + legalize + lower + finalize
    else:
        # tvm.compile's pipeline for CPUs (no operator fusion: each op its own function), the matmuls scheduled
        passes = [relax.backend.DispatchSampling(), relax.backend.DispatchSortScan(), relax.transform.LegalizeOps()]
        if dense:
            passes.append(dense_tail_pass(target, resolve))
        passes += [relax.transform.RewriteDataflowReshape(), relax.transform.ToNonDataflow(),
                   relax.transform.RemovePurityChecking(), relax.transform.CallTIRRewrite()]
        finalize = [relax.transform.StaticPlanBlockMemory(), relax.transform.RewriteCUDAGraph(),
                    relax.transform.LowerAllocTensor(), relax.transform.KillAfterLastUse(),
                    relax.transform.LowerRuntimeBuiltin(), relax.transform.ComputePrimValue(),
                    relax.transform.VMShapeLower(), relax.transform.AttachGlobalSymbol()]
        if graph_max_batch:  # no graphs on CPUs: the same dispatch and static planning, for tests
            passes.append(graph_variant_pass(graph_max_batch))
        passes += _recom_finalize(finalize, target, bool(graph_max_batch), sink)

    # first, alias symbols substituted: TVM's CanonicalizeBindings (in FuseTIR on CUDA, in KillAfterLastUse on
    # every target) would leave one used after the cast defining it (backend/symbol_aliases.py)
    passes = [SubstituteSymbolAliases] + passes
    # and before anything lowers them, reductions over what may be empty guarded (TVM leaves their output unwritten)
    passes = passes[:1] + [GuardEmptyReductions] + passes[1:]
    # and fills with inf / NaN made broadcasts (TVM's legalization of R.full crashes on them: nonfinite_fills.py)
    passes = passes[:2] + [NonFiniteFills] + passes[2:]
    # and float max / min reductions started at -inf / +inf as TF's (TVM's start at the finite extremes)
    passes = passes[:3] + [FloatExtremaStartAtInf] + passes[3:]

    @tvm.transform.module_pass(opt_level=0, name="recom_tvm.Pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(passes)(mod)

    return _pipeline


def _recom_finalize(finalize: list, target: tvm.target.Target, graph: bool, sink: dict | None) -> list:
    """TVM's finalize passes with recom_tvm's: on graph builds FenceHostCalls before RewriteCUDAGraph; right after
    KillAfterLastUse, its kills of constants removed (a match_cast of a constant is no VM register: VM codegen
    fails on its kill, backend/const_kills.py), then the storages kept to the end (keeps_storage) and the
    allocation symbols recorded (sink)."""
    if graph:
        finalize = _fence_before_graph_rewrite(finalize)
    extra = [DropConstantKills] + ([KeepStorageUntilSync] if keeps_storage(target) else []) + \
        ([record_allocation_symbols(sink)] if sink is not None else [])
    i = _position(finalize, "KillAfterLastUse") + 1
    return finalize[:i] + extra + finalize[i:]


def _fence_before_graph_rewrite(passes: list) -> list:
    """`passes` with FenceHostCalls right before RewriteCUDAGraph (host calls must never be captured)."""
    i = _position(passes, "RewriteCUDAGraph")
    return passes[:i] + [FenceHostCalls] + passes[i:]


def _position(passes: list, name: str) -> int:
    names = [p.info.name for p in passes]
    if name not in names:
        raise RuntimeError(f"TVM's finalize passes hold no {name}: {names}")
    return names.index(name)


def keeps_storage(target: tvm.target.Target) -> bool:
    """Whether `main` keeps its storages until the caller syncs (config.keep_storage: auto = CUDA builds)."""
    mode = config.keep_storage
    return mode == "on" or (mode == "auto" and target.kind.name == "cuda")


def use_cuda_graph(target: tvm.target.Target) -> bool:
    return target.kind.name == "cuda" and bool(config.cuda_graph) and config.cuda_graph_max_batch > 0


def compile_module(mod: tvm.IRModule, target: tvm.target.Target, database=None, sink: dict | None = None):
    """tvm.compile with recom_tvm's pipeline (what build calls after lowering recom's ops); -> the executable.

    database: a tuning database (or work_dir) whose dense-tail records pick the layers' schedules.
    sink: a dict that gets "symbols": what the built module's allocations are sized by."""
    dense = config.dense_tail != "off"
    resolve = None
    if dense and database is not None:
        from ..schedules.dense_apply import resolver

        resolve = resolver(database, target)
    graph = use_cuda_graph(target)
    if graph:
        try:
            return _compile(mod, target, dense, resolve, True, sink)
        except Exception as err:  # noqa: BLE001 - TVM's graph rewrite fails on some modules: launch kernels then
            # (3 of the corpus' 60 CUDA builds: "Var gv2 is not defined", RewriteCUDAGraph's planner does not see a
            # match_cast as a use of a lifted tensor; the build without graphs is correct, only launches each kernel)
            config.log(f"CUDA graphs off for this model: the graph build failed ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[-1][:160]})")
    return _compile(mod, target, dense, resolve, False, sink)


def _compile(mod: tvm.IRModule, target: tvm.target.Target, dense: bool, resolve, graph: bool, sink=None):
    pipeline = relax_pipeline(target, dense, resolve, config.cuda_graph_max_batch if graph else None, sink)
    # inside `with target`: TVM's nvcc callback reads -arch from the current target
    with target, tvm.transform.PassContext(config={USE_CUDA_GRAPH: graph}):
        return tvm.compile(mod, target=target, relax_pipeline=pipeline)
