"""The fused embedding kernel's static per-column layout (`meta` rows), shared by the compiler (which writes it)
and the runtime (which packs requests for it, or synthesizes them for tuning). numpy-free constants only."""

from __future__ import annotations

# stride4 = ceil(dim / 4): float4s per (padded) table row; table_base in float4s; pre_a / pre_b: identity range and
# default, the rows added to a negative id (wrap_negative), or the bucketize boundaries' offset and count
META = ("kind", "dim", "stride4", "out_off", "table_base", "rows", "mode", "pre", "pre_a", "pre_b", "filter",
        "weighted")
# filter bits: drop entries with a negative id (TF's id >= 0 filter); drop entries with weight <= 0 (TF prunes them
# for weighted mean / sqrtn)
FILTER_NEG_ID = 1
FILTER_NONPOS_WEIGHT = 2
KIND = {"csr": 0, "dense": 1, "one": 2, "bucket": 3, "numeric": 4}
KIND_NAME = {v: k for k, v in KIND.items()}
MULTI_ID_KINDS = (KIND["csr"], KIND["dense"])
MODE = {"sum": 0, "mean": 1, "sqrtn": 2}
PRE = {"none": 0, "identity_default": 1, "wrap_negative": 2}  # wrap_negative: id < 0 -> id + pre_a (Keras)
