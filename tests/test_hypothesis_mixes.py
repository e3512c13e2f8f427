"""Generated cases: random column mixes and random (hostile) inputs, compared with TF (imported and optimized,
the embedding stage and the score: see conftest.Compiled).

Budget: CI runs a fixed, seeded set of RECOM_TVM_HYPOTHESIS_EXAMPLES examples (default 20: each is a new TF
model, ~10 s); RECOM_TVM_HYPOTHESIS=nightly draws new examples on every run (default 200, seed printed on
failure by hypothesis) for a longer search. README.md, "Tests", says how to run it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recom_tvm.models.spec import ColumnSpec, ModelSpec

from conftest import Compiled, assert_matches_tf

_KINDS = ["bucketized", "hash_string", "hash_int", "identity", "identity_default", "numeric"]


@st.composite
def column(draw, i: int):
    kind = draw(st.sampled_from(_KINDS))
    dim = draw(st.sampled_from([1, 3, 8]))
    comb = draw(st.sampled_from(["mean", "sum", "sqrtn"]))
    fmt = draw(st.sampled_from(["sparse", "dense"]))
    lo = draw(st.integers(0, 2))
    per_row = (lo, lo + draw(st.integers(0, 5)))
    weighted = fmt == "sparse" and draw(st.booleans())  # weighted_categorical_column: per-id weights
    if kind == "bucketized":
        n = draw(st.integers(1, 6))
        bounds = tuple(sorted({float(draw(st.integers(-20, 20))) / 4 for _ in range(n)}))
        return ColumnSpec(f"c{i}", kind, dim, comb, boundaries=bounds)
    if kind == "numeric":
        return ColumnSpec(f"c{i}", kind, dim)
    if kind.startswith("identity"):
        buckets = draw(st.integers(1, 30))
        default = draw(st.integers(0, buckets - 1)) if kind == "identity_default" else None
        vocab = buckets + (5 if default is not None else 0)
        return ColumnSpec(f"c{i}", "identity", dim, comb, buckets=buckets, default_value=default, input=fmt,
                          ids_per_row=per_row, vocab=vocab, weighted=weighted)
    return ColumnSpec(f"c{i}", kind, dim, comb, buckets=draw(st.integers(1, 200)), input=fmt, ids_per_row=per_row,
                      vocab=draw(st.integers(1, 400)), weighted=weighted)


@st.composite
def model_spec(draw):
    n = draw(st.integers(1, 4))
    cols = tuple(draw(column(i)) for i in range(n))
    return ModelSpec(f"hyp_{n}", cols, dense_width=draw(st.sampled_from([0, 2])), bottom_mlp=(2,), top_mlp=(3,),
                     seed=draw(st.integers(0, 100)))


NIGHTLY = os.environ.get("RECOM_TVM_HYPOTHESIS", "") == "nightly"
EXAMPLES = int(os.environ.get("RECOM_TVM_HYPOTHESIS_EXAMPLES", "200" if NIGHTLY else "20"))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not NIGHTLY, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(spec=model_spec(), batches=st.lists(st.integers(0, 40), min_size=2, max_size=3), seed=st.integers(0, 1000))
def test_random_column_mixes_match_tf(spec, batches, seed):
    c = Compiled(spec)  # the imported and the optimized build; the embedding stage compared too
    try:
        for j, batch in enumerate(batches):
            feeds = spec.sample(batch, rng=seed + j, hostile=j % 2 == 0)
            got, exp = c.run_both(feeds)
            assert_matches_tf(got, exp, f"{spec} batch={batch}")
    finally:
        c.close()  # not kept for the session: a nightly run makes hundreds
