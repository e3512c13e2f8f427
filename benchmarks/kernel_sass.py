"""What the fused kernel compiles to, per table dtype and schedule: load / store widths, registers, spills (no GPU).

    python benchmarks/kernel_sass.py [--model demo|mixed24] [--nvdisasm PATH] [variants ...]

A variant is DTYPE[:KNOB=V,...], e.g. float16:vec=8 or int8:stage_meta=1,search_once=1 (default: every dtype at
vec 4 and 8, and the new knobs). Each kernel is built alone for sm_90 (TVM's CUDA source, nvcc -cubin), its
resources read from ptxas -v and its SASS from nvdisasm (pip install nvidia-cuda-nvdisasm; the CUDA toolkit
here ships no disassembler): counts of LDG / STG by width, shared-memory (LDS / STS) and local-memory (LDL /
STL: spills) instructions, and barriers. Static counts: they say which loads exist, not how often they run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_VARIANTS = ("float32", "float32:vec=8", "float16", "float16:vec=8", "bfloat16", "bfloat16:vec=8", "int8",
                    "int8:vec=8", "float32:stage_meta=1", "float32:search_once=1", "float32:group=4",
                    "float32:stage_meta=1,search_once=1,group=4,smem_bounds=1")


def parse(variant: str):
    from recom_tvm.ops.fused_kernel import KernelConfig

    dtype, _, knobs = variant.partition(":")
    fields = {}
    for kv in filter(None, knobs.split(",")):
        k, v = kv.split("=")
        fields[k] = bool(int(v)) if isinstance(getattr(KernelConfig(), k), bool) else int(v)
    return dtype, KernelConfig(**fields)


def inspect(mod, dtype: str, cfg, work: str, nvdisasm: str | None) -> dict:
    import tvm

    from recom_tvm.build_module import make_target
    from recom_tvm.cuda_support import nvcc_path, prepare_cuda_build
    from recom_tvm.ops.fused_kernel import fused_embedding
    from recom_tvm.passes.compact_tables import CompactTables
    from recom_tvm.schedules.tasks import find_fused_call

    prepare_cuda_build()
    m = CompactTables(dtype)(mod) if dtype != "float32" else mod
    call = find_fused_call(m)
    func = fused_embedding(call.meta, call.width, True, ((None, cfg),)).with_attr("global_symbol", "k")
    tgt = make_target("cuda")
    with tgt:
        built = tvm.compile(tvm.IRModule({"k": func}), target=tgt)
    src = os.path.join(work, "k.cu")
    with open(src, "w") as f:
        f.write(getattr(built, "mod", built).imports[0].inspect_source())
    cubin = os.path.join(work, "k.cubin")
    res = subprocess.run([nvcc_path(), "-arch=sm_90", "-cubin", "-O3", "-Xptxas", "-v", "-o", cubin, src],
                         capture_output=True, text=True, check=True)
    out = {"regs": _num(r"Used (\d+) registers", res.stderr), "stack": _num(r"(\d+) bytes stack frame", res.stderr),
           "spill_stores": _num(r"(\d+) bytes spill stores", res.stderr),
           "smem": _num(r"(\d+) bytes smem", res.stderr)}
    if nvdisasm:
        sass = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True, check=True).stdout
        ops = re.findall(r"\b(LDG\.E[.\w]*|STG\.E[.\w]*|LDS[.\w]*|STS[.\w]*|LDL[.\w]*|STL[.\w]*|BAR\.SYNC[.\w]*)",
                         sass)
        counts: dict[str, int] = {}
        for op in ops:
            op = op.replace(".CONSTANT", "").replace(".64", ".8B").replace(".128", ".16B")
            if op.startswith(("LDG", "STG")) and not re.search(r"\.\d+B|U8|U16|S8|S16", op):
                op += ".4B"
            counts[op] = counts.get(op, 0) + 1
        out["sass"] = counts
    return out


def _num(pattern: str, text: str) -> int:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", default=list(DEFAULT_VARIANTS))
    p.add_argument("--model", default="mixed24", choices=["demo", "mixed24"])
    p.add_argument("--nvdisasm", default=shutil.which("nvdisasm"))
    a = p.parse_args()
    import recom_tvm
    from recom_tvm.models import tf_export, zoo

    spec = zoo.demo() if a.model == "demo" else zoo.mixed(24, seed=3)
    paths = tf_export.export(spec)
    mod, _, _ = recom_tvm.from_tensorflow(paths["pb"], signature=paths["signature"])
    opt = recom_tvm.optimize(mod)
    print(f"| variant ({a.model}) | regs | stack / spill bytes | shared bytes | SASS memory instructions (static) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for v in a.variants:
            dtype, cfg = parse(v)
            r = inspect(opt, dtype, cfg, work, a.nvdisasm)
            sass = ", ".join(f"{k} {n}" for k, n in sorted(r.get("sass", {}).items())) or "(no nvdisasm)"
            print(f"| {v} | {r['regs']} | {r['stack']} / {r['spill_stores']} | {r['smem']} | {sass} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
