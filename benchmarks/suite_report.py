"""The suite's report: markdown tables (into BENCHMARKS.md between the suite markers) and the figures.

Figure 1 (RECom's Figure 1, against real baselines): end-to-end latency vs batch, log scale, a panel per model.
Figure 2: the column-count sweep: latency at fixed batches and compile time vs number of columns.
"""

from __future__ import annotations

import json
import os
import re

BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
PANEL_MODELS = ("e", "f", "mixed100", "mixed1000")
LABEL = {"e": "model E (1,000 columns, 2^23-row tables)", "f": "model F (1,200 columns, 2^23-row tables)",
         "mixed100": "mixed, 100 columns", "mixed1000": "mixed, 1,000 columns"}


def _f(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if 0 < x < 0.001:
        return f"{x:.1e}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def _ratio(a, b) -> str:
    return "–" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def _rows(gm: dict) -> list[tuple[int, dict]]:
    return sorted(((int(b), r) for b, r in gm.get("batches", {}).items()), key=lambda x: x[0])


def model_tables(name: str, gm: dict, hm: dict) -> list[str]:
    tf = {int(b): v["median_ms"] for b, v in hm.get("tf_cpu", {}).items()}
    title = LABEL.get(name) or f"{name}: mixed, {gm.get('columns', '?')} columns"
    out = [f"#### {title}", "",
           "End to end (with the MLP), ms. *device*: inputs already on the GPU; *from feeds*: TF-style feeds "
           "in, numpy out (host stage + copies + kernels). PyTorch starts from preprocessed ids (not timed).", "",
           "| B | TF-CPU (host) | PyTorch per-column loop | PyTorch grouped (CUDA graph) | ours, passes off | ours, "
           "unfused | ours, fused | ours, tuned | ours, fused, from feeds | fused vs grouped | from feeds vs TF-CPU |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in _rows(gm):
        g = r.get("torch_grouped_e2e_graph") or r.get("torch_grouped_e2e_device")
        out.append(f"| {b} | {_f(tf.get(b))} | {_f(r.get('torch_loop_e2e_device'))} | "
                   f"{_f(r.get('torch_grouped_e2e_device'))} ({_f(r.get('torch_grouped_e2e_graph'))}) | "
                   f"{_f(r.get('e2e_off_device'))} | {_f(r.get('e2e_unfused_device'))} | "
                   f"**{_f(r.get('e2e_fused_device'))}** | {_f(r.get('e2e_tuned_device'))} | "
                   f"{_f(r.get('e2e_fused_run'))} | {_ratio(g, r.get('e2e_fused_device'))} | "
                   f"{_ratio(tf.get(b), r.get('e2e_fused_run'))} |")
    out += ["", "Embedding stage alone (DenseFeatures' output), device, ms; floor = bytes it must move / the copy "
            "bandwidth measured in the run.", "",
            "| B | PyTorch loop | PyTorch grouped | ours, passes off | ours, unfused | ours, fused | ours, tuned | "
            "kernel alone, fused / tuned (profiler) | floor | best kernel / floor | grouped / fused |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, r in _rows(gm):
        fused = r.get("emb_tuned_device") or r.get("emb_fused_device")
        kf, kt = (sum(us for _, us in r[k]) / 1e3 if r.get(k) else None
                  for k in ("kernels_emb_fused", "kernels_emb_tuned"))
        kern = min(x for x in (kf, kt) if x is not None) if (kf or kt) else None
        out.append(f"| {b} | {_f(r.get('torch_loop_emb_device'))} | {_f(r.get('torch_grouped_emb_device'))} | "
                   f"{_f(r.get('emb_off_device'))} | {_f(r.get('emb_unfused_device'))} | "
                   f"**{_f(r.get('emb_fused_device'))}** | {_f(r.get('emb_tuned_device'))} | {_f(kf, 4)} / {_f(kt, 4)} | "
                   f"{_f(r.get('floor_emb'), 4)} | {_ratio(kern, r.get('floor_emb'))} | "
                   f"{_ratio(r.get('torch_grouped_emb_device'), fused)} |")
    out += ["", "Host side of one request (the GPU machine's CPU), ms: prepare() = checks and conversion + string "
            "hashing + packing; then the host->device copy.", "",
            "| B | prepare | normalize | strings (hashing) | pack | H2D | copy + device (e2e) |", "|---|---|---|---|---|---|---|"]
    for b, r in _rows(gm):
        out.append(f"| {b} | {_f(r.get('host_prepare'))} | {_f(r.get('host_normalize'))} | "
                   f"{_f(r.get('host_strings'))} | {_f(r.get('host_pack'))} | {_f(r.get('h2d'))} | "
                   f"{_f(r.get('e2e_fused_copy_dev'))} |")
    z = [(b, r) for b, r in _rows(gm) if r.get("emb_fused_device_zipf") is not None]
    if z:
        out += ["", "Zipf-distributed ids (exponent 1.2), embedding stage, device, ms:", "",
                "| B | ours, fused (uniform → Zipf) | ours, tuned (uniform → Zipf) | PyTorch grouped (uniform → Zipf) |",
                "|---|---|---|---|"]
        for b, r in z:
            out.append(f"| {b} | {_f(r.get('emb_fused_device'))} → {_f(r.get('emb_fused_device_zipf'))} | "
                       f"{_f(r.get('emb_tuned_device'))} → {_f(r.get('emb_tuned_device_zipf'))} | "
                       f"{_f(r.get('torch_grouped_emb_device'))} → {_f(r.get('torch_grouped_emb_device_zipf'))} |")
    return out + [""]


def compile_table(host: dict, gpu: dict) -> list[str]:
    out = ["| model | columns | import (s) | optimize (s) | build CUDA, fused (s) | unfused: optimize / build (s) | "
           "passes off: build (s) | kernels: off / unfused / fused (e2e) | peak device / host memory (GB) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, hm in sorted(host["models"].items(), key=lambda kv: kv[1]["columns"]):
        c, k = hm["compile"], hm["kernels"]
        gm = gpu["models"].get(name, {})
        fu, un, off = c.get("e2e_fused", {}), c.get("e2e_unfused", {}), c.get("e2e_off", {})
        out.append(f"| {name} | {hm['columns']} | {_f(fu.get('import_s'))} | {_f(fu.get('optimize_s'))} | "
                   f"{_f(fu.get('build_s'))} | {_f(un.get('optimize_s'))} / {_f(un.get('build_s'))} | "
                   f"{_f(off.get('build_s'))} | {k.get('e2e_off', '–')} / {k.get('e2e_unfused', '–')} / "
                   f"{k.get('e2e_fused', '–')} | {_f(gm.get('peak_device_GB'))} / {_f(gm.get('peak_host_rss_GB'))} |")
    return out


def figure(gpu: dict, host: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in PANEL_MODELS if m in gpu["models"] and gpu["models"][m].get("batches")]
    names = names or sorted((m for m in gpu["models"] if gpu["models"][m].get("batches")),
                            key=lambda m: gpu["models"][m].get("columns", 0))[:4]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    lines = (("TF-CPU (host, 2 cores)", None, "tab:gray", "o"),
             ("PyTorch per-column loop", "torch_loop_e2e_device", "tab:red", "s"),
             ("PyTorch grouped (CUDA graph)", "torch_grouped_e2e_graph", "tab:orange", "^"),
             ("ours, unfused", "e2e_unfused_device", "tab:purple", "v"),
             ("ours, fused", "e2e_fused_device", "tab:blue", "D"),
             ("ours, tuned", "e2e_tuned_device", "tab:cyan", "d"),
             ("ours, from feeds", "e2e_fused_run", "tab:green", "x"),
             ("embedding floor", "floor_emb", "black", None))
    for ax, name in zip(axes[0], names):
        rows = _rows(gpu["models"][name])
        tf = {int(b): v["median_ms"] for b, v in host["models"].get(name, {}).get("tf_cpu", {}).items()}
        for label, key, color, marker in lines:
            pts = [(b, tf.get(b) if key is None else r.get(key)) for b, r in rows]
            pts = [(b, y) for b, y in pts if y]
            if pts:
                ax.plot(*zip(*pts), label=label, color=color, marker=marker, ms=4,
                        ls=":" if key == "floor_emb" else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(LABEL.get(name, name), fontsize=9)
        ax.set_xlabel("batch")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency (ms)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{gpu['device']}, {gpu['date']}: end-to-end latency", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sweep_figure(gpu: dict, host: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = sorted((hm["columns"], n) for n, hm in host["models"].items() if n.startswith(("sweep", "mixed")))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    for batch, color in ((32, "tab:blue"), (256, "tab:green"), (2048, "tab:red")):
        for key, ls, lab in (("e2e_fused_device", "-", "ours fused"), ("torch_grouped_e2e_device", "--",
                                                                       "PyTorch grouped")):
            pts = [(c, gpu["models"].get(n, {}).get("batches", {}).get(str(batch), {}).get(key)) for c, n in sweep]
            pts = [(c, y) for c, y in pts if y]
            if pts:
                a.plot(*zip(*pts), ls=ls, color=color, marker="o", ms=3, label=f"{lab}, B={batch}")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("columns")
    a.set_ylabel("e2e device latency (ms)")
    a.legend(fontsize=6)
    a.grid(True, which="both", alpha=0.3)
    for key, lab, color in (("import_s", "import", "tab:gray"), ("optimize_s", "optimize", "tab:blue"),
                            ("build_s", "build (CUDA)", "tab:red")):
        pts = [(c, host["models"][n]["compile"].get("e2e_fused", {}).get(key)) for c, n in sweep]
        pts = [(c, y) for c, y in pts if y]
        if pts:
            b.plot(*zip(*pts), marker="o", ms=3, color=color, label=lab)
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("columns")
    b.set_ylabel("seconds (2-core build host)")
    b.legend(fontsize=7)
    b.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"column-count sweep (mixed models): {gpu['device']}, {gpu['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(host_path: str, gpu_path: str, results_dir: str) -> int:
    with open(host_path) as f:
        host = json.load(f)
    with open(gpu_path) as f:
        gpu = json.load(f)
    tag = os.path.splitext(os.path.basename(gpu_path))[0].replace("suite_gpu_", "")
    fig1 = os.path.join(results_dir, f"suite_{tag}.png")
    fig2 = os.path.join(results_dir, f"suite_sweep_{tag}.png")
    figure(gpu, host, fig1)
    sweep_figure(gpu, host, fig2)
    lines = [BEGIN, f"Generated by `benchmarks/suite.py report` from `results/{os.path.basename(host_path)}` "
             f"(host: {host['host']['cpu']}, {host['host']['cores']} cores, TF {host['host']['tensorflow']}) and "
             f"`results/{os.path.basename(gpu_path)}` ({gpu['device']}, {gpu['date']}).", "",
             f"![latency vs batch](results/{os.path.basename(fig1)})", "",
             f"![column sweep](results/{os.path.basename(fig2)})", ""]
    for name in list(PANEL_MODELS) + sorted(n for n in gpu["models"] if n not in PANEL_MODELS):
        if name in gpu["models"] and gpu["models"][name].get("batches"):
            lines += model_tables(name, gpu["models"][name], host["models"].get(name, {}))
    lines += ["#### Compile time and memory per model", ""] + compile_table(host, gpu) + ["", END]
    md = os.path.join(os.path.dirname(results_dir), "BENCHMARKS.md")
    with open(md) as f:
        text = f.read()
    block = "\n".join(lines)
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    with open(md, "w") as f:
        f.write(text)
    print(f"report: {md}, {fig1}, {fig2}")
    return 0
