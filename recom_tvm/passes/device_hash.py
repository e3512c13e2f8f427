"""DeviceHash: the string hash of hashed columns (`categorical_column_with_hash_bucket` on a string feed) runs on the
device, in one kernel launched by `main` just before the fused embedding kernel.

For each fused column whose ids are StringToHashBucketFast(strings), where the strings are a string feed or a
plain selection of one (STRING_SOURCE_OPS: a dense feed's non-empty entries, reshapes) or a string feature parsed
from tf.Examples (STRING_PRODUCING_OPS), the host stops hashing:
it ships the strings (bytes end to end + offsets) in the packed input's device-hash region
(recom_tvm.runtime.fused_layout), and `recom.hash_strings` writes the ids where the fused kernel reads them
(recom_tvm.ops.fingerprint_tir.hash_packed_func: all hashed columns in one launch, one thread per string). The
fused kernel is unchanged. The choice is recorded in the spec (spec.fused["device_hash"]: the hashed columns, in
segment order; [] when off), so a runtime-only load packs the same way; models built before have no such key and
hash on the host.

Hashes of AsString of integers (`categorical_column_with_hash_bucket` on an int feed: StringToHashBucketFast(
AsString(x)), x of a signed type or an unsigned one narrower than 64 bits) move too, as a segment of decimal text:
the host ships the int64 values as they are and the kernel formats each as TF's AsString does before hashing it
(fused_layout TEXT_DECIMAL; the AsString node stays in the host plan, where it only tags the integers). Hashes of
other computed text stay on the host: crosses (SparseCross / FingerprintCat64), AsString of bool or uint64, and any
hash whose ids (or whose AsString's text) something else reads (an id check, another host op, a module input).

Runs at build (the choice depends on the target: config.device_hash "auto" = on for CUDA, off for llvm, where the
host's compiled hash is as fast), on an optimized module with a fused kernel; a module without one is unchanged.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, tirx

from .. import config
from ..ops import defs
from ..ops.registry import is_recom_op
from ..runtime.fused_layout import segment_text
from ._util import attach_spec, copy_attrs, spec_of

# ops whose output is the strings of their first input, selected or reshaped (not new text): a hash of their output
# hashes feed bytes the host can ship as they are
STRING_SOURCE_OPS = ("GatherNd", "GatherV2", "Identity", "Reshape", "ExpandDims")


def _parsed_string(node: dict, k: int) -> bool:
    """ParseExampleV2's output k is a string feature's values as the examples hold them (outputs: sparse indices,
    sparse values, sparse shapes, one per sparse key; then dense values)."""
    a = node["attrs"]
    n = len(a["sparse"])
    if n <= k < 2 * n:
        return a["sparse"][k - n][1] == "string"
    return 3 * n <= k < 3 * n + len(a["dense"]) and a["dense"][k - 3 * n][1] == "string"


# ops whose outputs include strings taken from a request's bytes as they are (tf.Example features): op -> (node,
# output index) -> is that output such strings
STRING_PRODUCING_OPS = {"ParseExampleV2": _parsed_string}
# the role of a column's ids among its tensors, per fused column kind
ID_ROLE = {"csr": "ids", "dense": "x", "one": "ids"}
MODES = ("auto", "on", "off")
# AsString input types whose values an int64 holds exactly (its decimal text is then the int64's)
DECIMAL_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")
STRINGS_SYMBOL = "recom_tvm_hash_strings"


def device_hash_on(mode: str, target_kind: str) -> bool:
    """config.device_hash for a target: "auto" = on for CUDA only; "on" / "off" force it."""
    mode = (mode or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"device_hash must be one of {MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and target_kind == "cuda")


def _uses(spec) -> dict[str, int]:
    """How many readers each tensor has besides the fused columns' id roles."""
    uses: dict[str, int] = {}

    def use(t):
        uses[t] = uses.get(t, 0) + 1

    for node in spec.host_plan:
        for i in node["inputs"]:
            if "tensor" in i:
                use(i["tensor"])
    for c in spec.id_checks:
        use(c["tensor"])
        if "where_positive" in c:
            use(c["where_positive"])
    for also in spec.sort_with.values():
        for t in also:
            use(t)
    for inp in spec.module_inputs:
        if inp["source"] in ("feed", "host"):
            use(inp["ref"])
    for s in spec.fused.get("symbol_sources", ()):
        if s["kind"] != "tensor":  # a source reading the ids' shape reads the strings' instead (the same shape)
            use(s["ref"])
    for t, _, kind in (spec.feed_symbols or {}).values():
        if kind != "shape":
            use(t)
    for col in spec.fused["columns"]:
        for role, t in col["tensors"].items():
            if role != ID_ROLE.get(col["kind"]):
                use(t)
    return uses


def _string_source(spec, producer: dict, t: str, depth: int = 0) -> bool:
    """Is t a string feed, a tf.Example's string feature, or a selection / reshape of one?"""
    if t in spec.placeholders:
        return spec.placeholders[t].get("dtype") == "string"
    node = producer.get(t)
    if node is not None and node["op"] in STRING_PRODUCING_OPS:
        return STRING_PRODUCING_OPS[node["op"]](node, node["outputs"].index(t))
    if node is None or node["op"] not in STRING_SOURCE_OPS or depth > 16 or not node["inputs"] \
            or "tensor" not in node["inputs"][0]:
        return False
    return _string_source(spec, producer, node["inputs"][0]["tensor"], depth + 1)


