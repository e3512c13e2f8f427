"""RECom's models E and F at full size (2^23-row tables), imported and optimized once, cached on disk.

Import + optimize of a 1,000-column model takes a minute on a 2-core host; the benchmark and tuning scripts share
the result through tvm.ir.save_json (the serving spec travels as a module attribute). Params of the resized model:
the large tables are virtual (values generated where the model runs); the rest are TF's.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

# l: E's large columns alone (issue 16); l128: the same with 128-float rows
MODELS = {"e": "model_e", "f": "model_f", "l": "model_l", "l128": "model_l128"}


def paths(m: str, rows: int) -> dict:
    """TF export of the small model, then its large hash tables resized to `rows` (no TensorFlow for that)."""
    from recom_tvm import config
    from recom_tvm.models import tf_export, zoo
    from recom_tvm.models.resize import resize_hash_columns

    small = getattr(zoo, MODELS[m])(4096)
    p = tf_export.export(small)  # cached; F takes ~30 min in TF the first time
    work = os.path.join(config.cache_dir, "resized", f"{small.name}_{rows}")
    pb = resize_hash_columns(p["root"], work, {c.name: rows for c in small.columns if c.name.startswith("l")})
    return {"pb": pb, "signature": os.path.join(work, "signature.json"), "work": work, "small": small}


def optimized(m: str, rows: int = 1 << 23, variant: str = "e2e", disable: tuple = ()) -> tuple:
    """(optimized module, params, times) of model m; variant "emb" stops at DenseFeatures' output."""
    import tvm

    import recom_tvm
    from recom_tvm.models.resize import embedding_output

    p = paths(m, rows)
    tag = f"{variant}{'-' + '-'.join(disable) if disable else ''}"
    cache = os.path.join(p["work"], f"optimized_{tag}.json")
    outputs = [embedding_output(p["pb"])] if variant == "emb" else None
    t0 = time.perf_counter()
    mod, params, _ = recom_tvm.from_tensorflow(p["pb"], signature=p["signature"], outputs=outputs)
    times = {"import_s": time.perf_counter() - t0}
    if os.path.exists(cache) and os.path.exists(cache + ".times"):
        with open(cache) as f:
            opt = tvm.ir.load_json(f.read())
        with open(cache + ".times") as f:
            times.update(json.load(f))
        return opt, params, times
    t0 = time.perf_counter()
    opt = recom_tvm.optimize(mod, disable=disable)
    times["optimize_s"] = time.perf_counter() - t0
    with open(cache, "w") as f:
        f.write(tvm.ir.save_json(opt))
    with open(cache + ".times", "w") as f:
        json.dump({"optimize_s": times["optimize_s"]}, f)
    return opt, params, times


def embedding_spec(m: str, rows: int = 1 << 23):
    from recom_tvm.models import zoo

    return getattr(zoo, MODELS[m])(rows)


__all__ = ["MODELS", "embedding_spec", "np", "optimized", "paths"]