def _decimal_source(producer: dict, uses: dict, t: str) -> bool:
    """Is t AsString of integers an int64 holds, read by nothing but its hash?"""
    node = producer.get(t)
    return node is not None and node["op"] == "AsString" and uses.get(t, 0) == 1 and \
        str(node["attrs"].get("T", "")) in DECIMAL_TYPES


def hashed_columns(spec) -> list[dict]:
    """The fused columns whose hash can move to the device: {"column", "strings", "num_buckets", "node"[, "text"]}
    ("text": "decimal" where the strings are AsString of integers)."""
    producer = {o: n for n in spec.host_plan for o in n["outputs"]}
    uses = _uses(spec)
    out = []
    for c, col in enumerate(spec.fused["columns"]):
        role = ID_ROLE.get(col["kind"])
        t = col["tensors"].get(role) if role else None
        node = producer.get(t)
        if node is None or node["op"] != "StringToHashBucketFast" or uses.get(t, 0):
            continue
        src = node["inputs"][0].get("tensor")
        nb = int(node["attrs"]["num_buckets"])
        if src is None or not 1 <= nb < 1 << 63:
            continue
        if _string_source(spec, producer, src):
            text = {}
        elif _decimal_source(producer, uses, src):
            text = {"text": "decimal"}
        else:
            continue
        out.append({"column": c, "strings": src, "num_buckets": nb, "node": node["name"], **text})
    return out


def rewrite_spec(spec, picks: list[dict]) -> None:
    """The spec of a device-hashing model: the columns read their strings, the host no longer hashes them."""
    by_ids = {}
    for p in picks:
        col = spec.fused["columns"][p["column"]]
        role = ID_ROLE[col["kind"]]
        by_ids[col["tensors"][role]] = p["strings"]
        col["tensors"] = dict(col["tensors"], **{role: p["strings"]})
    for s in spec.fused.get("symbol_sources", ()):
        if s["ref"] in by_ids:  # (a "tensor" source: its shape, _uses)
            s["ref"], s["dtype"] = by_ids[s["ref"]], "string"
    for sym, hit in list((spec.feed_symbols or {}).items()):
        if hit[0] in by_ids:
            spec.feed_symbols[sym] = [by_ids[hit[0]], hit[1], hit[2]]
    dropped = {p["node"] for p in picks}
    spec.host_plan = [n for n in spec.host_plan if n["name"] not in dropped]
    spec.fused["device_hash"] = [{k: p[k] for k in ("column", "strings", "num_buckets", "text") if k in p}
                                 for p in picks]


@relax.expr_functor.mutator
class _InsertHash(relax.PyExprMutator):
    """packed -> hash_strings(packed, ...) in front of the fused kernel."""

    def __init__(self, mod, num_buckets: np.ndarray, strings: tirx.Var, region: int, text: np.ndarray) -> None:
        super().__init__(mod)
        self.num_buckets, self.strings, self.region, self.text = num_buckets, strings, region, text
        self.done = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not is_recom_op(call, "fused_embedding"):
            return call
        hashed = self.builder_.emit(defs.hash_strings(call.args[0], relax.const(self.num_buckets, "int64"),
                                                      relax.ShapeExpr([self.strings]), self.region,
                                                      relax.const(self.text, "int64")), "packed_ids")
        self.done += 1
        return relax.Call(call.op, [hashed] + list(call.args[1:]), call.attrs, call.ty_args, call.span)


@tvm.ir.transform.module_pass(opt_level=0, name="DeviceHash")
class DeviceHash:
    """Move the hashed columns' StringToHashBucketFast to the device (config.device_hash, per target)."""

    def __init__(self, target_kind: str = "llvm", mode: str | None = None) -> None:
        self.target_kind = target_kind
        self.mode = mode  # None: config.device_hash (read when the pass runs)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        spec = spec_of(mod)
        if spec is None or not spec.fused or "device_hash" in spec.fused:
            return mod  # no fused kernel, or decided already
        picks = hashed_columns(spec) if device_hash_on(self.mode or config.device_hash, self.target_kind) else []
        if not picks:
            spec.fused["device_hash"] = []
            return attach_spec(mod, spec)
        main = mod["main"]
        sizes_inp = next(i for i in spec.module_inputs if i["ref"] == "recom_tvm:packed_sizes")
        old = next(p for p in main.params if p.name == sizes_inp["name"])
        batch = old.ty.values[0]
        strings = tirx.Var(STRINGS_SYMBOL, "int64")
        new = relax.Var(old.name, relax.ShapeType([batch, strings]))
        nbt = np.array([p["num_buckets"] for p in picks], np.int64)
        text = np.array([segment_text(p) for p in picks], np.int64)
        mutator = _InsertHash(mod, nbt, strings, 2 * len(spec.fused["columns"]), text)
        body = mutator.visit_expr(main)
        if mutator.done != 1:  # (the fused call under control flow, or twice): the host keeps hashing
            config.log(f"DeviceHash: {mutator.done} fused embedding calls in main, strings hashed on the host")
            spec.fused["device_hash"] = []
            return attach_spec(mod, spec)
        params = [new if p.name == old.name else p for p in body.params]
        func = relax.Function(params, body.body, body.ret_ty, body.is_pure, body.attrs, body.span)
        mutator.builder_.update_func(mod.get_global_var("main"), func)
        out = copy_attrs(mod, mutator.builder_.get())
        rewrite_spec(spec, picks)
        sizes_inp["shape"] = [str(batch), STRINGS_SYMBOL]
        return attach_spec(out, spec)
